"""What a user is told when a job fails: one fixed sentence per error code, never the error's text.

An engine's exception text can hold file paths, ffmpeg's stderr or a signed input URL, none of
which is the user's business (and a URL's signature is a credential). The job's `error_message`
(API, events) is the sentence below for its code; what actually happened goes, scrubbed, to the
log and to `error_detail`, which only staff see in the admin.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from django.conf import settings

from auteur.core.logging import scrub

DETAIL_MAX_CHARS = 4000

FAILURE_MESSAGES: Mapping[str, str] = MappingProxyType({
    # The GPU side's codes (gpu_tasks/errors.py): transient ones first, where a retry may work.
    "network": "A network error interrupted the job. Retrying it may work.",
    "capacity": "No machine was free to run the job. Retrying it later may work.",
    "backend_error": "The inference service failed while running the job. Retrying it may work.",
    "worker_lost": "The machine running the job stopped before it finished. Retrying it may work.",
    "gpu_oom": "The job ran out of memory. A shorter or smaller input may work.",
    "invalid_media": "An input file could not be decoded.",
    "model_unavailable": "The model this feature needs is not available right now.",
    "invalid_input": "The engine could not use the job's input.",
    "internal": "The job failed because of an internal error; it has been logged for our team.",
    "timeout": "The job did not finish within its time limit.",
    "feature_unavailable": ("This feature is not available on this server: its GPU backend does not run it. "
                            "An operator can enable it."),
    "canceled": "The job's inference was canceled.",
    "invalid_result": "The inference returned a result that could not be accepted; it has been logged for our team.",
    "face_not_found": "Too few frames of the video show a face: at least half of those to change must show one.",
    "consent_revoked": ("The consent of the voice or face the job uses was revoked while it ran: nothing it made is "
                        "kept, and it was refunded."),
    "output_moderated": "The result was withheld by content moderation; you were not charged.",
    # The jobs app's own (jobs/life/deliveries.py).
    "crash_loop": "Processing the job stopped the machine running it every time, so it was not tried again.",
})
UNKNOWN_FAILURE_MESSAGE = "The job failed."


def failure_message(code: str) -> str:
    """The sentence a user is shown for a failure with this code."""
    return FAILURE_MESSAGES.get(code, UNKNOWN_FAILURE_MESSAGE)


def failure_detail(text: str) -> str:
    """An error's own text as staff may read it: signed URLs' queries, tokens, emails and the
    server's secrets masked, and bounded."""
    text = scrub(text)
    for secret in _secrets():
        text = text.replace(secret, "[secret redacted]")
    return text[:DETAIL_MAX_CHARS]


def _secrets() -> list[str]:
    names = ("SECRET_KEY", "AUTEUR_JWT_SECRET", "AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID")
    # Short values would mask ordinary words; a real secret is long.
    return [value for name in names if len(value := str(getattr(settings, name, "") or "")) >= 8]

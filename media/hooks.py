"""A tiny registry through which other apps veto deleting a media file (media imports no app above it).

media imports no other app; the jobs app registers a check at start-up (in its AppConfig.ready)
that says whether a non-terminal job uses the file:

    from media.hooks import register_in_use_check

    def media_used_by_running_job(media: MediaFile) -> str | None:
        job = Job.objects.filter(status__in=ACTIVE, input_media_ids__contains=[media.pk]).first()
        return f"job {job.pk} uses it" if job else None

    register_in_use_check(media_used_by_running_job)

A check returns None when it has no objection, or a short reason (shown to the client in the
409 `media_in_use` error). media.services.deletion.media_delete runs the checks while it holds the media
row's lock (SELECT ... FOR UPDATE); a job submission that locks the same row before it starts
using the file can therefore never slip between the check and the delete.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from media.models import MediaFile

InUseCheck = Callable[["MediaFile"], "str | None"]

_checks: list[InUseCheck] = []


def register_in_use_check(check: InUseCheck) -> InUseCheck:
    """Register ``check`` (once; registering it again is a no-op). Usable as a decorator."""
    if check not in _checks:
        _checks.append(check)
    return check


def unregister_in_use_check(check: InUseCheck) -> None:
    if check in _checks:
        _checks.remove(check)


def media_in_use_reasons(media: MediaFile) -> list[str]:
    return [reason for check in list(_checks) if (reason := check(media))]


# ----------------------------------------------------------------------------- consent revoked

# A handler is called in the transaction that revokes a consent, with the consent's workspace
# account, the consent and the voice made with it (None: none is, or it was deleted): the jobs app
# cancels and refunds the waiting jobs that use them there (jobs/receivers.py), so a revocation and
# its refunds commit together.
RevocationHandler = Callable[[uuid.UUID, uuid.UUID, "uuid.UUID | None"], "int"]

_revocation_handlers: list[RevocationHandler] = []


def register_revocation_handler(handler: RevocationHandler) -> RevocationHandler:
    """Register ``handler`` (once; registering it again is a no-op)."""
    if handler not in _revocation_handlers:
        _revocation_handlers.append(handler)
    return handler


def consent_revoked(user_id: uuid.UUID, consent_id: uuid.UUID, voice_id: uuid.UUID | None) -> int:
    """Run every revocation handler; how many jobs they canceled together."""
    return sum(handler(user_id, consent_id, voice_id) for handler in list(_revocation_handlers))

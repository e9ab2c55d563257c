"""The content policy at the door: the texts a request asks a model to act on are screened before
the job is priced, so a refused request is a 422 `content_policy_violation` that made no job and
charged nothing.

Which fields are screened, and against which policy, is declared with the field
(`jobs.inputs.ScreenedText`; `JobSpec.screened`). The answer names every flagged field with all of
its categories, never the text or a score. A refusal is recorded (`ScreeningRefusal`: the account,
the member, the type, the fields and categories, the screener's version) in a transaction of its
own once the request is refused, whatever transaction the refusal came out of.

Order: a submission screens after the checks that cost nothing or a query (the owner checks, plan,
backend, replay, a balance that covers the least price) and before the request is resolved and
priced; a quote, a batch and a retry alike.
"""

from __future__ import annotations

import unicodedata
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from django.conf import settings
from django.db import transaction

from auteur.core.untrusted import InputTooComplex
from auteur.users.models import User
from jobs import gpu_client
from jobs.errors import ContentPolicyViolation
from jobs.models import ScreeningRefusal
from jobs.payloads import TRANSCRIPT_PARAM
from jobs.specs import JobSpec

MESSAGE = "The request was refused by the content policy: {fields}."
PIECE_MARK = "#"  # a long text screened in pieces: `transcript#2` is named `transcript`


def screened_texts(spec: JobSpec, params: Mapping[str, Any], prefix: str = "") -> dict[str, tuple[str, str]]:
    """{field as the answer names it: (text, policy)} of a request's screened fields that it sets,
    and of the transcript its resolution took for the model (`transcript`, in pieces the screener
    takes: `transcript#1`...; named `transcript` in the answer)."""
    texts = {f"{prefix}{name}": (params[name], policy) for name, policy in spec.screened.items()
             if isinstance(params.get(name), str) and params[name]}
    transcript = params.get(TRANSCRIPT_PARAM)
    if isinstance(transcript, str) and transcript:
        step = gpu_client.SCREEN_MAX_CHARS
        for n, start in enumerate(range(0, len(transcript), step)):
            texts[f"{prefix}transcript{PIECE_MARK}{n}"] = (transcript[start:start + step], "full")
    return texts


def resolved_part(params: Mapping[str, Any]) -> dict[str, Any]:
    """What a request's resolution added to its parameters for the model to read (a video's
    transcript): screened once the request is resolved, its own fields having been before."""
    return {TRANSCRIPT_PARAM: params[TRANSCRIPT_PARAM]} if TRANSCRIPT_PARAM in params else {}


def resolved_screen(*, spec: JobSpec, params: Mapping[str, Any]) -> None:
    request_screen(spec=spec, params=resolved_part(params))


def screening_check(*, texts: Mapping[str, tuple[str, str]], job_types: Mapping[str, str]) -> None:
    """Raise ContentPolicyViolation naming every flagged field unless the policy passes them all.
    `job_types`: each field's job type (a batch's items differ); the refusal is recorded under the
    first flagged field's."""
    if not texts:
        return
    _check_work(texts)
    # Each distinct (text, policy) once (a batch's items often share a prompt): its verdict is
    # every field's that holds it.
    distinct = {entry: str(n) for n, entry in enumerate(dict.fromkeys(texts.values()))}
    verdict = gpu_client.screen_texts({key: entry for entry, key in distinct.items()})
    if not verdict.flagged:
        return
    named: dict[str, list[str]] = {}
    for field, entry in texts.items():
        if distinct[entry] in verdict.flagged:
            categories = named.setdefault(field.partition(PIECE_MARK)[0], [])
            categories += [c for c in verdict.flagged[distinct[entry]] if c not in categories]
    listed = ", ".join(f"{field} ({', '.join(categories)})" for field, categories in named.items())
    flagged = [{"field": field, "categories": categories} for field, categories in named.items()]
    refusal = ContentPolicyViolation(MESSAGE.format(fields=listed),
                                     details={"flagged": flagged, "policy_version": gpu_client.POLICY_VERSION})
    first = next(field for field in texts if field.partition(PIECE_MARK)[0] == flagged[0]["field"])
    refusal.job_type, refusal.model_version = job_types[first], verdict.model_version
    raise refusal


def _check_work(texts: Mapping[str, tuple[str, str]]) -> None:
    """Bound what screening a request costs before any of it is done: the characters of its
    distinct texts together, and each one's growth under Unicode normalisation (which the
    screener's work follows). 422 `input_too_complex` otherwise."""
    # Each distinct text once, under the first field that holds it.
    distinct = {text: field for field, (text, _policy) in reversed(list(texts.items()))}
    total = sum(len(text) for text in distinct)
    most = settings.AUTEUR_SCREENING_MAX_CHARS_PER_REQUEST
    if total > most:
        raise InputTooComplex(
            f"The request's texts hold {total} characters, more than the {most} one request may have screened: "
            "send them in several requests.",
            details={"cause": "screened_characters", "limit": most, "value": total},
        )
    for text, field in distinct.items():
        grown = len(unicodedata.normalize("NFKC", text))
        if grown > settings.AUTEUR_SCREENING_MAX_EXPANSION * len(text) + 64:
            raise InputTooComplex(
                f"{field.partition(PIECE_MARK)[0]}: its characters grow {grown / len(text):.1f} times when "
                "normalised; write the text out.",
                details={"cause": "screened_expansion", "field": field.partition(PIECE_MARK)[0],
                         "limit": settings.AUTEUR_SCREENING_MAX_EXPANSION},
            )


def request_screen(*, spec: JobSpec, params: Mapping[str, Any]) -> None:
    """A single request's screening (a submission, a quote, a retry)."""
    requests_screen([("", spec, params)])


def requests_screen(requests: list[tuple[str, JobSpec, Mapping[str, Any]]]) -> None:
    """Many requests screened at once, each (the prefix its fields are named with, e.g. `items[3].`,
    its type, its parameters): a batch's items, a bulk retry's jobs."""
    texts: dict[str, tuple[str, str]] = {}
    job_types: dict[str, str] = {}
    for prefix, spec, params in requests:
        own = screened_texts(spec, params, prefix=prefix)
        texts.update(own)
        job_types.update(dict.fromkeys(own, spec.type.value))
    screening_check(texts=texts, job_types=job_types)


@contextmanager
def refusals_recorded(*, user: User, member_id: uuid.UUID | None) -> Iterator[None]:
    """Record a content policy refusal that leaves the block, after any transaction inside it has
    rolled back, then let it go on to the caller."""
    try:
        yield
    except ContentPolicyViolation as refusal:
        refusal_record(user=user, member_id=member_id, refusal=refusal)
        raise


def refusal_record(*, user: User, member_id: uuid.UUID | None, refusal: ContentPolicyViolation) -> None:
    with transaction.atomic():
        ScreeningRefusal.objects.create(
            user=user, member_id=member_id, type=refusal.job_type, flagged=refusal.details["flagged"],
            model_version=refusal.model_version[:64], policy_version=refusal.details["policy_version"],
        )

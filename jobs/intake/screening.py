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

import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from django.db import transaction

from auteur.users.models import User
from jobs import gpu_client
from jobs.errors import ContentPolicyViolation
from jobs.models import ScreeningRefusal
from jobs.specs import JobSpec

MESSAGE = "The request was refused by the content policy: {fields}."


def screened_texts(spec: JobSpec, params: Mapping[str, Any], prefix: str = "") -> dict[str, tuple[str, str]]:
    """{field as the answer names it: (text, policy)} of a request's screened fields that it sets."""
    return {f"{prefix}{name}": (params[name], policy) for name, policy in spec.screened.items()
            if isinstance(params.get(name), str) and params[name]}


def screening_check(*, texts: Mapping[str, tuple[str, str]], job_types: Mapping[str, str]) -> None:
    """Raise ContentPolicyViolation naming every flagged field unless the policy passes them all.
    `job_types`: each field's job type (a batch's items differ); the refusal is recorded under the
    first flagged field's."""
    if not texts:
        return
    # Each distinct (text, policy) once (a batch's items often share a prompt): its verdict is
    # every field's that holds it.
    distinct = {entry: str(n) for n, entry in enumerate(dict.fromkeys(texts.values()))}
    verdict = gpu_client.screen_texts({key: entry for entry, key in distinct.items()})
    if not verdict.flagged:
        return
    named = [(field, list(verdict.flagged[distinct[entry]])) for field, entry in texts.items()
             if distinct[entry] in verdict.flagged]
    listed = ", ".join(f"{field} ({', '.join(categories)})" for field, categories in named)
    flagged = [{"field": field, "categories": categories} for field, categories in named]
    refusal = ContentPolicyViolation(MESSAGE.format(fields=listed),
                                     details={"flagged": flagged, "policy_version": gpu_client.POLICY_VERSION})
    refusal.job_type, refusal.model_version = job_types[named[0][0]], verdict.model_version
    raise refusal


def request_screen(*, spec: JobSpec, params: Mapping[str, Any]) -> None:
    """A single request's screening (a submission, a quote, a retry)."""
    texts = screened_texts(spec, params)
    screening_check(texts=texts, job_types=dict.fromkeys(texts, spec.type.value))


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

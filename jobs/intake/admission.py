"""What a job request must pass before it is priced: the caller's plan, this server's backend,
the spoken languages it names, and a balance (and the caps) that cover its least price. A
submission and a quote check the same.

The rule every path into a job keeps (a submission, a quote, a batch and its quote, alike): the
checks that cost nothing or a query (the owner checks, the plan, the backend, a balance and the
caps against the least price) pass before any of the caller's documents is read (a render's
timeline, read, cut and captioned to be priced). So an account that cannot pay makes the server
read nothing of its own.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from django.conf import settings
from django.db.models import OuterRef, Subquery

from auteur.core.prepared import PreparedRead
from auteur.users.models import User
from credits.errors import InsufficientCredits
from credits.models import CreditAccount
from credits.selectors import may_be_capped, spend_cap_refusal
from credits.services.subscriptions import require_plan
from jobs import gpu_client
from jobs.errors import FeatureUnavailable, LanguageUnsupported
from jobs.life.standing import standing_check, standing_refuse
from jobs.models import AccountStanding
from jobs.selectors.requests import JobRequest
from jobs.specs import JobSpec


def job_submit_checks(*, user: User, spec: JobSpec, request: JobRequest) -> None:
    """What a submission checks of the caller and the resolved request before pricing it."""
    require_runnable(user, spec)
    languages_check(spec, request.input_params)


def require_runnable(user: User, spec: JobSpec) -> None:
    # The plan first: a feature the user's plan does not include is refused as such, whether or
    # not this server could run it now.
    require_plan(user=user, plan=spec.plan, feature=spec.type.value)
    reason = gpu_client.unavailable_reason(spec.type)
    if reason is not None:
        backend = settings.AUTEUR_GPU_BACKEND
        # The reason is an operator's (auteur.core.errors: a client is told the code's fixed sentence).
        raise FeatureUnavailable(
            f"{spec.type} is not available on this server's GPU backend ({backend}): {reason}.",
            details={"type": spec.type.value, "backend": backend, "reason": reason},
        )


def languages_check(spec: JobSpec, params: dict[str, Any]) -> None:
    """Each spoken language the request names must be one this server's engine takes (no query)."""
    for field in spec.languages:
        language = params.get(field)
        if language is None:
            continue
        supported = gpu_client.languages(spec.type)
        if language not in supported:
            backend = settings.AUTEUR_GPU_BACKEND
            raise LanguageUnsupported(
                f"This server ({backend} backend) does not take language {language!r} for {spec.type} jobs.",
                details={"field": field, "language": language, "backend": backend,
                         "supported": gpu_client.describe_languages(spec.type)},
            )


# The balance, whether the workspace's own spend cap counts, and the account's review hold, in one
# read: the hold is read beside the balance, so that checking it costs a request no statement.
_ADMISSION = PreparedRead(
    lambda user_id: CreditAccount.objects.filter(user_id=user_id).values(
        "balance", "capped",
        held_since=Subquery(AccountStanding.objects.filter(user_id=OuterRef("user_id")).values("held_since")[:1]),
        held_reason=Subquery(AccountStanding.objects.filter(user_id=OuterRef("user_id")).values("held_reason")[:1]),
    )[:1],
    user_id=uuid.UUID(int=1))


def can_pay(user: User, member_id: uuid.UUID | None, cost: int, specs: Sequence[JobSpec] = ()) -> None:
    """Raise InsufficientCredits or SpendCapReached (402) unless the balance, and the member's
    budget if one counts them, cover `cost` now (the charge checks them again, exactly, under the
    account's lock); then 403 `account_under_review` if the account is held and any of `specs` is
    generative. A query or two: made before anything of the request is read."""
    row = _ADMISSION.first(user_id=user.pk)
    balance, capped = (row["balance"], row["capped"]) if row else (0, False)
    if balance < cost:
        raise InsufficientCredits(balance=balance, cost=cost)
    # A personal workspace's owner without a cap has no counter to read: one query less.
    if may_be_capped(user=user, member_id=member_id, capped=capped):
        refused = spend_cap_refusal(user=user, member_id=member_id, cost=cost)
        if refused is not None:
            raise refused
    if row is None or (member_id is not None and member_id != user.pk):
        # No account row (a free request), or a member of a team asking: the holds read (the
        # person's own too: a hold follows its person into every workspace).
        standing_check(user=user, specs=specs, member_id=member_id)
    else:
        standing_refuse(held_since=row["held_since"], reason=row["held_reason"], specs=specs)

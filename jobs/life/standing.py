"""Review holds: an account the content policy keeps refusing is held for staff review.

An account (the paying one: a team workspace's, as its jobs are billed) is held when:
- a refusal names a zero-tolerance category (`sexual_minors`): at once (reason `zero_tolerance`);
- AUTEUR_REVIEW_HOLD_REFUSALS_PER_DAY refusals (5) in 24 hours, or AUTEUR_REVIEW_HOLD_REFUSALS_PER_MONTH
  (15) in 30 days (reason `refusals`);
- AUTEUR_REVIEW_HOLD_CONFIRMED_OUTPUTS (2) of its outputs withheld by output screening and confirmed
  by staff in 30 days (reason `outputs`).
Counting starts again at the last lift: what came before it never counts towards the next hold.

While held, every request of a generative type (`JobSpec.generative`) is a 403 `account_under_review`
(`standing_check`): a submission, a quote, a batch with any such item, a retry, a bulk retry. It is
one primary-key read, made among the cheap checks (after the plan, backend, replay and least price,
before the consents and the content policy's screening), so a held account is refused before any
screening and nothing is charged or made. The other types keep working. Staff lift a hold in the
admin (`standing_lift`). Each change of a hold is announced to the account: an `account.review_hold`
event on the workspace's stream and to its account webhooks subscribed to `review_hold`.

The hold is decided in the transaction that records the refusal (or the staff's confirmation),
under the standing row's lock: two refusals at once are counted one after the other, so neither is
lost (the second, waiting for the lock, counts the first once it is committed) and the hold is set,
and announced, once.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Count, Q
from django.utils import timezone

from auteur.core import rls
from auteur.users.models import User
from jobs.errors import AccountUnderReview
from jobs.events.account import review_hold_announce
from jobs.models import AccountStanding, HoldReason, JobModeration, ModerationState, ScreeningRefusal
from jobs.specs import JobSpec

# Categories a single refusal holds the account for: never a mistake of wording.
ZERO_TOLERANCE = frozenset({"sexual_minors"})
DAY, MONTH = timedelta(hours=24), timedelta(days=30)
MESSAGE = ("This account's requests to generate content are held for review by our staff after repeated "
           "refusals by the content policy. Other work (transcription, renders, compression) still runs.")


def standing_check(*, user: User, specs: Iterable[JobSpec], member_id: uuid.UUID | None = None) -> None:
    """403 `account_under_review` when any of `specs` is generative and the account is held, or the
    person who asks for it (`member_id`, in a team workspace) has their own account held: a hold
    follows its person into every workspace they act in. One read."""
    specs = list(specs)
    if not any(spec.generative for spec in specs):
        return
    accounts = {user.pk, member_id or user.pk}
    holds = AccountStanding.objects.filter(user_id__in=accounts, held_since__isnull=False)
    if len(accounts) > 1:
        # The person's own account is another user than the one this request acts as: its hold is
        # read across users, for the person the request's seat names, and only whether it is held.
        with rls.trusted():
            held = holds.values_list("held_since", "held_reason").first()
    else:
        held = holds.values_list("held_since", "held_reason").first()
    if held is not None:
        standing_refuse(held_since=held[0], reason=held[1], specs=specs)


def standing_refuse(*, held_since: datetime | None, reason: str | None, specs: Iterable[JobSpec]) -> None:
    """403 `account_under_review` when the account's hold, as read (`held_since`, None when not
    held), refuses any of `specs` (a generative one)."""
    if held_since is not None and any(spec.generative for spec in specs):
        raise AccountUnderReview(MESSAGE, details={"held_since": held_since.isoformat().replace("+00:00", "Z"),
                                                   "reason": reason or ""})


def standing_refusal_count(*, user_id: uuid.UUID, categories: Iterable[str]) -> bool:
    """Count a content policy refusal just recorded for the account (in the caller's transaction,
    which must be the one that recorded it): hold the account if it is now past a threshold.
    True if this refusal held it."""
    standing = _locked(user_id)
    if standing.held_since is not None:
        return False  # held already: said once
    if ZERO_TOLERANCE & set(categories):
        return _hold(user_id, HoldReason.ZERO_TOLERANCE)
    now = timezone.now()
    refusals = ScreeningRefusal.objects.filter(user_id=user_id, created_at__gte=_since(standing, now - MONTH))
    counts = refusals.aggregate(month=Count("pk"), day=Count("pk", filter=Q(created_at__gte=_since(standing,
                                                                                              now - DAY))))
    if (counts["day"] >= settings.AUTEUR_REVIEW_HOLD_REFUSALS_PER_DAY
            or counts["month"] >= settings.AUTEUR_REVIEW_HOLD_REFUSALS_PER_MONTH):
        return _hold(user_id, HoldReason.REFUSALS)
    return False


def standing_outputs_count(*, user_id: uuid.UUID) -> bool:
    """Count the account's outputs that staff confirmed were rightly withheld (in the transaction that
    confirmed the last one): hold it if they reach the threshold. True if this held it."""
    standing = _locked(user_id)
    if standing.held_since is not None:
        return False
    confirmed = JobModeration.objects.filter(user_id=user_id, state=ModerationState.CONFIRMED,
                                             decided_at__gte=_since(standing, timezone.now() - MONTH)).count()
    if confirmed >= settings.AUTEUR_REVIEW_HOLD_CONFIRMED_OUTPUTS:
        return _hold(user_id, HoldReason.OUTPUTS)
    return False


@transaction.atomic
def standing_lift(*, user_id: uuid.UUID, staff_user: User) -> bool:
    """Staff lift the account's hold: its generative requests are taken again, and counting starts
    again from now. True if this call lifted it (False: it was not held)."""
    now = timezone.now()
    lifted = AccountStanding.objects.select_for_update().filter(pk=user_id, held_since__isnull=False).first()
    if lifted is None:
        return False
    reason = lifted.held_reason
    AccountStanding.objects.filter(pk=user_id).update(held_since=None, held_reason="", lifted_at=now,
                                                      lifted_by=staff_user)
    review_hold_announce(user_id=user_id, state="lifted", reason=reason)
    return True


def _since(standing: AccountStanding, window_start: datetime) -> datetime:
    """The start of a counting window: never before the last lift."""
    return max(window_start, standing.lifted_at) if standing.lifted_at else window_start


def _locked(user_id: uuid.UUID) -> AccountStanding:
    """The account's standing row, created if missing, locked until the transaction ends."""
    assert connection.in_atomic_block, "a standing is counted in the transaction that records what it counts"
    with connection.cursor() as cursor:
        # The API's role inserts these columns only (the lift's are staff's).
        cursor.execute("INSERT INTO account_standings (user_id, held_since, held_reason) VALUES (%s, NULL, '') "
                       "ON CONFLICT (user_id) DO NOTHING", [user_id])
    return (AccountStanding.objects.select_for_update().only("user_id", "held_since", "held_reason", "lifted_at")
            .get(pk=user_id))


def _hold(user_id: uuid.UUID, reason: HoldReason) -> bool:
    AccountStanding.objects.filter(pk=user_id).update(held_since=timezone.now(), held_reason=reason)
    review_hold_announce(user_id=user_id, state="held", reason=reason.value)
    return True

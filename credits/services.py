"""Every change to a balance, a ledger or a subscription. Nothing else writes these tables.

How each balance change stays exact under concurrency (balance >= 0, balance == the sum of its
ledger, one usage and at most one refund per job, ledger rows never changed):

* Credits move in ONE statement (`_POST_SQL`): a guarded `UPDATE credit_accounts SET balance =
  balance + n WHERE user_id = ... AND balance + n >= 0 RETURNING balance` and, fed by it, the
  INSERT of the ledger row carrying that exact balance as balance_after. Postgres row-locks the
  account for the UPDATE (held until the transaction ends) and, when another transaction got
  there first, waits and re-evaluates the guard against the balance it committed: changes to
  one account never interleave, and one that would overdraw matches no row, so nothing moves
  and no entry is written. The database's CHECK (balance >= 0) backs the guard.
* Exactly-once is a unique constraint, not a read-then-write: one usage and one refund per job,
  one use of an idempotency key per account. A retry normally finds the committed row at once
  and returns it. When two identical requests race past that read, the loser's INSERT raises
  IntegrityError, its atomic block (a savepoint inside a caller's transaction, else the whole
  transaction) is rolled back together with its balance change, and it returns the winner's row.
* Each service runs inside `transaction.atomic()`, so it is its own transaction when called
  alone and a savepoint when called inside the caller's (the jobs app deducts in the same
  transaction that inserts the Job). The IntegrityError handler sits outside that block because
  a transaction that saw an error must be rolled back before it can read again.
"""

from __future__ import annotations

import calendar
import logging
import uuid
from datetime import datetime

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import timezone
from rest_framework import status

from auteur.errors import ApplicationError
from auteur.users.models import User
from credits.errors import IdempotencyConflict, InsufficientCredits, PlanRequired
from credits.lock_objects import subscription_lock
from credits.models import (
    CreditAccount,
    CreditTransaction,
    Plan,
    Subscription,
    SubscriptionStatus,
    TransactionType,
)
from credits.selectors import (
    credit_balance_get,
    credit_transaction_get_by_key,
    credit_transaction_get_for_job,
    user_plan,
)

logger = logging.getLogger(__name__)

GRANT_TYPES = (TransactionType.BONUS, TransactionType.SUBSCRIPTION)


# ----------------------------------------------------------------------------- helpers


def _require_positive(amount: int, *, name: str = "amount") -> None:
    # bool is an int; a True amount is a bug, not one credit.
    if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
        raise ApplicationError(f"{name} must be a positive integer.", code="invalid_amount",
                               details={name: amount})


def _require_text(text: str, *, name: str) -> str:
    text = (text or "").strip()
    if not text:
        raise ApplicationError(f"A {name} is required.", code=f"{name}_required")
    return text


def _replay(existing: CreditTransaction, *, user: User, amount: int, type: str) -> CreditTransaction:
    """The committed entry a retry asked for again, provided it is the same request."""
    if existing.user_id != user.pk or existing.amount != amount or existing.type != type:
        raise IdempotencyConflict(
            "This key was already used for a different credit operation.",
            details={"transaction_id": str(existing.pk)},
        )
    return existing


# The one statement that moves credits. The UPDATE is guarded, so an overdraft matches no row,
# moves nothing and inserts nothing; it row-locks the account, and when another transaction
# holds that lock it waits, then re-checks the guard against the balance that one committed.
# The ledger row is inserted by the same statement with the exact balance the UPDATE returned,
# stamped clock_timestamp() (taken after the lock was obtained, unlike the statement's start).
# A unique violation (a job charged or refunded twice, a reused key) fails the whole statement.
# One statement keeps the hot account's lock for the shortest time possible: no client round
# trip between locking and writing (bench/ledger_contention.py).
_POST_SQL = """
WITH moved AS (
    UPDATE credit_accounts SET balance = balance + %(amount)s, updated_at = now()
    WHERE user_id = %(user_id)s AND balance + %(amount)s >= 0
    RETURNING id, balance
)
INSERT INTO credit_transactions
    (id, account_id, user_id, amount, balance_after, type, description, job_id, idempotency_key,
     created_by_id, created_at)
SELECT %(id)s, moved.id, %(user_id)s, %(amount)s, moved.balance, %(type)s, %(description)s, %(job_id)s,
       %(idempotency_key)s, %(created_by_id)s, clock_timestamp()
FROM moved
RETURNING id, account_id, user_id, amount, balance_after, type, description, job_id, idempotency_key,
    created_by_id, created_at
"""
_POST_COLUMNS = ("id", "account_id", "user_id", "amount", "balance_after", "type", "description", "job_id",
                 "idempotency_key", "created_by_id", "created_at")


def _post_once(params: dict[str, uuid.UUID | int | str | None]) -> CreditTransaction | None:
    with connection.cursor() as cursor:
        cursor.execute(_POST_SQL, params)
        row = cursor.fetchone()
    return None if row is None else CreditTransaction.from_db(connection.alias, _POST_COLUMNS, row)


def _post(
    *,
    user: User,
    amount: int,
    type: str,
    description: str,
    job_id: uuid.UUID | None = None,
    idempotency_key: str | None = None,
    created_by: User | None = None,
) -> CreditTransaction | None:
    """Move the balance and write its ledger entry; None, with nothing moved, if it would overdraw.

    Must run inside an atomic block, which holds the account's lock until it ends.
    """
    params: dict[str, uuid.UUID | int | str | None] = {
        "id": uuid.uuid4(), "user_id": user.pk, "amount": amount, "type": type, "description": description,
        "job_id": job_id, "idempotency_key": idempotency_key,
        "created_by_id": created_by.pk if created_by is not None else None,
    }
    entry = _post_once(params)
    if entry is None and amount > 0:
        # Only a missing account refuses an addition: the user's first credits open it.
        credit_account_get_or_create(user=user)
        entry = _post_once(params)
    if entry is not None:
        logger.debug("credits %s %+d -> %d", type, amount, entry.balance_after,
                     extra={"job_id": str(job_id) if job_id else None})
    return entry


def _must(entry: CreditTransaction | None) -> CreditTransaction:
    assert entry is not None, "an addition to an existing account cannot be refused"
    return entry


def _existing_for_key(user: User, idempotency_key: str | None) -> CreditTransaction | None:
    if idempotency_key is None:
        return None
    return credit_transaction_get_by_key(user=user, idempotency_key=idempotency_key)


# ----------------------------------------------------------------------------- accounts


def credit_account_get_or_create(*, user: User) -> CreditAccount:
    # get_or_create survives a concurrent first use: it re-reads after the unique violation.
    account, _ = CreditAccount.objects.get_or_create(user=user)
    return account


def _credit_grant(
    *,
    user: User,
    amount: int,
    type: str,
    description: str,
    idempotency_key: str | None,
    created_by: User | None,
) -> tuple[CreditTransaction, bool]:
    """The grant's entry, and whether this call made it (False: an earlier call with the key did)."""
    _require_positive(amount)
    if type not in GRANT_TYPES:
        raise ApplicationError(f"A grant is one of {', '.join(GRANT_TYPES)}.", code="invalid_type")
    existing = _existing_for_key(user, idempotency_key)
    if existing is not None:
        return _replay(existing, user=user, amount=amount, type=type), False
    try:
        with transaction.atomic():
            entry = _post(user=user, amount=amount, type=type, description=description,
                          idempotency_key=idempotency_key, created_by=created_by)
            return _must(entry), True
    except IntegrityError:
        # A concurrent call with the same key committed first; ours was rolled back.
        existing = _existing_for_key(user, idempotency_key)
        if existing is None:
            raise
        return _replay(existing, user=user, amount=amount, type=type), False


def credit_grant(
    *,
    user: User,
    amount: int,
    type: str = TransactionType.BONUS,
    description: str,
    idempotency_key: str | None = None,
    created_by: User | None = None,
) -> CreditTransaction:
    """Add credits (a bonus or a subscription allowance). The same key never grants twice."""
    entry, _ = _credit_grant(user=user, amount=amount, type=type, description=description,
                             idempotency_key=idempotency_key, created_by=created_by)
    return entry


def credit_deduct_for_job(*, user: User, job_id: uuid.UUID, amount: int, description: str) -> CreditTransaction:
    """Charge a job. Raises InsufficientCredits (402) and moves nothing when the balance is short.

    A second call for the same job returns the first charge and moves nothing.
    """
    _require_positive(amount)
    try:
        with transaction.atomic():
            entry = _post(user=user, amount=-amount, type=TransactionType.USAGE, description=description,
                          job_id=job_id)
            if entry is not None:
                return entry
            # Refused. If this job was already charged (a retry, possibly of a twin that
            # committed a moment ago), that charge is the answer; otherwise it is a refusal.
            existing = credit_transaction_get_for_job(job_id=job_id, type=TransactionType.USAGE)
            if existing is not None:
                return _replay(existing, user=user, amount=-amount, type=TransactionType.USAGE)
            raise InsufficientCredits(balance=credit_balance_get(user=user), cost=amount)
    except IntegrityError:
        # The job was already charged (one usage per job): that charge stands, and our balance
        # change was rolled back with the failed INSERT.
        existing = credit_transaction_get_for_job(job_id=job_id, type=TransactionType.USAGE)
        if existing is None:
            raise
        return _replay(existing, user=user, amount=-amount, type=TransactionType.USAGE)


def credit_refund_job(*, job_id: uuid.UUID, reason: str) -> CreditTransaction:
    """Give back exactly what the job was charged, once. Later calls return the same refund."""
    reason = _require_text(reason, name="reason")
    usage = credit_transaction_get_for_job(job_id=job_id, type=TransactionType.USAGE)
    if usage is None:
        raise ApplicationError("This job was never charged, so there is nothing to refund.",
                               code="job_not_charged", status_code=status.HTTP_409_CONFLICT,
                               details={"job_id": str(job_id)})
    existing = credit_transaction_get_for_job(job_id=job_id, type=TransactionType.REFUND)
    if existing is not None:
        return existing
    try:
        with transaction.atomic():
            return _must(_post(user=usage.user, amount=-usage.amount, type=TransactionType.REFUND,
                               description=reason, job_id=job_id))
    except IntegrityError:
        # A concurrent refund of this job committed first (one refund per job); ours rolled back.
        existing = credit_transaction_get_for_job(job_id=job_id, type=TransactionType.REFUND)
        if existing is None:
            raise
        return existing


def credit_adjust(
    *,
    user: User,
    amount: int,
    reason: str,
    staff_user: User,
    idempotency_key: str | None = None,
) -> CreditTransaction:
    """A staff correction, recorded with who made it and why. It cannot make a balance negative."""
    if not (staff_user.is_active and staff_user.is_staff):
        raise ApplicationError("Only staff can adjust credits.", code="permission_denied",
                               status_code=status.HTTP_403_FORBIDDEN)
    if isinstance(amount, bool) or not isinstance(amount, int) or amount == 0:
        raise ApplicationError("amount must be a non-zero integer.", code="invalid_amount", details={"amount": amount})
    reason = _require_text(reason, name="reason")
    existing = _existing_for_key(user, idempotency_key)
    if existing is not None:
        return _replay(existing, user=user, amount=amount, type=TransactionType.ADJUSTMENT)
    try:
        with transaction.atomic():
            entry = _post(user=user, amount=amount, type=TransactionType.ADJUSTMENT, description=reason,
                          idempotency_key=idempotency_key, created_by=staff_user)
            if entry is None:
                raise InsufficientCredits(balance=credit_balance_get(user=user), cost=-amount)
            return entry
    except IntegrityError:
        existing = _existing_for_key(user, idempotency_key)
        if existing is None:
            raise
        return _replay(existing, user=user, amount=amount, type=TransactionType.ADJUSTMENT)


# ----------------------------------------------------------------------------- plans


def require_plan(*, user: User, plan: str | None, feature: str) -> None:
    """Refuse (403 `plan_required`) a feature that needs `plan` to anyone without it active."""
    if plan is None:
        return
    current = user_plan(user=user)
    if current != plan:
        raise PlanRequired(
            f"{feature} is available on the {plan} plan.",
            details={"feature": feature, "required_plan": plan, "current_plan": current},
        )


def add_month(moment: datetime) -> datetime:
    """The same day and time one calendar month later, clamped to the month's end (Jan 31 -> Feb 28)."""
    year, month = (moment.year + 1, 1) if moment.month == 12 else (moment.year, moment.month + 1)
    return moment.replace(year=year, month=month, day=min(moment.day, calendar.monthrange(year, month)[1]))


def _allowance_key(subscription: Subscription) -> str:
    # One grant per (subscription, period): the ledger's unique (account, idempotency_key)
    # makes a second beat, a re-run or a retry a no-op.
    return f"subscription:{subscription.pk}:{subscription.current_period_start.isoformat()}"


def _grant_period_allowance(subscription: Subscription) -> bool:
    amount = int(settings.AUTEUR_PLAN_ALLOWANCES[subscription.plan])
    _, created = _credit_grant(
        user=subscription.user,
        amount=amount,
        type=TransactionType.SUBSCRIPTION,
        description=f"{subscription.plan} plan allowance, period from "
                    f"{subscription.current_period_start:%Y-%m-%d}",
        idempotency_key=_allowance_key(subscription),
        created_by=None,
    )
    return created


def _validate_plan(plan: str) -> None:
    if plan not in Plan.values:
        raise ApplicationError(f"plan must be one of {', '.join(Plan.values)}.", code="invalid_plan",
                               details={"plan": plan})


def subscription_create(*, user: User, plan: str, now: datetime | None = None) -> Subscription:
    """Start a subscription (one per user) and grant its first period's allowance at once."""
    _validate_plan(plan)
    now = now or timezone.now()
    try:
        with transaction.atomic():
            subscription = Subscription.objects.create(
                user=user, plan=plan, status=SubscriptionStatus.ACTIVE,
                current_period_start=now, current_period_end=add_month(now),
            )
            _grant_period_allowance(subscription)
    except IntegrityError:
        if Subscription.objects.filter(user=user).exists():
            raise ApplicationError("This user already has a subscription; change its plan instead.",
                                   code="subscription_exists", status_code=status.HTTP_409_CONFLICT) from None
        raise
    return subscription


@transaction.atomic
def subscription_change_plan(*, user: User, plan: str) -> Subscription:
    """Switch an active subscription's plan, effective at once for features.

    The allowance already granted for the current period stays as it is (no top-up, no claw
    back); the next period is granted at the new plan's allowance.
    """
    _validate_plan(plan)
    subscription = Subscription.objects.filter(user=user).first()
    if subscription is None or subscription.status != SubscriptionStatus.ACTIVE:
        raise ApplicationError("There is no active subscription to change.", code="subscription_inactive",
                               status_code=status.HTTP_409_CONFLICT)
    subscription = subscription_lock(subscription_id=subscription.pk)
    subscription.plan = plan
    subscription.save(update_fields=["plan", "updated_at"])
    return subscription


@transaction.atomic
def subscription_cancel(*, user: User) -> Subscription:
    """Cancel: no further allowances, and plan-gated features are refused from now on."""
    subscription = Subscription.objects.filter(user=user).first()
    if subscription is None:
        raise ApplicationError("There is no subscription to cancel.", code="subscription_inactive",
                               status_code=status.HTTP_409_CONFLICT)
    subscription = subscription_lock(subscription_id=subscription.pk)
    subscription.status = SubscriptionStatus.CANCELLED
    subscription.save(update_fields=["status", "updated_at"])
    return subscription


def _subscription_renew_and_grant(*, subscription_id: uuid.UUID, now: datetime) -> bool:
    with transaction.atomic():
        subscription = subscription_lock(subscription_id=subscription_id)
        if subscription.status != SubscriptionStatus.ACTIVE or subscription.current_period_start > now:
            return False
        if subscription.current_period_end <= now:
            # Roll to the period that contains `now`. Periods that passed entirely while no beat
            # ran are skipped, not back-filled: an outage never turns into a burst of grants.
            start = subscription.current_period_end
            skipped = 0
            while add_month(start) <= now:
                start = add_month(start)
                skipped += 1
            if skipped:
                logger.warning("subscription %s: %d whole period(s) passed without a grant; skipped",
                               subscription.pk, skipped)
            subscription.current_period_start, subscription.current_period_end = start, add_month(start)
            subscription.save(update_fields=["current_period_start", "current_period_end", "updated_at"])
        return _grant_period_allowance(subscription)


def subscription_grant_allowances(*, now: datetime | None = None) -> int:
    """Grant every active subscription its allowance for the period containing `now`, once.

    The rule: a period is [current_period_start, current_period_end); when `now` has reached
    its end the subscription rolls forward by calendar months to the period containing `now`,
    and that period's allowance (AUTEUR_PLAN_ALLOWANCES[plan]) is granted with the idempotency
    key `subscription:<id>:<period start>`. Running this twice, or from two beats at once,
    grants once. Returns how many grants this call made.
    """
    now = now or timezone.now()
    ids = list(
        Subscription.objects.filter(status=SubscriptionStatus.ACTIVE, current_period_start__lte=now)
        .order_by("pk").values_list("pk", flat=True)
    )
    granted = 0
    for subscription_id in ids:
        # One transaction per subscription: locks stay short and one failure stops no other.
        try:
            granted += _subscription_renew_and_grant(subscription_id=subscription_id, now=now)
        except Exception:
            logger.exception("subscription %s: allowance grant failed; retried on the next run", subscription_id)
    return granted


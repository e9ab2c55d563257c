"""Plans and subscriptions: the plan a feature needs, and each period's allowance, granted once.

A period is one calendar month, clamped to the month's end (Jan 31 -> Feb 28); a period's
allowance is a ledger grant keyed by subscription and period, so a second beat or a rerun
grants nothing twice.
"""

from __future__ import annotations

import calendar
import logging
import uuid
from datetime import datetime

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from auteur.core.errors import ApplicationError
from auteur.users.models import User
from credits.errors import PaymentRequired, PlanRequired
from credits.lock_objects import subscription_lock
from credits.models import Plan, Subscription, SubscriptionStatus, TransactionType
from credits.selectors import subscription_get, user_plan
from credits.services.ledger import credit_grant_once

logger = logging.getLogger(__name__)

def require_plan(*, user: User, plan: str | None, feature: str) -> None:
    """Refuse a feature that needs `plan`: 403 `payment_required` while that plan's renewal is
    unpaid (past due), 403 `plan_required` to anyone else without it active."""
    if plan is None:
        return
    current = user_plan(user=user)
    if current == plan:
        return
    subscription = subscription_get(user=user)
    if subscription is not None and subscription.status == SubscriptionStatus.PAST_DUE and subscription.plan == plan:
        raise PaymentRequired(
            f"{feature} is available again once the {plan} plan's payment succeeds.",
            details={"feature": feature, "required_plan": plan, "status": subscription.status},
        )
    raise PlanRequired(
        f"{feature} is available on the {plan} plan.",
        details={"feature": feature, "required_plan": plan, "current_plan": current},
    )


def add_month(moment: datetime) -> datetime:
    """The same day and time one calendar month later, clamped to the month's end (Jan 31 -> Feb 28)."""
    year, month = (moment.year + 1, 1) if moment.month == 12 else (moment.year, moment.month + 1)
    return moment.replace(year=year, month=month, day=min(moment.day, calendar.monthrange(year, month)[1]))


def subscription_allowance_key(subscription: Subscription, period_start: datetime) -> str:
    # One grant per (subscription, period): the ledger's unique (account, idempotency_key)
    # makes a second beat, a re-run or a retry a no-op.
    return f"subscription:{subscription.pk}:{period_start.isoformat()}"


def _grant_period_allowance(subscription: Subscription, *, plan: str | None = None,
                            period_start: datetime | None = None, amount: int | None = None) -> bool:
    plan = plan or subscription.plan
    period_start = period_start or subscription.current_period_start
    if amount is None:
        amount = int(settings.AUTEUR_PLAN_ALLOWANCES[plan])
    _, created = credit_grant_once(
        user=subscription.user,
        amount=amount,
        type=TransactionType.SUBSCRIPTION,
        description=f"{plan} plan allowance, period from {period_start:%Y-%m-%d}",
        idempotency_key=subscription_allowance_key(subscription, period_start),
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
                                   code="subscription_exists") from None
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
        raise ApplicationError("There is no active subscription to change.", code="subscription_inactive")
    subscription = subscription_lock(subscription_id=subscription.pk)
    subscription.plan = plan
    subscription.save(update_fields=["plan", "updated_at"])
    return subscription


@transaction.atomic
def subscription_cancel(*, user: User) -> Subscription:
    """Cancel: no further allowances, and plan-gated features are refused from now on."""
    subscription = Subscription.objects.filter(user=user).first()
    if subscription is None:
        raise ApplicationError("There is no subscription to cancel.", code="subscription_inactive")
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
    grants once. Subscriptions billed through Stripe are left out: their paid invoices grant
    them (subscription_grant_paid_period). Returns how many grants this call made.
    """
    now = now or timezone.now()
    # A subscription billed by Stripe is granted by its paid invoices (billing/), never here,
    # so a period is never granted both ways.
    ids = list(
        Subscription.objects.filter(status=SubscriptionStatus.ACTIVE, current_period_start__lte=now,
                                    stripe_subscription_id="")
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



# ----------------------------------------------------------------------------- billed elsewhere


@transaction.atomic
def subscription_sync_external(
    *,
    user: User,
    external_id: str,
    plan: str,
    status: str,
    current_period_start: datetime,
    current_period_end: datetime,
) -> Subscription | None:
    """Make the user's subscription the billing provider's current state of `external_id`.

    The caller passes the provider's state as it is now, not as an event described it, so a
    late or repeated event cannot roll a newer state back. A subscription other than the one
    the user has now only replaces it when it is active (a new subscription after an ended one):
    a late event about an old, ended subscription changes nothing (None).
    """
    _validate_plan(plan)
    if status not in SubscriptionStatus.values:
        raise ApplicationError(f"status must be one of {', '.join(SubscriptionStatus.values)}.",
                               code="invalid_status", details={"status": status})
    fields = {"plan": plan, "status": status, "stripe_subscription_id": external_id,
              "current_period_start": current_period_start, "current_period_end": current_period_end}
    current = subscription_get(user=user)
    if current is None:
        try:
            with transaction.atomic():
                return Subscription.objects.create(user=user, **fields)
        except IntegrityError:
            current = subscription_get(user=user)  # created by a concurrent sync a moment ago
            if current is None:
                raise
    subscription = subscription_lock(subscription_id=current.pk)
    if subscription.stripe_subscription_id != external_id and status != SubscriptionStatus.ACTIVE:
        return None
    for name, value in fields.items():
        setattr(subscription, name, value)
    subscription.save(update_fields=[*fields, "updated_at"])
    return subscription


def subscription_grant_paid_period(*, subscription: Subscription, plan: str, period_start: datetime,
                                   amount: int | None = None) -> bool:
    """Grant the paid period starting at `period_start` its credits, once (the same key the beat
    uses): `amount`, as the caller worked it out from what was paid, else `plan`'s allowance.
    Returns whether this call granted it."""
    _validate_plan(plan)
    return _grant_period_allowance(subscription, plan=plan, period_start=period_start, amount=amount)

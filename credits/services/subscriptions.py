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

from auteur.errors import ApplicationError
from auteur.users.models import User
from credits.errors import PlanRequired
from credits.lock_objects import subscription_lock
from credits.models import Plan, Subscription, SubscriptionStatus, TransactionType
from credits.selectors import user_plan
from credits.services.ledger import credit_grant_once

logger = logging.getLogger(__name__)

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
    _, created = credit_grant_once(
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


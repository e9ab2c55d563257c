from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.conf import settings

from auteur.core.errors import ApplicationError
from credits.models import CreditTransaction, Plan, Subscription, SubscriptionStatus, TransactionType
from credits.selectors import credit_balance_get, ledger_check, user_plan
from credits.services.subscriptions import (
    add_month,
    require_plan,
    subscription_cancel,
    subscription_change_plan,
    subscription_create,
    subscription_grant_allowances,
    subscription_grant_paid_period,
    subscription_sync_external,
)
from credits.tasks import grant_subscription_allowances

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 1, 31, 12, 0, tzinfo=UTC)
STARTER = settings.AUTEUR_PLAN_ALLOWANCES["starter"]
PRO = settings.AUTEUR_PLAN_ALLOWANCES["pro"]


def allowance_entries(user) -> list[CreditTransaction]:
    return list(CreditTransaction.objects.filter(user=user, type=TransactionType.SUBSCRIPTION))


@pytest.mark.parametrize(
    ("start", "end"),
    [
        (datetime(2026, 1, 31, tzinfo=UTC), datetime(2026, 2, 28, tzinfo=UTC)),
        (datetime(2024, 1, 31, tzinfo=UTC), datetime(2024, 2, 29, tzinfo=UTC)),
        (datetime(2026, 12, 15, 8, 30, tzinfo=UTC), datetime(2027, 1, 15, 8, 30, tzinfo=UTC)),
    ],
)
def test_a_period_is_one_calendar_month_clamped_to_the_months_end(start, end):
    assert add_month(start) == end


def test_creating_a_subscription_grants_the_first_allowance(user):
    subscription = subscription_create(user=user, plan=Plan.STARTER, now=T0)
    assert (subscription.current_period_start, subscription.current_period_end) == (T0, add_month(T0))
    assert credit_balance_get(user=user) == STARTER
    assert user_plan(user=user) == "starter"


def test_a_second_subscription_for_a_user_is_refused(user):
    subscription_create(user=user, plan=Plan.STARTER, now=T0)
    with pytest.raises(ApplicationError) as exc:
        subscription_create(user=user, plan=Plan.PRO, now=T0)
    assert exc.value.code == "subscription_exists"
    assert credit_balance_get(user=user) == STARTER


def test_an_unknown_plan_is_refused(user):
    with pytest.raises(ApplicationError):
        subscription_create(user=user, plan="enterprise")
    assert not Subscription.objects.filter(user=user).exists()


def test_allowance_task_run_twice_grants_once(user):
    subscription_create(user=user, plan=Plan.PRO, now=T0)
    assert subscription_grant_allowances(now=T0 + timedelta(days=1)) == 0  # already granted at creation
    later = add_month(T0) + timedelta(minutes=5)
    assert subscription_grant_allowances(now=later) == 1
    assert subscription_grant_allowances(now=later) == 0
    assert subscription_grant_allowances(now=later + timedelta(minutes=5)) == 0
    assert credit_balance_get(user=user) == 2 * PRO
    assert len(allowance_entries(user)) == 2
    assert ledger_check() == []


def test_celery_task_grants_through_the_service_once(user):
    subscription = subscription_create(user=user, plan=Plan.STARTER)
    # Move the period into the past (as time passing would), then run the task twice.
    Subscription.objects.filter(pk=subscription.pk).update(
        current_period_start=subscription.current_period_start - timedelta(days=40),
        current_period_end=subscription.current_period_end - timedelta(days=40),
    )
    assert grant_subscription_allowances.apply().get() == 1
    assert grant_subscription_allowances.apply().get() == 0
    assert credit_balance_get(user=user) == 2 * STARTER


def test_the_period_rolls_forward_and_missed_periods_are_not_back_filled(user):
    subscription_create(user=user, plan=Plan.STARTER, now=T0)
    now = T0 + timedelta(days=100)  # three period ends have passed
    assert subscription_grant_allowances(now=now) == 1
    subscription = Subscription.objects.get(user=user)
    assert subscription.current_period_start <= now < subscription.current_period_end
    assert credit_balance_get(user=user) == 2 * STARTER


def test_cancelled_subscriptions_get_no_allowance(user):
    subscription_create(user=user, plan=Plan.STARTER, now=T0)
    subscription_cancel(user=user)
    assert subscription_grant_allowances(now=T0 + timedelta(days=40)) == 0
    assert credit_balance_get(user=user) == STARTER
    assert user_plan(user=user) is None


def test_plan_change_applies_to_the_next_period(user):
    subscription_create(user=user, plan=Plan.STARTER, now=T0)
    subscription_change_plan(user=user, plan=Plan.PRO)
    assert user_plan(user=user) == "pro"
    assert credit_balance_get(user=user) == STARTER  # no top-up inside the period
    subscription_grant_allowances(now=add_month(T0))
    assert credit_balance_get(user=user) == STARTER + PRO


def test_changing_the_plan_of_a_cancelled_subscription_is_refused(user):
    subscription_create(user=user, plan=Plan.STARTER, now=T0)
    subscription_cancel(user=user)
    with pytest.raises(ApplicationError) as exc:
        subscription_change_plan(user=user, plan=Plan.PRO)
    assert exc.value.code == "subscription_inactive"
    assert Subscription.objects.get(user=user).plan == Plan.STARTER


def test_pro_only_feature_is_refused_without_an_active_pro_plan(make_user):
    nobody, starter, pro = make_user(), make_user(), make_user()
    subscription_create(user=starter, plan=Plan.STARTER)
    subscription_create(user=pro, plan=Plan.PRO)
    for user, plan in ((nobody, None), (starter, "starter")):
        with pytest.raises(ApplicationError) as exc:
            require_plan(user=user, plan="pro", feature="video-generation")
        assert (exc.value.status_code, exc.value.code) == (403, "plan_required")
        assert exc.value.details["current_plan"] == plan
    require_plan(user=pro, plan="pro", feature="video-generation")
    require_plan(user=starter, plan=None, feature="tts")  # not plan-gated
    subscription_cancel(user=pro)
    with pytest.raises(ApplicationError):
        require_plan(user=pro, plan="pro", feature="video-generation")


def test_expired_status_counts_as_no_plan(user):
    subscription_create(user=user, plan=Plan.PRO)
    Subscription.objects.filter(user=user).update(status=SubscriptionStatus.EXPIRED)
    assert user_plan(user=user) is None


def sync(user, external_id: str, status: str, plan: str = Plan.PRO, start: datetime = T0) -> Subscription | None:
    return subscription_sync_external(user=user, external_id=external_id, plan=plan, status=status,
                                      current_period_start=start, current_period_end=add_month(start))


def test_past_due_refuses_the_plans_features_with_payment_required(user):
    sync(user, "sub_1", SubscriptionStatus.PAST_DUE)
    with pytest.raises(ApplicationError) as exc:
        require_plan(user=user, plan="pro", feature="video-generation")
    assert (exc.value.status_code, exc.value.code) == (403, "payment_required")
    sync(user, "sub_1", SubscriptionStatus.ACTIVE)
    require_plan(user=user, plan="pro", feature="video-generation")


def test_the_beat_leaves_externally_billed_subscriptions_to_their_invoices(user):
    subscription = sync(user, "sub_1", SubscriptionStatus.ACTIVE, start=T0)
    assert subscription is not None
    assert subscription_grant_allowances(now=T0 + timedelta(days=40)) == 0
    assert allowance_entries(user) == []
    assert subscription_grant_paid_period(subscription=subscription, plan=Plan.PRO, period_start=T0)
    assert not subscription_grant_paid_period(subscription=subscription, plan=Plan.PRO, period_start=T0)
    assert credit_balance_get(user=user) == PRO and ledger_check() == []


def test_an_ended_subscription_never_replaces_the_current_one(user):
    sync(user, "sub_new", SubscriptionStatus.ACTIVE)
    assert sync(user, "sub_old", SubscriptionStatus.CANCELLED) is None
    current = Subscription.objects.get(user=user)
    assert (current.stripe_subscription_id, current.status) == ("sub_new", SubscriptionStatus.ACTIVE)
    # A new active subscription after an ended one takes its place.
    sync(user, "sub_new", SubscriptionStatus.CANCELLED)
    sync(user, "sub_newer", SubscriptionStatus.ACTIVE, plan=Plan.STARTER)
    current.refresh_from_db()
    assert (current.stripe_subscription_id, current.plan, current.status) == ("sub_newer", "starter", "active")

"""A user's plan through Stripe: checkout -> webhook -> credits, payment failures, cancellation,
and events out of order. The ledger and ledger_check are exact after every step.

What a paid invoice grants: the plan's allowance in proportion to what was paid of the plan's
price (billing/services/handlers.py, `invoice_allowance`). A trial or a 100 % coupon grants no
credits, a partial discount its share, tax and the customer's Stripe balance change nothing;
replayed and out of order, credits move once."""

from __future__ import annotations

import time
from typing import Any

import pytest
from django.utils import timezone

from auteur.users.models import User
from billing.models import PaidInvoice, StripeEvent
from billing.services.handlers import invoice_allowance
from credits.models import CreditTransaction, Subscription, SubscriptionStatus, TransactionType
from credits.selectors import credit_balance_get, ledger_check, user_plan
from credits.services.subscriptions import subscription_grant_allowances
from tests.billing.support import (
    DAY,
    PRICE_PRO,
    PRICE_STARTER,
    FakeStripe,
    checkout_session,
    deliver,
    event,
    invoice,
    new_id,
)
from tests.jobs.support import error_code, submit, valid_body

pytestmark = pytest.mark.django_db

PERIOD = int(time.time()) - 60


def allowances(user: User) -> list[tuple[int, str | None]]:
    return list(CreditTransaction.objects.filter(user=user, type=TransactionType.SUBSCRIPTION)
                .order_by("created_at").values_list("amount", "idempotency_key"))


def start_checkout(client: Any, plan: str = "pro") -> Any:
    response = client.post("/api/v1/billing/checkout", {"plan": plan}, format="json")
    assert response.status_code == 200, response.json()
    return response


class Journey:
    """One user's subscription at Stripe: the events Stripe would send, delivered signed."""

    def __init__(self, client: Any, fake: FakeStripe, user: User) -> None:
        self.client, self.fake, self.user = client, fake, user
        self.subscription_id = new_id("sub")

    @property
    def customer(self) -> str:
        return self.fake.customers[str(self.user.pk)]

    def stripe_state(self, status: str, *, price: str = PRICE_PRO, period_start: int = PERIOD) -> None:
        self.fake.set_subscription(subscription_id=self.subscription_id, customer=self.customer, price=price,
                                   status=status, period_start=period_start)

    def send(self, type: str, obj: dict[str, Any]) -> dict[str, Any]:
        body = event(type, obj)
        response = deliver(self.client, body)
        assert response.status_code == 200, response.json()
        return body

    def completed(self) -> dict[str, Any]:
        return self.send("checkout.session.completed", checkout_session(
            customer=self.customer, user_id=str(self.user.pk), mode="subscription",
            subscription=self.subscription_id))

    def subscription_event(self, type: str) -> dict[str, Any]:
        return self.send(type, {"id": self.subscription_id, "object": "subscription", "customer": self.customer})

    def invoice(self, type: str = "invoice.paid", *, price: str = PRICE_PRO, period_start: int = PERIOD,
                billing_reason: str = "subscription_create", amount: int = 2900, discount: int = 0, tax: int = 0,
                starting_balance: int = 0) -> dict[str, Any]:
        """An invoice event; the amounts as support.invoice takes them."""
        return self.send(type, invoice(customer=self.customer, subscription=self.subscription_id, price=price,
                                       period_start=period_start, billing_reason=billing_reason, amount=amount,
                                       discount=discount, tax=tax, starting_balance=starting_balance))


@pytest.fixture
def journey(auth_client: Any, api_client: Any, stripe_fake: FakeStripe, user: User) -> Journey:
    start_checkout(auth_client)
    return Journey(api_client, stripe_fake, user)


def test_no_plan_to_pro_through_checkout_and_webhooks_grants_the_allowance_once(journey: Journey, user: User):
    assert user_plan(user=user) is None and credit_balance_get(user=user) == 0
    journey.stripe_state("active")

    journey.completed()
    assert user_plan(user=user) == "pro" and credit_balance_get(user=user) == 0
    assert ledger_check() == []

    journey.subscription_event("customer.subscription.created")
    journey.invoice()
    subscription = Subscription.objects.get(user=user)
    assert subscription.stripe_subscription_id == journey.subscription_id
    assert subscription.status == SubscriptionStatus.ACTIVE
    assert int(subscription.current_period_start.timestamp()) == PERIOD
    period_key = f"subscription:{subscription.pk}:{subscription.current_period_start.isoformat()}"
    assert allowances(user) == [(3000, period_key)]
    assert credit_balance_get(user=user) == 3000
    paid = PaidInvoice.objects.get()
    assert (paid.user_id, paid.plan, paid.allowance_key) == (user.pk, "pro", period_key)
    assert ledger_check() == []

    # The same invoice again (a new event id for the same period) and the beat grant nothing more.
    journey.invoice()
    assert subscription_grant_allowances() == 0
    assert credit_balance_get(user=user) == 3000 and len(allowances(user)) == 1
    assert ledger_check() == []


def test_the_next_paid_period_is_granted_by_its_invoice(journey: Journey, user: User):
    journey.stripe_state("active")
    journey.completed()
    journey.invoice()
    renewal = PERIOD + 30 * DAY
    journey.stripe_state("active", period_start=renewal)
    journey.invoice(period_start=renewal, billing_reason="subscription_cycle")
    assert credit_balance_get(user=user) == 6000 and len(allowances(user)) == 2
    assert ledger_check() == []


def test_invoice_paid_before_checkout_session_completed(journey: Journey, user: User):
    journey.stripe_state("active")
    journey.invoice()
    assert user_plan(user=user) == "pro" and credit_balance_get(user=user) == 3000
    journey.completed()
    journey.subscription_event("customer.subscription.created")
    assert user_plan(user=user) == "pro" and credit_balance_get(user=user) == 3000
    assert len(allowances(user)) == 1
    assert ledger_check() == []


def test_a_late_update_never_rolls_a_newer_state_back(journey: Journey, user: User):
    """Stripe says cancelled now; an `updated` event written while it was active arrives late."""
    journey.stripe_state("active")
    journey.completed()
    journey.stripe_state("canceled")
    journey.subscription_event("customer.subscription.deleted")
    journey.subscription_event("customer.subscription.updated")
    assert Subscription.objects.get(user=user).status == SubscriptionStatus.CANCELLED


def test_payment_failed_refuses_pro_features_with_payment_required_until_paid(
    journey: Journey, user: User, auth_client: Any, project: Any, media: Any, gpu_backend: Any
):
    gpu_backend("noop")
    journey.stripe_state("active")
    journey.completed()
    journey.invoice()

    journey.stripe_state("past_due")
    journey.invoice("invoice.payment_failed", billing_reason="subscription_cycle")
    assert Subscription.objects.get(user=user).status == SubscriptionStatus.PAST_DUE
    before = (credit_balance_get(user=user), CreditTransaction.objects.filter(user=user).count())
    response = submit(auth_client, "video-generation", valid_body("video-generation", project, media))
    assert response.status_code == 403 and error_code(response) == "payment_required"
    assert (credit_balance_get(user=user), CreditTransaction.objects.filter(user=user).count()) == before
    # A user past due cannot open a second subscription either: the portal settles it.
    response = auth_client.post("/api/v1/billing/checkout", {"plan": "pro"}, format="json")
    assert response.status_code == 409 and error_code(response) == "plan_active"

    renewal = PERIOD + 30 * DAY
    journey.stripe_state("active", period_start=renewal)
    journey.invoice(period_start=renewal, billing_reason="subscription_cycle")
    assert Subscription.objects.get(user=user).status == SubscriptionStatus.ACTIVE
    response = submit(auth_client, "video-generation", valid_body("video-generation", project, media))
    assert response.status_code == 202, response.json()
    assert ledger_check() == []


def test_subscription_deleted_downgrades_to_no_plan(
    journey: Journey, user: User, auth_client: Any, project: Any, media: Any
):
    journey.stripe_state("active")
    journey.completed()
    journey.invoice()
    balance = credit_balance_get(user=user)
    journey.stripe_state("canceled")
    journey.subscription_event("customer.subscription.deleted")
    assert Subscription.objects.get(user=user).status == SubscriptionStatus.CANCELLED
    assert user_plan(user=user) is None
    response = submit(auth_client, "video-generation", valid_body("video-generation", project, media))
    assert response.status_code == 403 and error_code(response) == "plan_required"
    # The credits already granted stay: they were paid for.
    assert credit_balance_get(user=user) == balance and len(allowances(user)) == 1
    assert ledger_check() == []


def test_a_plan_change_in_the_portal_arrives_as_an_update(journey: Journey, user: User):
    journey.stripe_state("active", price=PRICE_STARTER)
    journey.completed()
    journey.invoice(price=PRICE_STARTER)
    assert user_plan(user=user) == "starter" and credit_balance_get(user=user) == 500
    journey.stripe_state("active", price=PRICE_PRO)
    journey.subscription_event("customer.subscription.updated")
    # A proration invoice grants nothing: the current period keeps what it was granted.
    journey.invoice(price=PRICE_PRO, billing_reason="subscription_update")
    assert user_plan(user=user) == "pro" and credit_balance_get(user=user) == 500
    assert StripeEvent.objects.filter(type="invoice.paid", outcome="ignored").count() == 1
    assert ledger_check() == []


def test_events_for_a_customer_that_is_not_ours_are_ignored(api_client: Any, stripe_fake: FakeStripe):
    stripe_fake.set_subscription(subscription_id="sub_other", customer="cus_other", price=PRICE_PRO,
                                 status="active", period_start=PERIOD)
    response = deliver(api_client, event("invoice.paid", invoice(customer="cus_other", subscription="sub_other",
                                                                 price=PRICE_PRO, period_start=PERIOD)))
    assert response.status_code == 200 and response.json()["outcome"] == "ignored"
    assert not Subscription.objects.exists() and not CreditTransaction.objects.exists()


def test_the_beat_still_grants_staff_created_subscriptions(user: User, stripe_fake: FakeStripe):
    from credits.services.subscriptions import subscription_create

    subscription = subscription_create(user=user, plan="starter")
    assert credit_balance_get(user=user) == 500
    later = subscription.current_period_end + (subscription.current_period_end - subscription.current_period_start) / 2
    assert subscription_grant_allowances(now=later) == 1
    assert credit_balance_get(user=user) == 1000


def test_ledger_check_reports_a_paid_invoice_without_its_allowance(journey: Journey, user: User):
    journey.stripe_state("active")
    journey.completed()
    journey.invoice()
    assert ledger_check() == []
    # A paid invoice whose grant is missing (as if its row had been lost) is reported.
    PaidInvoice.objects.create(user=user, stripe_invoice_id=new_id("in"),
                               stripe_subscription_id=journey.subscription_id, plan="pro",
                               period_start=timezone.now(), allowance_key="subscription:lost:period")
    problems = [str(problem) for problem in ledger_check()]
    assert len(problems) == 1 and "has no subscription entry (subscription:lost:period)" in problems[0]
    assert user.email in problems[0]


PRO = 3000  # the tests' pro allowance (tests/billing/conftest.py); its price is 2900 cents


@pytest.mark.parametrize(("amounts", "granted"), [
    ({}, PRO),
    ({"discount": 2900}, 0),  # a 100 % coupon
    ({"amount": 0}, 0),  # a trial's invoice: nothing priced
    ({"discount": 725}, 2250),  # 25 % off
    ({"discount": 1450, "tax": 290}, 1500),  # 50 % off, with 20 % tax on what is left
    ({"tax": 580}, PRO),  # tax is no extra allowance
    ({"starting_balance": -1000}, PRO),  # paid partly from the customer's Stripe credit
    ({"starting_balance": -5000}, PRO),  # paid wholly from it
    ({"discount": 1}, 2998),  # rounded down
])
def test_a_paid_invoice_grants_the_share_of_the_allowance_that_was_paid(journey: Journey, user: User,
                                                                        amounts: dict[str, Any], granted: int):
    journey.stripe_state("active")
    journey.completed()
    body = journey.invoice(**amounts)
    deliver(journey.client, body)  # Stripe's retry of the same event
    journey.invoice(**amounts)  # another invoice for the same period
    assert credit_balance_get(user=user) == granted
    assert [amount for amount, _ in allowances(user)] == ([granted] if granted else [])
    assert set(PaidInvoice.objects.values_list("credits", flat=True)) == {granted}
    assert user_plan(user=user) == "pro"  # the plan's features come with the subscription either way
    assert ledger_check() == []


def test_a_period_nothing_was_paid_for_is_processed_and_says_why(journey: Journey, user: User):
    journey.stripe_state("trialing")
    body = journey.invoice(amount=0)
    record = StripeEvent.objects.get(event_id=body["id"])
    assert record.outcome == "processed" and "nothing was paid" in record.error
    assert credit_balance_get(user=user) == 0 and user_plan(user=user) == "pro"


def test_a_discounted_invoice_before_the_checkout_completes_grants_its_share_once(journey: Journey, user: User):
    journey.stripe_state("active")
    body = journey.invoice(discount=725)
    journey.completed()
    journey.subscription_event("customer.subscription.created")
    deliver(journey.client, body)
    assert credit_balance_get(user=user) == 2250 and len(allowances(user)) == 1
    assert ledger_check() == []


def test_the_renewal_after_a_free_first_period_grants_the_full_allowance(journey: Journey, user: User):
    journey.stripe_state("active")
    journey.completed()
    journey.invoice(discount=2900)  # the first month free
    renewal = PERIOD + 30 * DAY
    journey.stripe_state("active", period_start=renewal)
    journey.invoice(period_start=renewal, billing_reason="subscription_cycle")
    assert credit_balance_get(user=user) == PRO and len(allowances(user)) == 1
    assert ledger_check() == []


def test_an_invoice_missing_its_amounts_fails_and_grants_nothing(journey: Journey, user: User):
    """A paid invoice whose amounts cannot be read is not guessed at: the event fails (500, so
    Stripe retries it and staff see it) and no credits move."""
    journey.stripe_state("active")
    journey.completed()
    broken = invoice(customer=journey.customer, subscription=journey.subscription_id, price="price_pro_test",
                     period_start=PERIOD)
    del broken["amount_paid"]
    response = deliver(journey.client, event("invoice.paid", broken))
    assert response.status_code == 500 and response.json()["error"]["code"] == "event_processing_failed"
    assert credit_balance_get(user=user) == 0 and not PaidInvoice.objects.exists()


def test_invoice_allowance_never_exceeds_the_allowance():
    # It also collected an earlier debt of 500: that is no payment for this period.
    with_debt = {"subtotal": 100, "subtotal_excluding_tax": 100, "total": 100, "total_excluding_tax": 100,
                 "amount_paid": 600, "starting_balance": 500, "ending_balance": 0}
    assert invoice_allowance(with_debt, PRO) == PRO
    assert invoice_allowance({**with_debt, "ending_balance": 500}, PRO) == PRO  # more than the price: capped
    assert invoice_allowance({**with_debt, "subtotal_excluding_tax": None}, PRO) == PRO  # Stripe may send null

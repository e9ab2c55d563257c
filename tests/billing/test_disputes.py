"""Disputes of a credit pack's payment, as signed `charge.dispute.*` events through the real
webhook endpoint: an open or lost dispute takes the pack back as a refund does (never below 0,
the rest recorded as the shortfall), a won one gives back exactly what it took, an inquiry moves
nothing. Events come twice and out of order; credits move once, and ledger_check stays clean."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from django.utils import timezone

from auteur.users.models import User
from billing.models import PackPurchase
from credits.models import TransactionType
from credits.selectors import credit_balance_get, ledger_check
from credits.services.ledger import credit_deduct_for_job
from tests.billing.support import FakeStripe, charge, checkout_session, deliver, dispute, event, new_id
from tests.billing.test_packs import buy, rows

pytestmark = pytest.mark.django_db


def send(client: Any, type: str, obj: dict[str, Any], *, times: int = 1) -> list[str]:
    """Deliver one event `times` times (the same event id: Stripe's retry); the outcomes."""
    body = event(type, obj)
    outcomes = []
    for _ in range(times):
        response = deliver(client, body)
        assert response.status_code == 200, response.json()
        outcomes.append(response.json()["outcome"])
    return outcomes


def test_an_open_dispute_takes_the_pack_back_once_however_often_its_events_come(
    api_client: Any, auth_client: Any, stripe_fake: FakeStripe, user: User
):
    payment_intent = buy(api_client, auth_client, stripe_fake, user)
    opened = stripe_fake.set_dispute(dispute(payment_intent=payment_intent), "needs_response")
    assert send(api_client, "charge.dispute.created", opened, times=2) == ["processed", "processed"]
    send(api_client, "charge.dispute.funds_withdrawn", opened)  # another event id, the same dispute
    stripe_fake.set_dispute(opened, "under_review")
    send(api_client, "charge.dispute.updated", opened)
    assert credit_balance_get(user=user) == 0
    assert rows(user, TransactionType.PURCHASE_REVERSAL) == [-500]
    purchase = PackPurchase.objects.get()
    assert purchase.refunded_at is not None and purchase.dispute_id == opened["id"] and purchase.refund_shortfall == 0
    assert ledger_check() == []


def test_a_won_dispute_gives_back_what_it_took_once_and_a_late_opening_takes_nothing(
    api_client: Any, auth_client: Any, stripe_fake: FakeStripe, user: User
):
    payment_intent = buy(api_client, auth_client, stripe_fake, user)
    opened = stripe_fake.set_dispute(dispute(payment_intent=payment_intent), "needs_response")
    send(api_client, "charge.dispute.created", opened)
    assert credit_balance_get(user=user) == 0
    stripe_fake.set_dispute(opened, "won")
    closed = {**opened, "status": "won"}
    assert send(api_client, "charge.dispute.closed", closed, times=2) == ["processed", "processed"]
    send(api_client, "charge.dispute.funds_reinstated", closed)
    # The opening delivered again, late, as a new event: Stripe says won now, so nothing is taken.
    send(api_client, "charge.dispute.created", opened)
    assert credit_balance_get(user=user) == 500
    assert sorted(rows(user, TransactionType.PURCHASE)) == [500, 500]
    assert rows(user, TransactionType.PURCHASE_REVERSAL) == [-500]
    assert PackPurchase.objects.get().reinstated_at is not None
    assert ledger_check() == []


def test_a_dispute_won_before_its_opening_arrives_moves_no_credits(
    api_client: Any, auth_client: Any, stripe_fake: FakeStripe, user: User
):
    payment_intent = buy(api_client, auth_client, stripe_fake, user)
    won = stripe_fake.set_dispute(dispute(payment_intent=payment_intent), "won")
    send(api_client, "charge.dispute.closed", won, times=2)
    send(api_client, "charge.dispute.created", {**won, "status": "needs_response"}, times=2)
    assert credit_balance_get(user=user) == 500
    assert rows(user, TransactionType.PURCHASE) == [500] and rows(user, TransactionType.PURCHASE_REVERSAL) == []
    purchase = PackPurchase.objects.get()
    assert purchase.refunded_at is None and purchase.reinstated_at is None
    assert ledger_check() == []


@pytest.mark.parametrize(("outcome", "balance"), [("lost", 0), ("won", 150)])
def test_credits_spent_before_a_dispute_are_the_shortfall_and_a_win_gives_back_only_what_was_taken(
    api_client: Any, auth_client: Any, stripe_fake: FakeStripe, user: User, outcome: str, balance: int
):
    payment_intent = buy(api_client, auth_client, stripe_fake, user)
    credit_deduct_for_job(user=user, job_id=uuid.uuid4(), amount=350, description="a job")
    opened = stripe_fake.set_dispute(dispute(payment_intent=payment_intent), "needs_response")
    send(api_client, "charge.dispute.created", opened)
    assert credit_balance_get(user=user) == 0 and rows(user, TransactionType.PURCHASE_REVERSAL) == [-150]
    assert PackPurchase.objects.get().refund_shortfall == 350
    stripe_fake.set_dispute(opened, outcome)
    send(api_client, "charge.dispute.closed", {**opened, "status": outcome}, times=2)
    assert credit_balance_get(user=user) == balance
    assert rows(user, TransactionType.PURCHASE_REVERSAL) == [-150]
    assert ledger_check() == []


def test_a_refund_and_a_dispute_of_one_payment_take_the_pack_back_once_and_a_win_gives_nothing_back(
    api_client: Any, auth_client: Any, stripe_fake: FakeStripe, user: User
):
    payment_intent = buy(api_client, auth_client, stripe_fake, user)
    deliver(api_client, event("charge.refunded", charge(payment_intent=payment_intent)))
    opened = stripe_fake.set_dispute(dispute(payment_intent=payment_intent), "needs_response")
    send(api_client, "charge.dispute.created", opened)
    assert credit_balance_get(user=user) == 0 and rows(user, TransactionType.PURCHASE_REVERSAL) == [-500]
    # The refund took it, not the dispute: the customer has their money back, so winning the
    # dispute gives nothing back.
    stripe_fake.set_dispute(opened, "won")
    send(api_client, "charge.dispute.closed", {**opened, "status": "won"})
    assert credit_balance_get(user=user) == 0 and rows(user, TransactionType.PURCHASE) == [500]
    assert PackPurchase.objects.get().dispute_id == ""
    assert ledger_check() == []


@pytest.mark.parametrize("status", ["warning_needs_response", "warning_under_review", "warning_closed"])
def test_an_inquiry_moves_no_credits(api_client: Any, auth_client: Any, stripe_fake: FakeStripe, user: User,
                                     status: str):
    payment_intent = buy(api_client, auth_client, stripe_fake, user)
    inquiry = stripe_fake.set_dispute(dispute(payment_intent=payment_intent), status)
    assert send(api_client, "charge.dispute.created", inquiry) == ["ignored"]
    assert credit_balance_get(user=user) == 500 and PackPurchase.objects.get().refunded_at is None
    assert ledger_check() == []


def test_a_dispute_that_arrives_before_the_payments_completion_takes_the_pack_back_once(
    api_client: Any, auth_client: Any, stripe_fake: FakeStripe, user: User
):
    auth_client.post("/api/v1/billing/checkout", {"credit_pack": "pack_500"}, format="json")
    metadata = stripe_fake.called("checkout_session_create")[-1]["metadata"]
    customer, payment_intent = stripe_fake.customers[str(user.pk)], new_id("pi")
    stripe_fake.payment_intents[payment_intent] = {"id": payment_intent, "object": "payment_intent",
                                                   "customer": customer, "metadata": metadata}
    opened = stripe_fake.set_dispute(dispute(payment_intent=payment_intent), "needs_response")
    send(api_client, "charge.dispute.created", opened, times=2)
    send(api_client, "checkout.session.completed", checkout_session(
        customer=customer, user_id=str(user.pk), mode="payment", payment_intent=payment_intent, metadata=metadata))
    assert credit_balance_get(user=user) == 0
    assert rows(user, TransactionType.PURCHASE) == [500] and rows(user, TransactionType.PURCHASE_REVERSAL) == [-500]
    assert ledger_check() == []


def test_a_dispute_of_a_payment_that_is_no_pack_takes_nothing(
    api_client: Any, auth_client: Any, stripe_fake: FakeStripe, user: User
):
    buy(api_client, auth_client, stripe_fake, user)
    other = stripe_fake.set_dispute(dispute(payment_intent="pi_not_a_pack"), "needs_response")
    assert send(api_client, "charge.dispute.created", other) == ["ignored"]
    stripe_fake.set_dispute(other, "won")
    assert send(api_client, "charge.dispute.closed", {**other, "status": "won"}) == ["ignored"]
    assert credit_balance_get(user=user) == 500 and ledger_check() == []


def test_ledger_check_reports_a_pack_given_back_without_its_entry(
    api_client: Any, auth_client: Any, stripe_fake: FakeStripe, user: User
):
    payment_intent = buy(api_client, auth_client, stripe_fake, user)
    opened = stripe_fake.set_dispute(dispute(payment_intent=payment_intent), "needs_response")
    send(api_client, "charge.dispute.created", opened)
    PackPurchase.objects.update(reinstated_at=timezone.now())  # as if its entry had been lost
    problems = [str(p) for p in ledger_check()]
    assert len(problems) == 1 and "was given back 0 after its dispute, not the 500 credits it took" in problems[0]

"""20 deliveries of one event at the same instant, each on its own database connection through
the whole view stack: the event is stored once and moves credits once."""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from django.db import connection
from rest_framework.test import APIClient

from auteur.users.models import User
from auteur.users.services import user_issue_token
from billing.models import EventOutcome, PackPurchase, StripeCustomer, StripeEvent
from billing.services.packs import pack_purchase_record
from credits.errors import InsufficientCredits
from credits.models import CreditTransaction, TransactionType
from credits.selectors import credit_balance_get, ledger_check
from credits.services.ledger import credit_deduct_for_job
from tests.billing.support import FakeStripe, charge, checkout_session, deliver, event, new_id

pytestmark = pytest.mark.django_db(transaction=True)

DELIVERIES = 20


def deliver_at_once(body: dict[str, Any]) -> list[int]:
    barrier = threading.Barrier(DELIVERIES)

    def run(_: int) -> int:
        try:
            client = APIClient(raise_request_exception=False)
            barrier.wait(timeout=30)
            return int(deliver(client, body).status_code)
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=DELIVERIES) as pool:
        return list(pool.map(run, range(DELIVERIES)))


def test_twenty_concurrent_deliveries_of_one_event_credit_the_pack_once(stripe_fake: FakeStripe, user: User):
    StripeCustomer.objects.create(user=user, stripe_customer_id="cus_race")
    body = event("checkout.session.completed", checkout_session(
        customer="cus_race", user_id=str(user.pk), mode="payment", payment_intent=new_id("pi"),
        metadata={"user_id": str(user.pk), "credit_pack": "pack_500", "credits": "500"}))

    statuses = deliver_at_once(body)

    assert Counter(statuses) == {200: DELIVERIES}
    stored = StripeEvent.objects.get(event_id=body["id"])
    assert stored.outcome == EventOutcome.PROCESSED and stored.attempts == 1
    assert PackPurchase.objects.count() == 1
    assert list(CreditTransaction.objects.filter(user=user).values_list("type", "amount")) == [
        (TransactionType.PURCHASE, 500)]
    assert credit_balance_get(user=user) == 500
    assert ledger_check() == []


def test_a_refund_racing_with_jobs_takes_back_exactly_what_was_not_spent(stripe_fake: FakeStripe, user: User):
    """Jobs spend the pack's credits while its refund arrives: whatever the interleaving, the
    reversal takes what is left, the shortfall is what the jobs spent, and nothing goes below 0."""
    StripeCustomer.objects.create(user=user, stripe_customer_id="cus_refund_race")
    payment_intent = new_id("pi")
    pack_purchase_record(user=user, pack_id="pack_500", credits=500, payment_intent_id=payment_intent,
                         checkout_session_id="cs_race")
    refund = event("charge.refunded", charge(payment_intent=payment_intent))
    barrier = threading.Barrier(DELIVERIES)

    def run(i: int) -> object:
        try:
            barrier.wait(timeout=30)
            if i == 0:
                return deliver(APIClient(raise_request_exception=False), refund).status_code
            return credit_deduct_for_job(user=user, job_id=uuid.uuid4(), amount=40, description="job").amount
        except InsufficientCredits as exc:
            return exc
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=DELIVERIES) as pool:
        results = list(pool.map(run, range(DELIVERIES)))

    assert results[0] == 200
    spent = -sum(r for r in results[1:] if isinstance(r, int))
    purchase = PackPurchase.objects.get()
    taken = -sum(CreditTransaction.objects.filter(type=TransactionType.PURCHASE_REVERSAL).values_list(
        "amount", flat=True))
    assert credit_balance_get(user=user) == 500 - spent - taken >= 0
    assert purchase.refund_shortfall == spent and taken + spent == 500
    assert credit_balance_get(user=user) == 0
    assert ledger_check() == []


def test_concurrent_first_checkouts_create_one_stripe_customer(stripe_fake: FakeStripe, user: User):
    token = user_issue_token(user=user)
    barrier = threading.Barrier(10)

    def run(_: int) -> int:
        try:
            client = APIClient(raise_request_exception=False)
            client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
            barrier.wait(timeout=30)
            return int(client.post("/api/v1/billing/checkout", {"credit_pack": "pack_500"}, format="json")
                       .status_code)
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=10) as pool:
        assert Counter(pool.map(run, range(10))) == {200: 10}
    assert len(stripe_fake.called("customer_create")) == 1
    assert StripeCustomer.objects.filter(user=user).count() == 1
    assert len(stripe_fake.called("checkout_session_create")) == 10

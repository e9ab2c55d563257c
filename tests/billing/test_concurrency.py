"""20 deliveries of one event at the same instant, each on its own database connection through
the whole view stack: the event is stored once and moves credits once."""

from __future__ import annotations

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from django.db import connection
from rest_framework.test import APIClient

from auteur.users.models import User
from billing.models import EventOutcome, PackPurchase, StripeCustomer, StripeEvent
from credits.models import CreditTransaction, TransactionType
from credits.selectors import credit_balance_get, ledger_check
from tests.billing.support import FakeStripe, checkout_session, deliver, event, new_id

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

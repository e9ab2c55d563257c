"""Credit packs: bought once per payment, taken back once when refunded (never below 0), and
ledger_check finding a paid pack without its entry or an entry without its paid pack."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from django.db import IntegrityError, connection, transaction

from auteur.users.models import User
from billing.models import PackPurchase, payment_key
from credits.models import CreditTransaction, TransactionType
from credits.selectors import credit_balance_get, ledger_check
from credits.services.ledger import credit_deduct_for_job
from credits.services.purchases import credit_purchase_grant
from tests.billing.support import FakeStripe, charge, checkout_session, deliver, event, new_id

pytestmark = pytest.mark.django_db


def buy(client: Any, auth_client: Any, fake: FakeStripe, user: User, pack: str = "pack_500") -> str:
    """Checkout a pack, then Stripe's `checkout.session.completed`; the payment intent's id."""
    response = auth_client.post("/api/v1/billing/checkout", {"credit_pack": pack}, format="json")
    assert response.status_code == 200, response.json()
    metadata = fake.called("checkout_session_create")[-1]["metadata"]
    payment_intent = new_id("pi")
    body = event("checkout.session.completed", checkout_session(
        customer=fake.customers[str(user.pk)], user_id=str(user.pk), mode="payment",
        payment_intent=payment_intent, metadata=metadata))
    response = deliver(client, body)
    assert response.status_code == 200 and response.json()["outcome"] == "processed", response.json()
    return payment_intent


def rows(user: User, type: str) -> list[int]:
    return list(CreditTransaction.objects.filter(user=user, type=type).values_list("amount", flat=True))


def test_a_pack_is_credited_once_per_payment(api_client: Any, auth_client: Any, stripe_fake: FakeStripe, user: User):
    payment_intent = buy(api_client, auth_client, stripe_fake, user)
    assert credit_balance_get(user=user) == 500 and rows(user, TransactionType.PURCHASE) == [500]
    purchase = PackPurchase.objects.get()
    assert (purchase.user_id, purchase.pack_id, purchase.credits) == (user.pk, "pack_500", 500)
    assert ledger_check() == []
    # The same payment reported again (async_payment_succeeded, a new event id) credits nothing more.
    body = event("checkout.session.async_payment_succeeded", checkout_session(
        customer=stripe_fake.customers[str(user.pk)], user_id=str(user.pk), mode="payment",
        payment_intent=payment_intent, metadata={"credit_pack": "pack_500", "credits": "500"}))
    assert deliver(api_client, body).status_code == 200
    assert credit_balance_get(user=user) == 500 and PackPurchase.objects.count() == 1
    assert ledger_check() == []


def test_an_unpaid_session_credits_nothing(api_client: Any, auth_client: Any, stripe_fake: FakeStripe, user: User):
    auth_client.post("/api/v1/billing/checkout", {"credit_pack": "pack_500"}, format="json")
    body = event("checkout.session.completed", checkout_session(
        customer=stripe_fake.customers[str(user.pk)], user_id=str(user.pk), mode="payment",
        payment_intent=new_id("pi"), payment_status="unpaid",
        metadata=stripe_fake.called("checkout_session_create")[-1]["metadata"]))
    assert deliver(api_client, body).json()["outcome"] == "ignored"
    assert credit_balance_get(user=user) == 0 and not PackPurchase.objects.exists()


def test_a_refunded_pack_is_taken_back_once(api_client: Any, auth_client: Any, stripe_fake: FakeStripe, user: User):
    payment_intent = buy(api_client, auth_client, stripe_fake, user)
    refund = event("charge.refunded", charge(payment_intent=payment_intent))
    assert deliver(api_client, refund).json()["outcome"] == "processed"
    assert deliver(api_client, event("charge.refunded", charge(payment_intent=payment_intent))).status_code == 200
    assert credit_balance_get(user=user) == 0
    assert rows(user, TransactionType.PURCHASE_REVERSAL) == [-500]
    purchase = PackPurchase.objects.get()
    assert purchase.refunded_at is not None and purchase.refund_shortfall == 0
    assert ledger_check() == []


def test_a_refund_after_the_credits_were_spent_stops_at_zero_and_records_the_shortfall(
    api_client: Any, auth_client: Any, stripe_fake: FakeStripe, user: User
):
    payment_intent = buy(api_client, auth_client, stripe_fake, user)
    credit_deduct_for_job(user=user, job_id=uuid.uuid4(), amount=350, description="a job")
    assert deliver(api_client, event("charge.refunded", charge(payment_intent=payment_intent))).status_code == 200
    assert credit_balance_get(user=user) == 0
    assert rows(user, TransactionType.PURCHASE_REVERSAL) == [-150]
    assert PackPurchase.objects.get().refund_shortfall == 350
    assert ledger_check() == []


def test_a_refund_with_nothing_left_writes_no_entry_and_records_the_whole_pack(
    api_client: Any, auth_client: Any, stripe_fake: FakeStripe, user: User
):
    payment_intent = buy(api_client, auth_client, stripe_fake, user)
    credit_deduct_for_job(user=user, job_id=uuid.uuid4(), amount=500, description="a job")
    deliver(api_client, event("charge.refunded", charge(payment_intent=payment_intent)))
    assert credit_balance_get(user=user) == 0 and rows(user, TransactionType.PURCHASE_REVERSAL) == []
    assert PackPurchase.objects.get().refund_shortfall == 500
    assert ledger_check() == []


def test_a_refund_that_arrives_before_the_payments_completion_takes_the_pack_back_once(
    api_client: Any, auth_client: Any, stripe_fake: FakeStripe, user: User
):
    auth_client.post("/api/v1/billing/checkout", {"credit_pack": "pack_500"}, format="json")
    metadata = stripe_fake.called("checkout_session_create")[-1]["metadata"]
    customer, payment_intent = stripe_fake.customers[str(user.pk)], new_id("pi")
    # Stripe's copy of the payment names the pack (checkout put it in payment_intent_data.metadata).
    assert stripe_fake.called("checkout_session_create")[-1]["payment_intent_data"]["metadata"] == metadata
    stripe_fake.payment_intents[payment_intent] = {"id": payment_intent, "object": "payment_intent",
                                                   "customer": customer, "metadata": metadata}
    refund = deliver(api_client, event("charge.refunded", charge(payment_intent=payment_intent)))
    assert refund.json()["outcome"] == "processed"
    assert credit_balance_get(user=user) == 0
    assert rows(user, TransactionType.PURCHASE) == [500] and rows(user, TransactionType.PURCHASE_REVERSAL) == [-500]
    completed = deliver(api_client, event("checkout.session.completed", checkout_session(
        customer=customer, user_id=str(user.pk), mode="payment", payment_intent=payment_intent, metadata=metadata)))
    assert completed.status_code == 200
    assert credit_balance_get(user=user) == 0 and rows(user, TransactionType.PURCHASE) == [500]
    purchase = PackPurchase.objects.get()
    assert purchase.refunded_at is not None and purchase.refund_shortfall == 0
    assert ledger_check() == []


def test_a_partial_refund_or_a_payment_that_is_no_pack_takes_nothing(
    api_client: Any, auth_client: Any, stripe_fake: FakeStripe, user: User
):
    payment_intent = buy(api_client, auth_client, stripe_fake, user)
    partial = deliver(api_client, event("charge.refunded", charge(payment_intent=payment_intent, refunded=False)))
    other = deliver(api_client, event("charge.refunded", charge(payment_intent="pi_not_a_pack")))
    assert partial.json()["outcome"] == other.json()["outcome"] == "ignored"
    assert credit_balance_get(user=user) == 500 and PackPurchase.objects.get().refunded_at is None
    assert [call["id"] for call in stripe_fake.called("payment_intent_retrieve")] == ["pi_not_a_pack"]


def test_the_database_refuses_a_second_purchase_entry_for_one_payment(user: User, make_user: Any):
    credit_purchase_grant(user=user, amount=500, payment_key="stripe:payment:pi_1", description="pack")
    other = make_user()
    # Another account, the same payment: a replay names the first, and a raw insert is refused.
    with pytest.raises(Exception, match="another account"):
        credit_purchase_grant(user=other, amount=500, payment_key="stripe:payment:pi_1", description="pack")
    with pytest.raises(IntegrityError), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO credit_transactions (id, account_id, user_id, amount, balance_after, type, description, "
            "idempotency_key, created_at) SELECT %s, id, user_id, 500, 1000, 'purchase', '', %s, now() "
            "FROM credit_accounts WHERE user_id = %s", [uuid.uuid4(), "stripe:payment:pi_1", user.pk])
    assert credit_balance_get(user=other) == 0


def test_ledger_check_reports_a_paid_pack_without_its_entry(user: User):
    PackPurchase.objects.create(user=user, pack_id="pack_500", credits=500, stripe_payment_intent_id="pi_lost")
    problems = [str(p) for p in ledger_check()]
    assert len(problems) == 1 and "paid pack" in problems[0] and "has no purchase entry" in problems[0]


def test_ledger_check_reports_an_entry_without_its_paid_pack(user: User):
    credit_purchase_grant(user=user, amount=500, payment_key=payment_key("pi_ghost"), description="pack")
    problems = [str(p) for p in ledger_check()]
    assert len(problems) == 1 and "has no paid pack" in problems[0] and user.email in problems[0]

"""Stripe as the billing app sees it in tests: a fake of billing/stripe_client.py (the one module
that calls Stripe's API), and real event JSON shapes, signed with the webhook secret exactly as
Stripe signs them, so that the real `stripe.Webhook.construct_event` verifies every delivery."""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import time
from dataclasses import dataclass, field
from typing import Any

from rest_framework.test import APIClient

WEBHOOK_SECRET = "whsec_test_secret_for_the_billing_tests"
PRICE_STARTER = "price_starter_test"
PRICE_PRO = "price_pro_test"
PRICE_PACK_500 = "price_pack_500_test"
PACKS = f"pack_500:{PRICE_PACK_500}:500,pack_2000:price_pack_2000_test:2000"
WEBHOOK_URL = "/api/v1/billing/stripe-webhook"
DAY = 24 * 3600
_ids = itertools.count(1)


def new_id(prefix: str) -> str:
    return f"{prefix}_test{next(_ids):06d}"


@dataclass
class FakeStripe:
    """Stripe's API for one test: records every call and holds the subscriptions Stripe has."""

    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    subscriptions: dict[str, dict[str, Any]] = field(default_factory=dict)
    customers: dict[str, str] = field(default_factory=dict)  # user id -> customer id
    payment_intents: dict[str, dict[str, Any]] = field(default_factory=dict)
    disputes: dict[str, dict[str, Any]] = field(default_factory=dict)

    def customer_create(self, *, user_id: str, email: str) -> str:
        self.calls.append(("customer_create", {"user_id": user_id, "email": email}))
        # Stripe's idempotency key (per user) returns the same customer for a repeated create.
        return self.customers.setdefault(user_id, new_id("cus"))

    def checkout_session_create(self, params: dict[str, Any]) -> dict[str, Any]:
        self.calls.append(("checkout_session_create", params))
        session_id = new_id("cs")
        return {"id": session_id, "url": f"https://checkout.stripe.com/c/pay/{session_id}"}

    def portal_session_create(self, *, customer_id: str, return_url: str) -> str:
        self.calls.append(("portal_session_create", {"customer_id": customer_id, "return_url": return_url}))
        return f"https://billing.stripe.com/p/session/{new_id('bps')}"

    def subscription_retrieve(self, subscription_id: str) -> dict[str, Any]:
        self.calls.append(("subscription_retrieve", {"id": subscription_id}))
        return json.loads(json.dumps(self.subscriptions[subscription_id]))

    def payment_intent_retrieve(self, payment_intent_id: str) -> dict[str, Any]:
        self.calls.append(("payment_intent_retrieve", {"id": payment_intent_id}))
        # Every payment intent of the account exists at Stripe; one this test did not describe
        # paid for something other than a pack (no metadata of ours).
        default: dict[str, Any] = {"id": payment_intent_id, "object": "payment_intent", "customer": None,
                                   "metadata": {}, "status": "succeeded"}
        return json.loads(json.dumps(self.payment_intents.get(payment_intent_id, default)))

    def dispute_retrieve(self, dispute_id: str) -> dict[str, Any]:
        self.calls.append(("dispute_retrieve", {"id": dispute_id}))
        return json.loads(json.dumps(self.disputes[dispute_id]))

    def set_dispute(self, dispute: dict[str, Any], status: str) -> dict[str, Any]:
        """Stripe's current state of a dispute: `dispute` (as events carry it) now at `status`."""
        self.disputes[dispute["id"]] = {**dispute, "status": status}
        return self.disputes[dispute["id"]]

    def called(self, name: str) -> list[dict[str, Any]]:
        return [params for call, params in self.calls if call == name]

    def set_subscription(self, *, subscription_id: str, customer: str, price: str, status: str,
                         period_start: int, period_end: int | None = None) -> dict[str, Any]:
        """Stripe's current state of a subscription (the shape of API version 2026-10-28)."""
        period_end = period_end or period_start + 30 * DAY
        self.subscriptions[subscription_id] = {
            "id": subscription_id, "object": "subscription", "customer": customer, "status": status,
            "items": {"object": "list", "data": [{
                "id": new_id("si"), "object": "subscription_item",
                "price": {"id": price, "object": "price", "recurring": {"interval": "month"}},
                "current_period_start": period_start, "current_period_end": period_end, "quantity": 1,
            }]},
            "cancel_at_period_end": False,
        }
        return self.subscriptions[subscription_id]


def event(type: str, obj: dict[str, Any], *, event_id: str | None = None, created: int | None = None) -> dict[str, Any]:
    return {
        "id": event_id or new_id("evt"), "object": "event", "api_version": "2026-10-28.endive",
        "created": created or int(time.time()), "type": type, "livemode": False, "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None}, "data": {"object": obj},
    }


def signature(payload: str, *, secret: str = WEBHOOK_SECRET, timestamp: int | None = None) -> str:
    """Stripe's `Stripe-Signature`: t=<ts>,v1=<HMAC-SHA256 of "<ts>.<payload>" with the secret>."""
    timestamp = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{timestamp}.{payload}".encode(), hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def deliver(client: APIClient, body: dict[str, Any] | str, **sign: Any) -> Any:
    payload = body if isinstance(body, str) else json.dumps(body)
    return client.generic("POST", WEBHOOK_URL, payload, content_type="application/json",
                          HTTP_STRIPE_SIGNATURE=signature(payload, **sign))


def checkout_session(*, customer: str, user_id: str, mode: str, subscription: str | None = None,
                     payment_intent: str | None = None, metadata: dict[str, str] | None = None,
                     payment_status: str = "paid") -> dict[str, Any]:
    return {
        "id": new_id("cs"), "object": "checkout.session", "mode": mode, "customer": customer,
        "client_reference_id": user_id, "subscription": subscription, "payment_intent": payment_intent,
        "payment_status": payment_status, "status": "complete",
        "metadata": metadata or {"user_id": user_id},
    }


def invoice(*, customer: str, subscription: str, price: str, period_start: int, period_end: int | None = None,
            billing_reason: str = "subscription_create", status: str = "paid", amount: int = 2900,
            discount: int = 0, tax: int = 0, starting_balance: int = 0) -> dict[str, Any]:
    """A subscription invoice for one period of `price`, whose list price is `amount` (cents),
    less `discount` (a coupon), plus exclusive `tax`; a negative `starting_balance` is the
    customer's Stripe credit, used before the card is charged."""
    period_end = period_end or period_start + 30 * DAY
    total = amount - discount + tax
    used = min(max(0, -starting_balance), total)
    return {
        "id": new_id("in"), "object": "invoice", "customer": customer, "status": status,
        "billing_reason": billing_reason, "currency": "usd",
        "subtotal": amount, "subtotal_excluding_tax": amount, "total": total, "total_excluding_tax": total - tax,
        "starting_balance": starting_balance, "ending_balance": starting_balance + used,
        "amount_due": total - used, "amount_paid": total - used if status == "paid" else 0,
        "parent": {"type": "subscription_details",
                   "subscription_details": {"subscription": subscription, "metadata": {}}},
        "lines": {"object": "list", "data": [{
            "id": new_id("il"), "object": "line_item", "amount": amount,
            "period": {"start": period_start, "end": period_end},
            "pricing": {"type": "price_details", "price_details": {"price": price, "product": "prod_test"}},
        }]},
    }


def charge(*, payment_intent: str, refunded: bool = True, amount: int = 1000) -> dict[str, Any]:
    return {"id": new_id("ch"), "object": "charge", "payment_intent": payment_intent, "amount": amount,
            "amount_refunded": amount if refunded else amount // 2, "refunded": refunded}


def dispute(*, payment_intent: str, amount: int = 1000, status: str = "needs_response") -> dict[str, Any]:
    """A dispute as `charge.dispute.*` events carry it (the status then, not necessarily now)."""
    return {"id": new_id("du"), "object": "dispute", "charge": new_id("ch"), "payment_intent": payment_intent,
            "amount": amount, "currency": "usd", "reason": "fraudulent", "status": status}

"""The one module that calls Stripe's API over the network (as jobs/gpu_client.py is for Modal).

Everything else in billing calls these functions and gets plain dicts back. Tests replace this
module's functions (a fake recording its calls); webhook signatures are never replaced: they are
verified by the real `stripe.Webhook.construct_event` (billing/services/events.py).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import stripe
from django.conf import settings

from billing.errors import BillingUnavailable


def configured() -> bool:
    return bool(settings.STRIPE_SECRET_KEY)


@lru_cache(maxsize=4)
def _client(api_key: str, timeout: float, api_base: str) -> stripe.StripeClient:
    # Every call has a timeout; the library retries network errors and 409/5xx itself, with the
    # same idempotency key, so a retried create makes one object.
    return stripe.StripeClient(api_key, max_network_retries=2,
                               http_client=stripe.RequestsClient(timeout=timeout),
                               base_addresses={"api": api_base} if api_base else None)


def client() -> stripe.StripeClient:
    if not configured():
        raise BillingUnavailable()
    return _client(settings.STRIPE_SECRET_KEY, float(settings.STRIPE_TIMEOUT_SECONDS), settings.STRIPE_API_BASE)


def customer_create(*, user_id: str, email: str) -> str:
    """A Stripe customer for the user (metadata.user_id maps it back); its id. The idempotency
    key makes a retried call (even from a second request) return the same customer."""
    params: dict[str, Any] = {"metadata": {"user_id": user_id}}
    if email:  # an account from a phone or anonymous sign-in has none
        params["email"] = email
    customer = client().v1.customers.create(params, {"idempotency_key": f"auteur-customer-{user_id}"})  # type: ignore[arg-type]
    return str(customer.id)


def checkout_session_create(params: dict[str, Any]) -> dict[str, Any]:
    """A Checkout Session (`mode`, `line_items`, `customer`, `metadata`...); its id and url."""
    session = client().v1.checkout.sessions.create(params)  # type: ignore[arg-type]
    return {"id": session.id, "url": session.url}


def portal_session_create(*, customer_id: str, return_url: str) -> str:
    """A customer portal session (card, invoices, plan changes, cancellation); its url."""
    session = client().v1.billing_portal.sessions.create({"customer": customer_id, "return_url": return_url})
    return str(session.url)


def subscription_retrieve(subscription_id: str) -> dict[str, Any]:
    """The subscription's current state, as Stripe holds it now."""
    subscription = client().v1.subscriptions.retrieve(subscription_id)
    return subscription.to_dict()


def payment_intent_retrieve(payment_intent_id: str) -> dict[str, Any]:
    """The payment intent as Stripe holds it now (its metadata names the credit pack it paid for)."""
    payment_intent = client().v1.payment_intents.retrieve(payment_intent_id)
    return payment_intent.to_dict()


def dispute_retrieve(dispute_id: str) -> dict[str, Any]:
    """The dispute as Stripe holds it now (its `status`: open, won or lost; its payment intent)."""
    dispute = client().v1.disputes.retrieve(dispute_id)
    return dispute.to_dict()

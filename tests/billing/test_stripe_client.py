"""billing/stripe_client.py itself, through the real `stripe` library and real HTTP: a loopback
server answers as Stripe's API does (STRIPE_API_BASE points the client at it), and records the
requests, so the calls' paths, parameters, idempotency key and key are checked as sent."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

import pytest

from billing import stripe_client
from billing.errors import BillingUnavailable

RESPONSES: dict[tuple[str, str], dict[str, Any]] = {
    ("POST", "/v1/customers"): {"id": "cus_loop", "object": "customer"},
    ("POST", "/v1/checkout/sessions"): {"id": "cs_loop", "object": "checkout.session",
                                        "url": "https://checkout.stripe.com/c/pay/cs_loop"},
    ("POST", "/v1/billing_portal/sessions"): {"id": "bps_loop", "object": "billing_portal.session",
                                              "url": "https://billing.stripe.com/p/session/loop"},
    ("GET", "/v1/subscriptions/sub_loop"): {
        "id": "sub_loop", "object": "subscription", "status": "active", "customer": "cus_loop",
        "items": {"object": "list", "data": [{"id": "si_1", "object": "subscription_item",
                                              "price": {"id": "price_pro", "object": "price"},
                                              "current_period_start": 1, "current_period_end": 2}]},
    },
    ("GET", "/v1/payment_intents/pi_loop"): {
        "id": "pi_loop", "object": "payment_intent", "status": "succeeded", "customer": "cus_loop",
        "metadata": {"user_id": "u-1", "credit_pack": "pack_500", "credits": "500"},
    },
}


class FakeStripeApi(BaseHTTPRequestHandler):
    received: list[dict[str, Any]] = []

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode()
        self.received.append({"method": self.command, "path": self.path, "form": parse_qs(body),
                              "headers": dict(self.headers)})
        payload = RESPONSES.get((self.command, self.path.split("?")[0]))
        data = json.dumps(payload or {"error": {"type": "invalid_request_error", "message": "no such"}}).encode()
        self.send_response(200 if payload else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = _answer

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def stripe_api(settings: Any) -> Iterator[list[dict[str, Any]]]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeStripeApi)
    # shutdown() waits for the loop's next poll: 0.05 s, not the default 0.5 s
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    FakeStripeApi.received = []
    settings.STRIPE_SECRET_KEY = "sk_test_loopback"
    settings.STRIPE_API_BASE = f"http://127.0.0.1:{server.server_address[1]}"
    settings.STRIPE_TIMEOUT_SECONDS = 5
    yield FakeStripeApi.received
    server.shutdown()
    server.server_close()


def test_customer_create_sends_the_user_and_an_idempotency_key_per_user(stripe_api: list[dict[str, Any]]):
    assert stripe_client.customer_create(user_id="u-1", email="a@example.test") == "cus_loop"
    (request,) = stripe_api
    assert (request["method"], request["path"]) == ("POST", "/v1/customers")
    assert request["form"] == {"email": ["a@example.test"], "metadata[user_id]": ["u-1"]}
    assert request["headers"]["Idempotency-Key"] == "auteur-customer-u-1"
    assert request["headers"]["Authorization"] == "Bearer sk_test_loopback"


def test_a_customer_without_an_email_is_created_without_one(stripe_api: list[dict[str, Any]]):
    assert stripe_client.customer_create(user_id="u-2", email="") == "cus_loop"
    (request,) = stripe_api
    assert request["form"] == {"metadata[user_id]": ["u-2"]}


def test_checkout_and_portal_sessions_return_their_urls(stripe_api: list[dict[str, Any]]):
    session = stripe_client.checkout_session_create({
        "mode": "payment", "customer": "cus_loop", "client_reference_id": "u-1",
        "line_items": [{"price": "price_pack", "quantity": 1}], "metadata": {"credit_pack": "pack_500"},
        "success_url": "https://app.example/ok", "cancel_url": "https://app.example/no",
    })
    assert session == {"id": "cs_loop", "url": "https://checkout.stripe.com/c/pay/cs_loop"}
    form = stripe_api[0]["form"]
    assert form["line_items[0][price]"] == ["price_pack"] and form["client_reference_id"] == ["u-1"]
    assert form["metadata[credit_pack]"] == ["pack_500"]
    url = stripe_client.portal_session_create(customer_id="cus_loop", return_url="https://app.example/billing")
    assert url == "https://billing.stripe.com/p/session/loop"
    assert stripe_api[1]["form"] == {"customer": ["cus_loop"], "return_url": ["https://app.example/billing"]}


def test_subscription_retrieve_returns_plain_dicts(stripe_api: list[dict[str, Any]]):
    subscription = stripe_client.subscription_retrieve("sub_loop")
    assert type(subscription) is dict and type(subscription["items"]["data"][0]) is dict
    assert subscription["items"]["data"][0]["price"]["id"] == "price_pro"
    assert (stripe_api[0]["method"], stripe_api[0]["path"]) == ("GET", "/v1/subscriptions/sub_loop")


def test_payment_intent_retrieve_returns_its_metadata(stripe_api: list[dict[str, Any]]):
    payment_intent = stripe_client.payment_intent_retrieve("pi_loop")
    assert type(payment_intent) is dict and payment_intent["metadata"]["credit_pack"] == "pack_500"
    assert (stripe_api[0]["method"], stripe_api[0]["path"]) == ("GET", "/v1/payment_intents/pi_loop")


def test_without_a_key_nothing_is_sent(settings: Any):
    settings.STRIPE_SECRET_KEY = ""
    with pytest.raises(BillingUnavailable):
        stripe_client.customer_create(user_id="u-1", email="a@example.test")

"""Checkout, portal and overview endpoints: owner-scoped, validated, 503 without Stripe."""

from __future__ import annotations

from typing import Any

import pytest

from auteur.users.models import User
from billing.models import StripeCustomer
from credits.services.subscriptions import subscription_create
from tests.billing.support import PRICE_PACK_500, PRICE_PRO, FakeStripe
from tests.jobs.support import error_code

pytestmark = pytest.mark.django_db

CHECKOUT = "/api/v1/billing/checkout"
PORTAL = "/api/v1/billing/portal"
OVERVIEW = "/api/v1/billing"


def test_checkout_creates_the_customer_once_and_returns_stripes_url(
    auth_client: Any, stripe_fake: FakeStripe, user: User
):
    first = auth_client.post(CHECKOUT, {"plan": "pro"}, format="json")
    second = auth_client.post(CHECKOUT, {"credit_pack": "pack_500"}, format="json")
    assert first.status_code == second.status_code == 200
    assert first.json()["checkout_url"].startswith("https://checkout.stripe.com/c/pay/cs_")
    assert stripe_fake.called("customer_create") == [{"user_id": str(user.pk), "email": user.email}]
    customer = StripeCustomer.objects.get(user=user).stripe_customer_id
    plan, pack = stripe_fake.called("checkout_session_create")
    assert plan["customer"] == pack["customer"] == customer
    assert plan["client_reference_id"] == pack["client_reference_id"] == str(user.pk)
    assert plan["mode"] == "subscription" and plan["line_items"] == [{"price": PRICE_PRO, "quantity": 1}]
    assert plan["metadata"] == {"user_id": str(user.pk), "plan": "pro"}
    assert pack["mode"] == "payment" and pack["line_items"] == [{"price": PRICE_PACK_500, "quantity": 1}]
    assert pack["metadata"] == {"user_id": str(user.pk), "credit_pack": "pack_500", "credits": "500"}


@pytest.mark.parametrize("body", [{}, {"plan": "pro", "credit_pack": "pack_500"}, {"plan": "gold"},
                                  {"plan": "pro", "coupon": "FREE"}])
def test_a_checkout_naming_not_exactly_one_known_thing_is_400_and_calls_no_stripe(
    auth_client: Any, stripe_fake: FakeStripe, body: dict[str, str]
):
    response = auth_client.post(CHECKOUT, body, format="json")
    assert response.status_code == 400 and error_code(response) == "validation_error"
    assert stripe_fake.calls == [] and not StripeCustomer.objects.exists()


def test_an_unknown_pack_or_a_plan_without_a_price_is_422(auth_client: Any, stripe_fake: FakeStripe, settings: Any):
    response = auth_client.post(CHECKOUT, {"credit_pack": "pack_free"}, format="json")
    assert response.status_code == 422 and error_code(response) == "unknown_credit_pack"
    settings.STRIPE_PLAN_PRICES = {"pro": PRICE_PRO}
    response = auth_client.post(CHECKOUT, {"plan": "starter"}, format="json")
    assert response.status_code == 422 and error_code(response) == "plan_not_for_sale"
    assert stripe_fake.calls == []


def test_subscribing_while_a_plan_is_active_points_at_the_portal(
    auth_client: Any, stripe_fake: FakeStripe, user: User
):
    subscription_create(user=user, plan="starter")
    response = auth_client.post(CHECKOUT, {"plan": "pro"}, format="json")
    assert response.status_code == 409 and error_code(response) == "plan_active"
    assert response.json()["error"]["details"]["portal"] == PORTAL
    assert stripe_fake.called("checkout_session_create") == []
    # A pack can still be bought on top of a plan.
    assert auth_client.post(CHECKOUT, {"credit_pack": "pack_500"}, format="json").status_code == 200


def test_the_portal_needs_a_billing_account_and_uses_only_the_callers(
    auth_client: Any, client_for: Any, make_user: Any, stripe_fake: FakeStripe, user: User
):
    response = auth_client.post(PORTAL)
    assert response.status_code == 409 and error_code(response) == "no_billing_account"
    other = make_user()
    assert client_for(other).post(CHECKOUT, {"plan": "pro"}, format="json").status_code == 200
    # Another user's customer is not the caller's.
    assert auth_client.post(PORTAL).status_code == 409
    response = client_for(other).post(PORTAL)
    assert response.status_code == 200 and response.json()["portal_url"].startswith("https://billing.stripe.com/")
    assert stripe_fake.called("portal_session_create")[-1]["customer_id"] == stripe_fake.customers[str(other.pk)]


def test_the_overview_shows_the_plan_and_what_is_on_offer_without_price_ids(
    auth_client: Any, stripe_fake: FakeStripe, user: User
):
    empty = auth_client.get(OVERVIEW).json()
    assert empty["plan"] is None and empty["status"] is None and empty["renews_at"] is None
    assert empty["credit_packs"] == [{"id": "pack_500", "credits": 500}, {"id": "pack_2000", "credits": 2000}]
    assert empty["plans"] == [{"id": "starter", "monthly_credits": 500}, {"id": "pro", "monthly_credits": 3000}]
    subscription = subscription_create(user=user, plan="pro")
    body = auth_client.get(OVERVIEW).json()
    assert (body["plan"], body["status"]) == ("pro", "active")
    assert body["renews_at"].startswith(subscription.current_period_end.strftime("%Y-%m-%dT"))
    assert "price_" not in str(body)


@pytest.mark.parametrize(("method", "path"), [("get", OVERVIEW), ("post", CHECKOUT), ("post", PORTAL)])
def test_without_stripe_configured_every_endpoint_is_503_billing_unavailable(
    auth_client: Any, settings: Any, method: str, path: str
):
    settings.STRIPE_SECRET_KEY = ""
    response = getattr(auth_client, method)(path, {"plan": "pro"}, format="json")
    assert response.status_code == 503 and error_code(response) == "billing_unavailable"
    assert not StripeCustomer.objects.exists()


@pytest.mark.parametrize(("method", "path"), [("get", OVERVIEW), ("post", CHECKOUT), ("post", PORTAL)])
def test_the_endpoints_need_a_token(api_client: Any, stripe_fake: FakeStripe, method: str, path: str):
    response = getattr(api_client, method)(path, {"plan": "pro"}, format="json")
    assert response.status_code == 401
    assert stripe_fake.calls == []

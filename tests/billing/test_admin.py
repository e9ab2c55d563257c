"""The billing admin: customers with Stripe links, events with their outcome and a re-process
action (through the same service as the webhook), pack purchases with their refund shortfall."""

from __future__ import annotations

import time
from typing import Any

import pytest
from django.test import Client

from auteur.users.models import User
from billing.models import EventOutcome, PackPurchase, StripeCustomer, StripeEvent
from credits.models import Subscription
from tests.billing.support import PRICE_PRO, FakeStripe, deliver, event, new_id

pytestmark = pytest.mark.django_db


def test_reprocessing_a_failed_event_from_the_admin_processes_it(
    superuser_client: Client, api_client: Any, stripe_fake: FakeStripe, user: User
):
    StripeCustomer.objects.create(user=user, stripe_customer_id="cus_admin")
    subscription_id = new_id("sub")
    body = event("customer.subscription.updated", {"id": subscription_id, "object": "subscription"})
    assert deliver(api_client, body).status_code == 500  # Stripe does not know it yet: failed
    stored = StripeEvent.objects.get(event_id=body["id"])
    assert stored.outcome == EventOutcome.FAILED

    stripe_fake.set_subscription(subscription_id=subscription_id, customer="cus_admin", price=PRICE_PRO,
                                 status="active", period_start=int(time.time()))
    response = superuser_client.post("/admin/billing/stripeevent/",
                                     {"action": "reprocess", "_selected_action": [str(stored.pk)]}, follow=True)
    assert response.status_code == 200
    assert f"Event {body['id']}: processed" in response.content.decode()
    stored.refresh_from_db()
    assert stored.outcome == EventOutcome.PROCESSED and stored.attempts == 2
    assert Subscription.objects.get(user=user).plan == "pro"


def test_staff_without_the_credits_permission_get_no_reprocess_action(make_user: Any):
    staff = make_user(is_staff=True)
    client = Client()
    client.force_login(staff)
    response = client.get("/admin/billing/stripeevent/")
    assert b"reprocess" not in response.content


def test_the_admin_lists_customers_with_dashboard_links_and_purchases_with_shortfall(
    superuser_client: Client, stripe_fake: FakeStripe, user: User
):
    StripeCustomer.objects.create(user=user, stripe_customer_id="cus_shown")
    PackPurchase.objects.create(user=user, pack_id="pack_500", credits=500, stripe_payment_intent_id="pi_shown",
                                refund_shortfall=120)
    customers = superuser_client.get("/admin/billing/stripecustomer/").content.decode()
    assert "https://dashboard.stripe.com/test/customers/cus_shown" in customers
    purchases = superuser_client.get("/admin/billing/packpurchase/").content.decode()
    assert "pi_shown" in purchases and "120" in purchases
    assert superuser_client.get("/admin/billing/stripeevent/").status_code == 200

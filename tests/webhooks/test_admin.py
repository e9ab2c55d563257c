"""The admin's webhook pages: readable by staff, with attempts inline, and never a secret."""

from __future__ import annotations

import pytest

from webhooks.keys import secret_open
from webhooks.models import Delivery, DeliveryAttempt, DeliveryState
from webhooks.services import webhook_create

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def public_dns(fake_dns) -> None:
    fake_dns({"hooks.example.test": ["93.184.216.34"]})


def test_pages_render_with_attempts_inline_and_no_secret(superuser_client, user):
    webhook, secret = webhook_create(owner=user, url="https://hooks.example.test/in", event_types=["completed"])
    delivery = Delivery.objects.create(owner=user, webhook=webhook, event_type="completed", payload={"type": "x"},
                                       state=DeliveryState.FAILED, attempts=1)
    DeliveryAttempt.objects.create(delivery=delivery, number=1, status_code=500, error="HTTP 500", latency_ms=12,
                                   response_body="upstream exploded")
    pages = [
        "/admin/webhooks/webhook/", f"/admin/webhooks/webhook/{webhook.pk}/change/",
        "/admin/webhooks/delivery/", f"/admin/webhooks/delivery/{delivery.pk}/change/",
        "/admin/webhooks/accountnotice/", "/admin/webhooks/jobwebhook/",
    ]
    for page in pages:
        response = superuser_client.get(page)
        assert response.status_code == 200, page
        assert secret not in response.content.decode() and webhook.secret_sealed not in response.content.decode()
    detail = superuser_client.get(f"/admin/webhooks/delivery/{delivery.pk}/change/").content.decode()
    assert "upstream exploded" in detail and delivery.message_id in detail
    assert secret_open(webhook.secret_sealed) == secret


def test_redeliver_makes_a_failed_delivery_due_again_with_its_id(superuser_client, user):
    webhook, _ = webhook_create(owner=user, url="https://hooks.example.test/in", event_types=["completed"])
    delivery = Delivery.objects.create(owner=user, webhook=webhook, event_type="completed", payload={"type": "x"},
                                       state=DeliveryState.FAILED, attempts=4)
    response = superuser_client.post("/admin/webhooks/delivery/", {"action": "redeliver",
                                                                   "_selected_action": [delivery.pk]})
    assert response.status_code == 302
    again = Delivery.objects.get(pk=delivery.pk)
    assert again.state == DeliveryState.PENDING and again.message_id == delivery.message_id
    assert again.next_attempt_at is not None and again.finished_at is None

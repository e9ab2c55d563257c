"""A receiver that answers one byte a second (a real socket server on 127.0.0.1): every byte
arrives inside any read timeout, so only the attempt's wall-clock deadline ends it. The attempt
ends by that deadline, is recorded as failed, gets its retry time, and the target is disabled by
the usual 24-hour rule; whatever interrupts an attempt (the task's soft time limit) is a failed
attempt too; a delivery past its 24-hour window is neither claimed nor sent."""

from __future__ import annotations

import signal
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from celery.exceptions import SoftTimeLimitExceeded
from django.utils import timezone

from tests.webhooks.conftest import DripReceiver
from webhooks import sender
from webhooks.keys import secret_new
from webhooks.models import AccountNotice, Delivery, DeliveryState, Webhook, WebhookEventType
from webhooks.services import deliveries_enqueue, deliveries_sweep, delivery_attempt, webhook_create

pytestmark = pytest.mark.django_db

DEADLINE = 2  # seconds: above the drip's 1 s between bytes, so no single read ever times out


@pytest.fixture
def deadline(settings: Any) -> int:
    settings.AUTEUR_WEBHOOK_TIMEOUT_SECONDS = DEADLINE
    return DEADLINE


def enqueue(user: Any) -> Delivery:
    [delivery] = deliveries_enqueue(owner_id=user.pk, job_id=uuid.uuid4(), event_type=WebhookEventType.COMPLETED,
                                    data={"status": "completed"})
    return delivery


def test_an_answer_dripped_from_its_status_line_ends_at_the_deadline(drip_receiver, deadline):
    outcome = sender.send(url=drip_receiver.url(), secret=secret_new(), message_id="msg_drip", body="{}")
    assert not outcome.succeeded
    assert outcome.status_code is None and outcome.error == f"timed out after {deadline} s"
    [drip] = drip_receiver.wait_ended()
    assert b"webhook-id: msg_drip" in drip.request
    # The sender hung up: the receiver could not finish its answer (it needed ~90 s).
    assert drip.cut and drip.sent < len(drip_receiver.answer)


def test_a_body_dripped_after_a_200_is_no_answer(settings, deadline):
    """The status line and headers come at once, the body a byte a second: the answer did not
    end by the deadline, so the attempt failed, and its 200 is not logged as if it had."""
    settings.AUTEUR_WEBHOOK_ALLOW_LOOPBACK = True
    server = DripReceiver(head=DripReceiver.HEAD)
    try:
        outcome = sender.send(url=server.url(), secret=secret_new(), message_id="m", body="{}")
        [drip] = server.wait_ended()
    finally:
        server.close()
    assert not outcome.succeeded and outcome.status_code is None
    assert outcome.error == f"timed out after {deadline} s (an HTTP 200 answer unfinished)"
    assert drip.cut and drip.sent < len(server.answer)


def test_a_dripping_receiver_fails_its_attempts_is_retried_and_is_disabled_after_24_hours(user, drip_receiver,
                                                                                          deadline):
    webhook, _ = webhook_create(owner=user, url=drip_receiver.url(), event_types=["completed"])
    delivery = enqueue(user)
    before = timezone.now()
    first = delivery_attempt(delivery_id=delivery.pk)
    assert first is not None and first.number == 1
    assert first.status_code is None and first.error == f"timed out after {deadline} s" and not first.succeeded
    delivery.refresh_from_db()
    webhook.refresh_from_db()
    assert delivery.state == DeliveryState.PENDING and delivery.attempts == 1
    assert delivery.next_attempt_at is not None and delivery.next_attempt_at > before
    assert webhook.enabled and webhook.failing_since is not None
    # A day of such failures later, the next attempt fails the same way and the usual rule applies.
    Webhook.objects.filter(pk=webhook.pk).update(failing_since=timezone.now() - timedelta(hours=24, minutes=1))
    Delivery.objects.filter(pk=delivery.pk).update(next_attempt_at=timezone.now())
    second = delivery_attempt(delivery_id=delivery.pk)
    assert second is not None and second.number == 2 and second.error == f"timed out after {deadline} s"
    delivery.refresh_from_db()
    webhook.refresh_from_db()
    assert not webhook.enabled and webhook.disabled_reason == "Every delivery failed for 24 hours."
    assert delivery.state == DeliveryState.FAILED and delivery.next_attempt_at is None
    assert AccountNotice.objects.get(owner=user).webhook_id == webhook.pk
    assert all(d.cut for d in drip_receiver.wait_ended(2))


@pytest.fixture
def soft_time_limit() -> Iterator[None]:
    """The deliver task's soft time limit, as Celery's pool delivers it: a signal to the process
    whose handler raises SoftTimeLimitExceeded wherever the main thread is (here, mid-read)."""

    def handler(signum: int, frame: Any) -> None:
        raise SoftTimeLimitExceeded()

    previous = signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, 0.5)
    yield
    signal.setitimer(signal.ITIMER_REAL, 0)
    signal.signal(signal.SIGALRM, previous)


def test_an_attempt_cut_by_the_soft_time_limit_is_recorded_as_failed_and_retried(user, drip_receiver, settings,
                                                                                  soft_time_limit):
    settings.AUTEUR_WEBHOOK_TIMEOUT_SECONDS = 20  # the soft limit (0.5 s here) comes first
    webhook_create(owner=user, url=drip_receiver.url(), event_types=["completed"])
    delivery = enqueue(user)
    attempt = delivery_attempt(delivery_id=delivery.pk)
    assert attempt is not None and attempt.status_code is None
    assert attempt.error == "attempt interrupted: SoftTimeLimitExceeded"
    delivery.refresh_from_db()
    # Recorded like any failure: it counts, and it has its retry time (no lease left to expire).
    assert delivery.state == DeliveryState.PENDING and delivery.attempts == 1 and delivery.last_status_code is None
    assert delivery.next_attempt_at is not None
    assert delivery.next_attempt_at <= timezone.now() + timedelta(seconds=settings.AUTEUR_WEBHOOK_RETRY_BASE_SECONDS)
    assert Webhook.objects.get(owner=user).failing_since is not None
    [drip] = drip_receiver.wait_ended()
    assert drip.cut  # the interrupted attempt closed its connection


def test_a_delivery_past_its_24_hour_window_is_not_claimed_nor_sent(user, receiver):
    webhook_create(owner=user, url=receiver.url(), event_types=["completed"])
    late, later = enqueue(user), enqueue(user)
    # Due, but created over a day ago (as when every attempt died before it could be recorded).
    Delivery.objects.filter(pk__in=[late.pk, later.pk]).update(
        created_at=timezone.now() - timedelta(hours=24, minutes=1), next_attempt_at=timezone.now())
    assert delivery_attempt(delivery_id=late.pk) is None
    late.refresh_from_db()
    assert late.state == DeliveryState.FAILED and late.next_attempt_at is None and late.finished_at is not None
    assert late.attempts == 0 and not late.attempt_log.exists()
    # The sweep gives such rows up too, rather than publishing them again.
    assert deliveries_sweep() == 0
    assert Delivery.objects.get(pk=later.pk).state == DeliveryState.FAILED
    assert receiver.received == []

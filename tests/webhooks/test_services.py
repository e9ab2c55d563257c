"""Delivery bookkeeping run in this process against the loopback receiver: back-off, giving up
after 24 hours, disabling a target that failed for 24 hours (the clock moved through the stored
times), and what a job event costs a user without webhooks."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from jobs.events.webhooks import job_event_webhooks_send
from jobs.models import Job, JobEvent, JobEventType
from tests.webhooks.conftest import Answer
from webhooks import services
from webhooks.models import AccountNotice, Delivery, DeliveryState, JobWebhook, Webhook
from webhooks.services import deliveries_enqueue, delivery_attempt, job_webhook_create, webhook_create

pytestmark = pytest.mark.django_db


def enqueue(user, event_type="completed", job_id=None):
    return deliveries_enqueue(owner_id=user.pk, job_id=job_id or uuid.uuid4(), event_type=event_type,
                              data={"status": "completed"})


def test_a_failure_schedules_a_retry_with_backoff_and_marks_the_target_failing(user, receiver, settings):
    settings.AUTEUR_WEBHOOK_RETRY_BASE_SECONDS = 10
    webhook, _ = webhook_create(owner=user, url=receiver.url(), event_types=["completed"])
    receiver.default = Answer(status=500)
    [delivery] = enqueue(user)
    before = timezone.now()
    delivery_attempt(delivery_id=delivery.pk)
    delivery.refresh_from_db()
    webhook.refresh_from_db()
    assert delivery.state == DeliveryState.PENDING and delivery.attempts == 1 and delivery.last_status_code == 500
    assert before + timedelta(seconds=5) <= delivery.next_attempt_at <= timezone.now() + timedelta(seconds=10)
    assert webhook.enabled and webhook.failing_since is not None
    assert delivery_attempt(delivery_id=delivery.pk) is None  # not due yet: nothing sent
    assert len(receiver.received) == 1


def test_backoff_doubles_with_jitter_up_to_ten_minutes(settings):
    settings.AUTEUR_WEBHOOK_RETRY_BASE_SECONDS = 5
    for attempts, ceiling in ((1, 5), (2, 10), (3, 20), (8, 600), (50, 600)):
        waits = [services.backoff_seconds(attempts) for _ in range(50)]
        assert all(ceiling / 2 <= w <= ceiling for w in waits), attempts
        assert len(set(waits)) > 1


def test_a_success_clears_the_failing_time(user, receiver):
    webhook, _ = webhook_create(owner=user, url=receiver.url(), event_types=["completed"])
    Webhook.objects.filter(pk=webhook.pk).update(failing_since=timezone.now() - timedelta(hours=3))
    [delivery] = enqueue(user)
    delivery_attempt(delivery_id=delivery.pk)
    webhook.refresh_from_db()
    assert webhook.failing_since is None and Delivery.objects.get(pk=delivery.pk).state == DeliveryState.SUCCEEDED


def test_a_delivery_is_given_up_24_hours_after_it_was_created(user, receiver):
    webhook, _ = webhook_create(owner=user, url=receiver.url(), event_types=["completed"])
    receiver.default = Answer(status=500)
    [delivery] = enqueue(user)
    Delivery.objects.filter(pk=delivery.pk).update(created_at=timezone.now() - timedelta(hours=24, minutes=1))
    assert delivery_attempt(delivery_id=delivery.pk) is None  # past its window: not claimed
    delivery.refresh_from_db()
    webhook.refresh_from_db()
    assert delivery.state == DeliveryState.FAILED and delivery.next_attempt_at is None
    assert receiver.received == [] and delivery.attempts == 0
    assert webhook.enabled and webhook.failing_since is None  # nothing failed: nothing was sent


def test_a_webhook_failing_for_24_hours_is_disabled_and_the_account_told(user, receiver, auth_client):
    webhook, _ = webhook_create(owner=user, url=receiver.url(), event_types=["completed", "start"])
    receiver.default = Answer(status=500)
    [delivery] = enqueue(user)
    [other] = enqueue(user, event_type="start")
    Webhook.objects.filter(pk=webhook.pk).update(failing_since=timezone.now() - timedelta(hours=24, minutes=5))
    delivery_attempt(delivery_id=delivery.pk)
    webhook.refresh_from_db()
    assert not webhook.enabled and webhook.disabled_at is not None
    assert webhook.disabled_reason == "Every delivery failed for 24 hours."
    assert set(Delivery.objects.filter(pk__in=[delivery.pk, other.pk]).values_list("state", flat=True)) == {"failed"}
    [notice] = AccountNotice.objects.filter(owner=user)
    assert notice.kind == "webhook_disabled" and notice.webhook_id == webhook.pk
    shown = auth_client.get(f"/api/v1/webhooks/{webhook.pk}").json()
    assert shown["enabled"] is False and shown["disabled_at"] and shown["disabled_reason"]
    assert auth_client.get("/api/v1/webhooks/notices").json()["notices"][0]["webhook_id"] == str(webhook.pk)
    # Nothing more is sent to it: later events create no delivery, a due one is not sent.
    assert enqueue(user) == []
    assert len(receiver.received) == 1


def test_a_jobs_own_webhook_failing_for_24_hours_is_disabled_too(user, receiver, project):
    job = Job.objects.create(user=project.user, project=project, type="tts", credits_cost=1)
    target = job_webhook_create(job_id=job.pk, owner=project.user, url=receiver.url(), event_types=["completed"])
    receiver.default = Answer(status=502)
    [delivery] = enqueue(project.user, job_id=job.pk)
    JobWebhook.objects.filter(pk=target.pk).update(failing_since=timezone.now() - timedelta(days=2))
    delivery_attempt(delivery_id=delivery.pk)
    target.refresh_from_db()
    assert not target.enabled and AccountNotice.objects.get(owner=project.user).job_id == job.pk


def test_a_job_event_costs_one_query_for_a_user_without_webhooks(project, django_assert_num_queries):
    job = Job.objects.create(user=project.user, project=project, type="tts", credits_cost=1)
    submitted = JobEvent.objects.create(job=job, type=JobEventType.SUBMITTED)
    completed = JobEvent.objects.create(job=job, type=JobEventType.COMPLETED)
    with django_assert_num_queries(0):
        job_event_webhooks_send(submitted)  # no webhook event for it
    with django_assert_num_queries(1):
        job_event_webhooks_send(completed)
    assert not Delivery.objects.exists()


def test_a_job_event_reaches_only_targets_subscribed_to_it(project):
    owner = project.user
    job = Job.objects.create(user=owner, project=project, type="tts", credits_cost=1)
    Webhook.objects.create(owner=owner, url="https://a.example.test/", event_types=["completed"], secret_sealed="x")
    Webhook.objects.create(owner=owner, url="https://b.example.test/", event_types=["start"], secret_sealed="x")
    Webhook.objects.create(owner=owner, url="https://c.example.test/", event_types=["completed"], secret_sealed="x",
                           enabled=False)
    JobWebhook.objects.create(job=job, owner=owner, url="https://d.example.test/", event_types=["completed"])
    job_event_webhooks_send(JobEvent.objects.create(job=job, type=JobEventType.FAILED))
    urls = sorted(d.target.url for d in Delivery.objects.all())
    assert urls == ["https://a.example.test/", "https://d.example.test/"]
    assert {d.payload["type"] for d in Delivery.objects.all()} == {"job.completed"}
    assert {d.payload["data"]["id"] for d in Delivery.objects.all()} == {str(job.pk)}


def test_a_secret_sealed_under_another_key_is_a_failed_attempt_not_a_task_error(user, receiver, settings):
    webhook_create(owner=user, url=receiver.url(), event_types=["completed"])
    [delivery] = enqueue(user)
    settings.SECRET_KEY = "another-django-secret-key-0123456789abcdef-rotated"
    attempt = delivery_attempt(delivery_id=delivery.pk)
    assert attempt is not None and attempt.status_code is None and "could not be read" in attempt.error
    assert "DJANGO_SECRET_KEY" not in attempt.error  # the owner reads it; the cause is in the log
    assert Delivery.objects.get(pk=delivery.pk).state == DeliveryState.PENDING and receiver.received == []


@pytest.mark.parametrize("owner_given", [False, True])
def test_whether_a_job_event_has_subscribers_is_one_query_with_or_without_the_owner(project, owner_given):
    """The owner's id when the job's own webhook or one of the owner's (enabled) webhooks wants the
    event, else nothing; a caller that knows the owner gives it, and the jobs table is not read."""
    from django.db import connection

    from webhooks.selectors import subscriber_sql

    owner = project.user
    jobs = [Job.objects.create(user=owner, project=project, type="tts", credits_cost=1) for _ in range(3)]
    Webhook.objects.create(owner=owner, url="https://a.example.test/", event_types=["start"], secret_sealed="x")
    Webhook.objects.create(owner=owner, url="https://c.example.test/", event_types=["failed"], secret_sealed="x",
                           enabled=False)
    JobWebhook.objects.create(job=jobs[1], owner=owner, url="https://d.example.test/", event_types=["completed"])

    def asked(job, kind):
        params = [*([owner.pk] if owner_given else []), str(job.pk), kind, kind]
        with connection.cursor() as cursor:
            cursor.execute(subscriber_sql(owner_given), params)
            return [row[0] for row in cursor.fetchall()]

    assert asked(jobs[0], "start") == [owner.pk]  # the owner's webhook
    assert asked(jobs[0], "completed") == []
    assert asked(jobs[1], "completed") == [owner.pk]  # the job's own
    assert asked(jobs[2], "completed") == []
    assert asked(jobs[2], "failed") == []  # a disabled webhook wants nothing
    assert ("FROM jobs " in subscriber_sql(owner_given)) is not owner_given

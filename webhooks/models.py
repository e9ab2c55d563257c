"""Webhooks: where a user's job events are sent, and the log of every delivery and attempt.

Two kinds of target: an account webhook (`Webhook`: every job of its owner, for the event types
it subscribes to) and a job's own (`JobWebhook`: the `webhook` URL given with a submission).
A `Delivery` is one message (one event to one target): its id is the `webhook-id` header, the
same on every retry, so receivers can de-duplicate. Each try is a `DeliveryAttempt`.

Signing secrets are kept sealed (webhooks/secrets.py): no serializer, admin page or log line
shows one after the answer to the account webhook's creation.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.db import models


class WebhookEventType(models.TextChoices):
    """What a target can subscribe to. `completed` is sent for every terminal state (completed,
    failed, canceled): the payload's job `status` says which. `spend_cap`, `batch` and `review_hold`
    are an account's, never a job's own webhook's."""

    START = "start"
    PROGRESS = "progress"
    COMPLETED = "completed"
    # A threshold (50, 80, 100 %) of one of the workspace's spend caps crossed (credits/alerts.py).
    SPEND_CAP = "spend_cap"
    # Every item of a batch ended (jobs/events/batches.py): once per batch.
    BATCH = "batch"
    # The account's generative requests held for staff review, or the hold lifted (jobs/life/standing.py).
    REVIEW_HOLD = "review_hold"


# The payload's `type` for each event (and for the test message, sent whatever the subscription).
PAYLOAD_TYPES = {
    WebhookEventType.START: "job.start",
    WebhookEventType.PROGRESS: "job.progress",
    WebhookEventType.COMPLETED: "job.completed",
    WebhookEventType.SPEND_CAP: "spend_cap.threshold",
    WebhookEventType.BATCH: "batch.completed",
    WebhookEventType.REVIEW_HOLD: "account.review_hold",
}
TEST_EVENT = "test"
TEST_PAYLOAD_TYPE = "webhook.test"
# A job's events: what a webhook subscribes to unless it names its types (the account's events,
# `spend_cap`, `batch` and `review_hold`, are asked for by name).
ALL_EVENT_TYPES = [WebhookEventType.START.value, WebhookEventType.PROGRESS.value, WebhookEventType.COMPLETED.value]


def _all_event_types() -> list[str]:
    return list(ALL_EVENT_TYPES)


class Target(models.Model):
    """What both kinds of target share: where, what, and whether it is still sent to."""

    url = models.CharField(max_length=2000)
    event_types = ArrayField(models.CharField(max_length=16), default=_all_event_types)
    enabled = models.BooleanField(default=True)
    disabled_at = models.DateTimeField(null=True, blank=True)
    disabled_reason = models.CharField(max_length=200, blank=True, default="")
    # The first failed attempt since the last success: 24 hours of failures disable the target.
    failing_since = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        abstract = True


class Webhook(Target):
    """An account webhook: every job event of its owner of the subscribed types."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="webhooks")
    # The person who made it: a team workspace's member, or a personal workspace's owner (none for
    # one the workspace made itself, or from before workspaces). Not shown by the API.
    member_id = models.UUIDField(null=True, blank=True, editable=False)
    description = models.CharField(max_length=200, blank=True, default="")
    secret_sealed = models.TextField(editable=False)
    # The secret a rotation replaced, which signs beside the new one until `previous_expires_at`
    # (receivers verify with either meanwhile); empty when there is none.
    previous_secret_sealed = models.TextField(editable=False, blank=True, default="")
    previous_expires_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        db_table = "webhooks"
        ordering = ("-created_at",)
        indexes = [models.Index(fields=["owner", "enabled"], name="webhooks_owner_enabled")]

    def __str__(self) -> str:
        return f"webhook {self.id}"


class SigningSecret(models.Model):
    """The account's secret for its jobs' own webhooks (`webhook` in a submission), created
    with the first of them and readable again by its owner (GET /webhooks/default/secret)."""

    owner = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, primary_key=True,
                                 related_name="+")
    secret_sealed = models.TextField(editable=False)
    # As a webhook's: the secret a rotation replaced, signing beside the new one until it expires.
    previous_secret_sealed = models.TextField(editable=False, blank=True, default="")
    previous_expires_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "webhook_signing_secrets"

    def __str__(self) -> str:
        return f"signing secret of {self.owner_id}"


class JobWebhook(Target):
    """A job's own webhook, from its submission; signed with the owner's `SigningSecret`."""

    id = models.BigAutoField(primary_key=True)
    job = models.OneToOneField("jobs.Job", on_delete=models.CASCADE, related_name="webhook_target")
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")

    class Meta:
        db_table = "webhook_job_targets"

    def __str__(self) -> str:
        return f"job webhook {self.job_id}"


class DeliveryState(models.TextChoices):
    PENDING = "pending"  # to be tried at next_attempt_at
    SUCCEEDED = "succeeded"  # a 2xx answer
    FAILED = "failed"  # given up: 24 hours of failures, or its target was disabled


def _message_id() -> str:
    return f"msg_{uuid.uuid4().hex}"


class Delivery(models.Model):
    """One event to one target: a stable `webhook-id`, its payload, and where its tries stand."""

    id = models.BigAutoField(primary_key=True)
    message_id = models.CharField(max_length=40, unique=True, default=_message_id, editable=False)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    webhook = models.ForeignKey(Webhook, on_delete=models.CASCADE, null=True, blank=True,
                                related_name="deliveries")
    job_webhook = models.ForeignKey(JobWebhook, on_delete=models.CASCADE, null=True, blank=True,
                                    related_name="deliveries")
    job_id = models.UUIDField(null=True, blank=True)  # not a key: the log outlives nothing it names
    event_type = models.CharField(max_length=16)
    payload = models.JSONField()
    state = models.CharField(max_length=12, choices=DeliveryState.choices, default=DeliveryState.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # A job event's: its job's traceparent, so that each attempt is a span of the job's trace.
    traceparent = models.CharField(max_length=55, blank=True, default="", db_default="")

    class Meta:
        db_table = "webhook_deliveries"
        ordering = ("-id",)
        indexes = [
            models.Index(fields=["webhook", "-id"], name="webhook_deliveries_webhook"),
            # The sweep's query: due pending deliveries only.
            models.Index(fields=["next_attempt_at"], name="webhook_deliveries_due",
                         condition=models.Q(state="pending")),
        ]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(webhook__isnull=True) ^ models.Q(job_webhook__isnull=True),
                name="webhook_deliveries_one_target",
            ),
            models.CheckConstraint(
                condition=models.Q(state__in=[s.value for s in DeliveryState]), name="webhook_deliveries_state",
            ),
        ]

    def __str__(self) -> str:
        return self.message_id

    @property
    def target(self) -> Webhook | JobWebhook:
        target = self.webhook or self.job_webhook
        assert target is not None
        return target


class DeliveryAttempt(models.Model):
    """One try of a delivery: the answer's status (or why there was none), how long it took,
    and the first 1 KB of the answer's body."""

    RESPONSE_BODY_BYTES = 1024

    id = models.BigAutoField(primary_key=True)
    delivery = models.ForeignKey(Delivery, on_delete=models.CASCADE, related_name="attempt_log")
    number = models.PositiveIntegerField()
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    error = models.CharField(max_length=300, blank=True, default="")
    latency_ms = models.PositiveIntegerField()
    response_body = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "webhook_delivery_attempts"
        ordering = ("id",)
        constraints = [
            models.UniqueConstraint(fields=["delivery", "number"], name="webhook_delivery_attempt_number"),
        ]

    def __str__(self) -> str:
        return f"{self.delivery_id} #{self.number}"

    @property
    def succeeded(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


class NoticeKind(models.TextChoices):
    WEBHOOK_DISABLED = "webhook_disabled"


class AccountNotice(models.Model):
    """Something the account should know about its webhooks (GET /webhooks/notices)."""

    id = models.BigAutoField(primary_key=True)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    kind = models.CharField(max_length=32, choices=NoticeKind.choices)
    message = models.CharField(max_length=300)
    webhook = models.ForeignKey(Webhook, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    job_id = models.UUIDField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "webhook_account_notices"
        ordering = ("-id",)
        indexes = [models.Index(fields=["owner", "-id"], name="webhook_notices_owner")]

    def __str__(self) -> str:
        return f"{self.kind} {self.owner_id}"

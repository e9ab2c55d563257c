"""Reads of the webhooks app, scoped to their owner (another user's webhook is a 404)."""

from __future__ import annotations

import uuid
from typing import Any

from django.db.models import Exists, OuterRef, QuerySet

from auteur.users.models import User
from webhooks.errors import WebhookNotFound
from webhooks.models import AccountNotice, Delivery, JobWebhook, Webhook


def webhook_list(*, owner: User) -> QuerySet[Webhook]:
    return Webhook.objects.filter(owner=owner).order_by("-created_at", "-id")


def webhook_get(*, owner: User, webhook_id: uuid.UUID | str) -> Webhook:
    try:
        pk = uuid.UUID(str(webhook_id))
    except ValueError:
        raise WebhookNotFound("No such webhook.") from None
    webhook = Webhook.objects.filter(owner=owner, pk=pk).first()
    if webhook is None:
        raise WebhookNotFound("No such webhook.")
    return webhook


def delivery_list(*, webhook: Webhook) -> QuerySet[Delivery]:
    """Newest first, each with its attempts."""
    return Delivery.objects.filter(webhook=webhook).prefetch_related("attempt_log").order_by("-id")


def notice_list(*, owner: User) -> QuerySet[AccountNotice]:
    return AccountNotice.objects.filter(owner=owner).order_by("-id")


def webhook_subscribers(*, job_id: uuid.UUID | str, event_type: str) -> Any | None:
    """The job owner's id when the job's own webhook or one of the owner's account webhooks
    wants `event_type`, else None. One indexed query: a user without webhooks pays only this."""
    row = (
        User.objects.filter(jobs__id=job_id)
        .annotate(
            account=Exists(Webhook.objects.filter(owner=OuterRef("pk"), enabled=True,
                                                  event_types__contains=[event_type])),
            own=Exists(JobWebhook.objects.filter(job_id=job_id, enabled=True, event_types__contains=[event_type])),
        )
        .values_list("pk", "account", "own")
        .first()
    )
    if row is None or not (row[1] or row[2]):
        return None
    return row[0]


def job_webhook_of(*, job_id: uuid.UUID | str) -> tuple[str, list[str]] | None:
    """(url, event types) of a job's own webhook, if it has one."""
    row = JobWebhook.objects.filter(job_id=job_id).values_list("url", "event_types").first()
    return None if row is None else (row[0], list(row[1]))

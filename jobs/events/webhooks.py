"""Job events -> webhook deliveries: which events a webhook sees, and the payload it gets."""

from __future__ import annotations

from typing import Any

from auteur.core import tracing
from jobs.errors import JobNotFound
from jobs.models import JobEvent, JobEventType
from jobs.selectors.jobs import job_detail_get, job_detail_without_balances, job_traceparent
from webhooks.models import WebhookEventType
from webhooks.selectors import webhook_subscribers
from webhooks.services import deliveries_enqueue

# `completed` is every terminal state: the payload's `status` says which.
WEBHOOK_EVENT_OF = {
    JobEventType.STARTED: WebhookEventType.START,
    JobEventType.PROGRESS: WebhookEventType.PROGRESS,
    JobEventType.COMPLETED: WebhookEventType.COMPLETED,
    JobEventType.FAILED: WebhookEventType.COMPLETED,
    JobEventType.CANCELED: WebhookEventType.COMPLETED,
    JobEventType.ABORTED: WebhookEventType.COMPLETED,
}


# What job_event_webhooks_send is told when whoever recorded the event did not ask who wants it.
NOT_ASKED: Any = object()


# By the event type's value, as a recorded event holds it (read for every event of every job).
_WEBHOOK_EVENT_BY_VALUE: dict[str, WebhookEventType] = {str(event): kind for event, kind in WEBHOOK_EVENT_OF.items()}


def webhook_event_of(event_type: str) -> WebhookEventType | None:
    """The webhook event type a job event is sent as, None for one that no webhook is sent."""
    return _WEBHOOK_EVENT_BY_VALUE.get(str(event_type))


def job_event_webhooks_send(event: JobEvent, subscriber: Any = NOT_ASKED) -> None:
    """Enqueue the deliveries of a committed job event: the job as GET /jobs/{id} shows it, to
    its own webhook and its owner's account webhooks that want the event.

    `subscriber`: the owner's id if any of their webhooks wants the event, None if none does, as
    asked when the event was recorded (jobs.events.record); left out, it is asked here, in one
    indexed query (none for an event no webhook is sent)."""
    kind = webhook_event_of(event.type)
    if kind is None:
        return
    owner_id = webhook_subscribers(job_id=event.job_id, event_type=kind) if subscriber is NOT_ASKED else subscriber
    if owner_id is None:
        return
    try:
        # Read once, as one who sees the balance; those who may not get it without (the targets
        # decide: webhooks.services.deliveries_enqueue).
        data = job_detail_get(user_id=owner_id, job_id=event.job_id, balances=True)
    except JobNotFound:  # the account was deactivated meanwhile
        return
    traceparent = job_traceparent(job_id=event.job_id) if tracing.enabled() else ""
    deliveries_enqueue(owner_id=owner_id, job_id=event.job_id, event_type=kind,
                       data=lambda shown: data if shown else job_detail_without_balances(data), traceparent=traceparent)

"""Job events -> webhook deliveries: which events a webhook sees, and the payload it gets."""

from __future__ import annotations

from jobs.errors import JobNotFound
from jobs.models import JobEvent, JobEventType
from jobs.selectors.jobs import job_detail_get
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


def job_event_webhooks_send(event: JobEvent) -> None:
    """Enqueue the deliveries of a committed job event: the job as GET /jobs/{id} shows it, to
    its own webhook and its owner's account webhooks that want the event. For a user without
    webhooks this is one indexed query (or none, for an event no webhook is sent)."""
    kind = WEBHOOK_EVENT_OF.get(JobEventType(event.type)) if event.type in JobEventType.values else None
    if kind is None:
        return
    owner_id = webhook_subscribers(job_id=event.job_id, event_type=kind)
    if owner_id is None:
        return
    try:
        data = job_detail_get(user_id=owner_id, job_id=event.job_id)
    except JobNotFound:  # the account was deactivated meanwhile
        return
    deliveries_enqueue(owner_id=owner_id, job_id=event.job_id, event_type=kind, data=data)

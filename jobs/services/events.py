"""A job's event log: what happened to it, in order (the API's `/jobs/{id}/events`)."""

from __future__ import annotations

import contextvars
import uuid
from functools import partial
from typing import Any

from django.db import transaction

from auteur.logging import job_id_var
from jobs.models import JobEvent, JobEventType
from jobs.services.webhooks import job_event_webhooks_send


def job_event_record(job_id: uuid.UUID | str, type: JobEventType, **data: Any) -> None:
    event = JobEvent.objects.create(job_id=job_id, type=type, data=data)
    # Webhook deliveries once the event is committed; robust: a failure there never fails the job.
    transaction.on_commit(partial(job_event_webhooks_send, event), robust=True)


def bind_job_to_logs(job_id: uuid.UUID | str) -> contextvars.Token[str | None]:
    """Every log line from here on carries the job's id (reset the token when the step ends)."""
    return job_id_var.set(str(job_id))

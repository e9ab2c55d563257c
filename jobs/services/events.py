"""A job's event log: what happened to it, in order (the API's `/jobs/{id}/events`)."""

from __future__ import annotations

import contextvars
import uuid
from typing import Any

from django.db import transaction

from auteur.logging import job_id_var
from jobs.models import JobEvent, JobEventType
from jobs.services.stream import job_stream_append


def job_event_record(job_id: uuid.UUID | str, type: JobEventType, **data: Any) -> None:
    event = JobEvent.objects.create(job_id=job_id, type=type, data=data)
    # Pushed only once the event is the record: a rolled-back step never reaches a client.
    # robust: a failing push is logged, never the step's failure.
    transaction.on_commit(lambda: job_event_committed(event), robust=True)


def job_event_committed(event: JobEvent) -> None:
    """Everything that happens once an event is committed: the push channels read from here."""
    job_stream_append(event)


def bind_job_to_logs(job_id: uuid.UUID | str) -> contextvars.Token[str | None]:
    """Every log line from here on carries the job's id (reset the token when the step ends)."""
    return job_id_var.set(str(job_id))

"""A job's event log: what happened to it, in order (the API's `/jobs/{id}/events`)."""

from __future__ import annotations

import contextvars
import uuid
from typing import Any

from auteur.logging import job_id_var
from jobs.models import JobEvent, JobEventType


def job_event_record(job_id: uuid.UUID | str, type: JobEventType, **data: Any) -> None:
    JobEvent.objects.create(job_id=job_id, type=type, data=data)


def bind_job_to_logs(job_id: uuid.UUID | str) -> contextvars.Token[str | None]:
    """Every log line from here on carries the job's id (reset the token when the step ends)."""
    return job_id_var.set(str(job_id))

"""A job's event log: what happened to it, in order (the API's `/jobs/{id}/events`)."""

from __future__ import annotations

import contextvars
import logging
import uuid
from functools import partial
from typing import Any

from django.conf import settings
from django.db import transaction

from auteur.core.logging import job_id_var
from jobs.events.stream import JobState, job_stream_append
from jobs.events.webhooks import job_event_webhooks_send
from jobs.models import JobEvent, JobEventType

logger = logging.getLogger(__name__)


def job_event_record(
    job_id: uuid.UUID | str, type: JobEventType, *, state: JobState | None = None, **data: Any
) -> None:
    """Record an event of the job; once committed, push it (its user's stream, webhooks).

    `state`: the job's user, status and progress as the caller just wrote them (a status move, a
    spawn); without it the push reads them from the row."""
    if settings.AUTEUR_CHECK_EVENT_SCHEMA:
        _check_schema(type, data)
    event = JobEvent.objects.create(job_id=job_id, type=type, data=data)
    # Pushed only once the event is the record: a rolled-back step never reaches a client.
    # robust: a failing push is logged, never the step's failure.
    transaction.on_commit(lambda: job_event_committed(event, state), robust=True)


def job_event_committed(event: JobEvent, state: JobState | None = None) -> None:
    """Everything that happens once an event is committed: the push channels read from here.
    Each is guarded on its own: one failing (Redis down, say) must not keep the other from running."""
    for push in (partial(job_stream_append, event, state), partial(job_event_webhooks_send, event)):
        try:
            push()
        except Exception:
            logger.exception("after-commit %s failed for event %s", push.func.__name__, event.pk)


def bind_job_to_logs(job_id: uuid.UUID | str) -> contextvars.Token[str | None]:
    """Every log line from here on carries the job's id (reset the token when the step ends)."""
    return job_id_var.set(str(job_id))


def _check_schema(type: JobEventType, data: dict[str, Any]) -> None:
    """Refuse an event whose data the published event schema (jobs/events/schema.py) does not
    describe: on in the tests (AUTEUR_CHECK_EVENT_SCHEMA), so every event the suite makes the
    server emit, in any process, is checked where it is recorded."""
    from jobs.events.schema import event_errors

    errors = event_errors(data, str(type))
    if errors:
        raise ValueError(f"a {type} event's data breaks the published event schema: {errors}")

"""A job's event log: what happened to it, in order (the API's `/jobs/{id}/events`)."""

from __future__ import annotations

import contextvars
import functools
import logging
import uuid
from functools import partial
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone
from psycopg.types.json import Jsonb

from auteur.core.logging import job_id_var
from auteur.core.postgres.plans import Planned
from auteur.core.prepared import insert_many
from jobs.events.stream import JobState, job_stream_append
from jobs.events.usage import USAGE_INSERT
from jobs.events.webhooks import NOT_ASKED, job_event_webhooks_send, webhook_event_of
from jobs.models import JobEvent, JobEventType
from webhooks.selectors import subscriber_sql

logger = logging.getLogger(__name__)


def job_event_record(
    job_id: uuid.UUID | str, type: JobEventType, *, state: JobState | None = None, usage: list[Any] | None = None,
    move: tuple[str, list[Any]] | None = None, move_then: str = "", **data: Any,
) -> bool:
    """Record an event of the job; once committed, push it (its user's stream, webhooks).

    `state`: the job's user, status and progress as the caller just wrote them (a status move, a
    spawn); without it the push reads them from the row. `usage`: the ended job's usage event
    (jobs.events.usage.usage_row), written with its terminal event. `move`: the conditional
    UPDATE of the job that the event records (SQL without RETURNING, and its parameters): the
    event (and usage) are written only if it matched; False when it did not, and nothing was.
    `move_then`: more common table expressions run with the move (`name AS (...), ...`), which
    may read `moved` (a row when it matched); their parameters follow the move's in `move[1]`.

    One statement, for every event of every job: the move if any, the insert, the usage event if
    any, and for an event that webhooks are sent, whether any of the owner's webhooks wants it
    (webhooks.selectors.subscriber_sql)."""
    if settings.AUTEUR_CHECK_EVENT_SCHEMA:
        _check_schema(type, data)
    kind = webhook_event_of(type)
    created_at = timezone.now()
    params: list[Any] = [*(move[1] if move else ()), job_id, str(type), Jsonb(data), created_at, *(usage or ())]
    if kind is not None:  # the owner given when the caller knows it (state)
        params += [*([state.user_id] if state else ()), str(job_id), str(kind), str(kind)]
    statement = _insert(kind is not None, usage is not None, state is not None, move[0] if move else None,
                        move_then if move else "")
    with connection.cursor() as cursor:
        statement.execute(cursor, params)
        row = cursor.fetchone()
    if row is None:  # the move matched nothing
        return False
    event_id, subscriber = row
    event = JobEvent(id=event_id, job_id=job_id, type=type, data=data, created_at=created_at)
    # Pushed only once the event is the record: a rolled-back step never reaches a client.
    # robust: a failing push is logged, never the step's failure.
    transaction.on_commit(lambda: job_event_committed(event, state, subscriber if kind else NOT_ASKED),
                          robust=True)
    return True


@functools.cache
def _insert(ask_subscriber: bool, with_usage: bool, owner_given: bool, move_sql: str | None,
            move_then: str = "") -> Planned:
    """The statement for each shape of event; `move_sql`: a move's UPDATE, `move_then`: what runs
    with it (each is compiled once per process, so the statements built are as few as the moves)."""
    table = JobEvent._meta.db_table
    columns = ", ".join(JobEvent._meta.get_field(name).column  # type: ignore[union-attr, misc]
                        for name in ("job", "type", "data", "created_at"))
    source = " FROM moved" if move_sql else ""
    move = f"moved AS ({move_sql} RETURNING 1), {move_then + ', ' if move_then else ''}" if move_sql else ""
    usage = f", usage AS ({USAGE_INSERT.format(source=source)})" if with_usage else ""
    subscriber = f"({subscriber_sql(owner_given)})" if ask_subscriber else "NULL"
    return Planned(f"""
        WITH {move}event AS (INSERT INTO {table} ({columns}) SELECT %s, %s, %s, %s{source} RETURNING id){usage}
        SELECT event.id, {subscriber} FROM event
    """)  # noqa: S608 - names from the model, values as parameters


def job_events_record_many(events: list[tuple[uuid.UUID, JobEventType, dict[str, Any]]]) -> None:
    """Record many jobs' events at once (a batch's items' submission), in one statement. Only the
    record, nothing pushed: a client follows a batch by its object (GET /batches/{id})."""
    if settings.AUTEUR_CHECK_EVENT_SCHEMA:
        for _, type, data in events:
            _check_schema(type, data)
    insert_many(JobEvent, len(events), varying={"job_id": [e[0] for e in events], "type": [str(e[1]) for e in events],
                                                "data": [e[2] for e in events]}, same={})


def job_event_committed(event: JobEvent, state: JobState | None = None, subscriber: Any = NOT_ASKED) -> None:
    """Everything that happens once an event is committed: the push channels read from here.
    Each is guarded on its own: one failing (Redis down, say) must not keep the other from running.
    `subscriber`: as job_event_webhooks_send takes it."""
    for push in (partial(job_stream_append, event, state), partial(job_event_webhooks_send, event, subscriber)):
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

"""Each user's Redis Stream of job events: the one source of SSE, the WebSocket and webhooks.

Every `JobEvent` is appended, after its transaction commits, to `jobevents:<user id>` as one
entry whose Redis id is the event id clients see and resume from (ids only grow, so "after id X"
is exact). The stream is capped by length (AUTEUR_EVENT_STREAM_MAXLEN, approximately) and by age
(AUTEUR_EVENT_STREAM_MAX_AGE_SECONDS): a client that was away longer reads the rest from
`GET /jobs/{id}/events`, the record in Postgres.

Appending is best effort: the job's step has already committed, so a Redis outage is logged and
the step goes on; live clients then miss that event until they read the REST record.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from dataclasses import dataclass
from typing import Any

import redis
from django.conf import settings

from auteur.silence import note_failure
from jobs.models import Job, JobEvent

logger = logging.getLogger(__name__)

KEY_PREFIX = "jobevents:"
# An append waits at most this long for Redis: a step must not hang on an outage.
REDIS_TIMEOUT_SECONDS = 1.0

_client: redis.Redis | None = None
_client_url = ""


@dataclass(frozen=True)
class JobState:
    """The job as of an event, from the writer that just set it: what its stream entry shows."""

    user_id: uuid.UUID
    status: str
    progress: int


def stream_key(user_id: uuid.UUID | str) -> str:
    return f"{KEY_PREFIX}{user_id}"


def stream_redis() -> redis.Redis:
    """The client every append and the retention sweep use (short timeouts: never hang a step)."""
    global _client, _client_url
    if _client is None or _client_url != settings.REDIS_URL:
        _client = redis.Redis.from_url(
            settings.REDIS_URL, socket_timeout=REDIS_TIMEOUT_SECONDS, socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
        )
        _client_url = settings.REDIS_URL
    return _client


def event_payload(event: JobEvent, *, status: str, progress: int) -> dict[str, Any]:
    """What clients see of an event (its `id` is added from the stream entry's id)."""
    return {
        "job_id": str(event.job_id),
        "type": event.type,
        "data": event.data,
        "status": status,
        "progress": progress,
        "created_at": event.created_at.isoformat().replace("+00:00", "Z"),
        "record_id": event.pk,  # the same event's id in GET /jobs/{id}/events
    }


def job_stream_append(event: JobEvent, state: JobState | None = None) -> str | None:
    """Append a committed event to its owner's stream; the entry's id, or None when Redis failed.

    `state`: the job's user, status and progress as the event's writer set them; without it they
    are read from the row (None when the job was deleted with its project since)."""
    if state is None:
        job = Job.objects.filter(pk=event.job_id).values("user_id", "status", "progress").first()
        if job is None:
            return None
        state = JobState(user_id=job["user_id"], status=job["status"], progress=job["progress"])
    payload = event_payload(event, status=state.status, progress=state.progress)
    key = stream_key(state.user_id)
    max_age_ms = settings.AUTEUR_EVENT_STREAM_MAX_AGE_SECONDS * 1000
    try:
        pipe = stream_redis().pipeline(transaction=False)
        pipe.xadd(key, {"e": json.dumps(payload, separators=(",", ":"))},
                  maxlen=settings.AUTEUR_EVENT_STREAM_MAXLEN, approximate=True)
        # XADD takes one trimming rule; the age cap is a second, approximate trim. The key itself
        # goes once its user has had no event for the whole window.
        pipe.xtrim(key, minid=f"{int(time.time() * 1000) - max_age_ms}-0", approximate=True)
        pipe.expire(key, settings.AUTEUR_EVENT_STREAM_MAX_AGE_SECONDS)
        entry_id = pipe.execute()[0]
    except redis.RedisError as exc:
        note_failure(settings.REDIS_URL, exc)
        logger.warning("job event not streamed (%s): %s", type(exc).__name__, event.type,
                       extra={"job_id": str(event.job_id)})
        return None
    return entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)


def parse_entry(entry_id: bytes | str, fields: dict[Any, Any]) -> dict[str, Any]:
    """A stream entry as clients see the event: the payload with the entry's id as `id`."""
    raw = fields[b"e"] if b"e" in fields else fields["e"]
    payload: dict[str, Any] = json.loads(raw)
    payload["id"] = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    return payload

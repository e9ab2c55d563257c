"""Each user's Redis Stream of job events: the one source of SSE, the WebSocket and webhooks.

Every `JobEvent` is appended, after its transaction commits, to `jobevents:<user id>` as one
entry whose Redis id is the event id clients see and resume from (ids only grow, so "after id X"
is exact). The stream is capped by length (AUTEUR_EVENT_STREAM_MAXLEN, approximately) and by age
(AUTEUR_EVENT_STREAM_MAX_AGE_SECONDS): a client that was away longer reads the rest from
`GET /jobs/{id}/events`, the record in Postgres.

Appending never holds the step or request that committed the event: when Redis does not take it
(down, out of reach, or silent lately: auteur/core/silence.py) it is logged, held by the process and
appended, in order, once Redis answers (auteur/core/outbox.py), for five minutes at most; live clients
see it late, not never. One given up on is still in the REST record.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

import redis
from cachetools import TTLCache
from django.conf import settings
from django.utils import timezone

from auteur.core.outbox import Outbox
from jobs.models import Job, JobEvent
from projects.models import Comment

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
    return _stream(state.user_id, payload, f"event {event.type} of job {event.job_id}",
                   {"job_id": str(event.job_id)})


# The change of a comment a stream entry says (comment.<change>): projects.signals.comment_changed.
COMMENT_CHANGES = ("created", "edited", "resolved", "reopened", "deleted")


def comment_stream_append(*, comment: Comment, change: str, member_id: uuid.UUID) -> str | None:
    """Append a committed change of a comment to its workspace's stream; the entry's id, or None
    when Redis failed (it is held and appended once Redis answers, as job events are). Only the
    connections that asked for comments get it (realtime/hub.py)."""
    from rest_framework.renderers import JSONRenderer

    from projects.comment_apis import CommentSerializer

    assert change in COMMENT_CHANGES, change
    payload = {
        "type": f"comment.{change}",
        "project_id": str(comment.project_id),
        "member_id": str(member_id),  # who made the change
        # As the API renders it (its UUIDs as strings); a deleted one without its text.
        "comment": json.loads(JSONRenderer().render(CommentSerializer(comment).data))
        | ({"text": ""} if change == "deleted" else {}),
        "created_at": timezone.now().isoformat().replace("+00:00", "Z"),
    }
    return _stream(comment.user_id, payload, f"comment.{change} of comment {comment.pk}",
                   {"project_id": str(comment.project_id)})


def account_stream_append(*, user_id: uuid.UUID, payload: dict[str, Any], what: str) -> str | None:
    """Append an account's event (a spend cap's threshold crossed, a review hold: jobs/events/account.py)
    to its workspace's stream; only the connections that asked for the account's events get it."""
    return _stream(user_id, {**payload, "created_at": payload.get("created_at") or timezone.now().isoformat()},
                   what, {})


# The account's events a stream carries (their `type`: a spend cap's threshold, a review hold): only to
# the connections that ask for them.
ACCOUNT_EVENT_PREFIXES = ("spend_cap.", "account.")


def is_account_event(event: dict[str, Any]) -> bool:
    return str(event.get("type", "")).startswith(ACCOUNT_EVENT_PREFIXES)


# A batch's events a stream carries (`batch.progress`, `batch.completed`: jobs/events/batches.py): to
# the connections that follow all of the user's jobs.
BATCH_EVENT_PREFIX = "batch."


def is_batch_event(event: dict[str, Any]) -> bool:
    return str(event.get("type", "")).startswith(BATCH_EVENT_PREFIX)


def batch_stream_append(*, user_id: uuid.UUID, payload: dict[str, Any]) -> str | None:
    """Append a batch's event (committed) to its owner's stream; held and appended later when Redis
    does not take it now, as job events are."""
    return _stream(user_id, {**payload, "created_at": timezone.now().isoformat().replace("+00:00", "Z")},
                   f"{payload['type']} of batch {payload['batch_id']}", {"batch_id": payload["batch_id"]})


def is_comment_event(event: dict[str, Any]) -> bool:
    """Whether a stream entry is a comment's change (else it is a job's event)."""
    return str(event.get("type", "")).startswith("comment.")


def _stream(user_id: uuid.UUID, payload: dict[str, Any], what: str, log_extra: dict[str, Any]) -> str | None:
    entry = (stream_key(user_id), json.dumps(payload, separators=(",", ":")))
    # Behind events still waiting for Redis, in their order.
    entry_id, why = unstreamed.try_now(entry, f"streaming {what}", in_order=True, **log_extra)
    if why:
        logger.warning("%s not streamed yet (%s)", what, why, extra=log_extra)
    return entry_id


# The streams whose age trim and expiry this process renewed lately: renewed at most once per
# RENEW_SECONDS (or a hundredth of the window, if shorter) per stream, so that most appends are one
# XADD. What a skipped renewal leaves, the retention sweep (jobs/retention.py) trims and expires.
RENEW_SECONDS = 60
_renewed: TTLCache[str, float] = TTLCache(maxsize=10_000, ttl=RENEW_SECONDS, timer=time.monotonic)
_renewed_lock = threading.Lock()
_clock = time.monotonic


def _append(entry: tuple[str, str]) -> str:
    key, data = entry
    max_age = settings.AUTEUR_EVENT_STREAM_MAX_AGE_SECONDS
    now = _clock()
    with _renewed_lock:
        renewed_at = _renewed.get(key)
    renew = renewed_at is None or now - renewed_at >= min(RENEW_SECONDS, max_age / 100)
    if not renew:  # the common case: one command, without a pipeline to build
        added = stream_redis().xadd(key, {"e": data}, maxlen=settings.AUTEUR_EVENT_STREAM_MAXLEN, approximate=True)
        return added.decode() if isinstance(added, bytes) else str(added)
    pipe = stream_redis().pipeline(transaction=False)
    pipe.xadd(key, {"e": data}, maxlen=settings.AUTEUR_EVENT_STREAM_MAXLEN, approximate=True)
    # XADD takes one trimming rule; the age cap is a second, approximate trim. The key itself
    # goes once its user has had no event for the whole window.
    pipe.xtrim(key, minid=f"{int(time.time() * 1000) - max_age * 1000}-0", approximate=True)
    pipe.expire(key, max_age)
    entry_id = pipe.execute()[0]
    with _renewed_lock:  # only once Redis took it: a failed renewal is tried again with the next append
        _renewed[key] = now
    return entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)


# Events Redis did not take when they were committed: appended from a thread once it answers
# (auteur/core/outbox.py), in order. One given up on is still in the job's events (GET /jobs/{id}/events).
unstreamed = Outbox(
    "stream-resend", lambda: settings.REDIS_URL, _append, (redis.RedisError,),
    "it stays in the job's events",
)  # fmt: skip


# The field that names what a stream entry is about, by its type's prefix (a job's event otherwise);
# an `account.` event is about the account itself, whose stream it is on: its type names it.
_KEY_FIELD = {"comment.": "project_id", BATCH_EVENT_PREFIX: "batch_id", "account.": "type"}


def parse_entry(entry_id: bytes | str, fields: dict[Any, Any]) -> dict[str, Any]:
    """A stream entry as clients see the event: the payload with the entry's id as `id`. KeyError
    or ValueError for an entry that is not one."""
    raw = fields[b"e"] if b"e" in fields else fields["e"]
    payload = json.loads(raw)
    if not isinstance(payload, dict) or not isinstance(payload.get("type"), str) or not isinstance(
            payload.get(_KEY_FIELD.get(str(payload["type"]).partition(".")[0] + ".", "job_id")), str):
        raise ValueError("not an event")
    payload["id"] = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    return payload

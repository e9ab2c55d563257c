"""Server-Sent Events of job events, served by the ASGI server (uvicorn) behind Caddy.

- `GET /api/v1/jobs/{id}/stream`: one job's events, replayed from the start of the stream window
  (or after `Last-Event-ID`), then live; the stream ends after the job's terminal event. On a job
  already finished it replays what the window holds and ends.
- `GET /api/v1/events/stream`: every job of the caller, live from now (or after `Last-Event-ID`);
  with `?batches=true`, their batches' progress and end too (`event: batch.progress`,
  `batch.completed`); with `?comments=true`, the changes of the comments on the caller's projects too (`event:
  comment.created`, `comment.edited`, `comment.resolved`, `comment.reopened`, `comment.deleted`);
  with `?account=true` (for the roles and keys that see the workspace's credits), the account's
  events too: `event: spend_cap.threshold`, a threshold of a spend cap crossed (credits/alerts.py).

Each event is `id:` (the stream id, to resume from), `event:` (its type) and `data:` (JSON with
the job's status and progress at that moment). A comment line is sent every
AUTEUR_STREAM_HEARTBEAT_SECONDS so proxies and clients see the connection alive. A resume from
an id older than the stream's window starts with `event: gap` (no id): what came between is in
`GET /jobs/{id}/events`. The bearer token
is checked as the REST API checks it (same errors); when it expires the stream sends an `error`
event and ends: the client reconnects with a fresh token and its last id.

A person (or API key) holds at most AUTEUR_MAX_STREAMS_PER_USER streams and WebSockets open at
once, and the keys and members of the workspaces one account pays for AUTEUR_MAX_STREAMS_PER_ACCOUNT
together, across every ASGI process (realtime/leases.py); one more is answered 429
`too_many_streams`, with the limit in `details.limit` and which one in `details.scope`.

Under gunicorn (WSGI) these views answer 503 `stream_unavailable`: a sync worker must never hold
a connection open.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from django.conf import settings
from django.core.handlers.asgi import ASGIRequest
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from redis.exceptions import RedisError
from rest_framework import exceptions
from rest_framework.request import Request

from auteur.core.asyncdb import released
from auteur.core.errors import api_exception_handler, error_body, error_response
from auteur.core.proxies import drop_untrusted_forwarded
from auteur.users.authentication import JWTAuthentication
from auteur.users.errors import WorkspaceNotFound
from auteur.users.keys import FoundKey
from auteur.users.models import User
from auteur.users.payers import payer_of
from auteur.users.selectors import require_seat, seat_now
from auteur.users.workspace_context import SEAT_CHANGED, WORKSPACE_META_KEY, Seat, seat_of
from jobs.models import Job
from jobs.selectors.jobs import job_get
from realtime.hub import TERMINAL_EVENT_TYPES, SeatEnded, SlowClient, Subscription, get_hub, valid_event_id
from realtime.leases import StreamLease, TooManyStreams, stream_lease_acquire

logger = logging.getLogger(__name__)

UNAVAILABLE_RETRY_AFTER_SECONDS = 2
# The longest an API key's stream or WebSocket stays open before its client reconnects (with its
# last event id), the key checked again.
KEY_STREAM_SECONDS = 3600


class StreamCaller:
    """Who opened a stream, and until when their token is good."""

    def __init__(self, user: User, credential: dict[str, Any] | FoundKey, seat: Seat | None = None) -> None:
        self.user = user  # whose events: the caller's own account, or the team workspace's
        # When the token stops working; an API key's stream is checked again at least hourly (its
        # revocation closes it at once; this bounds one whose closing message was lost).
        if isinstance(credential, FoundKey):
            until = time.time() + KEY_STREAM_SECONDS
            self.expires_at = min(credential.expires_at.timestamp(), until) if credential.expires_at else until
        else:
            self.expires_at = float(credential["exp"])
        # In a team workspace: the member reading it, whose seat ending closes the stream.
        self.seat = seat if seat is not None and not seat.personal else None
        # Streams are counted per person: a team's members do not share one allowance.
        self.person_id = seat.member_id if seat is not None else user.id
        # And per paying account, whose allowance every key and member of its workspaces share.
        self.account_id = payer_of(seat) if seat is not None else user.id


def authenticate_token(token: str, *, client_ip: str, forwarded_for: str | None,
                       workspace: str | None = None) -> StreamCaller:
    """The caller a bare token names (the WebSocket's auth), in `workspace` (a team workspace's id,
    as the Auteur-Workspace header names one), raising DRF's AuthenticationFailed (or Throttled:
    failures count against the client's address as the REST API's do), or the workspace's 404 or
    the role's 403 (ApplicationError)."""
    request = HttpRequest()
    request.META["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    if workspace:
        request.META[WORKSPACE_META_KEY] = workspace
    request.META["REMOTE_ADDR"] = client_ip
    if forwarded_for is not None:
        request.META["HTTP_X_FORWARDED_FOR"] = forwarded_for
    drop_untrusted_forwarded(request.META)  # as the HTTP middleware does: believed from the proxy only
    return _authenticate(Request(request))


def _authenticate(request: Request) -> StreamCaller:
    authenticator = JWTAuthentication()
    result = authenticator.authenticate(request)
    if result is None:
        raise exceptions.NotAuthenticated()
    user, claims = result
    seat = seat_of(request._request)
    if seat is not None and not seat.personal:
        # A team workspace's stream carries its jobs' events: for the roles that see its jobs.
        require_seat(seat, "jobs.view")
    return StreamCaller(user, claims, seat)


def seat_reread(caller: StreamCaller) -> Seat | None:
    """The team workspace's seat of the member (or API key) reading its events, as the database
    says now (None: ended); the caller's own events (no seat) need none. A connection re-reads it
    before it is given more: the role it was opened with may have changed since."""
    seat = caller.seat
    if seat is None:
        return None
    return seat_now(workspace_id=seat.workspace_id, member_id=seat.member_id)


def still_seated(caller: StreamCaller, *actions: str) -> None:
    """Raise unless the member reading a team workspace's events still may: 404 `workspace_not_found`
    once their seat ended or no longer sees its jobs, 403 `permission_denied` for one of `actions`
    their seat may not do now. Checked once the stream follows the workspace's seat ends, so that
    a seat ended or changed since authentication is not missed."""
    if caller.seat is None:
        return
    seat = seat_reread(caller)
    if seat is None or not seat.may("jobs.view"):
        raise WorkspaceNotFound("No such workspace.")
    for action in actions:
        require_seat(seat, action)
    caller.seat = seat


def _authorize(django_request: HttpRequest, job_id: str | None, *, comments: bool = False, account: bool = False
               ) -> tuple[StreamCaller, Job | None]:
    request = Request(django_request)
    caller = _authenticate(request)
    if comments and caller.seat is not None:
        require_seat(caller.seat, "comments.view")
    if account and caller.seat is not None:
        require_seat(caller.seat, "credits.view")
    job = job_get(user=caller.user, job_id=job_id) if job_id is not None else None
    return caller, job


# `?comments=` and `?account=` of the all-events stream: whether the changes of comments, and the
# account's events, come too.
COMMENTS_PARAM = {"true": True, "1": True, "false": False, "0": False, "": False}


def exception_response(exc: Exception) -> HttpResponse:
    """The REST API's answer to `exc` (the same body, status and headers)."""
    response = api_exception_handler(exc, {})
    if response is None:
        raise exc
    out = JsonResponse(response.data, status=response.status_code)
    for name, value in response.items():
        if name.lower() != "content-type":  # DRF's unrendered default
            out[name] = value
    if response.status_code == 401:
        out["WWW-Authenticate"] = f'{JWTAuthentication.keyword} realm="api"'
    return out


def format_event(event: dict[str, Any]) -> str:
    return f"id: {event['id']}\nevent: {event['type']}\ndata: {json.dumps(event, separators=(',', ':'))}\n\n"


def _gap_event(after: str | None) -> str:
    body = {"after": after, "message": "Some events after this id (null: from the start) are no longer in the "
                                       "stream; GET /api/v1/jobs/{id}/events has them all."}
    return f"event: gap\ndata: {json.dumps(body)}\n\n"


def _error_event(code: str, message: str) -> str:
    return f"event: error\ndata: {json.dumps(error_body(code, message))}\n\n"


async def _events(
    sub: Subscription, lease: StreamLease, caller: StreamCaller, *, per_job: bool, finished: bool,
    from_start: bool = False,
) -> AsyncIterator[str]:
    """`from_start`: a job's history replayed from its first event, which is `submitted`: a replay
    that starts with another (or, for a finished job, has none) lost the start to the stream's
    window, and says so with a gap first."""
    heartbeat = settings.AUTEUR_STREAM_HEARTBEAT_SECONDS
    try:
        # Sent at once, so the client sees the stream open before the first event.
        yield "retry: 2000\n\n"
        if sub.gap:
            yield _gap_event(sub.last_id)
        while True:
            remaining = caller.expires_at - time.time()
            if remaining <= 0:
                yield _error_event("invalid_token", "The token expired (an API key's stream: its hour is up); "
                                                    "reconnect, with a new token, and Last-Event-ID.")
                return
            await lease.renew_if_due()
            try:
                event = await sub.get(0 if finished else min(heartbeat, remaining, lease.seconds_to_renewal() + 0.01))
            except SlowClient:
                logger.info("slow SSE client disconnected", extra={"user_id": str(caller.user.id)})
                return
            except SeatEnded as ended:
                if ended.reason == SEAT_CHANGED:
                    yield _error_event("seat_changed", "Your role in this workspace changed: reconnect (with "
                                                       "Last-Event-ID) to read what it allows now.")
                else:
                    yield _error_event("workspace_not_found", "You are no longer a member of this workspace who sees "
                                                              "its jobs.")
                return
            except RedisError:
                yield _error_event("service_unavailable", "The event stream is briefly unavailable; reconnect.")
                return
            if event is None:
                if finished:
                    if from_start:
                        yield _gap_event(None)
                    return
                yield ": heartbeat\n\n"
                continue
            if from_start and event["type"] != "submitted":
                yield _gap_event(None)
            from_start = False
            yield format_event(event)
            if per_job and event["type"] in TERMINAL_EVENT_TYPES:
                return
    finally:
        sub.close()
        await lease.release()


def too_many_streams(exc: TooManyStreams) -> HttpResponse:
    shared = " by the keys and members of the workspaces this account pays for" if exc.scope == "account" else ""
    return error_response(
        429, "too_many_streams",
        f"At most {exc.limit} event streams and WebSockets may be open at once{shared}; close one first.",
        {"limit": exc.limit, "scope": exc.scope},
    )


def _unavailable() -> HttpResponse:
    response = error_response(503, "service_unavailable", "The event stream is briefly unavailable; try again.")
    response["Retry-After"] = str(UNAVAILABLE_RETRY_AFTER_SECONDS)
    return response


async def _stream(request: HttpRequest, job_id: str | None) -> HttpResponseBase:
    if request.method != "GET":
        return exception_response(exceptions.MethodNotAllowed(request.method or ""))
    if not isinstance(request, ASGIRequest):
        return error_response(503, "stream_unavailable", "Event streams are served by the ASGI server only.")
    comments = COMMENTS_PARAM.get(request.GET.get("comments", "").lower()) if job_id is None else False
    account = COMMENTS_PARAM.get(request.GET.get("account", "").lower()) if job_id is None else False
    batches = COMMENTS_PARAM.get(request.GET.get("batches", "").lower()) if job_id is None else False
    if comments is None or account is None or batches is None:
        name = "comments" if comments is None else "account" if account is None else "batches"
        return error_response(400, "validation_error", f"{name} is true or false.", {name: ["Must be true or false."]})
    try:
        caller, job = await released(_authorize)(request, job_id, comments=comments, account=account)
    except Exception as exc:  # noqa: BLE001 - rendered as the REST API renders it, or re-raised
        return exception_response(exc)
    after = request.headers.get("Last-Event-ID") or None
    if after is not None and not valid_event_id(after):
        return error_response(400, "invalid_event_id", "Last-Event-ID must be an event id from this stream.")
    from_start = job is not None and after is None
    if from_start:
        after = "0-0"  # one job's stream starts with its history
    hub = get_hub()
    try:
        lease = await stream_lease_acquire(hub.redis, caller.person_id, account_id=caller.account_id)
    except TooManyStreams as exc:
        return too_many_streams(exc)
    except RedisError:
        return _unavailable()
    try:
        sub = await hub.subscribe(caller.user.id, job_ids={str(job.pk)} if job else None, after=after,
                                  member_id=caller.seat.member_id if caller.seat else None, comments=comments,
                                  account=account, batches=batches)
    except RedisError:
        await lease.release()
        return _unavailable()
    # Each kind of event asked for needs its action under the seat as it is now, not as it was
    # when the token was checked.
    also = ["comments.view"] * bool(comments) + ["credits.view"] * bool(account)
    try:
        await released(still_seated)(caller, *also)
    except Exception as exc:  # noqa: BLE001 - rendered as the REST API renders it, or re-raised
        sub.close()
        await lease.release()
        return exception_response(exc)
    finished = job is not None and job.is_terminal
    # The lease is released when the stream ends; a response never started leaves it to run out.
    stream = StreamingHttpResponse(
        _events(sub, lease, caller, per_job=job is not None, finished=finished, from_start=from_start),
        content_type="text/event-stream",
    )
    stream["Cache-Control"] = "no-cache"
    stream["X-Accel-Buffering"] = "no"
    return stream


async def job_stream(request: HttpRequest, job_id: str) -> HttpResponseBase:
    return await _stream(request, job_id)


async def events_stream(request: HttpRequest) -> HttpResponseBase:
    return await _stream(request, None)

"""`/ws/v1/events`: the caller's job events over a WebSocket (a Channels consumer under uvicorn).

Events come from the user's Redis Stream through the process's hub (realtime/hub.py),
the same source as SSE: the stream gives every event an id, an order and a replay window, which
is what resume needs. Channels' Redis channel layer (channels-redis) is deliberately not used: a
group message is fire-and-forget, with no id to resume from and no replay, so routing events
through it would make a second, lossy source of truth beside the stream.

Protocol (JSON text frames):
- authenticate with the first message `{"type": "auth", "token": "<JWT>"}` within
  AUTEUR_WS_AUTH_TIMEOUT_SECONDS, or at the handshake with `Sec-WebSocket-Protocol: bearer, <JWT>`
  (the server answers with the `bearer` subprotocol); the server replies `{"type": "ready"}`.
  A team workspace's events: `"workspace": "<its id>"` in the auth message, or the handshake's
  `Auteur-Workspace` header (clients that can set one), as the REST API takes it.
- `{"type": "subscribe", "job_id": "<id>"}`: from now on only those jobs' events (each subscribe
  adds one); without any, all of the user's jobs. `{"type": "subscribe", "comments": true}`: the
  changes of the comments on the projects too, as `{"type": "comment.event", "project_id",
  "event": {...}}` (answered `{"type": "subscribed", "comments": true}`). `{"type": "subscribe",
  "account": true}` (for the roles and keys that see the workspace's credits): the account's events
  too, as `{"type": "account.event", "event": {...}}` (a spend cap's threshold crossed).
  `{"type": "subscribe", "batches": true}`: the batches' progress and ends too, as `{"type":
  "batch.event", "batch_id", "event": {...}}` (answered `{"type": "subscribed", "batches": true}`).
- `{"type": "resume", "after": "<event id>"}`: replay what came after that id, then live; first
  `{"type": "gap", "after"}` when that id is older than the stream's window (what came between
  is in `GET /jobs/{id}/events`).
- the server sends `{"type": "job.event", "job_id", "event": {...}}` (event: the SSE `data`) and
  `{"type": "ping"}` every AUTEUR_STREAM_HEARTBEAT_SECONDS; a client's `{"type": "ping"}` gets a
  `{"type": "pong"}`.

Close codes: 4401 bad or expired token (also when it expires while connected), 4404 unknown job
or another user's, or a workspace the caller is not a member of (also when their seat ends while
connected: removed, a key revoked, or given a role that does not see jobs), 4409 (reason
`seat_changed`) the member was given another role that still sees the jobs (reconnect: what the
socket may carry is the new role's), 4403 a role that does not see the workspace's jobs, or a
subscribe its role or scopes do not allow (the role is read again at every subscribe: a member made
a viewer since the socket opened is refused the account's events), 4400 a malformed or unknown
message, 4408 no auth in time, 4429 (reason
`too_many_streams`) the person already holds AUTEUR_MAX_STREAMS_PER_USER streams and sockets open,
or the workspace's paying account AUTEUR_MAX_STREAMS_PER_ACCOUNT (realtime/leases.py), 1013 the
client fell AUTEUR_STREAM_CLIENT_BUFFER events behind (reconnect and resume). A handshake whose Origin
is not in CORS_ALLOWED_ORIGINS is refused (403); clients that send no Origin (not a browser)
are not affected by that check.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from typing import Any

from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings
from redis.exceptions import RedisError
from rest_framework.exceptions import APIException

from auteur.core.asyncdb import released
from auteur.core.errors import ApplicationError
from auteur.users.workspace_context import SEAT_CHANGED
from jobs.errors import JobNotFound
from jobs.events.stream import is_account_event, is_batch_event, is_comment_event
from jobs.selectors.jobs import job_get
from realtime.hub import SeatEnded, SlowClient, Subscription, get_hub, id_order, valid_event_id
from realtime.leases import StreamLease, TooManyStreams, stream_lease_acquire
from realtime.sse import StreamCaller, authenticate_token, still_seated

logger = logging.getLogger(__name__)

CLOSE_BAD_MESSAGE = 4400
CLOSE_BAD_TOKEN = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_NOT_FOUND = 4404
CLOSE_AUTH_TIMEOUT = 4408
CLOSE_SEAT_CHANGED = 4409
CLOSE_TOO_MANY_STREAMS = 4429
CLOSE_TRY_AGAIN = 1013
CLOSE_UNAVAILABLE = 1011
MAX_MESSAGE_CHARS = 16384
# The other kinds of events a socket may subscribe to besides jobs', and the action each needs.
SUBSCRIBE_ALSO = {"comments": "comments.view", "account": "credits.view", "batches": "jobs.view"}


class JobEventsConsumer(AsyncJsonWebsocketConsumer):
    caller: StreamCaller | None = None
    sub: Subscription | None = None
    lease: StreamLease | None = None
    job_ids: set[str] | None = None
    comments = False
    batches = False
    account = False
    # The ids of the events sent on this connection run from first_sent to last_sent with no gap:
    # a resume skips them rather than sending them twice.
    first_sent: str | None = None
    last_sent: str | None = None
    _tasks: list[asyncio.Task[Any]]

    async def connect(self) -> None:
        self._tasks = []
        self.closing = False
        origin = dict(self.scope.get("headers") or []).get(b"origin")
        if origin is not None and origin.decode("latin-1") not in settings.CORS_ALLOWED_ORIGINS:
            await self.close()  # before accept: the handshake is refused with 403
            return
        subprotocols = list(self.scope.get("subprotocols") or [])
        if subprotocols and subprotocols[0] == "bearer":
            await self.accept("bearer")
            if len(subprotocols) != 2:
                await self._close(CLOSE_BAD_TOKEN)
                return
            await self._authenticate(subprotocols[1])
        else:
            await self.accept()
            self._tasks.append(asyncio.create_task(self._auth_deadline()))

    async def disconnect(self, code: int) -> None:
        await self._stop()

    async def _stop(self) -> None:
        for task in self._tasks:
            if task is not asyncio.current_task():
                task.cancel()
        self._tasks = []
        if self.sub is not None:
            self.sub.close()
            self.sub = None
        if self.lease is not None:
            lease, self.lease = self.lease, None
            await lease.release()

    async def _close(self, code: int, reason: str | None = None) -> None:
        if not self.closing:
            self.closing = True
            await self._stop()
            await self.close(code, reason)

    async def _auth_deadline(self) -> None:
        await asyncio.sleep(settings.AUTEUR_WS_AUTH_TIMEOUT_SECONDS)
        if self.caller is None:
            await self._close(CLOSE_AUTH_TIMEOUT)

    async def _authenticate(self, token: Any, workspace: Any = None) -> None:
        headers = dict(self.scope.get("headers") or [])
        if workspace is None and b"auteur-workspace" in headers:
            workspace = headers[b"auteur-workspace"].decode("latin-1")
        if not isinstance(token, str) or not token or not isinstance(workspace, str | None):
            await self._close(CLOSE_BAD_TOKEN if not isinstance(token, str) or not token else CLOSE_BAD_MESSAGE)
            return
        try:
            forwarded = headers.get(b"x-forwarded-for")
            client = self.scope.get("client") or ("", 0)
            self.caller = await released(authenticate_token)(
                token, client_ip=client[0], forwarded_for=forwarded.decode("latin-1") if forwarded else None,
                workspace=workspace,
            )
        except APIException:
            await self._close(CLOSE_BAD_TOKEN)
            return
        except ApplicationError as exc:
            code = {403: CLOSE_FORBIDDEN, 404: CLOSE_NOT_FOUND}.get(exc.status_code, CLOSE_UNAVAILABLE)
            await self._close(code, exc.code)
            return
        try:
            self.lease = await stream_lease_acquire(get_hub().redis, self.caller.person_id,
                                                    account_id=self.caller.account_id)
        except TooManyStreams:
            await self._close(CLOSE_TOO_MANY_STREAMS, "too_many_streams")
            return
        except RedisError:
            await self._close(CLOSE_UNAVAILABLE)
            return
        self._tasks.append(asyncio.create_task(self._renew_lease(self.lease)))
        if not await self._resubscribe(None):
            return
        await self.send_json({"type": "ready"})
        self._tasks.append(asyncio.create_task(self._expiry()))

    async def _renew_lease(self, lease: StreamLease) -> None:
        while not lease.released:
            await asyncio.sleep(lease.seconds_to_renewal())
            await lease.renew_if_due()

    async def _expiry(self) -> None:
        assert self.caller is not None
        await asyncio.sleep(max(0.0, self.caller.expires_at - time.time()))
        await self._close(CLOSE_BAD_TOKEN)

    async def _resubscribe(self, after: str | None) -> bool:
        """A new subscription (after `after`) in place of the current one, and its pump. In a team
        workspace the member's seat is checked once the new one follows the seat's end, and a seat
        that ended under the old one is not forgotten: the socket closes 4404 either way."""
        assert self.caller is not None
        old = self.sub
        try:
            new = await get_hub().subscribe(self.caller.user.id, job_ids=self.job_ids, after=after,
                                            member_id=self.caller.seat.member_id if self.caller.seat else None,
                                            comments=self.comments, account=self.account, batches=self.batches)
        except RedisError:
            await self._close(CLOSE_UNAVAILABLE)
            return False
        for task in [t for t in self._tasks if t.get_name() == "pump"]:
            task.cancel()
            self._tasks.remove(task)
        self.sub = new
        if old is not None:
            old.close()
            if old.seat_ended:
                await self._seat_ended(old.seat_ended)
                return False
        # Removed, or demoted, since the token's check or the last subscription: what this socket
        # already carries is checked against the seat as it is now.
        if not await self._still_seated(*self._actions()):
            return False
        if new.gap:
            await self.send_json({"type": "gap", "after": after})
        self._tasks.append(asyncio.create_task(self._pump(new), name="pump"))
        return True

    async def _seat_ended(self, reason: str) -> None:
        if reason == SEAT_CHANGED:
            await self._close(CLOSE_SEAT_CHANGED, "seat_changed")  # reconnect: the new role decides
        else:
            await self._close(CLOSE_NOT_FOUND, "workspace_not_found")

    def _actions(self) -> list[str]:
        """The actions what this socket carries needs, beyond seeing the jobs."""
        return [action for kind, action in SUBSCRIBE_ALSO.items() if getattr(self, kind)]

    async def _still_seated(self, *actions: str) -> bool:
        """Whether the socket's team seat, read again now, still sees the jobs and may do `actions`;
        else the socket closes (4404 `workspace_not_found`: the seat ended or no longer sees the
        jobs; 4403 `permission_denied`: an action its role or scopes no longer allow)."""
        assert self.caller is not None
        if self.caller.seat is None:
            return True
        try:
            await released(still_seated)(self.caller, *actions)
        except ApplicationError as exc:
            await self._close(CLOSE_FORBIDDEN if exc.status_code == 403 else CLOSE_NOT_FOUND, exc.code)
            return False
        except Exception:
            logger.exception("could not check a member's seat; closing their socket")
            await self._close(CLOSE_UNAVAILABLE)
            return False
        return True

    def _already_sent(self, event_id: str) -> bool:
        if self.first_sent is None or self.last_sent is None:
            return False
        return id_order(self.first_sent) <= id_order(event_id) <= id_order(self.last_sent)

    async def _pump(self, sub: Subscription) -> None:
        heartbeat = settings.AUTEUR_STREAM_HEARTBEAT_SECONDS
        while True:
            try:
                event = await sub.get(heartbeat)
            except SlowClient:
                logger.info("slow WebSocket client disconnected")
                await self._close(CLOSE_TRY_AGAIN)
                return
            except SeatEnded as ended:
                await self._seat_ended(ended.reason)
                return
            except RedisError:
                await self._close(CLOSE_UNAVAILABLE)
                return
            if event is None:
                await self.send_json({"type": "ping"})
                continue
            if self._already_sent(event["id"]):
                continue
            if is_comment_event(event):
                await self.send_json({"type": "comment.event", "project_id": event["project_id"], "event": event})
            elif is_account_event(event):
                await self.send_json({"type": "account.event", "event": event})
            elif is_batch_event(event):
                await self.send_json({"type": "batch.event", "batch_id": event["batch_id"], "event": event})
            else:
                await self.send_json({"type": "job.event", "job_id": event["job_id"], "event": event})
            if self.first_sent is None:
                self.first_sent = event["id"]
            self.last_sent = event["id"]

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None, **kwargs: Any) -> None:
        if text_data is None or len(text_data) > MAX_MESSAGE_CHARS:
            await self._close(CLOSE_BAD_MESSAGE)
            return
        try:
            # At most MAX_MESSAGE_CHARS: nested past the recursion limit, the reader stops (RecursionError).
            content = json.loads(text_data)
        except (ValueError, RecursionError):
            await self._close(CLOSE_BAD_MESSAGE)
            return
        await self.receive_json(content)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        if self.closing:
            return
        kind = content.get("type") if isinstance(content, dict) else None
        if kind == "auth":
            if self.caller is not None:
                await self._close(CLOSE_BAD_MESSAGE)
            else:
                await self._authenticate(content.get("token"), content.get("workspace"))
            return
        if self.caller is None:
            await self._close(CLOSE_BAD_TOKEN if kind in ("subscribe", "resume", "ping") else CLOSE_BAD_MESSAGE)
            return
        if kind == "ping":
            await self.send_json({"type": "pong"})
        elif kind == "subscribe" and (also := next((k for k in SUBSCRIBE_ALSO if k in content), None)):
            await self._subscribe_also(content, also, SUBSCRIBE_ALSO[also])
        elif kind == "subscribe":
            await self._subscribe(content.get("job_id"))
        elif kind == "resume":
            after = content.get("after")
            if not isinstance(after, str) or not valid_event_id(after):
                await self._close(CLOSE_BAD_MESSAGE)
                return
            await self._resubscribe(after)
        else:
            await self._close(CLOSE_BAD_MESSAGE)

    async def _subscribe_also(self, content: dict[str, Any], kind: str, action: str) -> None:
        """The events of another kind than jobs' too: `comments`, `account` or `batches`, for a seat allowed
        `action`."""
        assert self.caller is not None
        if content.get(kind) is not True or set(content) != {"type", kind}:
            await self._close(CLOSE_BAD_MESSAGE)
            return
        # The role is read again for every subscribe: the one the socket was opened with may
        # have been changed since (a member made a viewer sees no spend caps).
        if not await self._still_seated(*self._actions(), action):
            return
        setattr(self, kind, True)
        # What was sent so far was filtered otherwise: a later resume may repeat, never skip.
        self.first_sent = self.last_sent = None
        if self.sub is not None:
            setattr(self.sub, kind, True)
        await self.send_json({"type": "subscribed", kind: True})

    async def _subscribe(self, job_id: Any) -> None:
        assert self.caller is not None
        if not isinstance(job_id, str) or not job_id:
            await self._close(CLOSE_BAD_MESSAGE)
            return
        if not await self._still_seated(*self._actions()):
            return
        try:
            job = await released(job_get)(user=self.caller.user, job_id=job_id)
        except JobNotFound:
            await self._close(CLOSE_NOT_FOUND)
            return
        self.job_ids = (self.job_ids or set()) | {str(job.pk)}
        # What was sent so far was filtered otherwise: a later resume may repeat, never skip.
        self.first_sent = self.last_sent = None
        if self.sub is not None:
            self.sub.job_ids = self.job_ids
        await self.send_json({"type": "subscribed", "job_id": str(job.pk)})

    async def send_json(self, content: Any, close: bool = False) -> None:
        with contextlib.suppress(RuntimeError, OSError):  # the socket closed meanwhile
            await super().send_json(content, close=close)

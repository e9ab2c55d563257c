"""One reader of the users' event streams per ASGI process, fanned out to its connections.

A connection (SSE or WebSocket) subscribes to its user's stream, optionally after an event id.
The hub runs ONE task per process that does XREAD BLOCK over the keys of the users that have a
live connection (plus a wake-up stream of its own, so a newly added key is read at once) and puts
each entry on the bounded queue of every subscription of that user. Redis connections therefore
grow with processes, not with clients.

- Resume: a subscription first reads its backlog with XRANGE after the given id, then the live
  entries the reader queued meanwhile; entries at or before the last one delivered are dropped,
  so the seam between the two shows no gap and no duplicate.
- A slow client: when its queue is full it is disconnected (`SlowClient`), never buffered without
  limit; it reconnects with its last id and reads the rest as backlog.
- Redis restarting: the reader retries with backoff and goes on from the last id it read per
  key, so connections stay open and miss nothing that reached the stream.
- A member's seat ending or changing: a connection opened by a member of a team workspace (its key
  is the workspace's) is closed (`SeatEnded`, saying which) when the member's id is appended to
  the workspace's seat-ends stream (auteur/users/workspace_context.py), which the reader follows beside the
  workspace's own key while such a connection is open.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import contextvars
import logging
import uuid
from typing import Any

import redis.asyncio as aioredis
from django.conf import settings
from redis.exceptions import RedisError

from auteur.users.workspace_context import SEAT_ENDED, seat_ends_key
from jobs.events.stream import is_account_event, is_batch_event, is_comment_event, parse_entry, stream_key

logger = logging.getLogger(__name__)

TERMINAL_EVENT_TYPES = frozenset({"completed", "failed", "canceled", "aborted"})
READ_BLOCK_MS = 5000
READ_MARGIN_S = 5.0  # a blocking read's answer may come this long after its block ends
READ_COUNT = 500
BACKLOG_CHUNK = 500
BACKOFF_FIRST, BACKOFF_MAX = 0.1, 3.0
_OVERFLOW = object()
_SEAT_ENDED = object()
HUB_CLIENT_NAME = "auteur-stream-hub"  # in Redis's CLIENT LIST
REDIS_CONNECTIONS = 8
REDIS_POOL_WAIT_SECONDS = 10


class SeatEnded(Exception):
    """The member who opened the connection no longer sees this workspace's events as it was
    opened: `reason` SEAT_ENDED (their seat ended) or SEAT_CHANGED (their role changed)."""

    def __init__(self, reason: str = SEAT_ENDED) -> None:
        super().__init__(reason)
        self.reason = reason


class SlowClient(Exception):
    """The connection fell AUTEUR_STREAM_CLIENT_BUFFER events behind."""


def id_order(entry_id: str) -> tuple[int, int]:
    """A stream id as a sortable pair; raises ValueError for anything that is not `<ms>-<seq>`."""
    ms, _, seq = entry_id.partition("-")
    if not ms.isdigit() or (seq and not seq.isdigit()) or len(entry_id) > 41:
        raise ValueError(entry_id)
    return int(ms), int(seq or 0)


def valid_event_id(value: str) -> bool:
    try:
        id_order(value)
    except ValueError:
        return False
    return True


class Subscription:
    """One connection's view of its user's stream (all jobs, or those of `job_ids` only)."""

    def __init__(self, hub: Hub, key: str, *, job_ids: set[str] | None, after: str | None, maxsize: int,
                 member_id: str | None = None, comments: bool = False, account: bool = False,
                 batches: bool = False) -> None:
        self.hub, self.key = hub, key
        # The team workspace's member who opened it (None: the stream is the caller's own).
        self.member_id = member_id
        self.job_ids = job_ids  # the filter may change (a WebSocket's subscribe)
        # Whether the comments' changes are wanted too (asked for; they are not job events).
        self.comments = comments
        self.batches = batches  # the batches' progress and ends too (asked for)
        # Whether the account's events are wanted too (a spend cap's threshold crossed).
        self.account = account
        self.queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=maxsize)
        # The last id delivered (or skipped as not this job's); None: live entries only.
        self.last_id = after
        self._backlog: collections.deque[dict[str, Any]] = collections.deque()
        self._backlog_from = after  # None once the backlog is read
        # A queue read that outlived a get()'s timeout is kept for the next get(), never
        # cancelled: cancelling it could drop the entry it was about to return.
        self._getter: asyncio.Future[Any] | None = None
        self.closed = False
        # True when events after `after` may have left the stream (trimmed by length or age, or
        # lost with Redis's data): the client should read /jobs/{id}/events for what it missed.
        self.gap = False
        self.seat_ended: str | None = None  # why the member's seat ended it (SeatEnded's reason)

    def _wants(self, event: dict[str, Any]) -> bool:
        if is_comment_event(event):
            return self.comments
        if is_account_event(event):
            return self.account
        if is_batch_event(event):
            return self.batches
        return self.job_ids is None or event.get("job_id") in self.job_ids

    def offer(self, event: dict[str, Any]) -> None:
        """Called by the reader for every live entry of the key."""
        if self.closed or not self._wants(event):
            return
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            self.hub.unsubscribe(self)
            while not self.queue.empty():
                self.queue.get_nowait()
            self.queue.put_nowait(_OVERFLOW)

    def end_seat(self, reason: str = SEAT_ENDED) -> None:
        """Called by the reader when the member's seat ended or changed: the next get() raises
        SeatEnded(reason)."""
        self.hub.unsubscribe(self)
        while not self.queue.empty():
            self.queue.get_nowait()
        self.queue.put_nowait(_SEAT_ENDED)
        self.seat_ended = reason

    async def _read_backlog(self) -> None:
        assert self._backlog_from is not None
        entries = await self.hub.redis.xrange(self.key, min=f"({self._backlog_from}", count=BACKLOG_CHUNK)
        for entry_id, fields in entries:
            self._backlog_from = entry_id.decode()
            try:
                event = parse_entry(entry_id, fields)
            except (KeyError, ValueError):
                continue  # logged by the reader, which read it live
            if self._wants(event):
                self._backlog.append(event)
        if len(entries) < BACKLOG_CHUNK:
            self._backlog_from = None

    def _deliver(self, event: dict[str, Any]) -> dict[str, Any] | None:
        if self.last_id is not None and id_order(event["id"]) <= id_order(self.last_id):
            return None
        if not self._wants(event):
            return None
        self.last_id = event["id"]
        return event

    async def get(self, timeout: float) -> dict[str, Any] | None:
        """The next event, or None when none came within `timeout` seconds (for heartbeats).

        Raises SlowClient once the connection fell too far behind, RedisError while the backlog
        cannot be read.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            if self.seat_ended:
                raise SeatEnded(self.seat_ended)
            while not self._backlog and self._backlog_from is not None:
                await self._read_backlog()
            if self._backlog:
                if (event := self._deliver(self._backlog.popleft())) is not None:
                    return event
                continue
            if self._getter is None:
                self._getter = asyncio.ensure_future(self.queue.get())
            done, _ = await asyncio.wait({self._getter}, timeout=max(0.0, deadline - loop.time()))
            if not done:
                return None
            item, self._getter = self._getter.result(), None
            if item is _OVERFLOW:
                raise SlowClient
            if item is _SEAT_ENDED:
                raise SeatEnded(self.seat_ended or SEAT_ENDED)
            if (event := self._deliver(item)) is not None:
                return event

    def close(self) -> None:
        self.hub.unsubscribe(self)
        if self._getter is not None:
            self._getter.cancel()


class Hub:
    def __init__(self) -> None:
        self._subs: dict[str, set[Subscription]] = {}
        self._positions: dict[str, str] = {}  # key -> the last id the reader has fanned out
        # A team workspace's seat-ends key -> (the workspace's key, the last id read), while a
        # member's connection reads the workspace's events.
        self._seat_ends: dict[str, tuple[str, str]] = {}
        self._wake_key = f"{stream_key('hub')}:{uuid.uuid4().hex}"
        self._wake_position = "0-0"
        self._task: asyncio.Task[None] | None = None
        self._has_keys = asyncio.Event()
        # Any: redis-py's async stubs type every reply as a union of every reply shape.
        # A bounded pool: a burst of connections waits its turn for a Redis connection rather than
        # opening one each (the blocking reader holds one; subscribes and backlogs share the rest).
        # A read outlasts its XREAD's block: redis-py's default socket timeout (5 s) equals the
        # block, and cut every idle read short as if Redis were gone (a warning, then a backoff of
        # up to BACKOFF_MAX during which events waited).
        pool = aioredis.BlockingConnectionPool.from_url(
            settings.REDIS_URL, max_connections=REDIS_CONNECTIONS, timeout=REDIS_POOL_WAIT_SECONDS,
            socket_connect_timeout=5, socket_timeout=READ_BLOCK_MS / 1000 + READ_MARGIN_S, health_check_interval=10,
            client_name=HUB_CLIENT_NAME,
        )
        self.redis: Any = aioredis.Redis(connection_pool=pool)

    @property
    def connections(self) -> int:
        return sum(len(s) for s in self._subs.values())

    async def subscribe(
        self, user_id: uuid.UUID | str, *, job_ids: set[str] | None = None, after: str | None = None,
        member_id: uuid.UUID | str | None = None, comments: bool = False, account: bool = False,
        batches: bool = False,
    ) -> Subscription:
        """Live events of the user (of `job_ids` only, if given), after the event id `after` first.
        `member_id`: the team workspace's member who opens it (`user_id` the workspace's), whose
        seat ending closes it. `comments`: the changes of comments too; `account`: the account's events;
        `batches`: the batches' progress and ends.

        Raises RedisError when Redis cannot be reached now.
        """
        if self._task is None or self._task.done():
            # A context of its own: not the first subscriber's request (its log ids, say).
            self._task = asyncio.create_task(self._read(), name="event-stream-hub", context=contextvars.Context())
        key = stream_key(user_id)
        member = str(member_id) if member_id is not None and str(member_id) != str(user_id) else None
        ends = seat_ends_key(user_id)
        gap = False
        if after is not None and id_order(after) != (0, 0):
            # The entry `after` names was in this stream; if the oldest one now is later (or none
            # is left), what followed it may be gone too.
            first = await self.redis.xrange(key, count=1)
            gap = not first or id_order(first[0][0].decode()) > id_order(after)
        # The positions to follow from, read first; then, with no await between the check and the
        # add, the key (and the seat ends) are followed and the subscription added. A position
        # dropped during a read (the key's last connection left) is read again.
        while True:
            position = ends_position = None
            if key not in self._positions:
                last = await self.redis.xrevrange(key, count=1)
                position = last[0][0].decode() if last else "0-0"
            if member is not None and ends not in self._seat_ends:
                # Only what is appended from now on ends this connection: an older entry was a seat
                # that ended before it was opened.
                last = await self.redis.xrevrange(ends, count=1)
                ends_position = last[0][0].decode() if last else "0-0"
            if (key in self._positions or position is not None) and (
                    member is None or ends in self._seat_ends or ends_position is not None):
                break
        new_key = key not in self._subs or (member is not None and ends not in self._seat_ends)
        if position is not None:
            self._positions.setdefault(key, position)
        if ends_position is not None:
            self._seat_ends.setdefault(ends, (key, ends_position))
        sub = Subscription(self, key, job_ids=job_ids, after=after, maxsize=settings.AUTEUR_STREAM_CLIENT_BUFFER,
                           member_id=member, comments=comments, account=account, batches=batches)
        sub.gap = gap
        self._subs.setdefault(key, set()).add(sub)
        self._has_keys.set()
        if new_key:
            # Interrupts the reader's blocking XREAD so that it adds this key now.
            with contextlib.suppress(RedisError):
                await self.redis.xadd(self._wake_key, {"k": key}, maxlen=10, approximate=False)
                await self.redis.expire(self._wake_key, 3600)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        sub.closed = True
        subs = self._subs.get(sub.key)
        if subs is None:
            return
        subs.discard(sub)
        if not subs:
            del self._subs[sub.key]
            self._positions.pop(sub.key, None)
            self._seat_ends.pop(seat_ends_key(sub.key.removeprefix(stream_key(""))), None)

    async def _read(self) -> None:
        while True:
            try:
                await self._read_forever()
            except asyncio.CancelledError:
                raise
            except Exception:
                # Whatever it was (a malformed entry, a bug), the connections must not stall.
                logger.exception("event stream reader failed; restarting it")
                await asyncio.sleep(BACKOFF_MAX)

    async def _read_forever(self) -> None:
        backoff = BACKOFF_FIRST
        while True:
            if not self._subs:
                self._has_keys.clear()
                await self._has_keys.wait()
                continue
            streams: dict[Any, Any] = {key: self._positions[key] for key in self._subs}
            streams.update({ends: position for ends, (_, position) in self._seat_ends.items()})
            streams[self._wake_key] = self._wake_position
            try:
                answer = await self.redis.xread(streams, count=READ_COUNT, block=READ_BLOCK_MS)
            except (RedisError, OSError) as exc:
                logger.warning("event stream reader: Redis unavailable (%s), retrying in %.1fs",
                               type(exc).__name__, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX)
                continue
            backoff = BACKOFF_FIRST
            for raw_key, entries in answer or []:
                key = raw_key.decode()
                if not entries:
                    continue
                last_id = entries[-1][0].decode()
                if key == self._wake_key:
                    self._wake_position = last_id
                    continue
                if key in self._seat_ends:
                    self._end_seats(key, entries)
                    continue
                if key not in self._positions:  # its last connection left during the read
                    continue
                for entry_id, fields in entries:
                    self._positions[key] = entry_id.decode()
                    try:
                        event = parse_entry(entry_id, fields)
                    except (KeyError, ValueError):
                        logger.error("malformed entry %s in %s skipped", entry_id, key)
                        continue
                    for sub in list(self._subs.get(key, ())):
                        sub.offer(event)


    def _end_seats(self, ends: str, entries: list[Any]) -> None:
        workspace_key, _ = self._seat_ends[ends]
        self._seat_ends[ends] = (workspace_key, entries[-1][0].decode())
        # Each member's last entry says why (an entry from before reasons were written: ended).
        ended = {fields.get(b"member", b"").decode(): fields.get(b"reason", SEAT_ENDED.encode()).decode()
                 for _, fields in entries}
        for sub in list(self._subs.get(workspace_key, ())):
            if sub.member_id in ended:
                sub.end_seat(ended[sub.member_id])


_hubs: dict[int, Hub] = {}


def get_hub() -> Hub:
    """The hub of the running event loop (one per ASGI process; tests may run several loops)."""
    loop = asyncio.get_running_loop()
    hub = _hubs.get(id(loop))
    if hub is None:
        hub = _hubs[id(loop)] = Hub()
    return hub

"""GPU calls announce their progress and their end, so that nothing has to poll them.

An announcement is a small JSON object `{"call_id", "outcome", "progress"?, "at"}` where
`outcome` is `succeeded`, `failed` or `progress`. It says only *that* something happened: the
consumer then looks at the call once (`poll`), so the call's result travels the way it always
did and an announcement can be lost, repeated or late without harm.

Backends push announcements onto a Redis list (`RedisAnnouncer`); the one consumer of a
deployment drains it with `EventQueue`. A crash between taking an announcement and handling it
loses nothing: each one is moved atomically (LMOVE) into a processing list and removed from it
only once handled, and a consumer that starts re-handles whatever a dead one left there.

This module never imports Django; the Redis URL reaches it as an argument.
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import redis

Outcome = Literal["succeeded", "failed", "progress"]
OUTCOMES: tuple[str, ...] = ("succeeded", "failed", "progress")
EVENTS_KEY = "auteur:gpu:events"
PROCESSING_KEY = "auteur:gpu:events:processing"
# The longest a consumer blocks waiting for the first announcement of a batch.
BLOCK_SECONDS = 1.0
# An announcement is a few dozen bytes; anything much longer is not one, and is not parsed.
MAX_ANNOUNCEMENT_BYTES = 1024
# A call id as the backends make them (at most 200 characters, gpu_tasks.backends.base):
# printable ASCII without spaces, so it can be looked up, logged and compared safely.
CALL_ID = re.compile(r"^[\x21-\x7e]{1,200}\Z")

logger = logging.getLogger(__name__)


def sane_progress(value: object) -> float | None:
    """A progress figure as reported by a call, or None where it is not one: a finite number
    (not a bool, not a string) in 0-100. NaN, infinities, negatives or 1e999 are no progress."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    progress = float(value)
    return progress if math.isfinite(progress) and 0.0 <= progress <= 100.0 else None


def _no_constant(name: str) -> float:
    raise ValueError(f"{name} is not JSON")


@dataclass(frozen=True)
class Announcement:
    call_id: str
    outcome: Outcome
    progress: float | None = None
    at: float = 0.0

    def dumps(self) -> str:
        body: dict[str, Any] = {"call_id": self.call_id, "outcome": self.outcome, "at": self.at or time.time()}
        if self.progress is not None:
            body["progress"] = self.progress
        return json.dumps(body, separators=(",", ":"))

    @staticmethod
    def loads(raw: str | bytes) -> Announcement | None:
        """None for anything that is not an announcement: one bad entry must not stop the consumer.

        Checked as input (a runner or a container wrote it): at most MAX_ANNOUNCEMENT_BYTES, plain
        JSON (no NaN or Infinity), a call id of the backends' form, a known outcome, a progress
        that `sane_progress` accepts (or none), a finite time."""
        try:
            if not isinstance(raw, str | bytes | bytearray) or len(raw) > MAX_ANNOUNCEMENT_BYTES:
                return None
            body = json.loads(raw, parse_constant=_no_constant)
            if not isinstance(body, dict):
                return None
            call_id, outcome = body.get("call_id"), body.get("outcome")
            if not isinstance(call_id, str) or not CALL_ID.match(call_id) or outcome not in OUTCOMES:
                return None
            progress = body.get("progress")
            if progress is not None:
                progress = sane_progress(progress)
                if progress is None:
                    return None
            at = body.get("at") or 0.0
            if isinstance(at, bool) or not isinstance(at, int | float) or not math.isfinite(at) or at < 0:
                return None
            return Announcement(call_id, outcome, progress, float(at))
        except (ValueError, TypeError, RecursionError):
            return None


def parse_all(raw: Iterable[Any]) -> list[Announcement]:
    """The announcements among `raw`; each entry that is not one is logged (its size, never its
    content) and left out."""
    parsed = []
    for item in raw:
        announcement = Announcement.loads(item)
        if announcement is None:
            size = len(item) if isinstance(item, str | bytes | bytearray) else -1
            logger.warning("gpu announcements: dropped an entry that is not an announcement (%d bytes)", size)
            continue
        parsed.append(announcement)
    return parsed


class Announcer(Protocol):
    def __call__(self, announcement: Announcement) -> None: ...


class RedisAnnouncer:
    """Pushes announcements onto the deployment's Redis list."""

    def __init__(self, url: str, key: str = EVENTS_KEY) -> None:
        self.client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
        self.key = key

    def __call__(self, announcement: Announcement) -> None:
        self.client.rpush(self.key, announcement.dumps())


class EventQueue:
    """The consumer's side of the Redis list: take a batch, handle it, then acknowledge it."""

    def __init__(self, client: redis.Redis, key: str = EVENTS_KEY, processing_key: str = PROCESSING_KEY) -> None:
        self.client = client
        self.key = key
        self.processing_key = processing_key

    def pending(self) -> list[Any]:
        """What a previous consumer took and did not acknowledge (it died): handle it first."""
        return list(self.client.lrange(self.processing_key, 0, -1))

    def take(self, max_items: int, block_seconds: float = BLOCK_SECONDS) -> list[Any]:
        """Up to `max_items`, waiting at most `block_seconds` for the first one."""
        first = self.client.blmove(self.key, self.processing_key, block_seconds, "LEFT", "RIGHT")  # type: ignore[arg-type]
        if first is None:
            return []
        batch = [first]
        if max_items > 1:
            pipe = self.client.pipeline(transaction=False)
            for _ in range(max_items - 1):
                pipe.lmove(self.key, self.processing_key, "LEFT", "RIGHT")
            batch.extend(item for item in pipe.execute() if item is not None)
        return batch

    def ack(self, raw: Iterable[Any]) -> None:
        pipe = self.client.pipeline(transaction=False)
        for item in raw:
            pipe.lrem(self.processing_key, 1, item)
        pipe.execute()


def drain_once(
    queue: EventQueue, handle: Callable[[list[Announcement]], object], *, max_items: int, block_seconds: float
) -> int:
    """Take one batch, hand its well-formed announcements to `handle`, acknowledge it.

    Malformed entries are logged and acknowledged with the rest. If `handle` raises, nothing is
    acknowledged: the batch stays in the processing list and is handled again (handling is
    idempotent), so `handle` must raise only for what passes (a database or Redis away), and
    deal with a bad announcement itself."""
    raw = queue.take(max_items, block_seconds)
    if raw:
        handle(parse_all(raw))
        queue.ack(raw)
    return len(raw)

"""Which queues the live Celery workers consume, as each worker records it in Redis.

The API's readiness reads this rather than a Celery inspect: an inspect is a broadcast on the
workers' control channel, the channel that also carries ``shutdown`` and ``revoke``, and the API's
Redis user may not publish to it (deploy/redis_acl.py). A worker's main process writes its own
field of the hash KEY (its hostname -> the queues it consumes and when) every BEAT_SECONDS, and
deletes it on a warm shutdown. A field older than FRESH_SECONDS is a worker that died or lost
Redis: readers skip it, and writers delete those older than FORGET_AFTER_SECONDS.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Iterable

import redis
from django.conf import settings

from auteur.core.queues import ALL_QUEUES

logger = logging.getLogger(__name__)

KEY = "auteur:workers"
BEAT_SECONDS = 10.0
FRESH_SECONDS = 45.0
FORGET_AFTER_SECONDS = 3600.0


def _client() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2)


def _records(client: redis.Redis) -> dict[str, tuple[float, list[str]]]:
    """{hostname: (when it last wrote, its queues)}; a field that is not a record is skipped."""
    found: dict[str, tuple[float, list[str]]] = {}
    raw: dict[bytes, bytes] = client.hgetall(KEY)  # type: ignore[assignment]
    for name, value in raw.items():
        try:
            record = json.loads(value)
            found[name.decode()] = (float(record["at"]), [str(q) for q in record["queues"]])
        except (ValueError, KeyError, TypeError):
            continue
    return found


def record(client: redis.Redis, hostname: str, queues: Iterable[str], *, now: float | None = None) -> None:
    """Write this worker's field, and delete the fields of workers gone for FORGET_AFTER_SECONDS."""
    now = time.time() if now is None else now
    client.hset(KEY, hostname, json.dumps({"queues": sorted(queues), "at": now}))
    gone = [name for name, (at, _) in _records(client).items() if now - at > FORGET_AFTER_SECONDS]
    if gone:
        client.hdel(KEY, *gone)


def forget(client: redis.Redis, hostname: str) -> None:
    client.hdel(KEY, hostname)


def live_workers(client: redis.Redis | None = None, *, now: float | None = None) -> dict[str, list[str]]:
    """{queue: [hostnames of the workers that consume it and wrote within FRESH_SECONDS]}, every
    queue of ALL_QUEUES listed (with no worker when none does)."""
    now = time.time() if now is None else now
    consumers: dict[str, list[str]] = {queue: [] for queue in ALL_QUEUES}
    for name, (at, queues) in _records(client or _client()).items():
        if now - at <= FRESH_SECONDS:
            for queue in queues:
                consumers.setdefault(queue, []).append(name)
    return {queue: sorted(names) for queue, names in consumers.items()}


class Heartbeat:
    """A daemon thread of a worker's main process that records its queues every BEAT_SECONDS
    until stopped, then deletes its field. A failed write is logged (once until one succeeds) and
    tried again at the next beat: readiness then sees the worker as gone, which it may be."""

    def __init__(self, hostname: str, queues: Iterable[str]) -> None:
        self.hostname, self.queues = hostname, sorted(queues)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="worker-presence", daemon=True)

    def start(self) -> Heartbeat:
        self._thread.start()
        return self

    def _run(self) -> None:
        client, failing = _client(), False
        while True:
            try:
                record(client, self.hostname, self.queues)
                failing = False
            except redis.RedisError as exc:
                if not failing:
                    logger.warning("worker presence not recorded (%s); trying again", type(exc).__name__)
                failing = True
            if self._stop.wait(BEAT_SECONDS):
                break
        # Unreachable Redis: the field goes stale, then another worker forgets it.
        with contextlib.suppress(redis.RedisError):
            forget(client, self.hostname)

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

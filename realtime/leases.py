"""A cap on each user's open event streams (SSE and WebSockets together), across every ASGI process.

Each open connection holds a lease: a member of its user's sorted set in Redis, scored with the
time the lease runs out. The connection renews it while it stays open and removes it when it
closes. A connection whose server died (no close, no renewal) stops counting once its lease runs
out, AUTEUR_STREAM_LEASE_SECONDS at most: the counts heal by themselves, with no clean-up job.

Dropping expired leases, checking the cap and adding the new lease happen in one Lua script, so
any number of processes together admit at most AUTEUR_MAX_STREAMS_PER_USER. The scripts read
Redis's clock, so the servers' own clocks need not agree.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from typing import Any

from django.conf import settings
from redis.exceptions import RedisError

logger = logging.getLogger(__name__)

RELEASE_TIMEOUT_SECONDS = 2.0

_NOW_MS = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""
# KEYS[1] the user's set; ARGV: lease (ms), cap, member. 1: admitted, 0: the cap is reached.
_ACQUIRE = _NOW_MS + """
local key, lease, cap, member = KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
if redis.call('ZCARD', key) >= cap then
  return 0
end
redis.call('ZADD', key, now + lease, member)
redis.call('PEXPIRE', key, lease)
return 1
"""
# The renewed lease is the one that runs out last, so the set lives exactly as long.
_RENEW = _NOW_MS + """
local key, lease, member = KEYS[1], tonumber(ARGV[1]), ARGV[2]
redis.call('ZADD', key, now + lease, member)
redis.call('PEXPIRE', key, lease)
return 1
"""


class TooManyStreams(Exception):
    """The user already has AUTEUR_MAX_STREAMS_PER_USER event streams and WebSockets open."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"at most {limit} open event streams per user")
        self.limit = limit


# The leases' keys: the API's Redis user may write these (deploy/redis_acl.py).
KEY_PREFIX = "auteur:streams:"


def lease_key(user_id: uuid.UUID | str) -> str:
    return f"{KEY_PREFIX}{user_id}"


class StreamLease:
    """One open connection's place under its user's cap."""

    def __init__(self, redis: Any, key: str, member: str, seconds: float) -> None:
        self.redis, self.key, self.member, self.seconds = redis, key, member, seconds
        self._renew_at = time.monotonic() + seconds / 3
        self.released = False

    def seconds_to_renewal(self) -> float:
        return max(0.0, self._renew_at - time.monotonic())

    async def renew_if_due(self) -> None:
        if self.released or self.seconds_to_renewal() > 0:
            return
        self._renew_at = time.monotonic() + self.seconds / 3
        try:
            await self.redis.eval(_RENEW, 1, self.key, int(self.seconds * 1000), self.member)
        except RedisError as exc:
            # The connection stays open; at worst its lease lapses and it stops counting for a while.
            logger.warning("stream lease not renewed (%s)", type(exc).__name__)

    async def release(self) -> None:
        if self.released:
            return
        self.released = True
        # Bounded: a close must not hang on Redis; a lease left behind runs out by itself.
        with contextlib.suppress(RedisError, OSError, asyncio.TimeoutError):
            await asyncio.wait_for(self.redis.zrem(self.key, self.member), RELEASE_TIMEOUT_SECONDS)


async def stream_lease_acquire(redis: Any, user_id: uuid.UUID | str) -> StreamLease:
    """A lease for one more connection of the user. Raises TooManyStreams over the cap, and
    RedisError when Redis cannot be reached (the stream could not be served either)."""
    limit = settings.AUTEUR_MAX_STREAMS_PER_USER
    seconds = settings.AUTEUR_STREAM_LEASE_SECONDS
    key, member = lease_key(user_id), uuid.uuid4().hex
    admitted = await redis.eval(_ACQUIRE, 1, key, int(seconds * 1000), limit, member)
    if not int(admitted):
        raise TooManyStreams(limit)
    return StreamLease(redis, key, member, seconds)

"""A cap on each person's open event streams (SSE and WebSockets together), and on each paying
account's, across every ASGI process.

Each open connection holds a lease: a member of its person's sorted set in Redis (an API key is a
person here) and the same member of its paying account's (auteur/users/payers.py: every key and
member acting in the workspaces one account pays for share it), scored with the time the lease
runs out. The connection renews it while it stays open and removes it when it closes. A connection
whose server died (no close, no renewal) stops counting once its lease runs out,
AUTEUR_STREAM_LEASE_SECONDS at most: the counts heal by themselves, with no clean-up job.

Dropping expired leases, checking both caps and adding the new lease to both sets happen in one
Lua script, so any number of processes together admit at most AUTEUR_MAX_STREAMS_PER_USER per
person and AUTEUR_MAX_STREAMS_PER_ACCOUNT per account. The scripts read Redis's clock, so the
servers' own clocks need not agree.
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
# KEYS: the person's set, the account's set; ARGV: lease (ms), member, then each set's cap.
# {0, i}: the cap of KEYS[i] is reached (nothing added); {1, 0}: admitted into both.
_ACQUIRE = _NOW_MS + """
local lease, member = tonumber(ARGV[1]), ARGV[2]
for i, key in ipairs(KEYS) do
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
  if redis.call('ZCARD', key) >= tonumber(ARGV[2 + i]) then
    return {0, i}
  end
end
for _, key in ipairs(KEYS) do
  redis.call('ZADD', key, now + lease, member)
  redis.call('PEXPIRE', key, lease)
end
return {1, 0}
"""
# The renewed lease is the one that runs out last, so each set lives exactly as long.
_RENEW = _NOW_MS + """
local lease, member = tonumber(ARGV[1]), ARGV[2]
for _, key in ipairs(KEYS) do
  redis.call('ZADD', key, now + lease, member)
  redis.call('PEXPIRE', key, lease)
end
return 1
"""
_RELEASE = """
for _, key in ipairs(KEYS) do
  redis.call('ZREM', key, ARGV[1])
end
return 1
"""


class TooManyStreams(Exception):
    """The person already holds AUTEUR_MAX_STREAMS_PER_USER event streams and WebSockets open
    (`scope` "person"), or the account that pays for the workspace AUTEUR_MAX_STREAMS_PER_ACCOUNT
    (`scope` "account")."""

    def __init__(self, limit: int, scope: str = "person") -> None:
        super().__init__(f"at most {limit} open event streams per {scope}")
        self.limit, self.scope = limit, scope


# The leases' keys: the API's Redis user may write these (deploy/redis_acl.py).
KEY_PREFIX = "auteur:streams:"
ACCOUNT_KEY_PREFIX = f"{KEY_PREFIX}account:"


def lease_key(person_id: uuid.UUID | str) -> str:
    return f"{KEY_PREFIX}{person_id}"


def account_lease_key(account_id: uuid.UUID | str) -> str:
    return f"{ACCOUNT_KEY_PREFIX}{account_id}"


class StreamLease:
    """One open connection's place under its person's cap and its paying account's."""

    def __init__(self, redis: Any, keys: tuple[str, ...], member: str, seconds: float) -> None:
        self.redis, self.keys, self.member, self.seconds = redis, keys, member, seconds
        self._renew_at = time.monotonic() + seconds / 3
        self.released = False

    def seconds_to_renewal(self) -> float:
        return max(0.0, self._renew_at - time.monotonic())

    async def renew_if_due(self) -> None:
        if self.released or self.seconds_to_renewal() > 0:
            return
        self._renew_at = time.monotonic() + self.seconds / 3
        try:
            await self.redis.eval(_RENEW, len(self.keys), *self.keys, int(self.seconds * 1000), self.member)
        except RedisError as exc:
            # The connection stays open; at worst its lease lapses and it stops counting for a while.
            logger.warning("stream lease not renewed (%s)", type(exc).__name__)

    async def release(self) -> None:
        if self.released:
            return
        self.released = True
        # Bounded: a close must not hang on Redis; a lease left behind runs out by itself.
        with contextlib.suppress(RedisError, OSError, asyncio.TimeoutError):
            await asyncio.wait_for(self.redis.eval(_RELEASE, len(self.keys), *self.keys, self.member),
                                   RELEASE_TIMEOUT_SECONDS)


async def stream_lease_acquire(redis: Any, person_id: uuid.UUID | str, *,
                               account_id: uuid.UUID | str) -> StreamLease:
    """A lease for one more connection of the person (a member, or an API key) acting in a
    workspace that `account_id` pays for. Raises TooManyStreams over either cap, and RedisError
    when Redis cannot be reached (the stream could not be served either)."""
    person_cap = settings.AUTEUR_MAX_STREAMS_PER_USER
    # Never below one person's cap: an operator who raises that raises the account's with it.
    account_cap = max(settings.AUTEUR_MAX_STREAMS_PER_ACCOUNT, person_cap)
    seconds = settings.AUTEUR_STREAM_LEASE_SECONDS
    keys, member = (lease_key(person_id), account_lease_key(account_id)), uuid.uuid4().hex
    admitted, full = await redis.eval(_ACQUIRE, len(keys), *keys, int(seconds * 1000), member, person_cap,
                                      account_cap)
    if not int(admitted):
        raise TooManyStreams(person_cap) if int(full) == 1 else TooManyStreams(account_cap, "account")
    return StreamLease(redis, keys, member, seconds)

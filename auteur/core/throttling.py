"""Rate limits shared by every API process: an exact sliding window kept in Redis.

One sorted set per client holds the times of its accepted requests in the last window; a Lua
script trims, counts and adds atomically, so N processes together admit at most `limit`
requests per window. Refused requests are not recorded: a client that keeps hammering is let in
again as soon as its oldest accepted request leaves the window.
"""

from __future__ import annotations

import logging
import time
import uuid
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import redis
from django.conf import settings
from rest_framework.exceptions import Throttled
from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle

from auteur.core import silence
from auteur.users.workspace_context import seat_of

if TYPE_CHECKING:  # rest_framework.views imports this module through its settings
    from rest_framework.views import APIView

logger = logging.getLogger(__name__)

# KEYS[1] the set; ARGV: now (ms), window (ms), limit, member. Returns {allowed, wait_ms}.
_SLIDING_WINDOW = """
local key, now, window, limit = KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
local count = redis.call('ZCARD', key)
if count < limit then
  redis.call('ZADD', key, now, ARGV[4])
  redis.call('PEXPIRE', key, window)
  return {1, 0}
end
local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
return {0, tonumber(oldest[2]) + window - now}
"""


@lru_cache(maxsize=1)
def _client() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL, socket_timeout=1, socket_connect_timeout=1)


@lru_cache(maxsize=1)
def _script() -> redis.commands.core.Script:
    return _client().register_script(_SLIDING_WINDOW)


# Every rate limit's key starts with this: the API's Redis user may write these keys (deploy/redis_acl.py).
KEY_PREFIX = "rl:"


def hit(key: str, *, limit: int, window_seconds: int) -> float:
    """Record one request under `key` (which starts with KEY_PREFIX). Returns 0 when allowed, else
    the seconds to wait."""
    if not key.startswith(KEY_PREFIX):
        raise ValueError(f"a rate limit's key starts with {KEY_PREFIX!r}: {key!r}")
    now_ms = int(time.time() * 1000)
    allowed, wait_ms = _script()(keys=[key], args=[now_ms, window_seconds * 1000, limit, uuid.uuid4().hex])
    return 0.0 if int(allowed) else max(int(wait_ms), 1) / 1000


class SlidingWindowThrottle(BaseThrottle):
    """Per person when authenticated, per client IP otherwise."""

    window_seconds = 60

    def __init__(self) -> None:
        self.wait_seconds: float | None = None

    def allow_request(self, request: Request, view: APIView) -> bool:
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated:
            return self._allow(f"rl:u:{person_of(request)}", limit=person_limit(request))
        return self.allow_client(request)

    def allow_client(self, request: Request, *, scope: str = "ip", limit: int | None = None) -> bool:
        """Count the request against its client IP's limit (never reads `request.user`).

        ``scope`` and ``limit`` give a window of its own (the storage URLs'); by default the
        anonymous API limit.
        """
        if limit is None:
            limit = settings.AUTEUR_RATE_LIMIT_ANON_PER_MINUTE
        return self._allow(f"rl:{scope}:{self.get_ident(request)}", limit=limit)

    def _allow(self, key: str, *, limit: int) -> bool:
        # Fail open: a Redis outage must not lock every user out of reading their data; anything
        # that needs Redis to do its work fails on its own.
        if silence.is_silent(settings.REDIS_URL):
            logger.warning("rate limiter unavailable (no answer lately); request allowed")
            return True
        try:
            wait = hit(key, limit=limit, window_seconds=self.window_seconds)
        except redis.RedisError as exc:
            silence.note_failure(settings.REDIS_URL, exc)
            logger.warning("rate limiter unavailable (%s); request allowed", type(exc).__name__)
            return True
        self.wait_seconds = wait or None
        return not wait

    def wait(self) -> float | None:
        return self.wait_seconds


def person_of(request: Request) -> Any:
    """Whom a signed-in request's limits count: its person, whatever workspace they act in (the
    members of a team workspace, who act as its account, each have their own), or its API key."""
    seat = seat_of(request._request)
    return seat.member_id if seat is not None else request.user.pk


def person_limit(request: Request) -> int:
    """A signed-in request's requests per minute: an API key's own, else a person's."""
    seat = seat_of(request._request)
    return (seat.rate_limit if seat is not None else None) or settings.AUTEUR_RATE_LIMIT_USER_PER_MINUTE


def count_refused(request: Request, person_id: Any) -> None:
    """Count a signed-in request about to be refused before DRF's throttles run (404 for the
    workspace its header names, 403 for the caller's role there) against its person's limit, and
    raise Throttled (429) instead once that is spent: refusals are not free to repeat."""
    throttle = SlidingWindowThrottle()
    if not throttle._allow(f"rl:u:{person_id}", limit=person_limit(request)):
        raise Throttled(wait=throttle.wait())


def count_unauthenticated(request: Request) -> None:
    """Count a request about to be answered 401 (no credentials, or refused ones) against its
    client IP's limit, and raise Throttled (429 with Retry-After) instead once that is spent.

    DRF checks throttles only after authentication and permissions, which such a request never
    passes: without this, token guessing would be unlimited. Never reads `request.user`, so the
    authenticator may call it before it refuses a token.
    """
    throttle = SlidingWindowThrottle()
    if not throttle.allow_client(request):
        raise Throttled(wait=throttle.wait())

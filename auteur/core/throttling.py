"""Rate limits shared by every API process: an exact sliding window kept in Redis.

One sorted set per client holds the times of its accepted requests in the last window; a Lua
script trims, counts and adds atomically, so N processes together admit at most `limit`
requests per window. Refused requests are not recorded: a client that keeps hammering is let in
again as soon as its oldest accepted request leaves the window.

A signed-in request counts against two windows at once, in the same script: its person's (or API
key's) own, and its paying account's (auteur/users/payers.py), which every key and member acting
in the workspaces that account pays for share. Admitted, it is recorded in both; refused by
either, in neither. One round trip either way.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Sequence
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import redis
from django.conf import settings
from rest_framework.exceptions import Throttled
from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle

from auteur.core import silence
from auteur.users.payers import payer_of
from auteur.users.workspace_context import seat_of

if TYPE_CHECKING:  # rest_framework.views imports this module through its settings
    from rest_framework.views import APIView

logger = logging.getLogger(__name__)

# KEYS: the windows' sets; ARGV: now (ms), window (ms), member, then each set's limit. Returns
# {allowed, wait_ms}: admitted into every set or into none; refused, it waits for the full set
# whose oldest request leaves last.
_SLIDING_WINDOW = """
local now, window, member = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local refused, wait = false, 0
for i, key in ipairs(KEYS) do
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
  if redis.call('ZCARD', key) >= tonumber(ARGV[3 + i]) then
    refused = true
    local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
    wait = math.max(wait, oldest[2] and tonumber(oldest[2]) + window - now or window)
  end
end
if refused then
  return {0, wait}
end
for _, key in ipairs(KEYS) do
  redis.call('ZADD', key, now, member)
  redis.call('PEXPIRE', key, window)
end
return {1, 0}
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
    return hit_all(((key, limit),), window_seconds=window_seconds)


def hit_all(windows: Sequence[tuple[str, int]], *, window_seconds: int) -> float:
    """Record one request under each (key, limit) of `windows`, or under none of them if any is
    full. Returns 0 when allowed, else the seconds to wait."""
    for key, _ in windows:
        if not key.startswith(KEY_PREFIX):
            raise ValueError(f"a rate limit's key starts with {KEY_PREFIX!r}: {key!r}")
    now_ms = int(time.time() * 1000)
    allowed, wait_ms = _script()(keys=[key for key, _ in windows],
                                 args=[now_ms, window_seconds * 1000, uuid.uuid4().hex,
                                       *(limit for _, limit in windows)])
    return 0.0 if int(allowed) else max(int(wait_ms), 1) / 1000


class SlidingWindowThrottle(BaseThrottle):
    """Per person when authenticated, per client IP otherwise."""

    window_seconds = 60

    def __init__(self) -> None:
        self.wait_seconds: float | None = None

    def allow_request(self, request: Request, view: APIView) -> bool:
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated:
            limit = person_limit(request)
            return self._allow_all(((f"rl:u:{person_of(request)}", limit),
                                    (f"rl:a:{account_of(request)}", account_limit(limit))))
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
        return self._allow_all(((key, limit),))

    def _allow_all(self, windows: Sequence[tuple[str, int]]) -> bool:
        # Fail open: a Redis outage must not lock every user out of reading their data; anything
        # that needs Redis to do its work fails on its own.
        if silence.is_silent(settings.REDIS_URL):
            logger.warning("rate limiter unavailable (no answer lately); request allowed")
            return True
        try:
            wait = hit_all(windows, window_seconds=self.window_seconds)
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


def account_of(request: Request) -> Any:
    """The account that pays for a signed-in request's workspace, whose window the request also
    counts against: the same for every key and member acting in the workspaces it pays for."""
    seat = seat_of(request._request)
    return payer_of(seat) if seat is not None else request.user.pk


def account_limit(person_limit: int) -> int:
    """A paying account's requests per minute: AUTEUR_RATE_LIMIT_ACCOUNT_PER_MINUTE, or the limit of
    the one person or key acting where that is higher (an operator who raises one raises both)."""
    return max(settings.AUTEUR_RATE_LIMIT_ACCOUNT_PER_MINUTE, person_limit)


def count_refused(request: Request, person_id: Any, *, account_id: Any = None) -> None:
    """Count a signed-in request about to be refused before DRF's throttles run (404 for the
    workspace its header names, 403 for the caller's role there) against its person's limit and
    its paying account's (`account_id`; by default the seat's, else the person's own), and raise
    Throttled (429) instead once either is spent: refusals are not free to repeat, nor to multiply
    with more keys."""
    if account_id is None:
        seat = seat_of(request._request)
        account_id = payer_of(seat) if seat is not None else person_id
    limit = person_limit(request)
    throttle = SlidingWindowThrottle()
    if not throttle._allow_all(((f"rl:u:{person_id}", limit), (f"rl:a:{account_id}", account_limit(limit)))):
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

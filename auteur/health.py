"""Liveness and readiness for load balancers.

/readyz answers 503 only when a dependency every request needs is down (Postgres, Redis,
MongoDB, storage). What only some work needs (a worker on each queue, the GPU backend) makes it
`degraded` with a 200: a load balancer must not drain the API because a worker restarts. Those
checks are slower (a Celery inspect waits for replies), so their result is kept in the cache for
AUTEUR_READYZ_DEGRADED_CACHE_SECONDS and one request at a time refreshes it.

/readyz names the dependencies that failed and nothing more: the exception (hosts, ports, driver
messages) goes to the log, never to an unauthenticated caller. It is rate-limited per client IP,
and its Redis and MongoDB clients are created once per process, so probing it cannot open a
connection storm against the servers it checks.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable
from functools import lru_cache

import pymongo
import redis
from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.utils.module_loading import import_string
from rest_framework.throttling import BaseThrottle

from auteur.core.errors import error_response
from auteur.core.throttling import hit
from auteur.core.worker_presence import live_workers

logger = logging.getLogger(__name__)

CHECK_TIMEOUT_SECONDS = 2
RATE_WINDOW_SECONDS = 60


# Keyed by URL (tests point the settings elsewhere) and by pid: a client is never used across fork.
@lru_cache(maxsize=4)
def _redis_client(url: str, pid: int) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=CHECK_TIMEOUT_SECONDS, socket_connect_timeout=CHECK_TIMEOUT_SECONDS)


@lru_cache(maxsize=4)
def _mongo_client(uri: str, pid: int) -> pymongo.MongoClient[dict[str, object]]:
    return pymongo.MongoClient(
        uri,
        connect=False,
        serverSelectionTimeoutMS=CHECK_TIMEOUT_SECONDS * 1000,
        connectTimeoutMS=CHECK_TIMEOUT_SECONDS * 1000,
        socketTimeoutMS=CHECK_TIMEOUT_SECONDS * 1000,
    )


def check_postgres() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


def check_redis() -> None:
    _redis_client(settings.REDIS_URL, os.getpid()).ping()


def check_mongodb() -> None:
    _mongo_client(settings.MONGODB_URI, os.getpid()).admin.command("ping")


def check_storage() -> None:
    # The storage the requests use, with its own short timeout (a HEAD of the bucket on S3).
    from media.storage import get_storage

    get_storage().check()


CHECKS: dict[str, Callable[[], None]] = {
    "postgres": check_postgres,
    "redis": check_redis,
    "mongodb": check_mongodb,
    "storage": check_storage,
}


class Degraded(Exception):
    """A check's finding that degrades the service without making it unavailable."""

    def __init__(self, message: str, details: dict[str, object] | None = None) -> None:
        super().__init__(message)
        self.details = details or {}


def check_broker() -> None:
    """The Celery broker accepts a connection (checked only when it is not Redis, which the
    `redis` check covers)."""
    from celery import current_app

    with current_app.connection_for_write(connect_timeout=CHECK_TIMEOUT_SECONDS) as conn:
        conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=CHECK_TIMEOUT_SECONDS)


def check_workers() -> None:
    """At least one live worker consumes each queue (as the workers record it: no broadcast to
    them, which the API's Redis user may not send)."""
    idle = [queue for queue, workers in live_workers().items() if not workers]
    if idle:
        raise Degraded("queues without a worker", {"queues_without_workers": idle})


DEGRADED_CACHE_KEY = "readyz:degraded"
DEGRADED_STALE_KEY = "readyz:degraded:last"
DEGRADED_REFRESH_LOCK = "readyz:degraded:refreshing"


def run_degraded_checks() -> dict[str, dict[str, object]]:
    """Every check of AUTEUR_READYZ_DEGRADED_CHECKS, now: {name: {"state": ok|degraded, ...details}}."""
    results: dict[str, dict[str, object]] = {}
    for name, path in settings.AUTEUR_READYZ_DEGRADED_CHECKS.items():
        try:
            import_string(path)()
        except Degraded as exc:
            results[name] = {"state": "degraded", **exc.details}
        except Exception:
            logger.warning("readiness check %s degraded", name, exc_info=True)
            results[name] = {"state": "degraded"}
        else:
            results[name] = {"state": "ok"}
    return results


def degraded_checks() -> dict[str, dict[str, object]]:
    """The checks' last result, refreshed by one request at most every N seconds."""
    try:
        fresh = cache.get(DEGRADED_CACHE_KEY)
        if fresh is not None:
            return fresh
        stale = cache.get(DEGRADED_STALE_KEY)
        if stale is not None and not cache.add(DEGRADED_REFRESH_LOCK, 1, timeout=10):
            return stale  # another request is refreshing it
    except redis.RedisError:  # Redis is down: /readyz says so itself; don't wait on a broker that is gone
        return {name: {"state": "unknown"} for name in settings.AUTEUR_READYZ_DEGRADED_CHECKS}
    results = run_degraded_checks()
    cache.set(DEGRADED_CACHE_KEY, results, settings.AUTEUR_READYZ_DEGRADED_CACHE_SECONDS)
    cache.set(DEGRADED_STALE_KEY, results, None)
    cache.delete(DEGRADED_REFRESH_LOCK)
    return results


def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


def _seconds_to_wait(request: HttpRequest) -> float:
    """Count this probe against its client IP (the API's NUM_PROXIES rule); 0 when allowed."""
    ident = BaseThrottle().get_ident(request)  # type: ignore[arg-type]  # reads META only
    try:
        return hit(f"rl:readyz:{ident}", limit=settings.AUTEUR_READYZ_RATE_LIMIT_PER_MINUTE,
                   window_seconds=RATE_WINDOW_SECONDS)
    except redis.RedisError:
        # Fail open: with Redis down the probe must still answer, and say that Redis is down.
        return 0.0


def readyz(request: HttpRequest) -> JsonResponse:
    wait = _seconds_to_wait(request)
    if wait:
        seconds = math.ceil(wait)
        response = error_response(429, "rate_limited", "Too many readiness probes; retry later.",
                                  {"retry_after_seconds": seconds})
        response["Retry-After"] = str(seconds)
        return response
    failed: list[str] = []
    for name, check in CHECKS.items():
        try:
            check()
        except Exception:  # any failure means "not ready": named in the answer, detailed in the log
            logger.warning("readiness check %s failed", name, exc_info=True)
            failed.append(name)
    checks: dict[str, object] = {name: "failed" if name in failed else "ok" for name in CHECKS}
    degraded: list[str] = []
    if not failed:
        for name, result in degraded_checks().items():
            checks[name] = result["state"]
            if result["state"] != "ok":
                degraded.append(name)
            if result.get("queues_without_workers"):
                checks["queues_without_workers"] = result["queues_without_workers"]
    body = {
        "status": "unavailable" if failed else "degraded" if degraded else "ok",
        "failed": failed,
        "degraded": degraded,
        "checks": checks,
    }
    return JsonResponse(body, status=503 if failed else 200)

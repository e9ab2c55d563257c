"""Liveness and readiness. /readyz names every dependency that failed, for load balancers and people."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse

logger = logging.getLogger(__name__)

CHECK_TIMEOUT_SECONDS = 2


def check_postgres() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


def check_redis() -> None:
    import redis

    client = redis.Redis.from_url(
        settings.REDIS_URL, socket_timeout=CHECK_TIMEOUT_SECONDS, socket_connect_timeout=CHECK_TIMEOUT_SECONDS
    )
    try:
        client.ping()
    finally:
        client.close()


def check_mongodb() -> None:
    import pymongo

    client: pymongo.MongoClient[dict[str, object]] = pymongo.MongoClient(
        settings.MONGODB_URI,
        serverSelectionTimeoutMS=CHECK_TIMEOUT_SECONDS * 1000,
        connectTimeoutMS=CHECK_TIMEOUT_SECONDS * 1000,
    )
    try:
        client.admin.command("ping")
    finally:
        client.close()


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


def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


def readyz(request: HttpRequest) -> JsonResponse:
    results: dict[str, dict[str, object]] = {}
    for name, check in CHECKS.items():
        started = time.monotonic()
        try:
            check()
        except Exception as exc:  # noqa: BLE001 - any failure means "not ready", reported by name
            logger.warning("readiness check %s failed: %s", name, type(exc).__name__)
            results[name] = {"ok": False, "error": f"{type(exc).__name__}: {str(exc)[:200]}"}
        else:
            results[name] = {"ok": True, "ms": round((time.monotonic() - started) * 1000, 1)}
    failed = [name for name, r in results.items() if not r["ok"]]
    body = {"status": "ok" if not failed else "unavailable", "failed": failed, "checks": results}
    return JsonResponse(body, status=503 if failed else 200)

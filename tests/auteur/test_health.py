from __future__ import annotations

import logging
import time

import pymongo
import pytest
import redis
from django.conf import settings as django_settings

from auteur import health
from auteur.core import worker_presence
from devstack.ports import free_port
from tests.media.conftest import use_s3

CHECK_NAMES = {"postgres", "redis", "mongodb", "storage"}


def test_healthz_answers_without_touching_dependencies(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.fixture(autouse=True)
def _no_cached_degraded_checks() -> None:
    from django.core.cache import cache

    cache.delete_many([health.DEGRADED_CACHE_KEY, health.DEGRADED_STALE_KEY, health.DEGRADED_REFRESH_LOCK])
    redis.Redis.from_url(django_settings.REDIS_URL).delete(worker_presence.KEY)  # a stopped test worker's


@pytest.mark.django_db
def test_readyz_counts_the_queues_of_workers_that_recorded_themselves_lately(client):
    from auteur.core.queues import ALL_QUEUES, QUEUE_MEDIA, QUEUE_RENDER

    store = redis.Redis.from_url(django_settings.REDIS_URL)
    now = time.time()
    worker_presence.record(store, "media@host", [QUEUE_MEDIA], now=now)
    # A worker that stopped writing a minute ago (killed, or cut off from Redis) counts for nothing.
    worker_presence.record(store, "render@host", [QUEUE_RENDER], now=now - 60)
    store.hset(worker_presence.KEY, "garbage@host", b"not json")
    response = client.get("/readyz")
    assert response.json()["checks"]["queues_without_workers"] == [q for q in ALL_QUEUES if q != QUEUE_MEDIA]
    # A worker gone for an hour is forgotten by the next one that records itself.
    worker_presence.record(store, "render@host", [QUEUE_RENDER], now=now - 4000)
    worker_presence.record(store, "media@host", [QUEUE_MEDIA], now=now)
    assert set(store.hkeys(worker_presence.KEY)) == {b"media@host", b"garbage@host"}


@pytest.mark.django_db
def test_readyz_reports_every_dependency_ok_and_queues_without_workers_as_degraded(client):
    from auteur.core.queues import ALL_QUEUES

    response = client.get("/readyz")
    # No worker runs in this test: the API stays in service (200), degraded, naming the queues.
    assert response.status_code == 200, response.json()
    assert response.json() == {
        "status": "degraded", "failed": [], "degraded": ["workers"],
        "checks": {**dict.fromkeys(CHECK_NAMES, "ok"), "workers": "degraded", "gpu_backend": "ok",
                   "queues_without_workers": list(ALL_QUEUES)},
    }


CALLS: list[str] = []


def counting_check() -> None:
    CALLS.append("called")


def failing_gpu_check() -> None:
    raise ConnectionError("gpu.internal:443 refused")


@pytest.mark.django_db
def test_degraded_checks_run_at_most_once_per_cache_period_not_per_request(client, settings):
    settings.AUTEUR_READYZ_DEGRADED_CHECKS = {"counting": "tests.auteur.test_health.counting_check"}
    settings.AUTEUR_READYZ_RATE_LIMIT_PER_MINUTE = 100
    CALLS.clear()
    bodies = [client.get("/readyz").json() for _ in range(5)]
    assert CALLS == ["called"]
    assert all(body["status"] == "ok" and body["checks"]["counting"] == "ok" for body in bodies)


@pytest.mark.django_db
def test_a_gpu_backend_that_does_not_answer_degrades_but_never_fails_readiness(client, settings):
    settings.AUTEUR_READYZ_DEGRADED_CHECKS = {"gpu_backend": "tests.auteur.test_health.failing_gpu_check"}
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json()["status"] == "degraded" and response.json()["degraded"] == ["gpu_backend"]
    assert "gpu.internal" not in response.content.decode()


@pytest.mark.django_db
def test_readyz_names_redis_and_tells_nothing_else(client, settings, caplog):
    port = free_port()
    settings.REDIS_URL = f"redis://127.0.0.1:{port}/0"
    with caplog.at_level(logging.WARNING, logger="auteur.health"):
        response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json() == {"status": "unavailable", "failed": ["redis"], "degraded": [],
                               "checks": {**dict.fromkeys(CHECK_NAMES, "ok"), "redis": "failed"}}
    # Neither the address nor the driver's words reach the caller; they are in the log.
    text = response.content.decode()
    assert str(port) not in text and "Error" not in text and "127.0.0.1" not in text
    logged = "\n".join(record.getMessage() + str(record.exc_info) for record in caplog.records)
    assert "readiness check redis failed" in logged and "ConnectionError" in logged


@pytest.mark.django_db
def test_readyz_names_mongodb_when_it_is_unreachable(client, settings):
    settings.MONGODB_URI = f"mongodb://127.0.0.1:{free_port()}/auteur"
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["failed"] == ["mongodb"]
    assert "ServerSelectionTimeout" not in response.content.decode()


@pytest.mark.django_db
def test_readyz_names_storage_when_the_bucket_is_unreachable(client, settings):
    # The storage the requests use (Django builds it again when STORAGES changes).
    use_s3(settings, bucket="nope", endpoint_url=f"http://127.0.0.1:{free_port()}")
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["failed"] == ["storage"]


@pytest.mark.django_db
def test_readyz_is_rate_limited_per_client_ip(client, settings):
    settings.AUTEUR_READYZ_RATE_LIMIT_PER_MINUTE = 3
    assert [client.get("/readyz").status_code for _ in range(3)] == [200] * 3
    refused = client.get("/readyz")
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "rate_limited"
    assert 1 <= int(refused["Retry-After"]) <= 60
    assert refused.json()["error"]["details"]["retry_after_seconds"] == int(refused["Retry-After"])
    # A forged X-Forwarded-For buys nothing (no trusted proxy); another address has its own limit.
    assert client.get("/readyz", HTTP_X_FORWARDED_FOR="203.0.113.7").status_code == 429
    assert client.get("/readyz", REMOTE_ADDR="198.51.100.4").status_code == 200


@pytest.mark.django_db
def test_readyz_reuses_its_redis_and_mongodb_clients(client, settings, monkeypatch):
    """A flood of probes opens no new connection: the checks' clients live as long as the process."""
    settings.AUTEUR_READYZ_RATE_LIMIT_PER_MINUTE = 1000
    mongo_clients: list[object] = []

    class CountingMongoClient(pymongo.MongoClient):
        def __init__(self, *args: object, **kwargs: object) -> None:
            mongo_clients.append(self)
            super().__init__(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(pymongo, "MongoClient", CountingMongoClient)
    health._mongo_client.cache_clear()
    health._redis_client.cache_clear()
    assert client.get("/readyz").status_code == 200  # warms the clients up
    server = redis.Redis.from_url(django_settings.REDIS_URL)
    before = int(server.info("stats")["total_connections_received"])
    for _ in range(20):
        assert client.get("/readyz").status_code == 200
    opened = int(server.info("stats")["total_connections_received"]) - before
    server.close()
    assert opened == 0, f"{opened} new Redis connections for 20 probes"
    assert len(mongo_clients) == 1

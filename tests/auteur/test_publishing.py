"""Publishing through the project's producers: every message reaches the broker, one client a channel."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from django.conf import settings

from auteur.core import publishing
from jobs.life.publish import Step, step_task_name

QUEUE = "gpu_audio"  # where celeryconfig routes jobs.audio.*
TASK = step_task_name("audio", Step.PREPARE)


@pytest.fixture
def fresh_pool() -> Iterator[None]:
    publishing._forget_pool()  # built by this test, with this test's broker
    yield
    publishing._forget_pool()


def queued_args(client: redis.Redis) -> list[Any]:
    """The first argument of every `TASK` message waiting in QUEUE."""
    found = []
    for raw in client.lrange(QUEUE, 0, -1):
        message = json.loads(raw)
        if message["headers"]["task"] == TASK:
            found.append(json.loads(base64.b64decode(message["body"]))[0][0])
    return found


def test_every_message_reaches_the_broker_and_a_channel_builds_one_client(
    fresh_pool: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    built: list[Any] = []
    create = publishing._RedisPublishingChannel._create_client  # type: ignore[attr-defined]

    def counting(self: Any, asynchronous: bool = False) -> Any:
        client = create(self, asynchronous)
        if not asynchronous:  # (the channel's own, for its consumer side and its first ping)
            built.append(client)
        return client

    monkeypatch.setattr(publishing._RedisPublishingChannel, "_create_client", counting)
    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    ids = [str(uuid.uuid4()) for _ in range(5)]
    try:
        for job_id in ids:
            assert publishing.send(TASK, (job_id,), what=f"prepare of job {job_id}") is True
        assert [a for a in queued_args(broker) if a in ids] == list(reversed(ids))  # LPUSH: newest first
        assert len(built) == 1  # kombu's own channel builds one client per message
    finally:
        waiting: list[Any] = broker.lrange(QUEUE, 0, -1)
        for raw in waiting:
            if any(job_id.encode() in base64.b64decode(json.loads(raw)["body"]) for job_id in ids):
                broker.lrem(QUEUE, 1, raw)


def test_a_channel_whose_pool_was_replaced_builds_a_client_of_the_new_pool(fresh_pool: None) -> None:
    with publishing.publisher() as producer:
        channel = producer.channel
        assert isinstance(channel, publishing._RedisPublishingChannel)
        with channel.conn_or_acquire() as first, channel.conn_or_acquire() as again:
            assert first is again and first.connection_pool is channel.pool
        channel._pool = None  # type: ignore[attr-defined]  # what kombu does when it drops a channel's pool
        with channel.conn_or_acquire() as renewed:
            assert renewed is not first and renewed.connection_pool is channel.pool
        given = object()
        with channel.conn_or_acquire(given) as passed:
            assert passed is given


def test_a_broker_that_is_not_plain_redis_keeps_its_own_transport(fresh_pool: None) -> None:
    from celery import current_app

    previous = current_app.conf.get("broker_write_url")
    current_app.conf["broker_write_url"] = "amqp://guest:guest@127.0.0.1:1//"
    try:
        assert publishing._producers().connections.connection.transport_cls == "amqp"
    finally:
        current_app.conf["broker_write_url"] = previous

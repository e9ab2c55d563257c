"""The Celery broker: Redis or RabbitMQ (quorum queues), chosen by CELERY_BROKER_URL.

The configuration tests run everywhere. The tests marked `rabbitmq` need the broker of this run to
be RabbitMQ (`make test-rabbitmq` starts an embedded node) and are skipped otherwise.
"""

from __future__ import annotations

import importlib.util
import re
import time
import types
from typing import Any

import pytest
from celery import Celery
from celery.utils.quorum_queues import detect_quorum_queues
from django.conf import settings as django_settings
from kombu import Connection

from auteur.celery import app
from auteur.core.queues import ALL_QUEUES, queue_depths
from auteur.health import check_broker
from devstack import REPO_ROOT
from devstack.ports import free_port
from tests.jobs.conftest import wait_for

REDIS_ONLY_OPTIONS = {"visibility_timeout", "socket_timeout", "socket_connect_timeout"}
ON_RABBITMQ = django_settings.CELERY_BROKER_URL.startswith("amqp")
rabbitmq = pytest.mark.skipif(not ON_RABBITMQ, reason="the broker of this run is not RabbitMQ (make test-rabbitmq)")


def celeryconfig_for(settings: Any, url: str) -> types.ModuleType:
    """celeryconfig.py as it reads with CELERY_BROKER_URL=url."""
    settings.CELERY_BROKER_URL = url
    spec = importlib.util.spec_from_file_location("celeryconfig_under_test", REPO_ROOT / "celeryconfig.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def app_for(config: types.ModuleType) -> Celery:
    return Celery("config-under-test", config_source=config, set_as_current=False)


def test_an_amqp_broker_gets_quorum_queues_confirms_and_no_redis_only_option(settings):
    config = celeryconfig_for(settings, "amqp://guest:guest@rabbit.internal:5672//")
    assert config.broker_url == "amqp://guest:guest@rabbit.internal:5672//"
    assert config.broker_transport_options == {"confirm_publish": True}
    assert not REDIS_ONLY_OPTIONS & set(config.broker_transport_options)
    celery = app_for(config)
    queues = celery.amqp.queues
    assert set(queues) == set(ALL_QUEUES)
    for name in ALL_QUEUES:
        assert queues[name].queue_arguments == {"x-queue-type": "quorum"}
        # Native delayed delivery forwards due countdown messages through a topic exchange only.
        assert queues[name].exchange.type == "topic" and queues[name].routing_key == name
    assert detect_quorum_queues(celery, "amqp") == (True, "default")
    assert celery.conf.worker_detect_quorum_queues and celery.conf.task_create_missing_queue_type == "quorum"
    assert celery.conf.task_acks_late and celery.conf.task_reject_on_worker_lost


def test_a_redis_broker_keeps_its_visibility_timeout_and_no_quorum_queue(settings):
    config = celeryconfig_for(settings, settings.REDIS_URL)
    options = config.broker_transport_options
    assert set(options) == REDIS_ONLY_OPTIONS and "confirm_publish" not in options
    # Redis redelivers what is not acknowledged in time: never before the longest task and countdown end.
    assert options["visibility_timeout"] > config.LONGEST_TASK_SECONDS + config.LONGEST_COUNTDOWN_SECONDS
    celery = app_for(config)
    assert all(not q.queue_arguments for q in celery.amqp.queues.values())
    assert detect_quorum_queues(celery, "redis") == (False, "")
    assert celery.conf.task_acks_late and celery.conf.task_reject_on_worker_lost


def test_the_broker_defaults_to_redis_and_is_checked_by_readyz_only_when_separate():
    if ON_RABBITMQ:
        assert django_settings.AUTEUR_READYZ_DEGRADED_CHECKS["broker"] == "auteur.health.check_broker"
    else:
        assert django_settings.CELERY_BROKER_URL == django_settings.REDIS_URL
        assert "broker" not in django_settings.AUTEUR_READYZ_DEGRADED_CHECKS


def test_the_queue_wait_event_names_the_queue_of_a_message_that_came_through_delayed_delivery():
    from kombu.transport.native_delayed_delivery import calculate_routing_key

    from auteur.celery import report_queue_wait
    from auteur.core.queues import QUEUE_WAIT_EVENT, SENT_AT_HEADER

    sent: list[tuple[str, dict[str, Any]]] = []

    class Request:
        hostname, is_eager, eta = "worker@host", False, None
        delivery_info = {"routing_key": calculate_routing_key(3, "gpu_audio")}  # "0.0.….1.1.gpu_audio"
        headers = {SENT_AT_HEADER: time.time() - 3}

    class Task:
        request = Request()

        def send_event(self, type_: str, **fields: Any) -> None:
            sent.append((type_, fields))

    report_queue_wait(task=Task())
    [(event, fields)] = sent
    assert event == QUEUE_WAIT_EVENT and fields["queue"] == "gpu_audio" and fields["wait"] >= 3


def test_the_broker_check_fails_when_nothing_answers(monkeypatch):
    monkeypatch.setitem(app.conf, "broker_write_url", f"amqp://guest:guest@127.0.0.1:{free_port()}//")
    with pytest.raises(Exception):  # noqa: B017 - kombu's OperationalError, whatever the transport
        check_broker()


# ----------------------------------------------------------------------------- on a real RabbitMQ


@rabbitmq
@pytest.mark.django_db
def test_the_broker_check_passes_and_readyz_names_the_broker(client):
    from django.core.cache import cache

    from auteur import health

    check_broker()
    cache.delete_many([health.DEGRADED_CACHE_KEY, health.DEGRADED_STALE_KEY, health.DEGRADED_REFRESH_LOCK])
    response = client.get("/readyz")
    assert response.json()["checks"]["broker"] == "ok"


@rabbitmq
def test_the_task_queues_on_the_broker_are_quorum_queues(start_worker):
    start_worker(consumer=False)  # declares every queue it consumes
    with Connection(django_settings.CELERY_BROKER_URL) as connection:
        for name in ALL_QUEUES:
            # Declaring it as a classic queue is refused (406) only if the broker holds it as another type.
            channel: Any = connection.channel()
            with pytest.raises(Exception, match="x-queue-type"):  # py-amqp's PreconditionFailed
                channel.queue_declare(queue=name, durable=True, auto_delete=False,
                                      arguments={"x-queue-type": "classic"})


@rabbitmq
def test_queue_depths_count_every_queue_after_one_is_missing(start_worker):
    start_worker(consumer=False).stop()  # the queues exist, and nobody consumes them now
    with Connection(django_settings.CELERY_BROKER_URL) as connection:
        channel: Any = connection.channel()
        channel.queue_delete(ALL_QUEUES[0])  # RabbitMQ answers 404 for it, and closes that channel
        channel.queue_purge(ALL_QUEUES[-1])
        with connection.Producer() as producer:
            producer.publish({"probe": 1}, exchange="", routing_key=ALL_QUEUES[-1])
    try:
        depths = queue_depths()
        assert depths[ALL_QUEUES[0]] == 0
        assert depths[ALL_QUEUES[-1]] == 1
    finally:
        with Connection(django_settings.CELERY_BROKER_URL) as connection:
            connection.channel().queue_purge(ALL_QUEUES[-1])  # type: ignore[attr-defined]


@rabbitmq
def test_a_countdown_waits_in_the_broker_and_a_sub_second_one_is_delivered(start_worker):
    worker = start_worker(consumer=False)
    # A countdown far out: the message waits in the broker's delay queues, not in the worker.
    # (A built-in task that does nothing: whichever worker runs it later changes nothing.)
    app.send_task("celery.accumulate", (1,), countdown=120)
    scheduled = app.control.inspect(destination=[worker.name], timeout=2).scheduled()
    assert scheduled == {worker.name: []}
    # A sub-second one (a job's first poll waits 0.2 s) is published, delivered and run.
    result = app.send_task("celery.accumulate", (1,), countdown=0.2)
    wait_for(lambda: any(re.search(rf"Task celery.accumulate\[{result.id}\] succeeded", line)
                         for line in worker.lines), timeout=60)

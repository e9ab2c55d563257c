"""The Celery app. Its settings live in celeryconfig.py at the repository root."""

from __future__ import annotations

import contextlib
import logging
import math
import os
import time
from datetime import datetime
from functools import cached_property
from typing import Any

from celery import Celery
from celery.signals import (
    before_task_publish,
    task_postrun,
    task_prerun,
    worker_init,
    worker_process_init,
    worker_process_shutdown,
    worker_ready,
    worker_shutdown,
)
from celery.utils.quorum_queues import detect_quorum_queues

from auteur.core.queues import QUEUE_WAIT_EVENT, SENT_AT_HEADER

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "auteur.settings")

class AuteurCelery(Celery):
    """Celery, with countdowns that RabbitMQ's native delayed delivery can carry."""

    # Celery's own parameters after `eta` pass through untouched in `options`.
    def send_task(  # type: ignore[override]
        self, name: str, args: Any = None, kwargs: Any = None, countdown: float | None = None, eta: Any = None,
        **options: Any,
    ) -> Any:
        # Native delayed delivery (quorum queues) counts whole seconds and refuses a countdown
        # that truncates to 0 (the first polls wait 0.2 s): round up, never sooner than asked.
        if countdown and countdown > 0 and self.native_delayed_delivery:
            countdown = math.ceil(countdown)
        return super().send_task(name, args, kwargs, countdown, eta, **options)

    @cached_property
    def native_delayed_delivery(self) -> bool:
        with self.connection_for_write() as connection:  # connects nothing
            return detect_quorum_queues(self, connection.transport.driver_type)[0]


app = AuteurCelery("auteur")
# Celery's Django task class keeps `delay_on_commit`; the base classes of the apps subclass it.
app.config_from_object("celeryconfig")
app.autodiscover_tasks()

# Celery's Django fix-up closes the database connection before and after every task unless
# CELERY_DB_REUSE_MAX is set: a new Postgres connection (a backend forked, authenticated, its
# caches warmed) per task cost more CPU than the task's own queries (bench/pipeline_throughput.py).
# Workers reuse connections as web requests do instead: at each task's boundaries Django's
# close_old_connections() drops one that broke (a Postgres restart) or outlived CONN_MAX_AGE, and
# CONN_HEALTH_CHECKS tests a reused one before its first query.
app.conf["CELERY_DB_REUSE_MAX"] = 2**31


@task_prerun.connect
@task_postrun.connect
def close_old_connections(task: Any = None, **kwargs: Any) -> None:
    if task is not None and getattr(task.request, "is_eager", False):
        return  # run inline by a caller (tests): its connection and transaction are the caller's
    from django.db import close_old_connections as close_old

    close_old()



_presence: Any = None


@worker_ready.connect
def announce_presence(sender: Any = None, **kwargs: Any) -> None:
    """Record, from the worker's main process, which queues it consumes (auteur/core/worker_presence.py:
    what the API's readiness reads)."""
    global _presence
    from auteur.core.worker_presence import Heartbeat

    if sender is None or _presence is not None:
        return
    _presence = Heartbeat(sender.hostname, sender.app.amqp.queues.consume_from).start()


@worker_shutdown.connect
def withdraw_presence(**kwargs: Any) -> None:
    global _presence
    if _presence is not None:
        _presence.stop()
        _presence = None


@before_task_publish.connect
def stamp_sent_at(headers: dict[str, Any] | None = None, **kwargs: Any) -> None:
    """The publish time travels in the message, so the worker can tell how long it waited."""
    if headers is not None:
        headers.setdefault(SENT_AT_HEADER, time.time())


@task_prerun.connect
def report_queue_wait(task: Any = None, **kwargs: Any) -> None:
    """One event per task run: the seconds since it became runnable (its publish, or its ETA for a
    countdown), for the metrics exporter. Sent by the worker, so a submission pays nothing for it
    (a "task-sent" event would cost every publish a Redis round trip)."""
    request = getattr(task, "request", None)
    if request is None or getattr(request, "is_eager", False) or not getattr(request, "hostname", None):
        return
    sent = getattr(request, SENT_AT_HEADER, None) or (getattr(request, "headers", None) or {}).get(SENT_AT_HEADER)
    if not isinstance(sent, (int, float)):
        return
    runnable = float(sent)
    if request.eta:
        with contextlib.suppress(TypeError, ValueError):
            runnable = max(runnable, datetime.fromisoformat(str(request.eta)).timestamp())
    # RabbitMQ's delayed delivery prefixes the routing key with the delay's bits ("0.1.….media"):
    # the queue is its last word (no queue name holds a dot).
    queue = ((request.delivery_info or {}).get("routing_key") or "").rsplit(".", 1)[-1]
    with contextlib.suppress(Exception):  # a lost measurement never fails the task
        task.send_event(QUEUE_WAIT_EVENT, retry=False, wait=max(0.0, time.time() - runnable), queue=queue)


def warm_up_publisher() -> None:
    """Do once, before serving, what a process's first publish would: ~70 ms of imports and set-up.

    Imports the apps' tasks, finalizes the app (its task registry), loads the result backend (an entry-point scan) and
    imports the broker's transport (kombu's redis transport and redis-py, or py-amqp). Opens no connection, so
    it is safe before a fork (gunicorn's preloaded master, auteur/wsgi.py).
    """
    app.loader.import_default_modules()  # the apps' tasks modules (autodiscovery)
    app.finalize(auto=True)
    app.backend  # noqa: B018
    app.amqp.router  # noqa: B018
    with app.connection_for_write() as connection:
        connection.transport  # noqa: B018  (the transport class; connects nothing)


# A cold pool process paid ~100 ms on its first job for each of these (the p99 of
# bench/pipeline_overhead.py's one-at-a-time jobs was that first job): warm them at start.
@worker_init.connect
def import_what_every_job_uses(**kwargs: Any) -> None:
    """In the worker's main process, before the pool forks: its children share the pages."""
    import av  # noqa: F401  (PyAV probes every stored output; no models, ~20 MB)


@worker_init.connect
def keep_the_workers_secrets(**kwargs: Any) -> None:
    """The worker holds every secret in its environment and memory, and starts parsers of
    untrusted media (the probe's children, the local engines) that may share its uid where no
    uid sandbox is possible: non-dumpable, its /proc environ, memory and descriptors are closed
    to other processes of its uid. Its pool processes inherit it, and set it again at their
    start (an exec or a uid change would reset it). Says once which sandbox the parsers get."""
    from django.conf import settings

    from gpu_tasks.sandbox import detect, log_once, make_non_dumpable

    make_non_dumpable()
    log_once(detect(settings.AUTEUR_SANDBOX, settings.AUTEUR_SANDBOX_UID_BASE, settings.AUTEUR_SANDBOX_UID_COUNT),
             logging.getLogger("auteur.sandbox"))


@worker_process_init.connect
def non_dumpable_pool_process(**kwargs: Any) -> None:
    from gpu_tasks.sandbox import make_non_dumpable

    make_non_dumpable()


@worker_process_init.connect
def freeze_startup_objects(**kwargs: Any) -> None:
    """The loaded application's objects are out of the collector's passes (auteur/core/collector.py)."""
    from auteur.core.collector import startup_objects_frozen

    startup_objects_frozen()


@worker_process_init.connect
def connect_to_the_database(**kwargs: Any) -> None:
    """In each pool process after the fork: its first job finds the connection open."""
    from django.db import DatabaseError, connection

    # Down at start: the first task connects (and retries) as it would anyway.
    with contextlib.suppress(DatabaseError):
        connection.ensure_connection()


@worker_process_shutdown.connect
@worker_shutdown.connect
def export_the_last_spans(**kwargs: Any) -> None:
    """A pool process leaves by os._exit (a recycled child, a warm shutdown): atexit never runs in
    it, so the spans its batch processor still holds are sent here."""
    from auteur.core import tracing

    tracing.flush()

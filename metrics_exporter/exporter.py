"""The exporter process: one registry, served by prometheus-client's HTTP server, fed by the
Celery event stream (a thread) and by a poll of the broker, the workers and the database."""

from __future__ import annotations

import logging
import threading
import time

from django.db import close_old_connections
from prometheus_client import CollectorRegistry, Gauge, start_http_server

from auteur.core.queues import ALL_QUEUES, queue_depths, queue_workers
from metrics_exporter.business import BusinessMetrics
from metrics_exporter.celery_events import TaskMetrics, consume_events

logger = logging.getLogger(__name__)


class Exporter:
    def __init__(self, *, backfill_seconds: float) -> None:
        self.registry = r = CollectorRegistry()
        self.tasks = TaskMetrics(r)
        self.business = BusinessMetrics(r, backfill_seconds=backfill_seconds)
        self.queue_length = Gauge("auteur_celery_queue_length", "Messages waiting in each queue (broker)",
                                  ["queue"], registry=r)
        self.queue_workers = Gauge("auteur_celery_queue_workers", "Workers consuming each queue (inspect)",
                                   ["queue"], registry=r)
        self.workers_online = Gauge("auteur_celery_workers_online", "Workers that answered the last inspect",
                                    registry=r)
        self.up = Gauge("auteur_exporter_source_up", "Whether the exporter's last poll of a source worked",
                        ["source"], registry=r)
        self.last_poll = Gauge("auteur_exporter_last_poll_timestamp_seconds", "When the exporter last polled",
                               registry=r)

    def poll(self) -> None:
        self._source("broker", self._broker)
        self._source("workers", self._workers)
        self._source("database", self._database)
        self.last_poll.set(time.time())

    def _source(self, name: str, poll: object) -> None:
        try:
            poll()  # type: ignore[operator]
        except Exception:
            logger.warning("metrics source %s failed", name, exc_info=True)
            self.up.labels(name).set(0)
        else:
            self.up.labels(name).set(1)

    def _broker(self) -> None:
        for queue, depth in queue_depths().items():
            self.queue_length.labels(queue).set(depth)

    def _workers(self) -> None:
        consumers = queue_workers()
        for queue in ALL_QUEUES:
            self.queue_workers.labels(queue).set(len(consumers[queue]))
        self.workers_online.set(len({w for workers in consumers.values() for w in workers}))

    def _database(self) -> None:
        close_old_connections()  # a connection broken by a Postgres restart is replaced
        self.business.poll()

    def serve(self, *, address: str, port: int, interval: float) -> None:
        threading.Thread(target=consume_events, args=(self.tasks,), name="celery-events", daemon=True).start()
        self.poll()
        start_http_server(port, addr=address, registry=self.registry)
        logger.info("metrics exporter on http://%s:%s/metrics", address, port)
        while True:
            time.sleep(interval)
            self.poll()

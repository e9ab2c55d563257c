"""Task metrics from the workers' events (`worker_send_task_events`, celeryconfig.py).

A task-succeeded or task-failed event carries only the task's id: its name comes from the
task-received event before it. Only that name is kept, from the task's receipt to its end, so the
memory held follows the tasks in flight, not the tasks seen (celery's event State keeps whole
task records up to a count, which grew this process by tens of MiB over an hour's steady load)."""

from __future__ import annotations

import ast
import logging
import time
from collections import OrderedDict
from typing import Any

from celery import current_app
from prometheus_client import CollectorRegistry, Counter, Histogram

from auteur.core.queues import QUEUE_WAIT_EVENT
from jobs import task_names

logger = logging.getLogger(__name__)

REAPER_TASK = task_names.REAP
MAX_NAMES_IN_FLIGHT = 50_000  # far above the tasks a deployment runs or holds at once
SECONDS_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)


class TaskMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.tasks = Counter("auteur_celery_tasks", "Celery task events by task and event "
                             "(received, succeeded, failed, retried)", ["task", "event"], registry=registry)
        self.runtime = Histogram("auteur_celery_task_runtime_seconds", "Run time of succeeded tasks",
                                 ["task"], buckets=SECONDS_BUCKETS, registry=registry)
        self.queue_wait = Histogram("auteur_celery_task_queue_wait_seconds",
                                    "From publish (or ETA) to the start of a run", ["queue", "task"],
                                    buckets=SECONDS_BUCKETS, registry=registry)
        self.reaper = Counter("auteur_reaper_jobs", "Jobs the reaper acted on, by action "
                              "(republished, started, timed_out, repolled)", ["action"], registry=registry)
        # Task id -> name, from task-received to its end; the oldest go first past the bound (a
        # task whose end event was lost).
        self.names: OrderedDict[str, str] = OrderedDict()

    def _name(self, event: dict[str, Any]) -> str:
        return self.names.get(event.get("uuid", "")) or event.get("name") or "unknown"

    def handle(self, event: dict[str, Any]) -> None:
        kind, task_id = event.get("type", ""), event.get("uuid", "")
        if kind == "task-received" and task_id:
            self.names[task_id] = event.get("name") or "unknown"
            self.names.move_to_end(task_id)
            if len(self.names) > MAX_NAMES_IN_FLIGHT:
                self.names.popitem(last=False)
        if kind == QUEUE_WAIT_EVENT:
            self.queue_wait.labels(event.get("queue") or "unknown", self._name(event)).observe(float(event["wait"]))
            return
        if kind not in ("task-received", "task-succeeded", "task-failed", "task-retried"):
            return
        name = self._name(event)
        if kind in ("task-succeeded", "task-failed"):
            self.names.pop(task_id, None)
        self.tasks.labels(name, kind.removeprefix("task-")).inc()
        if kind == "task-succeeded":
            if event.get("runtime") is not None:
                self.runtime.labels(name).observe(float(event["runtime"]))
            if name == REAPER_TASK:
                self._count_reaped(event.get("result"))

    def _count_reaped(self, result: object) -> None:
        try:
            counts = ast.literal_eval(result) if isinstance(result, str) else result
        except (ValueError, SyntaxError):
            return
        if isinstance(counts, dict):
            for action, count in counts.items():
                self.reaper.labels(str(action)).inc(int(count))


def consume_events(metrics: TaskMetrics) -> None:
    """Feed `metrics` from the broker's event exchange for ever (run it in a daemon thread),
    reconnecting after errors."""
    app = current_app
    while True:
        try:
            with app.connection_for_read() as connection:
                receiver = app.events.Receiver(connection, handlers={"*": metrics.handle})
                receiver.capture(limit=None, timeout=None, wakeup=True)
        except Exception:
            logger.warning("celery event stream lost; reconnecting", exc_info=True)
            time.sleep(2.0)

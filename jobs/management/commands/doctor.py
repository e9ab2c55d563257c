from __future__ import annotations

import platform
import time
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import connection
from django.utils import timezone

from auteur.core.queues import ALL_QUEUES, queue_depths, queue_workers
from auteur.health import CHECKS, run_degraded_checks
from credits.services.ledger_audit import ledger_audit_last
from jobs import gpu_client
from jobs.models import Job, JobStatus
from jobs.specs import JOB_SPECS

PACKAGES = ("Django", "celery", "kombu", "redis", "amqp", "psycopg", "pymongo", "celery-redbeat", "prometheus-client",
            "django-prometheus", "modal")


def _package(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def _unavailable_types() -> list[str]:
    lines = []
    for spec in JOB_SPECS.values():
        reason = gpu_client.unavailable_reason(spec.type)
        if reason is not None:
            lines.append(f"{spec.type.value:<20} {reason}")
    return lines or ["none"]


def _age(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds:.0f} s"


class Command(BaseCommand):
    help = ("Print every component's state, the versions in use, each queue's depth and workers, the oldest "
            "job in each state and the last ledger check: the first thing to run when something is wrong.")

    def handle(self, *args: Any, **options: Any) -> None:
        out = self.stdout.write
        out("== components")
        for name, check in CHECKS.items():
            out(f"{name:<14} {self._run(check)}")
        for name, result in run_degraded_checks().items():
            extra = {k: v for k, v in result.items() if k != "state"}
            out(f"{name:<14} {result['state']}" + (f" {extra}" if extra else ""))
        out(f"{'gpu backend':<14} {settings.AUTEUR_GPU_BACKEND}")

        # Clients are told only that a type is not available here; the backend's reason is for you.
        out("== job types this server cannot run")
        unavailable = self._safely(_unavailable_types)
        for line in unavailable if isinstance(unavailable, list) else [unavailable]:
            out(line)

        out("== versions")
        out(f"{'python':<18} {platform.python_version()}")
        for package in PACKAGES:
            out(f"{package:<18} {_package(package)}")
        out(f"{'postgres server':<18} {self._safely(self._postgres_version)}")
        out(f"{'redis server':<18} {self._safely(self._redis_version)}")
        out(f"{'mongodb server':<18} {self._safely(self._mongo_version)}")
        out(f"{'celery broker':<18} {self._safely(self._broker)}")

        out("== queues (waiting messages, workers)")
        depths = self._safely(queue_depths)
        workers = self._safely(queue_workers)
        for queue in ALL_QUEUES:
            depth = depths.get(queue, "?") if isinstance(depths, dict) else "?"
            consumers = workers.get(queue, []) if isinstance(workers, dict) else []
            out(f"{queue:<16} {depth!s:>6}  {', '.join(consumers) or 'NO WORKER'}")

        out("== oldest job per state (by last change)")
        now = timezone.now()
        for state in JobStatus:
            job = Job.objects.filter(status=state).order_by("updated_at").only(
                "id", "type", "created_at", "updated_at").first()
            if job is None:
                out(f"{state.value:<11} none")
            else:
                out(f"{state.value:<11} {job.id} {job.type} created {_age((now - job.created_at).total_seconds())} "
                    f"ago, last change {_age((now - job.updated_at).total_seconds())} ago")

        out("== ledger check")
        audit = ledger_audit_last()
        if audit is None:
            out("never run (beat runs it nightly; `manage.py ledger_check` runs it now)")
        else:
            ago = _age(time.time() - audit.finished_at)
            out(f"{audit.problems} problem(s) in {audit.accounts} account(s), {ago} ago")

    def _run(self, check: Any) -> str:
        try:
            check()
        except Exception as exc:  # noqa: BLE001 - a diagnosis reports every failure, whatever it is
            return f"FAILED ({type(exc).__name__}: {exc})"
        return "ok"

    def _safely(self, fn: Any) -> Any:
        try:
            return fn()
        except Exception as exc:  # noqa: BLE001 - a diagnosis reports every failure, whatever it is
            return f"unavailable ({type(exc).__name__})"

    def _postgres_version(self) -> str:
        with connection.cursor() as cursor:
            cursor.execute("SHOW server_version")
            return str(cursor.fetchone()[0])

    def _redis_version(self) -> str:
        import redis

        return str(redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2).info("server")["redis_version"])

    def _broker(self) -> str:
        """What the Celery broker is and says it runs: Redis (the server above), or RabbitMQ's version."""
        from celery import current_app

        with current_app.connection_for_write(connect_timeout=2) as connection:
            connection.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=2)
            properties = getattr(connection.connection, "server_properties", None) or {}  # AMQP's handshake
            server = f"{properties.get('product', '')} {properties.get('version', '')}".strip()
            return f"{server or connection.transport.driver_type} at {connection.as_uri()}"  # password masked

    def _mongo_version(self) -> str:
        import pymongo

        client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(settings.MONGODB_URI,
                                                                          serverSelectionTimeoutMS=2000)
        try:
            version = client.server_info().get("version")
            if version:
                return str(version)
            # A MongoDB-protocol server that names no version still says which wire protocol it speaks.
            return f"unnamed (wire version {client.admin.command('hello').get('maxWireVersion')})"
        finally:
            client.close()

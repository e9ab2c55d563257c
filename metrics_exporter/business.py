"""Business metrics from the database.

Counters and histograms are fed by tailing rows that appeared since the last poll (jobs by the
time they ended, ledger entries by their time, delivery attempts by id): each row is counted
once per exporter process, and a restart starts from the last AUTEUR_METRICS_BACKFILL_SECONDS, as
Prometheus expects of a counter reset. Only the non-terminal jobs are counted whole (few rows).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

from django.db.models import Count, QuerySet
from django.utils import timezone
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from auteur.core.tracing import trace_id_of
from credits.models import CreditTransaction, TransactionType
from credits.services.ledger_audit import ledger_audit_last
from jobs.models import TERMINAL_STATUSES, Job, JobStatus
from jobs.specs import JOB_SPECS, job_spec
from metrics_exporter.celery_events import SECONDS_BUCKETS
from webhooks.models import DeliveryAttempt

# Rows commit a little after the time they carry: each poll looks back this far again and skips
# the rows it has counted already.
OVERLAP = dt.timedelta(seconds=60)
BATCH = 5000
ACTIVE_STATUSES = [s.value for s in JobStatus if s not in TERMINAL_STATUSES]


class _Tail:
    """Rows of a queryset newer than the last poll, by a timestamp field, each returned once."""

    def __init__(self, field: str, since: dt.datetime) -> None:
        self.field, self.since = field, since
        self.seen: dict[Any, dt.datetime] = {}

    def query(self, queryset: QuerySet[Any]) -> QuerySet[Any]:
        """What a poll reads: the rows after the last poll (less the overlap), oldest first, at most
        BATCH. It must be served by an index on the field, or each poll reads the whole table."""
        return queryset.filter(**{f"{self.field}__gt": self.since - OVERLAP}).order_by(self.field)[:BATCH]

    def new(self, queryset: QuerySet[Any]) -> list[Any]:
        rows = list(self.query(queryset))
        fresh = [row for row in rows if row.pk not in self.seen]
        for row in fresh:
            self.seen[row.pk] = getattr(row, self.field)
        if rows:
            self.since = max(self.since, getattr(rows[-1], self.field))
        horizon = self.since - OVERLAP
        self.seen = {pk: at for pk, at in self.seen.items() if at > horizon}
        return fresh


def ended_jobs() -> QuerySet[Job]:
    return Job.objects.filter(status__in=TERMINAL_STATUSES).only(
        "id", "type", "status", "created_at", "started_at", "completed_at", "error_code", "credits_refunded",
        "gpu_seconds", "traceparent")


def job_ledger_entries() -> QuerySet[CreditTransaction]:
    return CreditTransaction.objects.filter(type__in=[TransactionType.USAGE, TransactionType.REFUND]).only(
        "id", "type", "amount", "created_at")


def active_job_counts() -> QuerySet[Job, dict[str, Any]]:
    return Job.objects.filter(status__in=ACTIVE_STATUSES).values("type", "status").annotate(n=Count("id"))


def attempts_after(attempt_id: int) -> QuerySet[DeliveryAttempt]:
    return DeliveryAttempt.objects.filter(id__gt=attempt_id).order_by("id")


class BusinessMetrics:
    def __init__(self, registry: CollectorRegistry, *, backfill_seconds: float) -> None:
        since = timezone.now() - dt.timedelta(seconds=backfill_seconds)
        self._jobs_tail = _Tail("completed_at", since)
        self._ledger_tail = _Tail("created_at", since)
        self._last_attempt_id = DeliveryAttempt.objects.filter(created_at__lte=since).order_by("-id").values_list(
            "id", flat=True).first() or 0
        r = registry
        self.jobs = Gauge("auteur_jobs", "Jobs not yet ended, by type and state", ["type", "state"], registry=r)
        self.jobs_ended = Counter("auteur_jobs_ended", "Jobs that reached a terminal state, by type and state",
                                  ["type", "state"], registry=r)
        self.submit_to_start = Histogram("auteur_job_submit_to_start_seconds", "From submission to the start "
                                         "of processing, of ended jobs", ["type"], buckets=SECONDS_BUCKETS, registry=r)
        self.start_to_end = Histogram("auteur_job_start_to_end_seconds", "From the start of processing to the end, "
                                      "of ended jobs", ["type"], buckets=SECONDS_BUCKETS, registry=r)
        self.refunds = Counter("auteur_job_refunds", "Refunded jobs by error code (canceled: a cancel)",
                               ["error_code"], registry=r)
        self.gpu_seconds = Counter("auteur_gpu_seconds", "GPU (or local engine) seconds of ended jobs",
                                   ["type", "gpu_class"], registry=r)
        self.credits_charged = Counter("auteur_credits_charged", "Credits charged for jobs", registry=r)
        self.credits_refunded = Counter("auteur_credits_refunded", "Credits refunded for jobs", registry=r)
        self.webhook_deliveries = Counter("auteur_webhook_delivery_attempts", "Webhook delivery attempts by "
                                          "result (succeeded: a 2xx answer)", ["result"], registry=r)
        self.ledger_problems = Gauge("auteur_ledger_check_problems", "Problems the last ledger_check found "
                                     "(-1: it has not run)", registry=r)
        self.ledger_last_run = Gauge("auteur_ledger_check_last_run_timestamp_seconds",
                                     "When ledger_check last finished (0: never)", registry=r)
        for job_type in JOB_SPECS:  # every series exists from the start, so rates and alerts see zeros
            for state in ACTIVE_STATUSES:
                self.jobs.labels(str(job_type), state)
        self.credits_charged.inc(0)
        self.credits_refunded.inc(0)
        for result in ("succeeded", "failed"):
            self.webhook_deliveries.labels(result)

    def poll(self) -> None:
        self._active_jobs()
        self._ended_jobs(self._jobs_tail.new(ended_jobs()))
        self._ledger(self._ledger_tail.new(job_ledger_entries()))
        self._attempts()
        audit = ledger_audit_last()
        self.ledger_problems.set(audit.problems if audit else -1)
        self.ledger_last_run.set(audit.finished_at if audit else 0)

    def _active_jobs(self) -> None:
        counts = {(row["type"], row["status"]): row["n"] for row in active_job_counts()}
        for job_type in JOB_SPECS:
            for state in ACTIVE_STATUSES:
                self.jobs.labels(str(job_type), state).set(counts.get((str(job_type), state), 0))

    def _ended_jobs(self, jobs: Iterable[Job]) -> None:
        for job in jobs:
            self.jobs_ended.labels(job.type, job.status).inc()
            # The job's trace as the exemplar of its bucket: a panel's point leads to one job's trace.
            trace_id = trace_id_of(job.traceparent)
            exemplar = {"trace_id": trace_id} if trace_id else None
            if job.started_at:
                self.submit_to_start.labels(job.type).observe((job.started_at - job.created_at).total_seconds(),
                                                              exemplar=exemplar)
                if job.completed_at:
                    self.start_to_end.labels(job.type).observe((job.completed_at - job.started_at).total_seconds(),
                                                               exemplar=exemplar)
            if job.credits_refunded:
                self.refunds.labels(job.error_code or str(job.status)).inc()
            if job.gpu_seconds:
                self.gpu_seconds.labels(job.type, str(job_spec(job.type).engine.gpu)).inc(job.gpu_seconds)

    def _ledger(self, entries: Iterable[CreditTransaction]) -> None:
        for entry in entries:
            counter = self.credits_charged if entry.type == TransactionType.USAGE else self.credits_refunded
            counter.inc(abs(entry.amount))

    def _attempts(self) -> None:
        attempts = list(attempts_after(self._last_attempt_id).values_list("id", "status_code")[:BATCH])
        for attempt_id, status_code in attempts:
            ok = status_code is not None and 200 <= status_code < 300
            self.webhook_deliveries.labels("succeeded" if ok else "failed").inc()
            self._last_attempt_id = attempt_id

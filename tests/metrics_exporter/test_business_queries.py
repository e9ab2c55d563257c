"""Each poll of the exporter's business metrics reads by index: its cost follows the rows that
appeared since the last poll, never the size of the jobs, ledger or delivery tables."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.db.models import QuerySet
from django.utils import timezone

from jobs.models import Job, JobStatus
from metrics_exporter.business import BATCH, _Tail, active_job_counts, attempts_after, ended_jobs, job_ledger_entries

pytestmark = pytest.mark.django_db


def plan(queryset: QuerySet[Any]) -> str:
    """The plan PostgreSQL makes with sequential scans priced out: a table still read whole has
    no index the query can use."""
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
    return queryset.explain()


@pytest.mark.parametrize(("name", "column"), [
    ("ended jobs", "completed_at"), ("job ledger entries", "created_at"), ("delivery attempts", "id"),
    ("jobs not yet ended", "status"),
])
def test_each_poll_finds_its_rows_by_an_index(name, column, user):
    """The rows are found by an index on the column that selects them (an Index Cond on it), not
    read whole and filtered: an index of another column walked end to end costs the table too.
    The table holds what a poll meets in service: many jobs that ended before its last look, and
    statistics that say so (on an empty table the planner may pick any index)."""
    now = timezone.now()
    Job.objects.bulk_create(
        Job(user=user, type="transcription", credits_cost=1, status=JobStatus.COMPLETED,
            completed_at=now - timedelta(days=1, seconds=n)) for n in range(2000))
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE jobs")
    queryset = {
        "ended jobs": lambda: _Tail("completed_at", now).query(ended_jobs()),
        "job ledger entries": lambda: _Tail("created_at", now).query(job_ledger_entries()),
        "delivery attempts": lambda: attempts_after(0).values_list("id", "status_code")[:BATCH],
        "jobs not yet ended": active_job_counts,
    }[name]()
    found = plan(queryset)
    assert "Seq Scan" not in found, found
    assert any("Index Cond:" in line and f"{column} " in line.replace(")", " ") for line in found.splitlines()), found


def test_a_jobs_latency_buckets_carry_its_trace_as_their_exemplar(user):
    """A traced job's trace id is the exemplar of the buckets it fell in (OpenMetrics, which
    Prometheus asks for when it stores exemplars): a Grafana point leads to that job's trace."""
    from prometheus_client import CollectorRegistry
    from prometheus_client.openmetrics.exposition import generate_latest

    from metrics_exporter.business import BusinessMetrics

    now = timezone.now()
    trace_id = "0af7651916cd43dd8448eb211c80319c"
    traced, untraced = (
        Job.objects.create(user=user, type="transcription", credits_cost=1, status=JobStatus.COMPLETED,
                           started_at=now - timedelta(seconds=3), completed_at=now, traceparent=traceparent)
        for traceparent in (f"00-{trace_id}-b7ad6b7169203331-01", ""))
    registry = CollectorRegistry()
    metrics = BusinessMetrics(registry, backfill_seconds=60)
    metrics._ended_jobs([traced, untraced])
    text = generate_latest(registry).decode()
    for name in ("auteur_job_submit_to_start_seconds_bucket", "auteur_job_start_to_end_seconds_bucket"):
        lines = [line for line in text.splitlines() if line.startswith(name) and "# {" in line]
        assert len(lines) == 1 and f'trace_id="{trace_id}"' in lines[0], lines

"""Usage analytics: one UsageEvent per ended job, written by the statement that records its end.

Every terminal transition (jobs.life.status: completed, completed from the cache, failed,
canceled, aborted) records the job's usage with its charge, so the events hold exactly what the
ledger holds for the job. A job ends once, and the event is unique per job, so a redelivered step
that finds the job ended writes nothing. Staff read them in the admin (filters, CSV export) and
with `manage.py usage_export`; retention deletes them after AUTEUR_USAGE_RETENTION_DAYS.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any, Protocol

from django.utils import timezone

from jobs.models import Job, UsageEvent

# `user_id`: the account (a personal or team workspace's) that paid; `member_id`: who submitted the job.
EXPORT_FIELDS = ("created_at", "user_id", "job_id", "project_id", "type", "outcome", "error_code", "credits_charged",
                 "credits_refunded", "credits_net", "quantities", "waited_ms", "processing_ms", "gpu_seconds", "cached",
                 "member_id")


def _ms(start: datetime | None, end: datetime | None) -> int | None:
    if start is None or end is None:
        return None
    return max(0, int((end - start).total_seconds() * 1000))


# A job's end writes its usage event in the statement that records its terminal event
# (jobs.events.record, `usage=`): compiled by hand (the ORM's bulk_create builds and compiles a
# query for every row, on the path that completes every job).
USAGE_INSERT = """
INSERT INTO usage_events (created_at, user_id, job_id, project_id, type, outcome, error_code, credits_charged,
                          credits_refunded, credits_net, quantities, waited_ms, processing_ms, gpu_seconds, cached,
                          member_id)
SELECT %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s::jsonb, %s, %s, %s, %s, %s{source}
ON CONFLICT (job_id) DO NOTHING
"""  # `source`: where its one row comes from (a move's `FROM moved`), or "" for one row as given


# usage_row's values, in USAGE_INSERT's order.
USAGE_COLUMNS = ("created_at", "user_id", "job_id", "project_id", "type", "outcome", "error_code", "credits_charged",
                 "credits_refunded", "credits_net", "quantities", "waited_ms", "processing_ms", "gpu_seconds",
                 "cached", "member_id")


def usage_row(*, job: Job, outcome: str, refunded: int, code: str = "", ended_at: datetime | None = None,
              gpu_seconds: float | None = None) -> list[Any]:
    """The ended job's usage event, as USAGE_INSERT's values (once per job: a second insert for
    it writes nothing)."""
    ended_at = ended_at or timezone.now()
    quantities = json.dumps(dict((job.input_params or {}).get("_quantities") or {}), sort_keys=True)
    processing = _ms(job.started_at, ended_at) if job.started_at else None
    seconds = (job.gpu_seconds or 0.0) if gpu_seconds is None else gpu_seconds
    return [
        ended_at, job.user_id, job.pk, job.project_id, job.type, outcome, code[:40], job.credits_cost, refunded,
        job.credits_cost - refunded, quantities, _ms(job.created_at, job.started_at), processing, seconds,
        bool(job.cache_source_id), job.member_id,
    ]


def usage_rows(events: Iterable[UsageEvent]) -> Iterator[list[Any]]:
    """Each event as a row of EXPORT_FIELDS (times in ISO 8601, quantities as JSON)."""
    for event in events:
        yield [
            event.created_at.isoformat(), event.user_id, event.job_id, event.project_id or "", event.type,
            event.outcome, event.error_code, event.credits_charged, event.credits_refunded, event.credits_net,
            json.dumps(event.quantities, sort_keys=True), "" if event.waited_ms is None else event.waited_ms,
            "" if event.processing_ms is None else event.processing_ms, round(event.gpu_seconds, 3),
            int(event.cached), event.member_id or "",
        ]


class _Writes(Protocol):
    def write(self, text: str, /) -> Any: ...


def usage_write_csv(events: Iterable[UsageEvent], out: _Writes) -> int:
    """The events as CSV with a header row; how many were written."""
    writer = csv.writer(out)
    writer.writerow(EXPORT_FIELDS)
    count = 0
    for row in usage_rows(events):
        writer.writerow(row)
        count += 1
    return count

"""Reads of a user's batches (jobs.intake.batches): each scoped to its owner (another user's batch
is a 404 `batch_not_found`, as one that does not exist), its counts read from its items."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

from django.db import connection
from django.db.models import Count, QuerySet, Sum

from auteur.users.models import User
from jobs.errors import BatchNotFound
from jobs.models import TERMINAL_STATUSES, Batch, Job, JobStatus
from jobs.selectors.jobs import _parse_uuid, job_output_data

# Rows of a manifest fetched at a time from its cursor: a transcription's results can be large.
MANIFEST_FETCH_ROWS = 200


def batch_get(*, user: User, batch_id: uuid.UUID | str) -> Batch:
    """The user's batch, or 404 (as job_get finds a job)."""
    pk = _parse_uuid(batch_id)
    batch = None if pk is None else Batch.objects.filter(pk=pk, user=user).first()
    if batch is None:
        raise BatchNotFound("No such batch.")
    return batch


def batch_list(*, user: User) -> QuerySet[Batch]:
    return Batch.objects.filter(user=user).order_by("-created_at", "-id")


def batch_counts(*, batch: Batch) -> dict[str, Any]:
    """How many of its items are in each status, whether all have ended, and what was refunded."""
    return batches_counts(batches=[batch])[batch.pk]


def batches_counts(*, batches: list[Batch]) -> dict[uuid.UUID, dict[str, Any]]:
    """batch_counts of each batch, in one query."""
    rows = (Job.objects.filter(batch__in=batches).order_by().values("batch_id", "status")
            .annotate(n=Count("pk"), refunded=Sum("credits_refund")))
    counts = {b.pk: dict.fromkeys(JobStatus.values, 0) for b in batches}
    refunded = dict.fromkeys(counts, 0)
    for row in rows:
        counts[row["batch_id"]][row["status"]] = row["n"]
        refunded[row["batch_id"]] += row["refunded"] or 0
    out = {}
    for b in batches:
        ended = sum(counts[b.pk][s] for s in TERMINAL_STATUSES)
        out[b.pk] = {"counts": counts[b.pk], "ended": ended, "credits_refunded": refunded[b.pk],
                     "done": ended == b.item_count}
    return out


def batch_items(*, batch: Batch) -> QuerySet[Job]:
    return Job.objects.filter(batch=batch).order_by("batch_index")


_MANIFEST_COLUMNS = ("batch_index", "id", "type", "status", "credits_cost", "credits_refund", "error_code",
                     "error_message", "retryable", "completed_at", "output_data")


class BatchManifest:
    """A batch's manifest, streamed as JSON lines: one line per item, in the batch's order, with its
    outcome and results. The query runs when this is made (in the request's row-level security
    scope), on a server-side cursor fetched MANIFEST_FETCH_ROWS at a time as the answer is written
    (WITH HOLD outside a transaction: no snapshot is held open by a slow reader); close() ends it.
    `as_json`: the same items as one JSON document instead, `{"items": [...]}`, streamed alike."""

    def __init__(self, *, batch: Batch, after: int = -1, limit: int | None = None, as_json: bool = False) -> None:
        """The items after index `after`, at most `limit` of them (None: all)."""
        self.as_json = as_json
        query = (Job.objects.filter(batch=batch, batch_index__gt=after).order_by("batch_index")
                 .values_list(*_MANIFEST_COLUMNS))
        if limit is not None:
            query = query[:limit]
        sql, params = query.query.sql_with_params()
        self.cursor = connection.chunked_cursor()
        try:
            self.cursor.execute(sql, params)
        except BaseException:
            self.cursor.close()
            raise

    def rows(self) -> Iterator[dict[str, Any]]:
        while chunk := self.cursor.fetchmany(MANIFEST_FETCH_ROWS):
            for index, job_id, type, status, cost, refund, code, message, retryable, completed_at, output in chunk:
                if isinstance(output, str):  # a raw cursor may read jsonb as text
                    output = json.loads(output)
                yield {
                    "index": index, "job_id": str(job_id), "type": type, "status": status, "credits_cost": cost,
                    "credits_refund": refund, "error_code": code, "error_message": message,
                    "retryable": retryable,
                    "completed_at": completed_at.isoformat().replace("+00:00", "Z") if completed_at else None,
                    "output_data": job_output_data(job_type=type, output_data=output or {}),
                }

    def __iter__(self) -> Iterator[bytes]:
        if self.as_json:
            yield b'{"items":['
        for n, row in enumerate(self.rows()):
            line = json.dumps(row, separators=(",", ":"), ensure_ascii=False).encode()
            yield (b"," if n else b"") + line if self.as_json else line + b"\n"
        if self.as_json:
            yield b"]}\n"

    def close(self) -> None:
        self.cursor.close()

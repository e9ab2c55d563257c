"""How long a job may wait to start: the client's `start_within_seconds` and its type's queue TTL.

Pure functions of the settings and the job's row; the status module aborts a job past its start
deadline (`job_abort`) and the deadline sweep (`jobs.life.deadlines`) finds the ones due.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings

from jobs.models import Job


def queue_ttl_seconds(job_type: str, *, batch: bool = False) -> int:
    """How long a job of this type may wait to start before it is aborted (0: no limit). A batch's
    item waits its turn behind the batch's others by design: AUTEUR_BATCH_QUEUE_TTL_SECONDS."""
    if batch:
        return int(settings.AUTEUR_BATCH_QUEUE_TTL_SECONDS)
    by_type: dict[str, int] = settings.AUTEUR_QUEUE_TTL_BY_TYPE
    return int(by_type.get(str(job_type), settings.AUTEUR_QUEUE_TTL_SECONDS))


def start_deadline_of(*, job_type: str, submitted_at: datetime, start_within_seconds: int | None,
                      batch: bool = False) -> datetime | None:
    """The start deadline of a job submitted at `submitted_at`: the earlier of the client's and
    the queue TTL (its type's, or a batch item's; None when neither applies)."""
    limits = [s for s in (start_within_seconds, queue_ttl_seconds(job_type, batch=batch)) if s]
    return submitted_at + timedelta(seconds=min(limits)) if limits else None


def abort_code(job: Job) -> str:
    """Why a job past its start deadline never started: `start_deadline` when the client's limit
    was the earlier one, else `queue_ttl` (the server's)."""
    ttl = queue_ttl_seconds(job.type, batch=job.batch_id is not None)
    if job.start_within_seconds is None or (ttl and ttl < job.start_within_seconds):
        return "queue_ttl"
    return "start_deadline"

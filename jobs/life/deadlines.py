"""Deadlines, swept by beat every few seconds (`jobs.deadlines`, AUTEUR_DEADLINE_INTERVAL_SECONDS).

A job may carry two, set from its request (`start_within_seconds`, `run_within_seconds`) and its
type's queue TTL (an operator setting):

    start_deadline  submission + the earlier of the client's start_within_seconds and the
                    type's queue TTL: a job still pending or queued then is `aborted`, refunded
                    in full (jobs.life.status.job_abort). Its claim checks it too, so a job never
                    starts after its start deadline, however late the sweep runs.
    run_deadline    its start + run_within_seconds: a job still processing then is `canceled`
                    with `error_code` `run_deadline`, refunded pro rata as any cancel (the part
                    of its time limit and progress not yet spent). A job already storing its
                    result is left to finish: the user is about to receive what was paid for.

Both are rows with a time, never countdown messages: they survive any restart of the workers
and the broker, and one indexed query each finds the ones due.
"""

from __future__ import annotations

import logging
from datetime import datetime

from django.utils import timezone

from jobs.errors import JobNotCancelable
from jobs.life.status import job_abort, job_cancel
from jobs.models import WAITING_STATUSES, Job, JobStatus

logger = logging.getLogger(__name__)

# Jobs ended per sweep, at most: a backlog that came due at once is worked off over a few sweeps.
SWEEP_BATCH = 500
RUN_DEADLINE_REASON = "Its run deadline passed before it finished; the unspent part was refunded."


def jobs_deadlines_enforce(*, now: datetime | None = None) -> dict[str, int]:
    """Abort the waiting jobs past their start deadline and cancel the running ones past their
    run deadline. Each move is the status module's conditional one: a job that started, ended or
    was canceled meanwhile is left as it is."""
    now = now or timezone.now()
    counts = {"aborted": 0, "canceled": 0}
    late = Job.objects.filter(status__in=WAITING_STATUSES, start_deadline__lte=now).order_by("start_deadline")
    for job_id in late.values_list("pk", flat=True)[:SWEEP_BATCH]:
        if job_abort(job_id=job_id, now=now):
            counts["aborted"] += 1
    overrun = Job.objects.filter(status=JobStatus.PROCESSING, run_deadline__lte=now, inference_ended_at__isnull=True)
    for job in overrun.order_by("run_deadline")[:SWEEP_BATCH]:
        try:
            job_cancel(job=job, reason=RUN_DEADLINE_REASON, code="run_deadline")
        except JobNotCancelable:  # ended or began storing its result meanwhile
            continue
        counts["canceled"] += 1
    return counts

"""Bulk cancel by filter (POST /jobs/bulk/cancel): a user's unfinished jobs of a batch, a type, a
status, a project or a span of submission times, each ended and refunded exactly as its own cancel
would be (jobs.life.refunds.cancel_refund), with a dry run that says what it would do.

The jobs still waiting (pending, queued) are the many: a batch's backlog. They are ended in one
transaction, in a few statements whatever their number: their rows locked (a claim that would
start one waits, then finds it ended), moved to `canceled`, refunded in full in one ledger
statement (credits.services.ledger `credit_refund_jobs`), and their `canceled` events and usage
rows written. Their events are pushed to the streams and webhooks after the commit by the webhooks
worker (`webhooks.job_events_announce`), so the request does not wait on thousands of pushes. The
few that are running are canceled one by one by `job_cancel` (a partial refund, their GPU calls
stopped); one whose outputs are being stored is left to finish (`not_cancelable`).
"""

from __future__ import annotations

import functools
import json
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import transaction
from django.db.models import Count, F, QuerySet, Sum
from django.utils import timezone

from auteur.core.prepared import insert_many
from auteur.core.publishing import send
from auteur.users.models import User
from credits.services.ledger import JobCharge, credit_refund_jobs
from jobs.errors import JobNotCancelable
from jobs.events.batches import batch_item_ended
from jobs.events.record import job_events_record_many
from jobs.events.usage import usage_row
from jobs.life import fairshare
from jobs.life.refunds import cancel_refund
from jobs.life.slots import job_slot_release
from jobs.life.status import job_cancel
from jobs.models import WAITING_STATUSES, Job, JobEvent, JobEventType, JobStatus, UsageEvent

logger = logging.getLogger(__name__)

ANNOUNCE_TASK = "webhooks.job_events_announce"
ANNOUNCE_CHUNK = 500  # events per announcing task
CANCEL_REASON = "canceled by the user"


@dataclass(frozen=True)
class JobFilter:
    """Which of a user's jobs a bulk action takes (every criterion given must hold)."""

    batch_id: uuid.UUID | None = None
    type: str | None = None
    statuses: tuple[str, ...] = ()
    project_id: uuid.UUID | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None

    def of(self, user: User, among: tuple[str, ...]) -> QuerySet[Job]:
        jobs = Job.objects.filter(user=user, status__in=[s for s in among if not self.statuses or s in self.statuses])
        if self.batch_id is not None:
            jobs = jobs.filter(batch_id=self.batch_id)
        if self.type is not None:
            jobs = jobs.filter(type=self.type)
        if self.project_id is not None:
            jobs = jobs.filter(project_id=self.project_id)
        if self.created_after is not None:
            jobs = jobs.filter(created_at__gte=self.created_after)
        if self.created_before is not None:
            jobs = jobs.filter(created_at__lt=self.created_before)
        return jobs.order_by()


def jobs_cancel_preview(*, user: User, where: JobFilter) -> dict[str, Any]:
    """What a bulk cancel would do now: the jobs it would end by status, what it would refund, and
    the running jobs whose outputs are being stored (left to finish)."""
    now = timezone.now()
    waiting = list(where.of(user, WAITING_STATUSES).values("status").annotate(n=Count("pk"), cost=Sum("credits_cost")))
    counts = {row["status"]: row["n"] for row in waiting}
    refund = sum(row["cost"] or 0 for row in waiting)
    running = list(where.of(user, (JobStatus.PROCESSING,)))
    cancelable = [job for job in running if job.inference_ended_at is None]
    counts[JobStatus.PROCESSING] = len(cancelable)
    refund += sum(cancel_refund(job=job, at=now) for job in cancelable)
    return {"matched": sum(counts.values()) + len(running) - len(cancelable), "canceled": sum(counts.values()),
            "by_status": counts, "credits_refund": refund, "not_cancelable": len(running) - len(cancelable)}


def jobs_cancel_bulk(*, user: User, where: JobFilter) -> dict[str, Any]:
    """Cancel and refund every unfinished job of the user's that `where` takes (the module's notes);
    what was done, as jobs_cancel_preview says it."""
    counts: dict[str, int] = {}
    with transaction.atomic():
        now = timezone.now()
        # Locked in one order (by id), so two bulk cancels that overlap wait for each other, never deadlock.
        jobs = list(where.of(user, WAITING_STATUSES).order_by("pk").select_for_update().only(
            "id", "user_id", "member_id", "project_id", "type", "status", "credits_cost", "input_params",
            "created_at", "started_at", "gpu_seconds", "cache_source_id", "batch_id"))
        for job in jobs:
            counts[job.status] = counts.get(job.status, 0) + 1
        refunded = _cancel_waiting(user, jobs, now) if jobs else 0
    if jobs:
        logger.info("bulk cancel: %d waiting jobs canceled, %d credits refunded", len(jobs), refunded)
    not_cancelable = 0
    for job in where.of(user, (JobStatus.PROCESSING,)):
        try:
            refunded += job_cancel(job=job, reason=CANCEL_REASON).credits_refund
            counts[JobStatus.PROCESSING] = counts.get(JobStatus.PROCESSING, 0) + 1
        except JobNotCancelable:  # its outputs are being stored, or it ended meanwhile
            not_cancelable += 1
    return {"matched": sum(counts.values()) + not_cancelable, "canceled": sum(counts.values()), "by_status": counts,
            "credits_refund": refunded, "not_cancelable": not_cancelable}


def _cancel_waiting(user: User, jobs: list[Job], now: datetime) -> int:
    """End the locked waiting jobs `canceled`, refunded in full, with their events and usage rows;
    their slots and places in line freed once committed."""
    ids = [job.pk for job in jobs]
    Job.objects.filter(pk__in=ids).update(status=JobStatus.CANCELED, completed_at=now, updated_at=now,
                                          error_message=CANCEL_REASON, error_code="", credits_refunded=True,
                                          credits_refund=F("credits_cost"))
    refunded = credit_refund_jobs(user=user, refunds=[
        JobCharge(job_id=job.pk, amount=job.credits_cost, job_type=job.type, description=f"{job.type} job canceled")
        for job in jobs
    ])
    job_events_record_many([
        (job.pk, JobEventType.CANCELED, {"reason": CANCEL_REASON, "refunded": job.credits_cost,
                                         "charge": {"charged": job.credits_cost, "refunded": job.credits_cost,
                                                    "net": 0}})
        for job in jobs
    ])
    rows = [usage_row(job=job, outcome="canceled", refunded=job.credits_cost, ended_at=now) for job in jobs]
    usage = {name: [row[i] for row in rows] for i, name in enumerate(_USAGE)}
    usage["quantities"] = [json.loads(text) for text in usage["quantities"]]  # (written as JSON text for SQL)
    insert_many(UsageEvent, len(rows), varying=usage, same={})
    # Their slots (a pending job's claim may have been under way) and their places in their types' lines.
    job_slot_release(user_id=user.pk)
    for job_type in {job.type for job in jobs}:
        fairshare.start_due_on_commit(job_type)
    transaction.on_commit(functools.partial(_announce, ids, now))
    for batch_id in {job.batch_id for job in jobs if job.batch_id is not None}:
        batch_item_ended(batch_id)
    return refunded


# usage_row's values, in jobs.events.usage.USAGE_INSERT's order.
_USAGE = ("created_at", "user_id", "job_id", "project_id", "type", "outcome", "error_code", "credits_charged",
          "credits_refunded", "credits_net", "quantities", "waited_ms", "processing_ms", "gpu_seconds", "cached",
          "member_id")


def _announce(job_ids: list[uuid.UUID], since: datetime) -> None:
    """Ask the webhooks worker to push the jobs' `canceled` events, in chunks."""
    events = list(JobEvent.objects.filter(job_id__in=job_ids, type=JobEventType.CANCELED, created_at__gte=since)
                  .order_by("id").values_list("id", flat=True))
    for start in range(0, len(events), ANNOUNCE_CHUNK):
        send(ANNOUNCE_TASK, (events[start:start + ANNOUNCE_CHUNK],), what="job events of a bulk action")

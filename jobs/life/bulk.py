"""Bulk cancel by filter (POST /jobs/bulk/cancel): a user's unfinished jobs of a batch, a type, a
status, a project or a span of submission times, each ended and refunded exactly as its own cancel
would be (jobs.life.refunds.cancel_refund), with a dry run that says what it would do.

The jobs still waiting (pending, queued) are the many: a batch's backlog. They are ended in one
transaction, in a few statements whatever their number (jobs.life.status.jobs_cancel_waiting):
their rows locked in one order (a claim that would start one waits, then finds it ended), moved
to `canceled`, refunded in full in one ledger statement, their `canceled` events and usage rows
written. Their events are pushed to the streams and webhooks after the commit by the webhooks
worker (`webhooks.job_events_announce`), so the request does not wait on thousands of pushes. The
few that are running are canceled one by one by `job_cancel` (a partial refund, their GPU calls
stopped); one whose outputs are being stored is left to finish (`not_cancelable`).

A call takes at most AUTEUR_BATCH_MAX_ITEMS jobs, oldest first (the next to start), waiting ones
before running ones, and says how many the filter still takes (`remaining`): another call takes
them. So one request holds the account's lock (the refunds' ledger statement) and its rows' locks
for a bounded time, whatever a filter matches, as a batch's submission does.
"""

from __future__ import annotations

import functools
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from auteur.core.publishing import send
from auteur.users.models import User
from jobs.errors import JobNotCancelable
from jobs.life.refunds import cancel_refund
from jobs.life.status import job_cancel, jobs_cancel_waiting
from jobs.models import WAITING_STATUSES, Job, JobEvent, JobEventType, JobStatus
from jobs.payloads import CONSENT_PARAM, LIKENESS_PARAM
from jobs.specs import JobType
from media.models import MediaFile

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


def _oldest(jobs: QuerySet[Job], most: int) -> QuerySet[Job]:
    return jobs.order_by("created_at", "batch_index", "pk")[:max(0, most)]


def _remaining(user: User, where: JobFilter) -> int:
    """The jobs `where` takes that a cancel could still end: waiting, or running before their
    outputs are stored."""
    return where.of(user, (*WAITING_STATUSES, JobStatus.PROCESSING)).filter(inference_ended_at__isnull=True).count()


def jobs_cancel_preview(*, user: User, where: JobFilter) -> dict[str, Any]:
    """What a bulk cancel would do now: the jobs it would end by status, what it would refund, the
    running jobs whose outputs are being stored (left to finish), and how many it would leave."""
    now, most = timezone.now(), settings.AUTEUR_BATCH_MAX_ITEMS
    counts: dict[str, int] = {}
    refund = 0
    for status, cost in _oldest(where.of(user, WAITING_STATUSES), most).values_list("status", "credits_cost"):
        counts[status] = counts.get(status, 0) + 1
        refund += cost
    waiting = sum(counts.values())
    running = list(_oldest(where.of(user, (JobStatus.PROCESSING,)), most - waiting))
    cancelable = [job for job in running if job.inference_ended_at is None]
    if cancelable:
        counts[JobStatus.PROCESSING] = len(cancelable)
    refund += sum(cancel_refund(job=job, at=now) for job in cancelable)
    return {"matched": waiting + len(running), "canceled": sum(counts.values()), "by_status": counts,
            "credits_refund": refund, "not_cancelable": len(running) - len(cancelable),
            "remaining": _remaining(user, where) - sum(counts.values())}


def jobs_cancel_bulk(*, user: User, where: JobFilter) -> dict[str, Any]:
    """Cancel and refund the oldest AUTEUR_BATCH_MAX_ITEMS unfinished jobs of the user's that `where`
    takes (the module's notes); what was done, as jobs_cancel_preview says it."""
    counts: dict[str, int] = {}
    most = settings.AUTEUR_BATCH_MAX_ITEMS
    with transaction.atomic():
        now = timezone.now()
        # The oldest, locked in one order (by id), so two bulk cancels that overlap wait for each
        # other, never deadlock; one read as waiting here and started meanwhile is left to the loop below.
        oldest = _oldest(where.of(user, WAITING_STATUSES), most).values("pk")
        jobs = list(Job.objects.filter(pk__in=oldest, status__in=WAITING_STATUSES).order_by("pk").select_for_update()
                    .only("id", "user_id", "member_id", "project_id", "type", "status", "credits_cost", "input_params",
                          "created_at", "started_at", "gpu_seconds", "cache_source_id", "batch_id"))
        for job in jobs:
            counts[job.status] = counts.get(job.status, 0) + 1
        refunded = jobs_cancel_waiting(user=user, jobs=jobs, now=now, reason=CANCEL_REASON) if jobs else 0
        if jobs:
            transaction.on_commit(functools.partial(_announce, [job.pk for job in jobs], now))
    if jobs:
        logger.info("bulk cancel: %d waiting jobs canceled, %d credits refunded", len(jobs), refunded)
    not_cancelable = 0
    for job in _oldest(where.of(user, (JobStatus.PROCESSING,)), most - len(jobs)):
        try:
            refunded += job_cancel(job=job, reason=CANCEL_REASON).credits_refund
            counts[JobStatus.PROCESSING] = counts.get(JobStatus.PROCESSING, 0) + 1
        except JobNotCancelable:  # its outputs are being stored, or it ended meanwhile
            not_cancelable += 1
    return {"matched": sum(counts.values()) + not_cancelable, "canceled": sum(counts.values()), "by_status": counts,
            "credits_refund": refunded, "not_cancelable": not_cancelable, "remaining": _remaining(user, where)}


REVOKED_REASON = "The consent of the voice or face it uses was revoked; it was refunded in full."


def jobs_cancel_for_consent(*, user_id: uuid.UUID, consent_id: uuid.UUID, voice_id: uuid.UUID | None) -> int:
    """Cancel and refund, in the caller's transaction, the account's waiting jobs that use a revoked
    consent's voice: TTS in it (or accepted under the consent, the voice since deleted), and lip syncs
    of speech a TTS job made in it (or of a version of that speech); or that use a face under a revoked
    likeness consent (accepted under it: LIKENESS_PARAM). Their events are pushed once the
    caller commits. Running ones are left to their store step, which refuses to keep what they make
    (jobs.life.outputs). Returns how many were canceled."""
    in_voice = Q(input_params__contains={CONSENT_PARAM: str(consent_id)})
    if voice_id is not None:
        in_voice |= Q(input_params__voice_id=str(voice_id))
    tts = Job.objects.filter(in_voice, user_id=user_id, type=JobType.TTS).values("pk")
    speech = list(MediaFile.objects.filter(user_id=user_id, source_job_id__in=tts).values_list("pk", flat=True))
    speech += MediaFile.objects.filter(user_id=user_id, derived_from__in=speech).values_list("pk", flat=True)
    uses = Q(in_voice, type=JobType.TTS) | Q(input_params__contains={LIKENESS_PARAM: str(consent_id)})
    if speech:
        uses |= Q(type=JobType.LIP_SYNC, input_params__audio_media_id__in=[str(pk) for pk in speech])
    now = timezone.now()
    jobs = list(Job.objects.filter(uses, user_id=user_id, status__in=WAITING_STATUSES).order_by("pk")
                .select_for_update()
                .only("id", "user_id", "member_id", "project_id", "type", "status", "credits_cost", "input_params",
                      "created_at", "started_at", "gpu_seconds", "cache_source_id", "batch_id"))
    if not jobs:
        return 0
    user = User.objects.get(pk=user_id)
    refunded = jobs_cancel_waiting(user=user, jobs=jobs, now=now, reason=REVOKED_REASON, code="consent_revoked")
    transaction.on_commit(functools.partial(_announce, [job.pk for job in jobs], now))
    logger.info("consent %s revoked: %d waiting jobs canceled, %d credits refunded", consent_id, len(jobs), refunded)
    return len(jobs)


def _announce(job_ids: list[uuid.UUID], since: datetime) -> None:
    """Ask the webhooks worker to push the jobs' `canceled` events, in chunks."""
    events = list(JobEvent.objects.filter(job_id__in=job_ids, type=JobEventType.CANCELED, created_at__gte=since)
                  .order_by("id").values_list("id", flat=True))
    for start in range(0, len(events), ANNOUNCE_CHUNK):
        send(ANNOUNCE_TASK, (events[start:start + ANNOUNCE_CHUNK],), what="job events of a bulk action")

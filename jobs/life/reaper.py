"""No job stays non-terminal forever: the reaper (`jobs.reap`, run by beat every minute)."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from jobs.events.record import job_event_record
from jobs.life import publish
from jobs.life.inference import inference_limit_seconds, repoll_after
from jobs.life.publish import STEP_HARD_LIMIT_SECONDS, Step
from jobs.life.slots import START_ORDER
from jobs.life.status import job_fail
from jobs.models import Job, JobEventType, JobStatus
from jobs.specs import time_scale

logger = logging.getLogger(__name__)

# A job past its limit by this much more is failed by the reaper (its own step failed to).
REAP_MARGIN_SECONDS = 60


def jobs_reap(*, now: datetime | None = None) -> dict[str, int]:
    """Move on every job that should have moved.

    - pending for a minute: its publish was lost (broker down at submission): publish again;
    - queued while a slot is free: start it (a missed release);
    - processing with no sign of life for two minutes: its poll message was lost: poll again;
    (the two thresholds are settings: AUTEUR_REAPER_PENDING_AFTER_SECONDS, ..._REPOLL_AFTER_SECONDS)
    - processing past its type's time limit (plus grace): fail and refund it (retryable).
    Every action is idempotent: a duplicate message finds the job moved and does nothing.
    """
    now = now or timezone.now()
    counts = {"republished": 0, "started": 0, "repolled": 0, "timed_out": 0}
    pending_after = timedelta(seconds=settings.AUTEUR_REAPER_PENDING_AFTER_SECONDS)
    for job in Job.objects.filter(status=JobStatus.PENDING, updated_at__lt=now - pending_after):
        if publish.start(job.pk, job.type, job.traceparent):
            Job.objects.filter(pk=job.pk).update(updated_at=now)
            job_event_record(job.pk, JobEventType.REPUBLISHED)
            counts["republished"] += 1
    for user_id in Job.objects.filter(status=JobStatus.QUEUED).values_list("user_id", flat=True).distinct():
        oldest = Job.objects.filter(user_id=user_id, status=JobStatus.QUEUED).order_by(*START_ORDER).first()
        if oldest is not None and publish.start(oldest.pk, oldest.type, oldest.traceparent):
            counts["started"] += 1
    for job in Job.objects.filter(status=JobStatus.PROCESSING):
        try:
            _reap_processing(job, now, counts)
        except Exception:
            # One job that cannot be reaped must not stop the others being reaped.
            logger.exception("reaper: job %s", job.pk, extra={"job_id": str(job.pk)})
    return counts


def _reap_processing(job: Job, now: datetime, counts: dict[str, int]) -> None:
    # A call waiting in line for the backend's capacity keeps its place: it is only polled
    # again when its polls stop; its own time limit starts when it does.
    waiting = bool(job.gpu_call_id) and job.inference_started_at is None and job.inference_ended_at is None
    limit: float
    if job.inference_ended_at is not None:
        # Storing outputs: bounded by the storing step's own hard limit, not the inference's.
        limit, began, step = STEP_HARD_LIMIT_SECONDS, job.inference_ended_at, Step.FINISH
    else:
        limit = inference_limit_seconds(job)
        began, step = job.inference_started_at or job.started_at or job.created_at, Step.INFER
    if not waiting and now - began > timedelta(seconds=limit + REAP_MARGIN_SECONDS * time_scale()):
        if job_fail(job_id=job.pk, code="timeout", detail=f"reaper: no result within {limit:g} s", retryable=True):
            counts["timed_out"] += 1
    elif now - job.updated_at > repoll_after() and publish.publish(job.pk, job.type, step, trace=job.traceparent):
        Job.objects.filter(pk=job.pk).update(updated_at=now)
        job_event_record(job.pk, JobEventType.REPOLLED, step=step)
        counts["repolled"] += 1

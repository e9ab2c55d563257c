"""Celery tasks of the job pipeline, thin: each step calls its service (`jobs/life/steps.py`).

Every family of job types has its own three step tasks, named `jobs.<family>.<step>` so Flower
shows what runs where, and celeryconfig routes each family to its queue. This module is the
jobs app's leaf: nothing imports it, and the services publish its tasks by name (jobs.life.publish).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping
from typing import Any

from celery import Task, shared_task
from celery.contrib.django.task import DjangoTask
from celery.exceptions import SoftTimeLimitExceeded
from django.db import DatabaseError, InterfaceError, OperationalError

from auteur.core.errors import ApplicationError
from auteur.core.logging import job_id_var
from auteur.core.postgres import statistics
from auteur.core.retention import TASK_TIME_BUDGET_SECONDS, run_sweep
from credits.alerts import ANNOUNCE_TASK
from jobs import gpu_client, task_names
from jobs.events import batches as batch_events
from jobs.events.account import cap_alerts_announce
from jobs.events.record import bind_job_to_logs, job_event_committed, job_event_record
from jobs.gpu_client import GpuError, TransientGpuError
from jobs.intake.media_screening import media_verdict_keep
from jobs.life import bulk
from jobs.life.deadlines import jobs_deadlines_enforce
from jobs.life.deliveries import step_redelivered
from jobs.life.publish import STEP_HARD_LIMIT_SECONDS, STEP_SOFT_LIMIT_SECONDS, Step, step_task_name
from jobs.life.reaper import jobs_reap
from jobs.life.status import job_fail
from jobs.life.steps import job_step_finish, job_step_infer, job_step_prepare
from jobs.life.timeline_swap import job_timeline_swap, job_timeline_swap_failed
from jobs.life.transcript_edl import RETRYABLE, job_transcript_to_edl, job_transcript_to_edl_failed
from jobs.models import Job, JobEvent, JobEventType
from jobs.specs import Family

logger = logging.getLogger(__name__)


class JobTask(DjangoTask):
    """Base of every pipeline step: at-least-once delivery, and a failure ends the job with a refund.

    A step that fails for good (a permanent error, or transient ones past their retries) lands in
    on_failure, which fails the job and refunds it through the service: exactly once, however
    many times on_failure runs. A step whose message keeps coming back because it kills its worker
    (jobs.life.deliveries) fails the job the same way, without running again. A GPU backend out
    of reach or out of capacity, and losing the database mid-step (a restart, a failover), are
    transient: the step is retried with exponential back-off and full jitter (0-2 s, 0-4 s, ...
    at most 60 s), five times.
    """

    acks_late = True
    reject_on_worker_lost = True
    soft_time_limit = STEP_SOFT_LIMIT_SECONDS
    time_limit = STEP_HARD_LIMIT_SECONDS
    autoretry_for = (TransientGpuError, OperationalError, InterfaceError)
    max_retries = 5
    retry_backoff = 2
    retry_backoff_max = 60
    retry_jitter = True

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        job_id = _job_id(args, kwargs)
        # Every log line of the step carries its job id, and none after it (a worker process
        # runs other tasks next).
        token = bind_job_to_logs(job_id)
        try:
            if (self.request.delivery_info or {}).get("redelivered"):
                # A worker died holding this message, or the broker restored it: the step runs
                # again and finds its own work done. Recorded so that drills can count them; with
                # the database away there is nothing to record it in, and the step retries anyway.
                with contextlib.suppress(DatabaseError):
                    job_event_record(job_id, JobEventType.STEP_REDELIVERED, step=self.name)
                # One that came back too often kills its worker each time: it fails the job instead.
                if step_redelivered(job_id=job_id, step=self.name, message=f"{self.request.id}:{self.request.retries}"):
                    return None
            return super().__call__(*args, **kwargs)
        finally:
            job_id_var.reset(token)

    def on_retry(self, exc: Exception, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
        if isinstance(exc, TransientGpuError):  # no event to write while the database is away
            job_event_record(_job_id(args, kwargs), JobEventType.STEP_RETRY, step=self.name, code=exc.code)

    def on_failure(self, exc: Exception, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
        job_id = _job_id(args, kwargs)
        code, retryable = error_code_of(exc)
        detail = getattr(exc, "message", None) or str(exc) or type(exc).__name__
        if code == "internal":
            logger.error("job step %s crashed", self.name, exc_info=exc, extra={"job_id": str(job_id)})
        job_fail(job_id=job_id, code=code, detail=f"{type(exc).__name__}: {detail}", retryable=retryable)


def _job_id(args: Any, kwargs: Any) -> str:
    return str(args[0] if args else (kwargs or {})["job_id"])


def error_code_of(exc: BaseException) -> tuple[str, bool]:
    if isinstance(exc, GpuError):
        return exc.code, exc.retryable
    if isinstance(exc, SoftTimeLimitExceeded):
        return "timeout", True
    if isinstance(exc, ApplicationError):
        return ("invalid_media" if exc.code == "output_not_decodable" else exc.code), False
    return "internal", True


def prepare(job_id: str) -> None:
    job_step_prepare(job_id=job_id)


def infer(job_id: str, polls: int = 0) -> None:
    job_step_infer(job_id=job_id, polls=polls)


def finish(job_id: str) -> None:
    job_step_finish(job_id=job_id)


# `jobs.<family>.<step>` for every family: jobs.audio.prepare, jobs.audio.infer, jobs.audio.finish,
# jobs.vision.prepare, ... The services publish them by these names (jobs.life.publish).
STEP_TASKS: Mapping[tuple[Family, Step], Task] = {
    (family, step): shared_task(name=step_task_name(family, step), base=JobTask)(fn)
    for family in Family
    for step, fn in ((Step.PREPARE, prepare), (Step.INFER, infer), (Step.FINISH, finish))
}


@shared_task(
    bind=True, name=task_names.TRANSCRIPT_TO_EDL, acks_late=True, soft_time_limit=60, time_limit=90,
    autoretry_for=RETRYABLE, max_retries=8, retry_backoff=2, retry_backoff_max=300, retry_jitter=True,
)
def transcript_to_edl(self: Task, job_id: str) -> str | None:
    """Retry writing a completed transcription into its project's timeline: about 15 minutes of
    tries at most, then the failure is recorded on the job and logged (the job stays completed)."""
    try:
        outcome = job_transcript_to_edl(job_id=job_id)
    except RETRYABLE as exc:
        if self.request.retries >= (self.max_retries or 0):
            job_transcript_to_edl_failed(job_id=job_id, exc=exc)
        raise
    return outcome["status"] if outcome else None


@shared_task(
    bind=True, name=task_names.REPLACE_IN_TIMELINE, acks_late=True, soft_time_limit=60, time_limit=90,
    autoretry_for=RETRYABLE, max_retries=8, retry_backoff=2, retry_backoff_max=300, retry_jitter=True,
)
def replace_in_timeline(self: Task, job_id: str) -> str | None:
    """Put a finished compression in its source's place in the timeline (jobs.life.timeline_swap):
    about 15 minutes of tries at most, then the failure is recorded on the job."""
    try:
        outcome = job_timeline_swap(job_id=job_id)
    except RETRYABLE as exc:
        if self.request.retries >= (self.max_retries or 0):
            job_timeline_swap_failed(job_id=job_id, exc=exc)
        raise
    return outcome["status"] if outcome else None


@shared_task(
    name=task_names.STOP_CALL, acks_late=True, soft_time_limit=60, time_limit=90,
    autoretry_for=(GpuError,), max_retries=10, retry_backoff=2, retry_backoff_max=120, retry_jitter=True,
)
def stop_call(call_id: str) -> None:
    """Cancel a GPU call whose job ended while its backend did not take the cancel (jobs.life.publish.call_stop):
    asked again with backoff, about ten minutes of tries, then left to the call's own time limit."""
    gpu_client.cancel(call_id)


@shared_task(name=task_names.ANALYZE_AFTER_INSERT, acks_late=True, soft_time_limit=240, time_limit=300)
def analyze_after_insert(rows: int) -> bool:
    """Refresh the jobs table's statistics after `rows` of its rows were inserted at once (a batch),
    when that makes them due (auteur/core/postgres/statistics.py)."""
    return statistics.analyze_after_insert(Job._meta.db_table, rows=int(rows))


@shared_task(name=task_names.MEDIA_VERDICT, acks_late=True, soft_time_limit=120, time_limit=150)
def media_verdict(media_id: str) -> bool:
    """An uploaded image's or video's pictures screened once it is ready, its verdict kept."""
    return media_verdict_keep(media_id)


@shared_task(name=task_names.DEADLINES, acks_late=True, soft_time_limit=50, time_limit=60)
def deadlines() -> dict[str, int]:
    counts = jobs_deadlines_enforce()
    if any(counts.values()):
        logger.info("deadlines: %s", counts)
    return counts


@shared_task(name=task_names.REAP, acks_late=True, soft_time_limit=50, time_limit=60)
def reap() -> dict[str, int]:
    counts = jobs_reap()
    if any(counts.values()):
        logger.info("reaper: %s", counts)
    return counts


# ---- Retention (auteur/core/retention.py; beat runs each, celeryconfig.beat_schedule). Each deletes in
# committed batches, so a run cut short by its time limit loses nothing: the next one goes on.
@shared_task(name="jobs.retention.job_events", acks_late=True)
def retention_job_events() -> str:
    return run_sweep("job_events", time_budget=TASK_TIME_BUDGET_SECONDS).describe()


@shared_task(name="jobs.retention.idempotency_keys", acks_late=True)
def retention_idempotency_keys() -> str:
    return run_sweep("idempotency_keys", time_budget=TASK_TIME_BUDGET_SECONDS).describe()


@shared_task(name="jobs.retention.event_streams", acks_late=True)
def retention_event_streams() -> str:
    return run_sweep("event_streams", time_budget=TASK_TIME_BUDGET_SECONDS).describe()


@shared_task(name="jobs.retention.quotes", acks_late=True)
def retention_quotes() -> str:
    return run_sweep("quotes", time_budget=TASK_TIME_BUDGET_SECONDS).describe()


@shared_task(name="jobs.retention.usage_events", acks_late=True)
def retention_usage_events() -> str:
    return run_sweep("usage_events", time_budget=TASK_TIME_BUDGET_SECONDS).describe()


@shared_task(name="jobs.retention.screening_refusals", acks_late=True)
def retention_screening_refusals() -> str:
    return run_sweep("screening_refusals", time_budget=TASK_TIME_BUDGET_SECONDS).describe()


@shared_task(name=ANNOUNCE_TASK, acks_late=True, soft_time_limit=50, time_limit=60)
def spend_cap_alerts() -> int:
    """Sent when a charge crossed a spend cap's threshold, and by beat as a sweep (queue `webhooks`):
    announces what is not announced yet (jobs/events/account.py)."""
    return cap_alerts_announce()


@shared_task(name=bulk.ANNOUNCE_TASK, acks_late=True, soft_time_limit=120, time_limit=150)
def job_events_announce(event_ids: list[int]) -> int:
    """Push committed job events (a bulk action's) to their owners' streams and webhooks."""
    events = list(JobEvent.objects.filter(pk__in=event_ids).order_by("id"))
    for event in events:
        job_event_committed(event)
    return len(events)


@shared_task(name=batch_events.ANNOUNCE_TASK, acks_late=True, soft_time_limit=50, time_limit=60)
def batch_announce(batch_id: str) -> str | None:
    """A batch's progress, or its end (once)."""
    return batch_events.batch_announce(batch_id)


@shared_task(name=batch_events.SWEEP_TASK, acks_late=True, soft_time_limit=50, time_limit=60)
def batches_sweep() -> int:
    return batch_events.batches_sweep()

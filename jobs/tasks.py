"""Celery tasks of the job pipeline (thin: each calls the services) and the reaper.

Tasks are registered per job family with clear names (`jobs.audio.prepare`, `jobs.render.finish`)
so Flower shows what runs where, and celeryconfig.py routes each family to its queue.
"""

from __future__ import annotations

import logging
import random
from typing import Any

from celery import shared_task
from celery.contrib.django.task import DjangoTask
from celery.exceptions import SoftTimeLimitExceeded
from django.db import DatabaseError, InterfaceError, OperationalError

from auteur.errors import ApplicationError
from auteur.logging import job_id_var
from gpu_tasks.errors import GpuError, TransientGpuError
from jobs import pipeline, services

logger = logging.getLogger(__name__)

TRANSIENT_RETRIES = 5


class JobTask(DjangoTask):
    """Base of every pipeline step: at-least-once delivery, and a failure ends the job with a refund.

    A step that fails for good (a permanent error, or transient ones past their retries) lands in
    on_failure, which fails the job and refunds it through the service: exactly once, however
    many times on_failure runs. Losing the database mid-step (a restart, a failover) is
    transient: the step is retried with back-off, like a GPU capacity error.
    """

    acks_late = True
    reject_on_worker_lost = True
    max_retries = TRANSIENT_RETRIES

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        job_id = args[0] if args else kwargs["job_id"]
        # Every log line of the step carries its job id, and none after it (a worker process
        # runs other tasks next).
        token = services.bind_job_to_logs(job_id)
        try:
            if (self.request.delivery_info or {}).get("redelivered"):
                # A worker died holding this message, or the broker restored it: the step runs
                # again and finds its own work done. Recorded so that drills can count them.
                services.event(job_id, "step_redelivered", step=self.name)
            return super().__call__(*args, **kwargs)
        except (OperationalError, InterfaceError) as exc:
            self.retry_transient(exc)
        finally:
            job_id_var.reset(token)

    def on_failure(self, exc: Exception, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
        job_id = args[0] if args else kwargs.get("job_id")
        code, retryable = error_code_of(exc)
        message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
        if code == "internal":
            logger.error("job step %s crashed", self.name, exc_info=exc, extra={"job_id": str(job_id)})
        services.job_fail(job_id=job_id, code=code, message=message, retryable=retryable)

    def retry_transient(self, exc: TransientGpuError | DatabaseError | InterfaceError) -> None:
        """Back off exponentially with full jitter, within a bound; then on_failure takes over."""
        delay = random.uniform(0, min(60.0, 2.0 * 2**self.request.retries))  # noqa: S311 - jitter
        if isinstance(exc, TransientGpuError):  # no event to write while the database is away
            job_id = self.request.args[0] if self.request.args else (self.request.kwargs or {})["job_id"]
            services.event(job_id, "step_retry", step=self.name, code=getattr(exc, "code", ""))
        raise self.retry(exc=exc, countdown=delay)


def error_code_of(exc: BaseException) -> tuple[str, bool]:
    if isinstance(exc, GpuError):
        return exc.code, exc.retryable
    if isinstance(exc, SoftTimeLimitExceeded):
        return "timeout", True
    if isinstance(exc, ApplicationError):
        return ("invalid_media" if exc.code == "output_not_decodable" else exc.code), False
    return "internal", True


def prepare(self: JobTask, job_id: str) -> None:
    job = services.job_claim(job_id=job_id)
    if job is None:
        return  # waiting for a slot, or already claimed by an earlier delivery, or ended
    try:
        job = services.job_spawn(job_id=job_id, job=job)
        # One look right away: a call that is already done (a short job, a cache hit) is stored
        # at once; otherwise polling starts with a short countdown.
        status = services.job_poll(job_id=job_id, job=job)
    except TransientGpuError as exc:
        self.retry_transient(exc)
    _carry_on(job_id, job, status, polls=0)


def infer(self: JobTask, job_id: str, polls: int = 0) -> None:
    try:
        job = services.job_spawn(job_id=job_id)  # a no-op unless a transient failure needs a new call
        if job is None or job.status != "processing":
            return
        status = services.job_poll(job_id=job_id, job=job)
        if status is not None and status.state == "failed":  # transient: re-spawned on the next look
            services.job_spawn(job_id=job_id)
    except TransientGpuError as exc:
        self.retry_transient(exc)
    _carry_on(job_id, job, status, polls)


def _carry_on(job_id: str, job: Any, status: Any, polls: int) -> None:
    """After a look at the call: store a finished one right here, or poll again later.

    Storing in the step that saw the result, rather than in a step of its own, saves a hop
    through the broker per job (bench/pipeline_throughput.py measures it); the finish step
    remains for the reaper, which re-drives a job whose store was interrupted.
    """
    if status is None or job is None:
        return
    if status.state == "succeeded":
        services.job_complete(job_id=job_id, result=status.result or {}, gpu_seconds=status.gpu_seconds, job=job)
    else:
        pipeline.publish(job_id, job.type, "infer", countdown=pipeline.poll_countdown(polls), polls=polls + 1)


def finish(self: JobTask, job_id: str) -> None:
    try:
        status = services.job_poll(job_id=job_id)
    except TransientGpuError as exc:
        self.retry_transient(exc)
    if status is None or status.state != "succeeded":
        return
    services.job_complete(job_id=job_id, result=status.result or {}, gpu_seconds=status.gpu_seconds)


# Soft, hard (s). Any step may store a job's outputs (an upload of a long render), hence one
# generous bound for all; the GPU client's own timeouts bound a spawn or a poll long before.
STEP_LIMITS = {"prepare": (900, 960), "infer": (900, 960), "finish": (900, 960)}
TASKS: dict[str, Any] = {}
for _family in pipeline.FAMILIES:
    for _step, _fn in (("prepare", prepare), ("infer", infer), ("finish", finish)):
        _name = pipeline.task_name(_family, _step)
        _soft, _hard = STEP_LIMITS[_step]
        TASKS[_name] = shared_task(name=_name, base=JobTask, bind=True, soft_time_limit=_soft, time_limit=_hard)(_fn)


@shared_task(name="jobs.reap", acks_late=True, soft_time_limit=50, time_limit=60)
def reap() -> dict[str, int]:
    counts = services.jobs_reap()
    if any(counts.values()):
        logger.info("reaper: %s", counts)
    return counts

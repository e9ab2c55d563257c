"""What each pipeline step does: claim, spawn, look at the call, then store it or poll again.

A step that finds the call done stores its outputs right there, rather than in a step of its
own: that saves a hop through the broker per job (bench/pipeline_throughput.py measures it); the
finish step remains for the reaper, which re-drives a job whose store was interrupted.
`TransientGpuError` (the backend could not be reached) propagates: the task retries the step.
"""

from __future__ import annotations

from auteur.core import tracing
from jobs import gpu_client
from jobs.gpu_client import CallStatus
from jobs.life import publish
from jobs.life.inference import job_poll, job_spawn
from jobs.life.outputs import job_result_store
from jobs.life.publish import Step
from jobs.life.status import job_claim_now
from jobs.models import Job, JobStatus


def job_step_prepare(*, job_id: str) -> None:
    job, claimed_now = job_claim_now(job_id=job_id)
    if job is None:
        return  # waiting for a slot, or ended
    tracing.note_job(job)
    with tracing.job_context(job.traceparent):
        job = job_spawn(job_id=job_id, job=job)
        # One look right away: a call that is already done (a short job, a cache hit) is stored at
        # once; otherwise polling starts with a short countdown.
        _carry_on(job, job_poll(job_id=job_id, job=job), polls=0, claimed_now=claimed_now)


def job_step_infer(*, job_id: str, polls: int) -> None:
    job = job_spawn(job_id=job_id)  # a no-op unless a transient failure needs a new call
    if job is None or job.status != JobStatus.PROCESSING:
        return
    tracing.note_job(job, polls=polls)
    with tracing.job_context(job.traceparent):
        status = job_poll(job_id=job_id, job=job)
        if status is not None and status.state == "failed":  # transient: re-spawned on the next look
            job_spawn(job_id=job_id)
        _carry_on(job, status, polls)


def job_step_finish(*, job_id: str) -> None:
    status = job_poll(job_id=job_id)
    if status is not None and status.state == "succeeded":
        job_result_store(job_id=job_id, result=status.result or {}, gpu_seconds=status.gpu_seconds,
                         inference_ended=True)


def _carry_on(job: Job | None, status: CallStatus | None, polls: int, *, claimed_now: bool = False) -> None:
    """After a look at the call: store a finished one right here, or wait for its announcement.

    A backend whose calls announce their end (`gpu_tasks.announce`) is not asked again: the
    completion consumer publishes this step when the call ends, and the reaper polls a call
    whose announcement was lost. Only a backend that cannot announce is polled again, with a
    growing countdown. `claimed_now`: the job was claimed by this very step, so no delivery has
    stored any of its outputs yet.
    """
    if status is None or job is None:
        return
    if status.state == "succeeded":
        # job_poll stamped the end of inference on finding the call succeeded.
        job_result_store(job_id=job.pk, result=status.result or {}, gpu_seconds=status.gpu_seconds, job=job,
                         inference_ended=True, first_store=claimed_now)
    elif status.state == "failed" or not gpu_client.announces():
        # A transient failure was re-spawned just now: its new call is looked at once soon.
        publish.publish(job.pk, job.type, Step.INFER, countdown=publish.poll_countdown(polls), polls=polls + 1,
                        trace=job.traceparent)

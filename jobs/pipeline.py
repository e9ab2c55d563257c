"""How a job's steps follow each other: the one place that builds and publishes them.

    prepare  claim a slot (pending/queued -> processing), resolve inputs, spawn the GPU call,
             and look at it once
    infer    poll the call without blocking: re-published with a growing countdown until it ends
    finish   the reaper's way to re-drive a job whose store step was interrupted

The step whose look finds the call done stores the outputs (object storage, media records,
caption JSON) and marks the job completed right there: a hop through the broker costs more
than storing a small output, so a job whose call is done at the first look (a short job, a
cache hit, the benchmarks' noop backend) runs as one task, and a longer one as prepare plus
its polls. Each step publishes the next as an immutable signature with the job id as its only
argument, after its own work is committed; a redelivered step finds its work done and only
re-publishes, so the worst case of a crash is one duplicate message, which the next step
ignores (bench/ measures the pipeline's overhead).

Queues: one per job family (celeryconfig.py routes `jobs.<family>.*`), so a flood of renders
cannot starve transcriptions.
"""

from __future__ import annotations

import logging
import uuid

from celery import Task
from kombu.exceptions import OperationalError

from gpu_tasks.types import JobType

logger = logging.getLogger(__name__)

FAMILY: dict[str, str] = {
    JobType.TRANSCRIPTION: "audio",
    JobType.TTS: "audio",
    JobType.AUDIO_GENERATION: "audio",
    JobType.LIP_SYNC: "vision",
    JobType.PERFORMANCE_CLONING: "vision",
    JobType.GAZE_REDIRECTION: "vision",
    JobType.VIDEO_QUERY: "vision",
    JobType.VIDEO_GENERATION: "generation",
    JobType.IMAGE_GENERATION: "generation",
    JobType.RENDER: "render",
    JobType.COMPRESSION: "compression",
}
FAMILIES = sorted(set(FAMILY.values()))
STEPS = ("prepare", "infer", "finish")

POLL_FIRST_SECONDS = 0.2
POLL_MAX_SECONDS = 5.0
# Publishing must fail fast when Redis is down: the job is already charged and committed, and
# the reaper re-publishes pending jobs; a client must not wait on broker retries.
PUBLISH_RETRY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.2}


def task_name(family: str, step: str) -> str:
    return f"jobs.{family}.{step}"


def _task(job_type: str, step: str) -> Task:
    from jobs.tasks import TASKS

    return TASKS[task_name(FAMILY[job_type], step)]


def poll_countdown(polls: int) -> float:
    """0.2 s, 0.4 s, 0.8 s ... up to 5 s: quick jobs finish fast, long ones poll gently."""
    return float(min(POLL_MAX_SECONDS, POLL_FIRST_SECONDS * 2**polls))


def publish(job_id: uuid.UUID | str, job_type: str, step: str, *, countdown: float = 0, polls: int = 0) -> bool:
    """Send one step; False (logged) when the broker cannot be reached: the reaper will retry."""
    args = (str(job_id), polls) if step == "infer" else (str(job_id),)
    signature = _task(job_type, step).si(*args)
    # Stamped with the job id, so that cancelling the job revokes whatever step is queued for it.
    signature.stamp(job_id=str(job_id))
    if countdown:
        signature.set(countdown=countdown)
    try:
        signature.apply_async(retry=True, retry_policy=PUBLISH_RETRY)
    except (OperationalError, OSError) as exc:
        logger.warning("could not publish %s of job %s: %s", step, job_id, exc, extra={"job_id": str(job_id)})
        return False
    return True


def start(job_id: uuid.UUID | str, job_type: str) -> bool:
    return publish(job_id, job_type, "prepare")


def revoke(job_id: uuid.UUID | str) -> None:
    """Tell every worker to drop the job's queued steps (a canceled job's poll, say). Best effort:
    a step that still runs finds the job canceled and stops on its own."""
    from auteur.celery import app

    try:
        app.control.revoke_by_stamped_headers({"job_id": str(job_id)})
    except (OperationalError, OSError) as exc:
        logger.warning("could not revoke the steps of job %s: %s", job_id, exc, extra={"job_id": str(job_id)})

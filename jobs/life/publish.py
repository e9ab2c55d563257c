"""How a job's steps follow each other: the one place that publishes them, by task name.

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
ignores (bench/pipeline_overhead.py measures the pipeline's overhead). A publish gives up within
about a second when the broker does not answer (auteur/core/publishing.py): the reaper publishes a
job whose step was not sent, so an API request never waits on a partitioned broker.

Cancelling a job sends nothing to the workers: every step re-reads its job and stops when it
is no longer active, so a step still queued for a canceled job costs one no-op delivery. A
revocation would cost more: Celery keeps every revoked id or stamp in each worker's memory and
checks every task it receives against them.

Each step runs on its type's queue family: its task is named `jobs.<family>.<step>` (`jobs/tasks.py`
declares them) and is published by that name, so nothing below the tasks imports them.
"""

from __future__ import annotations

import logging
import uuid
from enum import StrEnum

from auteur.core.publishing import send
from jobs import gpu_client, task_names
from jobs.specs import job_spec

logger = logging.getLogger(__name__)


class Step(StrEnum):
    PREPARE = "prepare"
    INFER = "infer"
    FINISH = "finish"


# Soft and hard time limits of every step, in seconds. Any step may store a job's outputs (an
# upload of a long render), hence one generous bound for all; the GPU client's own timeouts
# bound a spawn or a poll long before. The reaper gives an interrupted store this long too.
STEP_SOFT_LIMIT_SECONDS = 900
STEP_HARD_LIMIT_SECONDS = 960

POLL_FIRST_SECONDS = 0.2
POLL_MAX_SECONDS = 5.0


def poll_countdown(polls: int) -> float:
    """0.2 s, 0.4 s, 0.8 s ... up to 5 s: quick jobs finish fast, long ones poll gently."""
    return float(min(POLL_MAX_SECONDS, POLL_FIRST_SECONDS * 2**polls))


def publish(job_id: uuid.UUID | str, job_type: str, step: Step, *, countdown: float = 0, polls: int = 0,
            trace: str = "") -> bool:
    """Send one step; False (logged) when the broker cannot be reached: the reaper will retry.
    `trace`: the job's traceparent (Job.traceparent), so that the step is in the job's trace."""
    args = (str(job_id), polls) if step is Step.INFER else (str(job_id),)
    return publish_task(
        step_task_name(job_spec(job_type).family, step), args, job_id=job_id, countdown=countdown, label=step,
        trace=trace,
    )


def step_task_name(family: str, step: Step) -> str:
    """The name of a family's step task: `jobs.audio.prepare`, ..."""
    return f"jobs.{family}.{step}"


def publish_task(
    name: str, args: tuple[object, ...], *, job_id: uuid.UUID | str, countdown: float = 0, label: str = "",
    trace: str = "",
) -> bool:
    """Send the task `name` about a job; False (logged, as `label` or the name) when the broker
    cannot be reached or does not answer within about a second (auteur/core/publishing.py)."""
    what = f"{label or name} of job {job_id}"
    return send(name, args, countdown=countdown, what=what, job_id=str(job_id), trace=trace)


def start(job_id: uuid.UUID | str, job_type: str, trace: str = "") -> bool:
    return publish(job_id, job_type, Step.PREPARE, trace=trace)


def call_stop(job_id: uuid.UUID | str, call_id: str) -> None:
    """Cancel the GPU call of a job that ended without it (canceled, failed, or a surplus call), so
    that it stops running and billing now, not at its time limit. When the backend does not take
    the cancel (out of reach), the `jobs.stop_call` task asks it again, with backoff, for about
    ten minutes; nothing the call produces is kept meanwhile (its job has ended)."""
    try:
        gpu_client.cancel(call_id)
    except gpu_client.GpuError as exc:
        logger.warning("GPU call %s of job %s: cancel failed (%s), asking again by a task", call_id, job_id,
                       exc.code, extra={"job_id": str(job_id)})
        publish_task(task_names.STOP_CALL, (call_id,), job_id=job_id, label="a cancel of its GPU call")

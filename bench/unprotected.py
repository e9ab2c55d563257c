"""The Celery app with a job's GPU call unguarded: for the partition drill's demonstration ONLY.

    celery -A bench.unprotected worker ...

The step that starts a job's GPU call first checks that the job has none recorded (the call id,
written by a guarded UPDATE: jobs.life.inference.job_spawn), so a step delivered twice (a worker
cut off from the broker past the visibility timeout, whose message another worker then
receives) finds the call started and starts none. In this app's worker processes the first step
skips that check, and nothing else changes: the drill runs its workers on it to show that the
same fault then starts a second GPU call for the job's attempt (bench/partition.py
--unprotected). Never run it anywhere else.
"""

from __future__ import annotations

from typing import Any

from celery.signals import worker_process_init

from auteur.celery import app

__all__ = ["app"]


@worker_process_init.connect
def _unguard(**_: Any) -> None:
    from jobs import tasks
    from jobs.life import inference, steps
    from jobs.life.status import job_claim
    from jobs.models import Job, JobStatus

    def prepare_without_the_check(*, job_id: str) -> None:
        job = job_claim(job_id=job_id)
        if job is None:
            return
        fresh = Job.objects.filter(pk=job.pk, status=JobStatus.PROCESSING).first()
        if fresh is None:
            return
        fresh.gpu_call_id = ""  # what the check reads; the guarded UPDATE that records a call still runs
        job = inference.job_spawn(job_id=job_id, job=fresh)
        steps._carry_on(job, inference.job_poll(job_id=job_id, job=job), polls=0)

    tasks.job_step_prepare = prepare_without_the_check  # type: ignore[assignment]

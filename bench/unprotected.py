"""The Celery app with a job's GPU call unguarded: for the partition drill's demonstration ONLY.

    celery -A bench.unprotected worker ...

The step that starts a job's GPU call first claims the right to (jobs.life.inference.job_spawn:
a guarded UPDATE of `spawn_claimed_at`, which also finds a call already recorded), so a step
delivered twice (a worker cut off from the broker past the visibility timeout, whose message
another worker then receives) starts no second call. In this app's worker processes the first
step starts the call without that claim, as a step that only guards the recording of the call's
id would: the drill runs its workers on it to show that the same fault then starts a second GPU
call for the job's attempt (bench/partition.py --unprotected). Never run it anywhere else.
"""

from __future__ import annotations

from typing import Any

from celery.signals import worker_process_init

from auteur.celery import app

__all__ = ["app"]


@worker_process_init.connect
def _unguard(**_: Any) -> None:
    from django.db.models import F
    from django.utils import timezone

    from jobs import gpu_client, tasks
    from jobs.life import inference, steps
    from jobs.life.status import job_claim
    from jobs.models import Job, JobStatus
    from jobs.specs import job_spec

    def prepare_without_the_claim(*, job_id: str) -> None:
        job = job_claim(job_id=job_id)
        if job is None:
            return
        call_id = gpu_client.spawn(job.type, job_spec(job.type).build_payload(job))
        now = timezone.now()
        recorded = Job.objects.filter(pk=job.pk, status=JobStatus.PROCESSING, gpu_call_id="").update(
            gpu_call_id=call_id, attempts=F("attempts") + 1, inference_started_at=now, updated_at=now)
        if not recorded:
            gpu_client.cancel_quietly(call_id)  # another delivery's call was recorded first: ours is surplus
            return
        job.gpu_call_id, job.inference_started_at = call_id, now
        steps._carry_on(job, inference.job_poll(job_id=job_id, job=job), polls=0)

    tasks.job_step_prepare = prepare_without_the_claim  # type: ignore[assignment]

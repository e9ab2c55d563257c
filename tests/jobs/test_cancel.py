"""Cancelling jobs: what a burst of submit-then-cancel leaves behind, what a cancel refunds, and
its rate limit."""

from __future__ import annotations

from typing import Any

import pytest
import redis
from celery import current_app
from django.conf import settings

from auteur.queues import ALL_QUEUES
from credits.models import CreditTransaction
from credits.selectors import credit_balance_get
from jobs.models import Job, JobEvent, JobStatus
from tests.jobs.conftest import upload_local, wait_for

CYCLES = 20


def _broker_drained() -> bool:
    broker = redis.Redis.from_url(settings.REDIS_URL)
    try:
        return not any(broker.llen(queue) for queue in ALL_QUEUES) and not broker.hlen("unacked")
    finally:
        broker.close()


def _refunds(job_id: Any) -> list[int]:
    return list(CreditTransaction.objects.filter(job_id=job_id, type="refund").values_list("amount", flat=True))


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_submit_then_cancel_cycles_leave_no_revocations_and_refund_each_job_once(
    start_worker: Any, auth_client: Any, funded: Any, project: Any, samples: Any
) -> None:
    worker = start_worker(include="tests.jobs.worker_probe")
    control = current_app.control
    video = upload_local(auth_client, project, samples.video, "video/mp4")
    before = credit_balance_get(user=funded)
    # The worker stops taking messages, so every step published below is still queued when its
    # job is canceled: the case a revocation would be sent for.
    for queue in ALL_QUEUES:
        control.cancel_consumer(queue, destination=[worker.name], reply=True)
    ids = []
    for _ in range(CYCLES):
        accepted = auth_client.post("/api/v1/jobs/compression", {"project_id": str(project.pk),
                                                                 "media_id": str(video.pk)}, format="json")
        assert accepted.status_code == 202, accepted.json()
        job_id = accepted.json()["job_id"]
        canceled = auth_client.post(f"/api/v1/jobs/{job_id}/cancel")
        assert canceled.status_code == 200, canceled.json()
        ids.append(job_id)
    for queue in ALL_QUEUES:
        control.add_consumer(queue, destination=[worker.name], reply=True)

    # Every queued step is delivered, and finds its job canceled.
    wait_for(_broker_drained, timeout=120)
    [reply] = control.broadcast("revocation_state", destination=[worker.name], reply=True, timeout=5)
    assert reply[worker.name] == {"revoked_ids": 0, "revoked_stamps": 0}
    assert control.inspect(destination=[worker.name]).revoked() == {worker.name: []}
    for job in Job.objects.filter(pk__in=ids):
        assert job.status == JobStatus.CANCELED
        assert _refunds(job.pk) == [job.credits_cost], "refunded in full, exactly once"
        assert job.gpu_call_id == "" and job.attempts == 0, "no engine ran"
        assert not JobEvent.objects.filter(job=job, type__in=["started", "inference_started"]).exists()
    assert credit_balance_get(user=funded) == before

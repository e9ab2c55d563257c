"""Cancelling jobs: what a burst of submit-then-cancel leaves behind, what a cancel refunds, and
its rate limit."""

from __future__ import annotations

import os
import threading
from datetime import timedelta
from typing import Any

import pytest
import redis
from celery import current_app
from django.conf import settings
from django.db import connection
from django.utils import timezone

from auteur.core.queues import ALL_QUEUES
from credits.models import CreditTransaction
from credits.selectors import credit_balance_get, ledger_check
from credits.services.ledger import credit_deduct_for_job, credit_grant
from jobs.errors import JobNotCancelable
from jobs.life import status as lifecycle
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
    [reply] = control.broadcast("revocation_state", destination=[worker.name], reply=True, timeout=5) or [{}]
    assert reply[worker.name] == {"revoked_ids": 0, "revoked_stamps": 0}
    assert control.inspect(destination=[worker.name]).revoked() == {worker.name: []}
    for job in Job.objects.filter(pk__in=ids):
        assert job.status == JobStatus.CANCELED
        assert _refunds(job.pk) == [job.credits_cost], "refunded in full, exactly once"
        assert job.gpu_call_id == "" and job.attempts == 0, "no engine ran"
        assert not JobEvent.objects.filter(job=job, type__in=["started", "inference_started"]).exists()
    assert credit_balance_get(user=funded) == before


# ----------------------------------------------------------------------------- what a cancel refunds

COST = 20  # a transcription job (time limit 600 s)


def _charged_job(user: Any, **fields: Any) -> Job:
    credit_grant(user=user, amount=100, type="bonus", description="test")
    job = Job.objects.create(user=user, type="transcription", credits_cost=COST, **fields)
    credit_deduct_for_job(user=user, job_id=job.pk, amount=COST, description="transcription")
    return job


def _started(seconds_ago: float, progress: int = 0) -> dict[str, Any]:
    return {"status": JobStatus.PROCESSING, "gpu_call_id": "call-1", "attempts": 1, "progress": progress,
            "inference_started_at": timezone.now() - timedelta(seconds=seconds_ago)}


@pytest.mark.django_db
@pytest.mark.parametrize("fields", [{}, {"status": JobStatus.QUEUED}, {"status": JobStatus.PROCESSING}],
                         ids=["pending", "queued", "claimed-not-spawned"])
def test_a_cancel_before_inference_started_refunds_in_full(user: Any, fields: dict[str, Any]) -> None:
    job = lifecycle.job_cancel(job=_charged_job(user, **fields))
    assert (job.status, job.credits_refunded, job.credits_refund) == (JobStatus.CANCELED, True, COST)
    assert _refunds(job.pk) == [COST]
    assert credit_balance_get(user=user) == 100


@pytest.mark.django_db
@pytest.mark.parametrize(("seconds_ago", "progress", "refund"), [
    (60, 70, 6),  # progress rules: 70% done keeps ceil(20 * 0.7) = 14
    (315, 10, 9),  # time rules: 315 s of 600 keeps ceil(20 * 0.525...) = 11
    (1, 0, 19),  # just started: at least one credit is kept
    (700, 0, 0),  # past its time limit: nothing is left to refund
])
def test_a_cancel_after_inference_started_refunds_only_the_unspent_part(
    user: Any, seconds_ago: float, progress: int, refund: int
) -> None:
    job = lifecycle.job_cancel(job=_charged_job(user, **_started(seconds_ago, progress)))
    assert job.status == JobStatus.CANCELED and job.credits_refund == refund
    assert job.credits_refunded is (refund > 0)
    assert _refunds(job.pk) == ([refund] if refund else [])
    assert credit_balance_get(user=user) == 100 - COST + refund
    assert JobEvent.objects.get(job=job, type="canceled").data["refunded"] == refund
    assert ledger_check() == []


@pytest.mark.django_db
def test_the_api_shows_a_late_cancels_partial_refund(user: Any, auth_client: Any) -> None:
    job = _charged_job(user, **_started(60, 70))
    response = auth_client.post(f"/api/v1/jobs/{job.pk}/cancel")
    assert response.status_code == 200, response.json()
    assert (response.json()["credits_refund"], response.json()["credits_refunded"]) == (6, True)
    assert auth_client.get(f"/api/v1/jobs/{job.pk}").json()["credits_refund"] == 6


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("round_", range(5))
def test_a_cancel_racing_a_failure_refunds_once_and_never_more_than_the_charge(user: Any, round_: int) -> None:
    job = _charged_job(user, **_started(60, 70))
    barrier = threading.Barrier(2)
    outcomes: dict[str, Any] = {}

    def cancel() -> None:
        barrier.wait()
        try:
            outcomes["cancel"] = lifecycle.job_cancel(job=Job.objects.get(pk=job.pk)).credits_refund
        except JobNotCancelable:
            outcomes["cancel"] = "refused"
        finally:
            connection.close()

    def fail() -> None:
        barrier.wait()
        try:
            outcomes["fail"] = lifecycle.job_fail(job_id=job.pk, code="invalid_media", detail="bad", retryable=False)
        finally:
            connection.close()

    threads = [threading.Thread(target=cancel), threading.Thread(target=fail)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    job.refresh_from_db()
    refunds = _refunds(job.pk)
    assert len(refunds) == 1 and refunds[0] <= COST
    if job.status == JobStatus.CANCELED:
        assert outcomes == {"cancel": 6, "fail": False} and refunds == [6]
    else:
        assert job.status == JobStatus.FAILED
        assert outcomes == {"cancel": "refused", "fail": True} and refunds == [COST]
    assert credit_balance_get(user=user) == 100 - COST + refunds[0]
    assert ledger_check() == []


# ----------------------------------------------------------------------------- rate limit


@pytest.mark.django_db
def test_cancels_past_the_limit_are_refused_with_429_and_cancel_nothing(user: Any, auth_client: Any,
                                                                        settings: Any) -> None:
    settings.AUTEUR_RATE_LIMIT_CANCELS_PER_MINUTE = 3
    jobs = [_charged_job(user) for _ in range(4)]
    for job in jobs[:3]:
        assert auth_client.post(f"/api/v1/jobs/{job.pk}/cancel").status_code == 200
    response = auth_client.post(f"/api/v1/jobs/{jobs[3].pk}/cancel")
    assert response.status_code == 429
    error = response.json()["error"]
    assert error["code"] == "rate_limited" and error["details"]["retry_after_seconds"] >= 1
    assert int(response["Retry-After"]) >= 1
    assert Job.objects.get(pk=jobs[3].pk).status == JobStatus.PENDING and _refunds(jobs[3].pk) == []
    # Only cancels are held back: the user's other requests still go through.
    assert auth_client.get(f"/api/v1/jobs/{jobs[3].pk}").status_code == 200


# ----------------------------------------------------------------------------- a call waiting for a runner slot


@pytest.mark.django_db
def test_a_job_waiting_for_a_local_runner_slot_keeps_its_place_and_a_cancel_refunds_it_in_full(
    funded: Any, project: Any, auth_client: Any, settings: Any, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gpu_tasks.local_runner import SLOTS_DIR
    from gpu_tasks.runner_slots import RunnerSlots
    from jobs import gpu_client
    from jobs.life import publish as pipeline
    from jobs.life.inference import job_poll, job_spawn
    from jobs.life.reaper import jobs_reap
    from jobs.life.status import job_claim

    settings.AUTEUR_GPU_BACKEND, settings.AUTEUR_GPU_LOCAL_DIR = "local", str(tmp_path / "calls")
    settings.AUTEUR_LOCAL_RUNNER_SLOTS = 1
    gpu_client.reset()
    monkeypatch.setattr(pipeline, "publish", lambda *args, **kwargs: True)  # no broker message left behind
    taken = RunnerSlots(tmp_path / "calls" / SLOTS_DIR, 1).acquire()  # another engine holds the one slot
    job_id = ""
    try:
        accepted = auth_client.post("/api/v1/jobs/tts", {"project_id": str(project.pk), "text": "Hello world"},
                                    format="json")
        assert accepted.status_code == 202, accepted.json()
        job_id = accepted.json()["job_id"]
        assert job_claim(job_id=job_id) is not None
        job = job_spawn(job_id=job_id)
        assert job is not None and job.gpu_call_id
        status = wait_for(lambda: (s := job_poll(job_id=job_id)) is not None and s.waiting and s, timeout=60)
        assert status.state == "running"
        job = Job.objects.get(pk=job_id)
        assert job.status == JobStatus.PROCESSING and job.inference_started_at is None
        # Hours later it still waits: the reaper polls it again but never times it out.
        Job.objects.filter(pk=job_id).update(updated_at=timezone.now() - timedelta(hours=2))
        counts = jobs_reap(now=timezone.now() + timedelta(hours=2))
        assert counts["timed_out"] == 0 and counts["repolled"] == 1
        assert Job.objects.get(pk=job_id).status == JobStatus.PROCESSING
        canceled = lifecycle.job_cancel(job=Job.objects.get(pk=job_id))
        assert canceled.credits_refund == canceled.credits_cost and _refunds(job_id) == [canceled.credits_cost]
    finally:
        call_id = Job.objects.filter(pk=job_id).values_list("gpu_call_id", flat=True).first() if job_id else None
        if call_id:
            gpu_client.cancel_quietly(call_id)
        os.close(taken)
        gpu_client.reset()

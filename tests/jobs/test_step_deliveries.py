"""A step that kills its worker process every time it runs (the kernel's OOM killer on a hostile
file, a crash in C code) is delivered again after each death: it runs AUTEUR_STEP_MAX_DELIVERIES
times at most, then its job fails `crash_loop`, refunded once, and the workers live on."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.conf import settings

from credits.models import CreditTransaction
from credits.selectors import credit_balance_get
from credits.services.ledger import credit_grant
from jobs.models import Job, JobEvent, JobPiece, JobStatus
from tests.factories import ProjectFactory
from tests.gpu_tasks.helpers import ffmpeg
from tests.jobs.conftest import upload_local, wait_terminal

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def video(path: Path, seconds: int) -> Path:
    ffmpeg("-f", "lavfi", "-i", f"testsrc=size=160x96:rate=25:duration={seconds}",
           "-c:v", "libx264", "-g", "50", "-pix_fmt", "yuv420p", str(path))
    return path


def test_a_step_that_kills_its_worker_fails_the_job_refunded_once_after_its_deliveries(
    start_worker, auth_client, user, tmp_path
):
    credit_grant(user=user, amount=100, type="bonus", description="test")
    project = ProjectFactory.create(user=user)
    crashes = tmp_path / "crashes.log"
    crashes.touch()
    worker = start_worker(include="tests.jobs.worker_crash", AUTEUR_PIECES_MIN_MS="5000",
                          AUTEUR_PIECES_TARGET_MS="4000", AUTEUR_TEST_CRASH_LOG=str(crashes))
    long_video = upload_local(auth_client, project, video(tmp_path / "long.mp4", 12), "video/mp4")
    short_video = upload_local(auth_client, project, video(tmp_path / "short.mp4", 3), "video/mp4")
    before = credit_balance_get(user=user)

    response = auth_client.post("/api/v1/jobs/compression", {"media_id": str(long_video.pk), "preset": "480p"},
                                format="json")
    assert response.status_code == 202, response.json()
    job = wait_terminal(response.json()["job_id"])

    assert (job.status, job.error_code, job.retryable) == (JobStatus.FAILED, "crash_loop", False)
    runs = crashes.read_text().split()
    assert len(runs) == settings.AUTEUR_STEP_MAX_DELIVERIES == 3, runs  # the fourth delivery did not run it
    assert len(set(runs)) == 3, "each run killed the process it ran in"
    assert JobEvent.objects.filter(job=job, type="step_redelivered").count() == 3
    assert not JobPiece.objects.filter(job=job).exists()
    # Refunded once: one usage row, one refund row, the balance as before.
    rows = list(CreditTransaction.objects.filter(job_id=job.pk).order_by("created_at").values_list("type", flat=True))
    assert rows == ["usage", "refund"]
    assert credit_balance_get(user=user) == before
    assert job.credits_refunded and job.credits_refund == job.credits_cost

    # The worker replaced the processes it lost, and runs the next job to its end.
    assert worker.proc.poll() is None
    response = auth_client.post("/api/v1/jobs/compression", {"media_id": str(short_video.pk), "preset": "480p"},
                                format="json")
    assert response.status_code == 202, response.json()
    assert wait_terminal(response.json()["job_id"]).status == JobStatus.COMPLETED
    assert len(crashes.read_text().split()) == 3
    assert Job.objects.get(pk=job.pk).status == JobStatus.FAILED

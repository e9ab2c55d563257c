"""A failed job tells its user a fixed sentence for its code, never the error's own text; staff
read that text, with its credentials masked, in the admin."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from billiard.einfo import ExceptionInfo
from django.conf import settings
from django.test import Client
from django.urls import reverse

from credits.services.ledger import credit_deduct_for_job, credit_grant
from gpu_tasks.errors import GpuError
from jobs.failures import FAILURE_MESSAGES, UNKNOWN_FAILURE_MESSAGE
from jobs.life.publish import Step
from jobs.models import Job, JobStatus
from jobs.specs import Family
from jobs.tasks import STEP_TASKS

pytestmark = pytest.mark.django_db

PATH = "/srv/auteur/var/gpu-local/local-0123456789abcdef0123456789abcdef/work/input.mp4"
SIGNATURE = "X-Amz-Signature=9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
URL = f"https://bucket.s3.example.com/media/u/input.mp4?X-Amz-Credential=AKIA%2F20260101&{SIGNATURE}"
STDERR = (f"[mov,mp4,m4a,3gp,3g2,mj2 @ 0x55d5c8a0] moov atom not found\n{PATH}: Invalid data found when "
          "processing input\nffmpeg version 6.1.1 Copyright (c) 2000-2023 the FFmpeg developers")

# What the GPU side reports (a status record's error, as the local runner or Modal writes it),
# and an exception raised inside a step itself.
ERRORS = {
    "ffmpeg-stderr": GpuError.from_dict({"code": "invalid_media", "message": f"ffmpeg failed: {STDERR}",
                                         "kind": "permanent"}),
    "signed-url": GpuError.from_dict({"code": "network", "message": f"GET {URL} timed out", "kind": "transient"}),
    "path-and-secret": RuntimeError(f"could not open {PATH} with key {settings.AUTEUR_JWT_SECRET}"),
}
LEAKS = (PATH, SIGNATURE, "moov atom", "ffmpeg version", settings.AUTEUR_JWT_SECRET, "RuntimeError")


def _fail_through_the_step(job: Job, exc: Exception) -> None:
    try:
        raise exc
    except Exception:
        info = ExceptionInfo()
    STEP_TASKS[Family.AUDIO, Step.INFER].on_failure(exc, "task-id", (str(job.pk),), {}, info)


@pytest.mark.parametrize("case", sorted(ERRORS))
def test_an_engine_errors_text_reaches_only_staff_and_the_log(
    case: str, user: Any, auth_client: Any, make_user: Any, caplog: pytest.LogCaptureFixture
) -> None:
    credit_grant(user=user, amount=10, type="bonus", description="test")
    job = Job.objects.create(user=user, type="transcription", credits_cost=5, status=JobStatus.PROCESSING)
    credit_deduct_for_job(user=user, job_id=job.pk, amount=5, description="transcription")
    with caplog.at_level(logging.WARNING, logger="jobs.life.status"):
        _fail_through_the_step(job, ERRORS[case])
    [logged] = [r.getMessage() for r in caplog.records if r.name == "jobs.life.status"]
    assert "input.mp4" in logged and SIGNATURE not in logged and settings.AUTEUR_JWT_SECRET not in logged
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED
    sentence = FAILURE_MESSAGES.get(job.error_code, UNKNOWN_FAILURE_MESSAGE)

    shown = auth_client.get(f"/api/v1/jobs/{job.pk}")
    assert shown.json()["error_message"] == sentence
    listed = auth_client.get("/api/v1/jobs").content.decode()
    events = auth_client.get(f"/api/v1/jobs/{job.pk}/events").content.decode()
    for text in (shown.content.decode(), listed, events):
        assert not [leak for leak in LEAKS if leak in text]

    staff = Client()
    staff.force_login(make_user(is_staff=True, is_superuser=True))
    page = staff.get(reverse("admin:jobs_job_change", args=[job.pk])).content.decode()
    assert "error detail" in page.lower()
    if case == "ffmpeg-stderr":
        assert "moov atom not found" in page and PATH in page
    if case == "signed-url":
        assert "https://bucket.s3.example.com/media/u/input.mp4?[query redacted]" in page
    if case == "path-and-secret":
        assert "RuntimeError" in page and PATH in page and "[secret redacted]" in page
    assert SIGNATURE not in page and settings.AUTEUR_JWT_SECRET not in page

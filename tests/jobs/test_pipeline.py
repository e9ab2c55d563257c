"""Jobs end to end through a real Celery worker, the real broker and the local GPU backend."""

from __future__ import annotations

import itertools
import os
import signal
import time

import av
import pytest

from credits.models import CreditTransaction
from credits.selectors import credit_balance_get
from credits.services.ledger import credit_grant
from jobs.models import Job, JobEvent, JobStatus
from media.models import MediaFile
from media.storage import get_storage
from tests.factories import ProjectFactory
from tests.jobs.conftest import speech_wav, upload_local, wait_for, wait_terminal

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

SENTENCE = "The quick brown fox jumps over the lazy dog near the river bank."


@pytest.fixture
def funded(user):
    credit_grant(user=user, amount=200, type="bonus", description="test")
    return user


@pytest.fixture
def project(funded):
    return ProjectFactory.create(user=funded, name="p", resolution="640x360")


def ledger(job_id):
    return sorted(CreditTransaction.objects.filter(job_id=job_id).values_list("type", flat=True))


def submit(client, job_type, body, **headers):
    response = client.post(f"/api/v1/jobs/{job_type}", body, format="json", **headers)
    assert response.status_code == 202, response.json()
    return response.json()


def test_compression_end_to_end(celery_worker, auth_client, funded, project, samples):
    video = upload_local(auth_client, project, samples.video, "video/mp4")
    before = credit_balance_get(user=funded)
    accepted = submit(auth_client, "compression", {"project_id": str(project.pk), "media_id": str(video.pk),
                                                   "preset": "480p"})
    job = wait_terminal(accepted["job_id"])
    assert job.status == JobStatus.COMPLETED, (job.error_code, job.error_detail)
    assert ledger(job.pk) == ["usage"]
    assert credit_balance_get(user=funded) == before - accepted["credits_cost"]
    [output] = MediaFile.objects.filter(source_job_id=job.pk)
    assert output.status == "ready" and output.type == "video" and output.project_id == project.pk
    assert job.output_data["output_media_ids"] == [str(output.pk)]
    with get_storage().local_path(output.storage_key) as path, av.open(str(path)) as container:
        assert container.streams.video[0].codec_context.height == 240  # never upscaled: the source is 240p
    assert job.progress == 100 and job.processing_time_ms is not None
    assert list(JobEvent.objects.filter(job=job).values_list("type", flat=True))[:3] == [
        "submitted", "started", "inference_started"]


def test_transcription_of_generated_speech_has_word_timings(celery_worker, auth_client, project, tmp_path):
    audio = upload_local(auth_client, project, speech_wav(tmp_path / "speech.wav", SENTENCE), "audio/wav")
    accepted = submit(auth_client, "transcription", {"project_id": str(project.pk), "media_id": str(audio.pk)})
    assert accepted["credits_cost"] == 5
    job = wait_terminal(accepted["job_id"])
    assert job.status == JobStatus.COMPLETED, (job.error_code, job.error_detail)
    words = [w for segment in job.output_data["segments"] for w in segment["words"]]
    assert len(words) >= 8
    assert audio.duration_ms is not None
    assert all(0 <= w["start_ms"] <= w["end_ms"] <= audio.duration_ms + 500 for w in words)
    text = " ".join(w["word"].strip(" .,").lower() for w in words)
    assert sum(token in text for token in ("quick", "brown", "fox", "lazy", "dog", "river")) >= 4
    audio.refresh_from_db()
    assert audio.caption_key and get_storage().head(audio.caption_key)


def test_render_of_a_three_clip_timeline(celery_worker, auth_client, project, samples):
    v1 = upload_local(auth_client, project, samples.video, "video/mp4")
    v2 = upload_local(auth_client, project, samples.video, "video/mp4", filename="second.mp4")
    a1 = upload_local(auth_client, project, samples.wav, "audio/wav")
    edl = auth_client.get(f"/api/v1/projects/{project.pk}/edl").json()
    video_track, audio_track = edl["tracks"]
    video_track["clips"] = [
        {"id": "c1", "media_file_id": str(v1.pk), "start_ms": 0, "duration_ms": 1000, "in_point_ms": 0,
         "out_point_ms": 2000, "deleted": False,
         "effects": [{"type": "speed", "rate": 2}, {"type": "fade_in", "duration_ms": 500}]},
        {"id": "c2", "media_file_id": str(v2.pk), "start_ms": 2000, "duration_ms": 1000, "in_point_ms": 500,
         "out_point_ms": 1500, "effects": [], "deleted": False},
    ]
    audio_track["clips"] = [
        {"id": "c3", "media_file_id": str(a1.pk), "start_ms": 0, "duration_ms": 3000, "in_point_ms": 0,
         "out_point_ms": 3000, "effects": [], "deleted": False},
    ]
    saved = auth_client.put(f"/api/v1/projects/{project.pk}/edl", edl, format="json", HTTP_IF_MATCH=str(edl["version"]))
    assert saved.status_code == 200, saved.json()
    accepted = submit(auth_client, "render", {"project_id": str(project.pk)})
    job = wait_terminal(accepted["job_id"], timeout=180)
    assert job.status == JobStatus.COMPLETED, (job.error_code, job.error_detail)
    [output] = MediaFile.objects.filter(source_job_id=job.pk)
    assert output.duration_ms is not None and 2900 <= output.duration_ms <= 3200
    with get_storage().local_path(output.storage_key) as path, av.open(str(path)) as container:
        assert {s.type for s in container.streams} == {"video", "audio"}
        assert (container.streams.video[0].codec_context.width, container.streams.video[0].codec_context.height) == (
            640, 360)
        first = next(container.decode(video=0)).to_ndarray(format="rgb24")
        assert first.mean() < 20, "the first clip's effects reach the render: it fades in from black"


def test_a_permanent_failure_is_refunded_exactly_once(start_worker, auth_client, funded, project, samples):
    start_worker(AUTEUR_FAULT_INJECTION="compression:permanent=1.0", DJANGO_SETTINGS_MODULE="bench.settings")
    video = upload_local(auth_client, project, samples.video, "video/mp4")
    before = credit_balance_get(user=funded)
    accepted = submit(auth_client, "compression", {"project_id": str(project.pk), "media_id": str(video.pk)})
    job = wait_terminal(accepted["job_id"])
    assert job.status == JobStatus.FAILED
    assert job.error_code == "gpu_oom" and job.retryable is False and job.credits_refunded
    assert ledger(job.pk) == ["refund", "usage"]
    assert credit_balance_get(user=funded) == before
    assert not MediaFile.objects.filter(source_job_id=job.pk).exists()


def test_transient_failures_are_retried_then_succeed_with_one_charge(start_worker, auth_client, funded, project,
                                                                     samples):
    # Every first call of a job fails transiently (seeded), the re-spawned one goes through.
    from gpu_tasks.backends.faults import FaultInjectingBackend
    from gpu_tasks.backends.noop import NoopBackend

    seed = next(s for s in range(1000) if _first_fails_then_passes(FaultInjectingBackend, NoopBackend, s))
    start_worker(AUTEUR_FAULT_INJECTION="compression:transient=0.5", AUTEUR_FAULT_SEED=str(seed),
                 DJANGO_SETTINGS_MODULE="bench.settings")
    video = upload_local(auth_client, project, samples.video, "video/mp4")
    before = credit_balance_get(user=funded)
    accepted = submit(auth_client, "compression", {"project_id": str(project.pk), "media_id": str(video.pk)})
    job = wait_terminal(accepted["job_id"])
    assert job.status == JobStatus.COMPLETED, (job.error_code, job.error_detail)
    assert job.attempts >= 2
    assert JobEvent.objects.filter(job=job, type="inference_retry").exists()
    assert ledger(job.pk) == ["usage"]
    assert credit_balance_get(user=funded) == before - accepted["credits_cost"]


def _first_fails_then_passes(faults_cls, noop_cls, seed):
    backend = faults_cls(noop_cls(), "compression:transient=0.5", seed=seed)
    first, second = backend.spawn("compression", {}), backend.spawn("compression", {})
    return first.startswith("fault-transient") and not second.startswith("fault-")


def test_a_worker_killed_mid_step_still_completes_the_job_once(start_worker, auth_client, funded, project, tmp_path):
    worker = start_worker()
    audio = upload_local(auth_client, project, speech_wav(tmp_path / "s.wav", SENTENCE), "audio/wav")
    accepted = submit(auth_client, "transcription", {"project_id": str(project.pk), "media_id": str(audio.pk)})
    # Kill the pool processes while the job is in flight (between spawn and the end of polling).
    wait_for(lambda: Job.objects.get(pk=accepted["job_id"]).gpu_call_id, timeout=60, interval=0.02)
    for child in worker.children("celery"):
        os.kill(child.pid, signal.SIGKILL)
    # Redelivery alone must finish it (no reaper runs here), well within the reaper's 2 minutes.
    job = wait_terminal(accepted["job_id"], timeout=60)
    assert job.status == JobStatus.COMPLETED, (job.error_code, job.error_detail)
    assert ledger(job.pk) == ["usage"]
    assert JobEvent.objects.filter(job=job, type="completed").count() == 1


def test_per_user_concurrency_queues_the_rest_in_order(celery_worker, auth_client, funded, project, samples):
    video = upload_local(auth_client, project, samples.video, "video/mp4")
    body = {"project_id": str(project.pk), "media_id": str(video.pk), "preset": "480p"}
    ids = [submit(auth_client, "compression", body)["job_id"] for _ in range(3)]  # no plan: 1 at a time
    jobs = [wait_terminal(job_id) for job_id in ids]
    assert all(j.status == JobStatus.COMPLETED for j in jobs)
    queued = [j for j in jobs if JobEvent.objects.filter(job=j, type="queued").exists()]
    assert queued, "with one slot, later jobs must have waited"
    starts = [j.started_at for j in jobs]
    assert starts == sorted(starts), "jobs start in submission order"
    for earlier, later in itertools.pairwise(jobs):
        assert later.started_at >= earlier.completed_at, "never two processing at once"


def test_the_reaper_republishes_a_job_whose_publish_was_lost(celery_worker, auth_client, funded, project, samples,
                                                             monkeypatch):
    from datetime import timedelta

    from django.utils import timezone

    from jobs.life import publish as pipeline
    from jobs.life.reaper import jobs_reap

    video = upload_local(auth_client, project, samples.video, "video/mp4")
    monkeypatch.setattr(pipeline, "start", lambda job_id, job_type, trace="": False)  # the broker "lost" it
    accepted = submit(auth_client, "compression", {"project_id": str(project.pk), "media_id": str(video.pk)})
    monkeypatch.undo()
    job = Job.objects.get(pk=accepted["job_id"])
    assert job.status == JobStatus.PENDING  # a worker runs, and nothing was published to it
    assert jobs_reap(now=timezone.now() + timedelta(minutes=2))["republished"] == 1
    job = wait_terminal(job.pk)
    assert job.status == JobStatus.COMPLETED
    assert JobEvent.objects.filter(job=job, type="republished").count() == 1
    assert ledger(job.pk) == ["usage"]


def test_cancel_during_inference_stops_the_call_and_its_polls(start_worker, auth_client, funded, project, samples):
    # A backend that does not announce, so that the hanging call is polled until the cancel.
    worker = start_worker(AUTEUR_FAULT_INJECTION="compression:hang=1.0", DJANGO_SETTINGS_MODULE="bench.settings",
                          AUTEUR_GPU_ANNOUNCE="0")
    video = upload_local(auth_client, project, samples.video, "video/mp4")
    before = credit_balance_get(user=funded)
    accepted = submit(auth_client, "compression", {"project_id": str(project.pk), "media_id": str(video.pk)})
    wait_for(lambda: JobEvent.objects.filter(job_id=accepted["job_id"], type="inference_started").exists())
    response = auth_client.post(f"/api/v1/jobs/{accepted['job_id']}/cancel")
    assert response.status_code == 200, response.json()
    job = Job.objects.get(pk=accepted["job_id"])
    assert job.status == JobStatus.CANCELED
    # Its inference had started: only the unspent part comes back (none of a 1-credit job).
    assert job.credits_refund < job.credits_cost
    assert ledger(job.pk) == (["refund", "usage"] if job.credits_refund else ["usage"])
    assert credit_balance_get(user=funded) == before - job.credits_cost + job.credits_refund
    # The poll loop of the hanging call ends: its next queued step finds the job canceled.
    def polls() -> int:
        return sum("jobs.compression.infer" in line and "received" in line for line in worker.lines)

    time.sleep(2)
    settled = polls()
    time.sleep(6)  # longer than the longest poll countdown (5 s)
    assert polls() == settled
    assert not JobEvent.objects.filter(job=job, type__in=["completed", "failed"]).exists()
    assert auth_client.post(f"/api/v1/jobs/{job.pk}/cancel").status_code == 409

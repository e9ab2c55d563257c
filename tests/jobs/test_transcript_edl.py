"""A completed transcription reaches its project's timeline (EDL) in the store step, retried by its own task,
and never fails the job."""

from __future__ import annotations

from typing import Any

import pytest
from celery import Task
from django.test import TestCase
from django.utils import timezone

from gpu_tasks.backends.noop import fixed_result
from gpu_tasks.types import JobType
from jobs.intake import submission
from jobs.life import outputs, transcript_edl
from jobs.models import Job, JobStatus
from jobs.selectors.requests import JobRequest
from jobs.specs import job_spec
from jobs.tasks import transcript_to_edl
from projects.edl.selectors import edl_get
from projects.edl.services import edl_replace
from projects.errors import EdlInvalid, EdlUnavailable
from tests.jobs.conftest import speech_wav, upload_local, wait_terminal
from tests.media.conftest import eager_celery  # noqa: F401 - fixture
from tests.projects.test_edl_support import clean_edl_store_fixture, clip, editable  # noqa: F401 - fixture

pytestmark = pytest.mark.usefixtures("clean_edl_store")


def on_the_timeline(project, media, *, start: int = 5000) -> dict[str, Any]:
    """The file's first 2 s on the audio track at `start`."""
    doc = editable(edl_get(project=project))
    audio = doc["tracks"][1]
    audio["clips"] = [clip(media, audio, start=start, inp=0, out=2000, id="talk")]
    return edl_replace(project=project, expected_version=doc["version"], data=doc)


def transcribing(user, project, media) -> Job:
    """A transcription job of `media` whose GPU call has just ended (the store step is next)."""
    quantities = {"duration_ms": 30_000}
    params = {"project_id": str(project.pk), "media_id": str(media.pk), "_quantities": quantities}
    with TestCase.captureOnCommitCallbacks(execute=False):  # no pipeline: the states are set here
        request = JobRequest(project=project, input_params=params, quantities=quantities,
                             media_ids=[media.pk])
        job, _ = submission.job_submit(user=user, spec=job_spec("transcription"), request=request)
    Job.objects.filter(pk=job.pk).update(status=JobStatus.PROCESSING, started_at=timezone.now())
    return Job.objects.get(pk=job.pk)


def store(job: Job) -> Job:
    """The real store step with the GPU's result faked (the noop backend's canned transcript)."""
    with TestCase.captureOnCommitCallbacks(execute=True):
        assert outputs.job_result_store(job_id=job.pk, result=fixed_result(JobType.TRANSCRIPTION)) is not None
    return Job.objects.get(pk=job.pk)


@pytest.fixture
def audio(project, make_media):
    return make_media(project, "audio")


@pytest.mark.django_db
@pytest.mark.usefixtures("eager_celery")
def test_a_completed_transcription_writes_its_words_at_the_clips_timeline_times(funded, project, audio):
    before = on_the_timeline(project, audio)
    job = store(transcribing(funded, project, audio))
    assert job.status == JobStatus.COMPLETED
    doc = edl_get(project=project)
    assert job.output_data["edl"] == {"status": "written", "version": before["version"] + 1}
    [segment] = doc["transcript"]["segments"]
    assert (segment["media_file_id"], segment["clip_id"], segment["speaker"]) == (str(audio.pk), "talk", "Speaker 1")
    assert [(w["word"], w["start_ms"], w["end_ms"], w["confidence"]) for w in segment["words"]] == [
        ("Hello", 5000, 5400, 0.98), ("world.", 5450, 5900, 0.95)]
    assert doc["history"]["undo"] == before["history"]["undo"] + 1


@pytest.mark.django_db
@pytest.mark.usefixtures("eager_celery")
def test_with_transcript_to_edl_off_the_timeline_is_untouched(funded, project, audio):
    project.transcript_to_edl = False
    project.save(update_fields=["transcript_to_edl"])
    before = on_the_timeline(project, audio)
    job = store(transcribing(funded, project, audio))
    assert job.status == JobStatus.COMPLETED and job.output_data["edl"] == {"status": "off"}
    assert edl_get(project=project) == before
    assert job.output_data["segments"], "the transcript stays with the job"


@pytest.mark.django_db
def test_a_transcription_requested_earlier_but_finishing_later_does_not_replace_the_newer_one(
        funded, project, audio):
    on_the_timeline(project, audio)
    earlier = transcribing(funded, project, audio)
    later = store(transcribing(funded, project, audio))
    assert later.output_data["edl"]["status"] == "written"
    version = edl_get(project=project)["version"]
    assert store(earlier).output_data["edl"] == {"status": "superseded"}
    assert edl_get(project=project)["version"] == version


@pytest.mark.django_db
def test_a_result_the_timeline_refuses_leaves_the_job_completed_and_says_why(funded, project, audio, monkeypatch):
    before = on_the_timeline(project, audio)
    attempts = []

    def refused(**kwargs):
        attempts.append(1)
        raise EdlInvalid("The timeline has 1 invalid field.")

    monkeypatch.setattr(transcript_edl, "edl_transcript_write", refused)
    job = store(transcribing(funded, project, audio))
    assert job.status == JobStatus.COMPLETED and not job.credits_refunded
    assert job.output_data["edl"] == {"status": "failed", "code": "edl_invalid",
                                      "message": "The timeline has 1 invalid field."}
    assert len(attempts) == 1, "not retried: it cannot recover"
    assert edl_get(project=project) == before


@pytest.mark.django_db
@pytest.mark.usefixtures("eager_celery")
def test_a_store_out_of_reach_at_completion_is_retried_by_the_task(funded, project, audio, monkeypatch):
    before = on_the_timeline(project, audio)
    real, attempts = transcript_edl.edl_transcript_write, []

    def down_once(**kwargs):
        attempts.append(1)
        if len(attempts) == 1:
            raise EdlUnavailable("The timeline store is unavailable.")
        return real(**kwargs)

    monkeypatch.setattr(transcript_edl, "edl_transcript_write", down_once)
    job = store(transcribing(funded, project, audio))  # the task runs after commit (eagerly here)
    assert job.status == JobStatus.COMPLETED and len(attempts) == 2
    assert job.output_data["edl"] == {"status": "written", "version": before["version"] + 1}
    assert len(edl_get(project=project)["transcript"]["segments"]) == 1


@pytest.mark.django_db
@pytest.mark.usefixtures("eager_celery")
def test_a_store_out_of_reach_for_good_is_recorded_after_the_last_try(funded, project, audio, monkeypatch):
    def down(**kwargs):
        raise EdlUnavailable("The timeline store is unavailable.")

    monkeypatch.setattr(transcript_edl, "edl_transcript_write", down)
    job = store(transcribing(funded, project, audio))  # the first try, and the task's: a retry is scheduled
    assert job.status == JobStatus.COMPLETED and job.output_data["edl"] == {"status": "pending"}
    task: Task = transcript_to_edl
    task.push_request(args=(str(job.pk),), kwargs={}, retries=task.max_retries, called_directly=False,
                      is_eager=False)
    try:
        with pytest.raises(EdlUnavailable):
            task(str(job.pk))
    finally:
        task.pop_request()
    job.refresh_from_db()
    assert job.status == JobStatus.COMPLETED and not job.credits_refunded
    assert job.output_data["edl"] == {"status": "failed", "code": "edl_unavailable",
                                      "message": "The timeline store is unavailable."}


@pytest.mark.django_db
def test_a_retry_for_a_project_deleted_meanwhile_records_why_and_a_written_one_is_left_alone(
        funded, project, audio):
    on_the_timeline(project, audio)
    job = store(transcribing(funded, project, audio))
    assert transcript_edl.job_transcript_to_edl(job_id=job.pk) is None, "written already: nothing to retry"
    Job.objects.filter(pk=job.pk).update(project=None, output_data={**job.output_data, "edl": {"status": "pending"}})
    assert transcript_edl.job_transcript_to_edl(job_id=job.pk) == {
        "status": "failed", "code": "project_not_found", "message": "The project was deleted."}
    assert Job.objects.get(pk=job.pk).output_data["edl"]["code"] == "project_not_found"


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_spoken_words_transcribed_by_the_local_engine_appear_in_the_timeline(
        celery_worker, auth_client, project, tmp_path):
    audio = upload_local(auth_client, project, speech_wav(tmp_path / "speech.wav", "The quick brown fox jumps."),
                         "audio/wav")
    assert audio.duration_ms and audio.duration_ms > 1000
    doc = editable(edl_get(project=project))
    track = doc["tracks"][1]
    track["clips"] = [clip(audio, track, start=3000, inp=0, out=audio.duration_ms, id="speech")]
    edl_replace(project=project, expected_version=doc["version"], data=doc)
    response = auth_client.post("/api/v1/jobs/transcription", {"project_id": str(project.pk),
                                                                "media_id": str(audio.pk)}, format="json")
    assert response.status_code == 202, response.json()
    job = wait_terminal(response.json()["job_id"])
    assert job.status == JobStatus.COMPLETED, (job.error_code, job.error_detail)
    assert job.output_data["edl"]["status"] == "written", "in the timeline by the time the job is completed"
    words = [w for s in edl_get(project=project)["transcript"]["segments"] for w in s["words"]]
    text = " ".join(w["word"].strip(" .,").lower() for w in words)
    assert sum(token in text for token in ("quick", "brown", "fox", "jumps")) >= 3, text
    assert all(3000 <= w["start_ms"] <= w["end_ms"] <= 3000 + audio.duration_ms for w in words)

"""A job submitted without `project_id`: its project is the one its media share, or the user's
"Library" when it names no media; transcription output shows the transcript under `transcript`."""

from __future__ import annotations

import pytest

from credits.models import Plan
from credits.services.subscriptions import subscription_create
from jobs.models import Job, JobStatus
from projects.models import Project
from tests.factories import MediaFileFactory, ProjectFactory, UserFactory, likeness_consent_for
from tests.jobs.support import PRICE, error_code, jobs_url, ledger_state, submit, valid_body
from tests.projects.test_edl_support import clean_edl_store_fixture  # noqa: F401 - fixture

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("clean_edl_store")]


def without_project(job_type, project, media):
    body = valid_body(job_type, project, media)
    body.pop("project_id")
    return body


def test_tts_without_a_project_goes_to_the_library_made_on_first_use(auth_client, funded, project, media):
    assert not Project.objects.filter(user=funded, is_library=True).exists()
    first = submit(auth_client, "tts", without_project("tts", project, media))
    second = submit(auth_client, "tts", without_project("tts", project, media))
    assert first.status_code == second.status_code == 202, first.json()
    library = Project.objects.get(user=funded, is_library=True)
    assert library.name == "Library" and library.edl_id
    assert {Job.objects.get(pk=r.json()["job_id"]).project_id for r in (first, second)} == {library.pk}
    listed = auth_client.get("/api/v1/projects").json()["projects"]
    assert [p["is_library"] for p in listed if p["id"] == str(library.pk)] == [True]


def test_video_generation_without_a_project_goes_to_the_library(auth_client, funded, project, media, gpu_backend):
    gpu_backend("noop")
    subscription_create(user=funded, plan=Plan.PRO)
    response = submit(auth_client, "video-generation", {"prompt": "A cat walking on the moon", "duration_sec": 5})
    assert response.status_code == 202, response.json()
    job = Job.objects.get(pk=response.json()["job_id"])
    assert job.project is not None and job.project.is_library and job.credits_cost == PRICE["video-generation"]


def test_the_library_does_not_count_against_the_projects_quota(auth_client, funded, project, media, settings):
    settings.AUTEUR_QUOTA_PROJECTS = 1  # `project` is the one
    assert submit(auth_client, "tts", without_project("tts", project, media)).status_code == 202


def test_lip_sync_with_only_its_media_runs_in_their_project(auth_client, funded, project, media, gpu_backend):
    gpu_backend("noop")
    likeness_consent_for(media["video"])
    body = {"video_media_id": str(media["video"].pk), "audio_media_id": str(media["audio"].pk)}
    response = submit(auth_client, "lip-sync", body)
    assert response.status_code == 202, response.json()
    assert Job.objects.get(pk=response.json()["job_id"]).project_id == project.pk
    assert not Project.objects.filter(user=funded, is_library=True).exists()


def test_lip_sync_of_media_in_two_projects_is_422_and_charges_nothing(auth_client, funded, project, media,
                                                                      gpu_backend):
    gpu_backend("noop")
    other = ProjectFactory.create(user=funded, name="Other")
    audio = MediaFileFactory.create(project=other, type="audio")
    before = ledger_state(funded)
    response = submit(auth_client, "lip-sync", {"video_media_id": str(media["video"].pk),
                                                "audio_media_id": str(audio.pk)})
    assert response.status_code == 422 and error_code(response) == "media_projects_differ"
    assert set(response.json()["error"]["details"]["projects"]) == {"video_media_id", "audio_media_id"}
    assert ledger_state(funded) == before


def test_lip_sync_of_another_users_media_is_404_and_charges_nothing(auth_client, funded, project, media,
                                                                    gpu_backend):
    gpu_backend("noop")
    stranger = ProjectFactory.create(user=UserFactory.create(), name="Theirs")
    theirs = MediaFileFactory.create(project=stranger, type="audio")
    before = ledger_state(funded)
    response = submit(auth_client, "lip-sync", {"video_media_id": str(media["video"].pk),
                                                "audio_media_id": str(theirs.pk)})
    assert response.status_code == 404 and error_code(response) == "media_not_found"
    assert ledger_state(funded) == before


def test_a_render_still_needs_its_project(auth_client, funded, project, media):
    before = ledger_state(funded)
    response = submit(auth_client, "render", {})
    assert response.status_code == 400 and error_code(response) == "validation_error"
    assert "project_id" in response.json()["error"]["details"]["fields"]
    assert ledger_state(funded) == before


def test_a_transcriptions_output_is_under_transcript_and_at_the_top_level(auth_client, funded, project, media):
    response = submit(auth_client, "transcription", valid_body("transcription", project, media))
    job = Job.objects.get(pk=response.json()["job_id"])
    transcript = {"language": "es", "duration_ms": 900, "text": "Hola.", "model": "m",
                  "segments": [{"id": "seg-0001", "speaker": "Speaker 1", "start_ms": 0, "end_ms": 900,
                                "text": "Hola.", "words": [{"word": "Hola.", "start_ms": 0, "end_ms": 900,
                                                            "confidence": 0.9}]}]}
    Job.objects.filter(pk=job.pk).update(status=JobStatus.COMPLETED,
                                         output_data={**transcript, "caption_key": "captions/x.json"})
    shown = auth_client.get(jobs_url(f"/{job.pk}")).json()
    assert shown["output_data"]["transcript"] == transcript
    assert shown["output_data"]["segments"] == transcript["segments"]  # where it always was
    assert shown["output_data"]["caption_key"] == "captions/x.json"


def test_another_types_output_is_unchanged(auth_client, funded, project, media):
    response = submit(auth_client, "tts", valid_body("tts", project, media))
    job_id = response.json()["job_id"]
    Job.objects.filter(pk=job_id).update(status=JobStatus.COMPLETED, output_data={"output_media_ids": []})
    assert auth_client.get(jobs_url(f"/{job_id}")).json()["output_data"] == {"output_media_ids": []}


def test_a_refused_submission_without_a_project_leaves_no_library(auth_client, user, gpu_backend):
    gpu_backend("noop")
    # No credits: 402, and the Library made for it is rolled back with the job.
    response = submit(auth_client, "tts", {"text": "Hello world"})
    assert response.status_code == 402 and error_code(response) == "insufficient_credits"
    # No plan: 403 before anything is made.
    response = submit(auth_client, "video-generation", {"prompt": "A cat walking on the moon"})
    assert response.status_code == 403 and error_code(response) == "plan_required"
    assert not Project.objects.filter(user=user, is_library=True).exists()
    assert ledger_state(user) == (0, 0, 0)

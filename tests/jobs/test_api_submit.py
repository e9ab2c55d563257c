"""POST /api/v1/jobs/<type>: validation, pricing, charging, availability, plans, idempotency."""

from __future__ import annotations

import sys
from datetime import timedelta

import pytest
from django.db import IntegrityError
from django.utils import timezone

from credits.models import Plan
from credits.selectors import credit_balance_get
from credits.services.ledger import credit_grant
from credits.services.subscriptions import subscription_create
from jobs.intake import submission
from jobs.models import IdempotencyRecord, Job, JobEvent, JobStatus
from projects.edl import store
from tests.factories import ProjectFactory, VoiceCloneFactory
from tests.jobs.support import (
    LOCAL_TYPES,
    PRICE,
    START_BALANCE,
    UNAVAILABLE_ON_LOCAL,
    error_code,
    jobs_url,
    ledger_state,
    put_timeline,
    submit,
    usage_rows,
    valid_body,
)
from tests.media.conftest import lying_mkv, upload_local
from tests.projects.test_edl_support import clean_edl_store_fixture  # noqa: F401 - fixture

FEATURE_UNAVAILABLE = ("This feature is not available on this server: its GPU backend does not run it. "
                       "An operator can enable it.")

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("clean_edl_store")]

ALL_TYPES = (*LOCAL_TYPES, *UNAVAILABLE_ON_LOCAL)


def assert_charged_once(response, user, price: int, balance_before: int) -> Job:
    assert response.status_code == 202, response.json()
    body = response.json()
    assert set(body) == {"job_id", "status", "credits_cost", "cache", "deduplicated"} and body["deduplicated"] is False
    assert body["status"] == "pending" and body["credits_cost"] == price
    job = Job.objects.get(pk=body["job_id"])
    assert job.user_id == user.pk and job.status == JobStatus.PENDING and job.credits_cost == price
    assert usage_rows(job.pk) == 1
    assert credit_balance_get(user=user) == balance_before - price
    assert list(JobEvent.objects.filter(job=job).values_list("type", flat=True)) == ["submitted"]
    return job


# ----------------------------------------------------------------------------- every type


@pytest.mark.parametrize("job_type", LOCAL_TYPES)
def test_a_type_the_local_backend_runs_is_accepted_charged_once_and_pending(
    job_type, auth_client, funded, project, media
):
    if job_type == "render":
        put_timeline(project, media["video"])
    job = assert_charged_once(submit(auth_client, job_type, valid_body(job_type, project, media)), funded,
                              PRICE[job_type], START_BALANCE)
    assert job.project_id == project.pk and job.type == job_type


@pytest.mark.parametrize("job_type", ALL_TYPES)
def test_every_type_is_priced_and_charged_on_a_backend_that_runs_it(
    job_type, auth_client, funded, project, media, gpu_backend
):
    gpu_backend("noop")
    subscription_create(user=funded, plan=Plan.PRO)  # video generation is Pro-only
    balance = credit_balance_get(user=funded)
    if job_type == "render":
        put_timeline(project, media["video"])
    job = assert_charged_once(submit(auth_client, job_type, valid_body(job_type, project, media)), funded,
                              PRICE[job_type], balance)
    params = job.input_params
    assert params["_quantities"] is not None
    # Stored as JSON with ids as strings: a retry resubmits exactly this.
    for key, value in params.items():
        if key.endswith("media_id"):
            assert isinstance(value, str)


@pytest.mark.parametrize("job_type", UNAVAILABLE_ON_LOCAL)
def test_a_type_the_local_backend_cannot_run_is_503_and_nothing_is_charged(
    job_type, auth_client, funded, project, media
):
    subscription_create(user=funded, plan=Plan.PRO)
    before = ledger_state(funded)
    response = submit(auth_client, job_type, valid_body(job_type, project, media))
    assert response.status_code == 503, response.json()
    assert error_code(response) == "feature_unavailable"
    details = response.json()["error"]["details"]
    assert details == {"type": job_type, "backend": "local"}
    assert response.json()["error"]["message"] == FEATURE_UNAVAILABLE
    assert ledger_state(funded) == before


def test_a_pro_only_type_is_refused_by_plan_before_any_availability_check(auth_client, funded, project, media):
    """A non-Pro user hears 403 `plan_required` even where this server cannot run the type now."""
    before = ledger_state(funded)
    response = submit(auth_client, "video-generation", valid_body("video-generation", project, media))
    assert response.status_code == 403 and error_code(response) == "plan_required"
    assert ledger_state(funded) == before


def test_video_generation_needs_the_pro_plan_where_the_backend_runs_it(
    auth_client, funded, project, media, gpu_backend
):
    gpu_backend("noop")
    subscription_create(user=funded, plan=Plan.STARTER)
    before = ledger_state(funded)
    response = submit(auth_client, "video-generation", valid_body("video-generation", project, media))
    assert response.status_code == 403 and error_code(response) == "plan_required"
    assert response.json()["error"]["details"]["required_plan"] == "pro"
    assert ledger_state(funded) == before


def test_video_generation_is_priced_by_its_estimated_gpu_time(auth_client, funded, project, gpu_backend):
    """2 credits per started minute of A100 time by the engine's cost model: the default (832x480,
    5 s, 50 steps) about 1,370 s, 23 minutes; 10 s at 20 steps about 1,555 s, 26 minutes."""
    gpu_backend("noop")
    subscription_create(user=funded, plan=Plan.PRO)
    base = {"project_id": str(project.pk), "prompt": "waves"}
    response = submit(auth_client, "video-generation", base)
    assert response.status_code == 202 and response.json()["credits_cost"] == 46
    job = Job.objects.get(pk=response.json()["job_id"])
    assert job.input_params["_quantities"] == {"gpu_seconds": pytest.approx(1370, abs=1)}
    response = submit(auth_client, "video-generation", {**base, "duration_sec": 10, "steps": 20})
    assert response.status_code == 202 and response.json()["credits_cost"] == 52
    response = submit(auth_client, "video-generation", {**base, "duration_sec": 1, "guidance": 1.0})
    assert response.status_code == 202 and response.json()["credits_cost"] == 2 * 4  # one pass a step: 185 s


def test_video_generation_past_the_time_limit_is_refused_naming_the_steps_that_fit(auth_client, funded, project,
                                                                                   gpu_backend):
    gpu_backend("noop")
    subscription_create(user=funded, plan=Plan.PRO)
    before = ledger_state(funded)
    body = {"project_id": str(project.pk), "prompt": "waves", "resolution": "1280x720"}
    response = submit(auth_client, "video-generation", body)
    assert response.status_code == 400 and error_code(response) == "validation_error"
    [message] = response.json()["error"]["details"]["fields"]["steps"]
    assert "at most 17 steps fit" in message and "1800 s limit" in message
    assert ledger_state(funded) == before and not Job.objects.filter(type="video-generation").exists()
    assert submit(auth_client, "video-generation", {**body, "steps": 17}).status_code == 202


def test_image_generation_is_priced_per_image(auth_client, funded, project, gpu_backend):
    gpu_backend("noop")
    body = {"project_id": str(project.pk), "prompt": "x", "num_images": 3, "width": 512, "height": 768}
    response = submit(auth_client, "image-generation", body)
    assert response.status_code == 202 and response.json()["credits_cost"] == 12
    job = Job.objects.get(pk=response.json()["job_id"])
    assert job.input_params == {"prompt": "x", "width": 512, "height": 768, "num_images": 3,
                                "_quantities": {"images": 3}}


# ----------------------------------------------------------------------------- pricing and inputs


def test_generation_parameters_are_stored_for_the_engine(auth_client, funded, project, gpu_backend):
    gpu_backend("noop")
    body = {"project_id": str(project.pk), "prompt": "a fox", "negative_prompt": "blur", "seed": 42, "steps": 8,
            "guidance": 3.5}
    response = submit(auth_client, "image-generation", body)
    assert response.status_code == 202, response.json()
    params = Job.objects.get(pk=response.json()["job_id"]).input_params
    assert {k: params[k] for k in ("negative_prompt", "seed", "steps", "guidance")} == {
        "negative_prompt": "blur", "seed": 42, "steps": 8, "guidance": 3.5,
    }
    assert "seed" not in Job.objects.get(pk=submit(auth_client, "image-generation", {
        "project_id": str(project.pk), "prompt": "a fox"}).json()["job_id"]).input_params, "the engine picks one"


def test_a_25_minute_transcription_costs_15(auth_client, funded, project, make_media):
    audio = make_media(project, "audio", duration_ms=25 * 60_000)
    response = submit(auth_client, "transcription", {"project_id": str(project.pk), "media_id": str(audio.pk)})
    assert response.status_code == 202 and response.json()["credits_cost"] == 15
    assert credit_balance_get(user=funded) == START_BALANCE - 15


def test_transcription_stores_its_options_as_json(auth_client, funded, project, media):
    body = {"project_id": str(project.pk), "media_id": str(media["video"].pk), "script": "Hello there.",
            "speaker_diarization": False}
    response = submit(auth_client, "transcription", body)
    assert response.status_code == 202, response.json()
    job = Job.objects.get(pk=response.json()["job_id"])
    assert job.input_params == {
        "media_id": str(media["video"].pk), "language": "en", "diarization": False, "script": "Hello there.",
        "_quantities": {"duration_ms": 90_000},
    }


def test_transcription_takes_whisper_languages_only(auth_client, funded, project, media):
    # Which of them this server takes: tests/jobs/test_languages.py.
    before = ledger_state(funded)
    body = {"project_id": str(project.pk), "media_id": str(media["audio"].pk), "language": "klingon"}
    response = submit(auth_client, "transcription", body)
    assert response.status_code == 400 and "language" in response.json()["error"]["details"]["fields"]
    assert ledger_state(funded) == before


def test_tts_is_priced_per_started_thousand_characters(auth_client, funded, project):
    response = submit(auth_client, "tts", {"project_id": str(project.pk), "text": "a" * 2001})
    assert response.status_code == 202 and response.json()["credits_cost"] == 6


def test_tts_with_a_voice_carries_its_sample_key(auth_client, funded, project):
    voice = VoiceCloneFactory.create(user=funded, name="me", sample_key="voices/me.wav")
    response = submit(auth_client, "tts", {"project_id": str(project.pk), "text": "hi", "voice_id": str(voice.pk)})
    assert response.status_code == 202, response.json()
    params = Job.objects.get(pk=response.json()["job_id"]).input_params
    assert params["voice_id"] == str(voice.pk) and params["voice_sample_key"] == "voices/me.wav"


def test_tts_with_another_users_voice_is_404_and_nothing_is_charged(auth_client, funded, project, make_user):
    voice = VoiceCloneFactory.create(user=make_user(), name="x", sample_key="voices/x.wav")
    before = ledger_state(funded)
    response = submit(auth_client, "tts", {"project_id": str(project.pk), "text": "hi", "voice_id": str(voice.pk)})
    assert response.status_code == 404 and error_code(response) == "voice_not_found"
    assert ledger_state(funded) == before


def test_render_snapshots_the_timeline_with_overridden_settings(auth_client, funded, project, media):
    put_timeline(project, media["video"], clips=3, clip_ms=30_000)  # 90 s: two started minutes
    body = {"project_id": str(project.pk), "resolution": "1280x720", "frame_rate": 25}
    response = submit(auth_client, "render", body)
    assert response.status_code == 202, response.json()
    assert response.json()["credits_cost"] == 4
    params = Job.objects.get(pk=response.json()["job_id"]).input_params
    assert params["format"] == "mp4" and params["_quantities"] == {"duration_ms": 90_000, "output_weight": 1.0}
    edl = params["edl"]
    assert edl["settings"]["resolution"] == {"width": 1280, "height": 720} and edl["settings"]["frame_rate"] == 25
    assert [c["id"] for c in edl["tracks"][0]["clips"]] == ["c0", "c1", "c2"]
    assert "transcript" not in edl


def test_render_of_an_empty_timeline_is_422_and_nothing_is_charged(auth_client, funded, project):
    before = ledger_state(funded)
    response = submit(auth_client, "render", {"project_id": str(project.pk)})
    assert response.status_code == 422 and error_code(response) == "empty_timeline"
    assert ledger_state(funded) == before


def test_render_refuses_a_clip_whose_media_is_not_ready_any_more(auth_client, funded, project, media):
    put_timeline(project, media["video"])
    media["video"].__class__.objects.filter(pk=media["video"].pk).update(status="processing")
    before = ledger_state(funded)
    response = submit(auth_client, "render", {"project_id": str(project.pk)})
    assert response.status_code == 422 and error_code(response) == "media_not_ready"
    assert response.json()["error"]["details"]["clips"][0]["status"] == "processing"
    assert ledger_state(funded) == before


def test_render_refuses_effects_saved_before_they_were_checked(auth_client, funded, project, media):
    put_timeline(project, media["video"])
    key = {"project_id": str(project.pk)}
    found = store.edl_collection().find_one(key)
    assert found is not None
    found["tracks"][0]["clips"][0]["effects"] = [{"type": "blur", "radius": 3}]  # free-form, as once allowed
    store.edl_collection().replace_one(key, found)
    before = ledger_state(funded)
    response = submit(auth_client, "render", {"project_id": str(project.pk)})
    assert response.status_code == 422 and error_code(response) == "edl_invalid"
    assert [e["path"] for e in response.json()["error"]["details"]["errors"]] == ["tracks[0].clips[0].effects[0].type"]
    assert ledger_state(funded) == before and not Job.objects.filter(project=project).exists()


@pytest.mark.parametrize("resolution", ["abc", "1920x", "1921x1080", "8000x1000", "10x10"])
def test_render_refuses_a_bad_resolution(auth_client, funded, project, media, resolution):
    put_timeline(project, media["video"])
    before = ledger_state(funded)
    response = submit(auth_client, "render", {"project_id": str(project.pk), "resolution": resolution})
    assert response.status_code == 400 and "resolution" in response.json()["error"]["details"]["fields"]
    assert ledger_state(funded) == before


# ----------------------------------------------------------------------------- refusals


def test_short_of_credits_is_402_with_amounts_and_no_job(auth_client, user, make_media):
    credit_grant(user=user, amount=3, type="bonus", description="test")
    project = ProjectFactory.create(user=user, name="p")
    audio = make_media(project, "audio")
    before = ledger_state(user)
    response = submit(auth_client, "transcription", {"project_id": str(project.pk), "media_id": str(audio.pk)})
    assert response.status_code == 402 and error_code(response) == "insufficient_credits"
    assert response.json()["error"]["details"] == {"balance": 3, "cost": 5}
    assert ledger_state(user) == before
    assert not Job.objects.exists()


@pytest.mark.parametrize(
    ("job_type", "patch", "field"),
    [
        ("tts", {"text": "a" * 5001}, "text"),
        ("tts", {"text": ""}, "text"),
        ("tts", {"text": "hi", "speed": 3}, "speed"),
        ("tts", {"text": "hi", "credits_cost": 0}, "credits_cost"),
        ("transcription", {"media_id": "not-a-uuid"}, "media_id"),
        ("transcription", {"script": "x" * 100_001}, "script"),
        ("compression", {"preset": "4k"}, "preset"),
        ("render", {"format": "mov"}, "format"),
        ("video-generation", {"prompt": "p" * 2001}, "prompt"),
        ("video-generation", {"prompt": "p", "duration_sec": 11}, "duration_sec"),
        ("audio-generation", {"prompt": "p", "duration_sec": 48}, "duration_sec"),
        ("audio-generation", {"prompt": "p", "steps": 0}, "steps"),
        ("image-generation", {"prompt": "p", "width": 300}, "width"),
        ("image-generation", {"prompt": "p", "num_images": 5}, "num_images"),
        ("image-generation", {"prompt": "p", "seed": -1}, "seed"),
        ("image-generation", {"prompt": "p", "guidance": 21}, "guidance"),
        ("video-query", {"question": "q" * 1001}, "question"),
        ("video-query", {"start_ms": 5000, "end_ms": 5000}, "end_ms"),
        ("lip-sync", {"audio_media_id": None}, "audio_media_id"),
    ],
)
def test_invalid_fields_are_400_naming_the_field_and_nothing_is_charged(
    auth_client, funded, project, media, job_type, patch, field
):
    body = {**valid_body(job_type, project, media), **patch}
    before = ledger_state(funded)
    response = submit(auth_client, job_type, body)
    assert response.status_code == 400, response.json()
    assert error_code(response) == "validation_error"
    assert field in response.json()["error"]["details"]["fields"]
    assert ledger_state(funded) == before


def test_project_id_is_required_for_a_render(auth_client, funded):
    # Other types default it (tests/jobs/test_default_project.py).
    response = submit(auth_client, "render", {})
    assert response.status_code == 400 and "project_id" in response.json()["error"]["details"]["fields"]


def test_a_malformed_body_is_400(auth_client, funded):
    response = auth_client.post("/api/v1/jobs/tts", "{not json", content_type="application/json")
    assert response.status_code == 400 and error_code(response) == "malformed_request"


def test_another_users_project_is_404(auth_client, funded, make_user):
    other = ProjectFactory.create(user=make_user(), name="theirs")
    before = ledger_state(funded)
    response = submit(auth_client, "tts", {"project_id": str(other.pk), "text": "hi"})
    assert response.status_code == 404 and error_code(response) == "project_not_found"
    assert ledger_state(funded) == before


def test_media_of_another_project_of_the_same_user_is_404(auth_client, funded, project, make_media):
    elsewhere = make_media(ProjectFactory.create(user=funded, name="other"), "audio")
    before = ledger_state(funded)
    response = submit(auth_client, "transcription", {"project_id": str(project.pk), "media_id": str(elsewhere.pk)})
    assert response.status_code == 404 and error_code(response) == "media_not_found"
    assert ledger_state(funded) == before


def test_media_of_another_user_is_404(auth_client, funded, project, make_media, make_user):
    theirs = make_media(ProjectFactory.create(user=make_user(), name="theirs"), "audio")
    before = ledger_state(funded)
    response = submit(auth_client, "transcription", {"project_id": str(project.pk), "media_id": str(theirs.pk)})
    assert response.status_code == 404 and error_code(response) == "media_not_found"
    assert ledger_state(funded) == before


@pytest.mark.parametrize("status", ["uploading", "processing"])
def test_media_not_ready_is_422(auth_client, funded, project, make_media, status):
    audio = make_media(project, "audio", status=status, duration_ms=None)
    before = ledger_state(funded)
    response = submit(auth_client, "transcription", {"project_id": str(project.pk), "media_id": str(audio.pk)})
    assert response.status_code == 422 and error_code(response) == "media_not_ready"
    assert response.json()["error"]["details"]["status"] == status
    assert ledger_state(funded) == before


DURATION_PRICED = ("transcription", "lip-sync", "performance-cloning", "gaze-redirection", "compression")


@pytest.mark.parametrize("job_type", DURATION_PRICED)
def test_a_file_of_unknown_length_cannot_be_used_for_a_duration_priced_job(
    job_type, auth_client, funded, project, media, gpu_backend
):
    gpu_backend("noop")
    for file in media.values():
        file.duration_ms = None
        file.save(update_fields=["duration_ms"])
    before = ledger_state(funded)
    response = submit(auth_client, job_type, valid_body(job_type, project, media))
    assert response.status_code == 422 and error_code(response) == "media_duration_unknown"
    assert not Job.objects.exists() and ledger_state(funded) == before


def test_a_file_whose_header_understates_its_length_is_charged_for_its_real_length(
    auth_client, funded, project, tmp_path
):
    """601 s of video whose header says 1 s: two started 10-minute units, not one."""
    path = lying_mkv(tmp_path / "lying.mkv", seconds=601, header_s=1.0)
    video = upload_local(auth_client, project, path, "video/x-matroska")
    assert video.status == "ready" and video.duration_ms == pytest.approx(601_000, abs=1_000)
    response = submit(auth_client, "transcription", {"project_id": str(project.pk), "media_id": str(video.pk)})
    assert_charged_once(response, funded, 2 * PRICE["transcription"], START_BALANCE)


def test_rejected_media_is_not_ready(auth_client, funded, project, make_media):
    audio = make_media(project, "audio", status="rejected", rejection_reason="not audio")
    response = submit(auth_client, "transcription", {"project_id": str(project.pk), "media_id": str(audio.pk)})
    assert response.status_code == 422 and error_code(response) == "media_not_ready"


@pytest.mark.parametrize(
    ("job_type", "field", "kind"),
    [
        ("transcription", "media_id", "image"),
        ("compression", "media_id", "audio"),
        ("lip-sync", "audio_media_id", "video"),
        ("lip-sync", "video_media_id", "audio"),
        ("performance-cloning", "source_image_media_id", "video"),
        ("gaze-redirection", "video_media_id", "image"),
    ],
)
def test_media_of_the_wrong_kind_is_422(auth_client, funded, project, media, gpu_backend, job_type, field, kind):
    gpu_backend("noop")
    body = {**valid_body(job_type, project, media), field: str(media[kind].pk)}
    before = ledger_state(funded)
    response = submit(auth_client, job_type, body)
    assert response.status_code == 422, response.json()
    assert error_code(response) == "wrong_media_type"
    assert response.json()["error"]["details"]["field"] == field
    assert ledger_state(funded) == before


def test_an_unknown_type_is_404(auth_client, funded, project):
    response = submit(auth_client, "teleportation", {"project_id": str(project.pk)})
    assert response.status_code == 404 and error_code(response) == "unknown_job_type"
    assert response.json()["error"]["message"].startswith("There is no job type 'teleportation'. The job types: ")


def test_a_misspelled_type_is_named_with_the_type_it_is_most_like(auth_client, funded, project):
    response = submit(auth_client, "transcripton", {"project_id": str(project.pk)})
    assert response.status_code == 404
    assert response.json()["error"]["message"] == ("There is no job type 'transcripton'. "
                                                   "Did you mean 'transcription'?")


def test_submitting_needs_authentication(api_client, project, media):
    before = ledger_state(project.user)
    response = submit(api_client, "transcription", valid_body("transcription", project, media))
    assert response.status_code == 401
    assert ledger_state(project.user) == before


# ----------------------------------------------------------------------------- idempotency


def test_the_same_key_and_body_return_the_same_job_and_charge_once(auth_client, funded, project, media):
    body = valid_body("transcription", project, media)
    first = submit(auth_client, "transcription", body, HTTP_IDEMPOTENCY_KEY="key-1")
    assert first.status_code == 202 and "Idempotent-Replayed" not in first
    second = submit(auth_client, "transcription", body, HTTP_IDEMPOTENCY_KEY="key-1")
    assert second.status_code == 200 and second["Idempotent-Replayed"] == "true"
    assert second.json() == first.json()
    assert Job.objects.filter(user=funded).count() == 1
    assert usage_rows(first.json()["job_id"]) == 1
    assert credit_balance_get(user=funded) == START_BALANCE - PRICE["transcription"]


def test_a_client_that_died_after_sending_finds_its_job_by_its_key(auth_client, funded, project, media, make_user,
                                                                   client_for):
    """GET /jobs?idempotency_key=: the job that key made, the caller's own only, and nothing charged."""
    body = valid_body("transcription", project, media)
    made = submit(auth_client, "transcription", body, HTTP_IDEMPOTENCY_KEY="upload 7 / take 2").json()["job_id"]
    submit(auth_client, "tts", valid_body("tts", project, media), HTTP_IDEMPOTENCY_KEY="another")
    before = ledger_state(funded)
    found = auth_client.get(jobs_url(), {"idempotency_key": "upload 7 / take 2"})
    assert found.status_code == 200 and [j["id"] for j in found.json()["jobs"]] == [made]
    assert auth_client.get(jobs_url(), {"idempotency_key": "upload 7"}).json()["jobs"] == []
    # Another user's key is theirs: the same key finds none of this user's jobs.
    assert client_for(make_user()).get(jobs_url(), {"idempotency_key": "upload 7 / take 2"}).json()["jobs"] == []
    assert ledger_state(funded) == before


def test_a_key_past_its_window_finds_nothing(auth_client, funded, project, media, settings):
    made = submit(auth_client, "transcription", valid_body("transcription", project, media),
                  HTTP_IDEMPOTENCY_KEY="old").json()["job_id"]
    IdempotencyRecord.objects.filter(job_id=made).update(
        created_at=timezone.now() - timedelta(seconds=settings.AUTEUR_IDEMPOTENCY_WINDOW_SECONDS + 1))
    assert auth_client.get(jobs_url(), {"idempotency_key": "old"}).json()["jobs"] == []


def test_a_duplicate_that_missed_the_replay_answers_the_winners_job_and_charges_once(
        auth_client, funded, project, media, monkeypatch):
    """Two requests with one key: the second looked for a replay before the first committed. Its
    insert then meets the first's live record, which it must not take for an expired one."""
    body = valid_body("transcription", project, media)
    first = submit(auth_client, "transcription", body, HTTP_IDEMPOTENCY_KEY="race").json()
    replay, looks = submission._idempotent_replay, []

    def late(*args):  # every look finds nothing yet but the one made once the insert met the key
        looks.append(isinstance(sys.exc_info()[1], IntegrityError))
        return replay(*args) if looks[-1] else None

    monkeypatch.setattr(submission, "_idempotent_replay", late)
    second = submit(auth_client, "transcription", body, HTTP_IDEMPOTENCY_KEY="race")
    assert second.status_code == 200 and second.json()["job_id"] == first["job_id"]
    assert Job.objects.filter(user=funded).count() == 1 and usage_rows(first["job_id"]) == 1
    assert credit_balance_get(user=funded) == START_BALANCE - PRICE["transcription"] and looks[-1]


@pytest.mark.parametrize("key", ["k" * 256, "line\nbreak", "clé"])
def test_a_key_to_find_that_no_submission_could_have_sent_is_400(auth_client, funded, key):
    response = auth_client.get(jobs_url(), {"idempotency_key": key})
    assert response.status_code == 400 and error_code(response) == "validation_error"


def test_the_same_key_with_another_body_is_422_and_charges_nothing(auth_client, funded, project, media):
    body = valid_body("transcription", project, media)
    first = submit(auth_client, "transcription", body, HTTP_IDEMPOTENCY_KEY="key-1")
    assert first.status_code == 202
    before = ledger_state(funded)
    changed = submit(auth_client, "transcription", {**body, "speaker_diarization": False},
                     HTTP_IDEMPOTENCY_KEY="key-1")
    assert changed.status_code == 422 and error_code(changed) == "idempotency_key_reused"
    other_type = submit(auth_client, "compression", valid_body("compression", project, media),
                        HTTP_IDEMPOTENCY_KEY="key-1")
    assert other_type.status_code == 422 and error_code(other_type) == "idempotency_key_reused"
    assert ledger_state(funded) == before


def test_without_a_key_the_same_body_makes_two_jobs(auth_client, funded, project, media):
    body = valid_body("tts", project, media)
    assert submit(auth_client, "tts", body).status_code == 202
    assert submit(auth_client, "tts", body).status_code == 202
    assert Job.objects.filter(user=funded).count() == 2


def test_another_users_key_is_independent(auth_client, funded, project, media, make_user, client_for, make_media):
    first = submit(auth_client, "transcription", valid_body("transcription", project, media),
                   HTTP_IDEMPOTENCY_KEY="shared")
    other = make_user()
    credit_grant(user=other, amount=100, type="bonus", description="test")
    their_project = ProjectFactory.create(user=other, name="theirs")
    their_audio = make_media(their_project, "audio")
    second = submit(client_for(other), "transcription",
                    {"project_id": str(their_project.pk), "media_id": str(their_audio.pk)},
                    HTTP_IDEMPOTENCY_KEY="shared")
    assert first.status_code == 202 and second.status_code == 202
    assert first.json()["job_id"] != second.json()["job_id"]
    assert Job.objects.get(pk=second.json()["job_id"]).user_id == other.pk


@pytest.mark.parametrize("key", ["", "k" * 256, "tab\tkey", "caf\u00e9"])
def test_a_malformed_idempotency_key_is_400_and_charges_nothing(auth_client, funded, project, media, key):
    before = ledger_state(funded)
    response = submit(auth_client, "tts", valid_body("tts", project, media), HTTP_IDEMPOTENCY_KEY=key)
    assert response.status_code == 400 and error_code(response) == "invalid_idempotency_key"
    assert ledger_state(funded) == before


def test_a_gpu_calls_signed_input_urls_last_as_long_as_any_signed_url(funded, project, settings, monkeypatch):
    """15 minutes (AUTEUR_SIGNED_URL_TTL_SECONDS), whatever the type's time limit: the engine
    fetches its inputs as it begins, and a call that begins later is spawned again with fresh ones."""
    from jobs import payloads
    from jobs.specs import job_spec
    from media.storage import get_storage
    from tests.factories import MediaFileFactory

    settings.AUTEUR_GPU_BACKEND = "modal"  # inputs go as signed URLs
    asked: list[int | None] = []
    storage = get_storage()
    presign = storage.presign_get

    def recording(key: str, filename: str | None = None, *, expires_in: int | None = None) -> object:
        asked.append(expires_in)
        return presign(key, filename, expires_in=expires_in)

    monkeypatch.setattr(storage, "presign_get", recording)
    monkeypatch.setattr(payloads, "get_storage", lambda: storage)
    media = MediaFileFactory.create(project=project, name="a.wav", type="audio", duration_ms=30_000)
    for job_type in ("transcription", "video-query"):
        job = Job(user=funded, project=project, type=job_type, credits_cost=5,
                  input_params={"media_id": str(media.pk), "video_media_id": str(media.pk), "question": "?",
                                "_quantities": {"duration_ms": 30_000}})
        assert job_spec(job_type).build_payload(job)
    assert asked and set(asked) == {settings.AUTEUR_SIGNED_URL_TTL_SECONDS} == {900}


def test_a_feature_the_operator_switched_off_is_503_whatever_its_weights(auth_client, funded, project, media,
                                                                          settings):
    settings.AUTEUR_FEATURES_OFF = frozenset({"tts"})
    before = ledger_state(funded)
    response = submit(auth_client, "tts", valid_body("tts", project, media))
    assert response.status_code == 503 and error_code(response) == "feature_unavailable"
    assert response.json()["error"]["details"] == {"type": "tts", "backend": "local"}
    quote = auth_client.post("/api/v1/jobs/tts/quote", valid_body("tts", project, media), format="json")
    assert quote.status_code == 503 and error_code(quote) == "feature_unavailable"
    assert ledger_state(funded) == before
    types = {t["type"]: t for t in auth_client.get("/api/v1/jobs/types").json()["types"]}
    assert types["tts"]["available"] is False and types["transcription"]["available"] is True
    # The others run as before; switched on again, so does it.
    assert submit(auth_client, "transcription", valid_body("transcription", project, media)).status_code == 202
    settings.AUTEUR_FEATURES_OFF = frozenset()
    assert submit(auth_client, "tts", valid_body("tts", project, media)).status_code == 202


def test_a_switched_off_feature_must_be_a_job_type(settings):
    from django.core.exceptions import ImproperlyConfigured

    from jobs.apps import _check_features_off

    settings.AUTEUR_FEATURES_OFF = frozenset({"tts", "teleportation"})
    with pytest.raises(ImproperlyConfigured, match="teleportation"):
        _check_features_off()
    settings.AUTEUR_FEATURES_OFF = frozenset({"tts"})
    _check_features_off()


def test_the_accepted_answer_written_out_is_what_its_declared_fields_give(user, project):
    """JobAcceptedSerializer writes its answer directly; its fields (the schema) give the same."""
    from rest_framework import serializers

    from jobs.serializers import JobAcceptedSerializer

    source = Job.objects.create(user=user, project=project, type="tts", credits_cost=4, status=JobStatus.COMPLETED)
    for job in (Job.objects.create(user=user, project=project, type="tts", credits_cost=2),
                Job.objects.create(user=user, project=project, type="tts", credits_cost=1, cache_source=source,
                                   status=JobStatus.COMPLETED)):
        serializer = JobAcceptedSerializer(job)
        field_by_field = serializers.Serializer.to_representation(serializer, job)
        assert serializer.data == field_by_field
        assert set(serializer.data) == set(serializer.fields)

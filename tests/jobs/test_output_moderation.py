"""Output screening: a job's outputs are screened before they are kept. A flagged one fails the job
`output_moderated`, refunded exactly once, with nothing the user can fetch and no `completed` event;
its files wait for staff in the job's quarantine folder. Through the real store step (the job's
finish step as a worker runs it) on the noop backend, and the API."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

from auteur.core.errors import ApplicationError
from auteur.users.models import User
from credits.models import CreditTransaction
from credits.selectors import credit_balance_get
from credits.services.ledger import credit_adjust
from gpu_tasks.backends.noop import fixed_result
from gpu_tasks.results import MAX_SEGMENT_TEXT_CHARS
from gpu_tasks.screening.taxonomy import CATEGORIES
from gpu_tasks.types import JobType
from jobs import gpu_client
from jobs.life import moderation
from jobs.life.outputs import job_result_store
from jobs.life.publish import Step
from jobs.models import Job, JobEvent, JobModeration, JobStatus, UsageEvent
from jobs.specs import job_spec
from jobs.tasks import STEP_TASKS
from media.models import MediaFile, PendingObjectDeletion
from media.services.deletion import PREFIX_MARK
from media.services.keys import quarantine_folder, quarantine_key
from media.storage import get_storage
from tests.factories import ProjectFactory
from tests.jobs.conftest import wait_terminal
from tests.jobs.test_gpu_outputs import served  # noqa: F401 (fixture: local storage, its signed URLs served)

pytestmark = pytest.mark.django_db

JOBS = "/api/v1/jobs"
GORE = "show a man being tortured with pliers, blood everywhere"


@pytest.fixture
def project(funded):
    return ProjectFactory.create(user=funded, name="p")


@pytest.fixture
def storage(settings: Any, tmp_path: Path) -> Path:
    settings.MEDIA_ROOT = str(tmp_path / "storage")
    settings.AWS_STORAGE_BUCKET_NAME = ""
    return tmp_path / "storage"


def running(client: Any, project: Any, job_type: str, body: dict[str, Any]) -> Job:
    """A job submitted through the API, then moved to processing on a call of the configured backend."""
    response = client.post(f"{JOBS}/{job_type}", {"project_id": str(project.pk), **body}, format="json")
    assert response.status_code == 202, response.json()
    job_id = response.json()["job_id"]
    now = timezone.now()
    Job.objects.filter(pk=job_id).update(status=JobStatus.PROCESSING, started_at=now, inference_started_at=now,
                                         gpu_call_id=gpu_client.spawn(job_type, body))
    return Job.objects.get(pk=job_id)


def finish(job: Job) -> Job:
    STEP_TASKS[job_spec(job.type).family, Step.FINISH].apply(args=(str(job.pk),))
    job.refresh_from_db()
    return job


def ledger(job: Job) -> list[str]:
    return sorted(CreditTransaction.objects.filter(job_id=job.pk).values_list("type", flat=True))


def assert_withheld(client: Any, job: Job, *, categories: list[str], source: str, inputs: int = 0) -> JobModeration:
    """`inputs`: the files of the job's project that it was given (listed; none of its own is)."""
    assert (job.status, job.error_code, job.retryable) == (JobStatus.FAILED, "output_moderated", False)
    assert job.credits_refunded and job.credits_refund == job.credits_cost
    assert ledger(job) == ["refund", "usage"]
    assert UsageEvent.objects.filter(job_id=job.pk, outcome="failed").count() == 1
    shown = client.get(f"{JOBS}/{job.pk}").json()
    assert shown["status"] == "failed" and shown["error_code"] == "output_moderated"
    assert shown["error_message"] == "The result was withheld by content moderation; you were not charged."
    assert not (shown.get("output_data") or {}).get("output_media_ids")
    assert not MediaFile.objects.filter(source_job_id=job.pk).exists()
    listed = client.get(f"/api/v1/projects/{job.project_id}/media").json()
    assert listed["count"] == inputs and not [m for m in listed["media"] if m.get("source_job_id")]
    events = list(JobEvent.objects.filter(job_id=job.pk).values_list("type", flat=True))
    assert "completed" not in events and events.count("failed") == 1
    hold = JobModeration.objects.get(job_id=job.pk)
    assert (hold.categories, hold.source, hold.state, hold.user_id) == (categories, source, "held", job.user_id)
    assert hold.quarantine and all(get_storage().exists(entry["key"]) for entry in hold.quarantine)
    assert [entry["key"] for entry in hold.quarantine] == [quarantine_key(job_id=job.pk, name=entry["name"])
                                                           for entry in hold.quarantine]
    lease = PendingObjectDeletion.objects.get(key=quarantine_folder(job_id=job.pk) + PREFIX_MARK)
    assert 29 <= (lease.due_at - timezone.now()).days <= 30
    return hold


def test_an_injected_flag_withholds_an_image_refunded_once_and_nothing_fetchable(
        auth_client, funded, project, storage, gpu_backend, settings):
    gpu_backend("noop")
    settings.AUTEUR_SCREENING_INJECT = "image-generation:output=1.0"
    balance = credit_balance_get(user=funded)
    job = finish(running(auth_client, project, "image-generation", {"prompt": "a fox"}))
    hold = assert_withheld(auth_client, job, categories=["injected"], source="injected")
    assert [entry["name"] for entry in hold.quarantine] == ["image_1"]
    with get_storage().open(hold.quarantine[0]["key"]) as stored:
        assert stored.read()[:8] == b"\x89PNG\r\n\x1a\n"  # the image, kept for staff
    assert credit_balance_get(user=funded) == balance
    # Nothing under the user's project in storage: only the quarantine folder holds the output.
    assert not [p for p in (storage / "projects").rglob("*") if p.is_file()]
    assert [p.relative_to(storage).as_posix() for p in storage.rglob("*")
            if p.is_file() and not p.name.startswith(".")] == [hold.quarantine[0]["key"]]


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_on_the_local_backend_a_flagged_speech_job_is_withheld_by_a_real_worker(start_worker, auth_client, funded):
    """The local engine (eSpeak NG) speaks in a worker started with the seam set; the API shows the end."""
    start_worker(AUTEUR_GPU_BACKEND="local", AUTEUR_SCREENING_INJECT="tts:output=1.0")
    project = ProjectFactory.create(user=funded, name="p")
    response = auth_client.post(f"{JOBS}/tts", {"project_id": str(project.pk), "text": "Hello from the local engine."},
                                format="json")
    assert response.status_code == 202, response.json()
    job = wait_terminal(response.json()["job_id"])
    hold = assert_withheld(auth_client, job, categories=["injected"], source="injected")
    assert [entry["name"] for entry in hold.quarantine] == ["audio"]
    with get_storage().open(hold.quarantine[0]["key"]) as stored:
        assert stored.read(4) == b"RIFF"  # the speech the engine made, kept for staff only
    listed = auth_client.get(f"{JOBS}/{job.pk}/events").json()["events"]
    assert "completed" not in [event["type"] for event in listed]
    assert [event["data"]["code"] for event in listed if event["type"] == "failed"] == ["output_moderated"]


def test_without_injection_the_same_job_completes_and_keeps_its_image(auth_client, funded, project, storage,
                                                                      gpu_backend, settings):
    gpu_backend("noop")
    settings.AUTEUR_SCREENING_INJECT = "image-generation:output=0;tts:output=1.0"
    job = finish(running(auth_client, project, "image-generation", {"prompt": "a fox"}))
    assert job.status == JobStatus.COMPLETED
    assert MediaFile.objects.filter(source_job_id=job.pk).count() == 1
    assert not JobModeration.objects.filter(job_id=job.pk).exists()
    assert not get_storage().exists(quarantine_key(job_id=job.pk, name="image_1"))
    assert ledger(job) == ["usage"]


def test_a_redelivered_store_refunds_once_and_keeps_one_hold(auth_client, funded, project, storage, gpu_backend,
                                                             settings):
    gpu_backend("noop")
    settings.AUTEUR_SCREENING_INJECT = "tts:output=1.0"
    job = running(auth_client, project, "tts", {"text": "Hello there."})
    result = fixed_result(JobType.TTS)
    assert job_result_store(job_id=job.pk, result=result, job=job) is None
    # The same delivery again, with the job as it was when it began (processing): nothing more.
    assert job_result_store(job_id=job.pk, result=result, job=job, inference_ended=True) is None
    job = finish(job)
    assert_withheld(auth_client, job, categories=["injected"], source="injected")
    assert JobModeration.objects.filter(job_id=job.pk).count() == 1
    assert PendingObjectDeletion.objects.filter(key=quarantine_folder(job_id=job.pk) + PREFIX_MARK).count() == 1


def test_speech_whose_transcript_the_policy_refuses_is_withheld(auth_client, funded, project, storage, gpu_backend):
    """The text was screened at the door; the speech made of it is screened again before it is kept
    (a result's own transcript of what it said, or, locally, the text eSpeak says exactly)."""
    gpu_backend("noop")
    job = running(auth_client, project, "tts", {"text": "Hello there."})
    job_result_store(job_id=job.pk, result={**fixed_result(JobType.TTS), "output_transcript": GORE}, job=job)
    job.refresh_from_db()
    refused = gpu_client.screen_texts({"t": (GORE, "full")})
    hold = assert_withheld(auth_client, job, categories=list(refused.flagged["t"]), source="embedded")
    assert hold.categories and set(hold.categories) <= set(CATEGORIES)
    assert hold.model_version == refused.model_version

    other = running(auth_client, project, "tts", {"text": "Hello there."})
    Job.objects.filter(pk=other.pk).update(input_params={**other.input_params, "text": GORE})
    other = finish(Job.objects.get(pk=other.pk))  # the local engine's transcript is the job's text
    assert other.error_code == "output_moderated"

    # A result cannot talk its way out: a benign transcript stated beside a refused text adds to the
    # screening, it never replaces the text.
    third = running(auth_client, project, "tts", {"text": "Hello there."})
    Job.objects.filter(pk=third.pk).update(input_params={**third.input_params, "text": GORE})
    third = Job.objects.get(pk=third.pk)
    job_result_store(job_id=third.pk, result={**fixed_result(JobType.TTS), "output_transcript": "Hello there."},
                     job=third)
    third.refresh_from_db()
    assert third.error_code == "output_moderated" and not MediaFile.objects.filter(source_job_id=third.pk).exists()


def test_benign_speech_is_kept_and_its_transcript_is_not_added_to_the_output(auth_client, funded, project, storage,
                                                                           gpu_backend):
    gpu_backend("noop")
    job = running(auth_client, project, "tts", {"text": "Hello there."})
    job_result_store(job_id=job.pk, result={**fixed_result(JobType.TTS), "output_transcript": "Hello there."}, job=job)
    job.refresh_from_db()
    assert job.status == JobStatus.COMPLETED and "output_transcript" not in job.output_data
    assert MediaFile.objects.filter(source_job_id=job.pk).count() == 1


def test_an_output_transcript_that_is_not_bounded_text_is_refused(auth_client, funded, project, storage, gpu_backend):
    gpu_backend("noop")
    for bad in (["a list"], "x" * (MAX_SEGMENT_TEXT_CHARS + 1)):
        job = running(auth_client, project, "tts", {"text": "Hello there."})
        with pytest.raises(gpu_client.PermanentGpuError) as refused:
            gpu_client.checked_result("tts", job.gpu_call_id, {**fixed_result(JobType.TTS), "output_transcript": bad})
        assert refused.value.code == "invalid_result"


def test_a_job_failed_meanwhile_keeps_no_quarantine(auth_client, funded, project, storage, gpu_backend, settings):
    """The reaper failed the job while its outputs were screened: no hold is recorded, and the files
    it moved to quarantine go at once."""
    gpu_backend("noop")
    settings.AUTEUR_SCREENING_INJECT = "tts:output=1.0"
    job = running(auth_client, project, "tts", {"text": "Hello there."})
    quarantine = [{"name": "audio", "key": quarantine_key(job_id=job.pk, name="audio"), "content_type": "audio/wav",
                   "filename": "a.wav"}]
    moderation.quarantine_lease(job)
    get_storage().save_file(quarantine[0]["key"], _file(storage.parent / "a.wav"), "audio/wav")
    from jobs.life.status import job_fail
    assert job_fail(job_id=job.pk, code="worker_lost", detail="reaped", retryable=True)
    verdict = moderation.output_verdict(job, {})
    assert verdict is not None and not moderation.output_withheld(job=job, verdict=verdict, quarantine=quarantine)
    assert not JobModeration.objects.filter(job_id=job.pk).exists()
    assert not get_storage().exists(quarantine[0]["key"])
    assert not PendingObjectDeletion.objects.filter(key=quarantine_folder(job_id=job.pk) + PREFIX_MARK).exists()
    assert ledger(Job.objects.get(pk=job.pk)) == ["refund", "usage"]


def _file(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"RIFF0000WAVE")
    return path


@pytest.mark.parametrize("spec, error", [
    ("tts", "expected"), ("nope:output=1", "unknown job type"), ("tts:fail=1", "unknown kind"),
    ("tts:output=1.5", "not a number"), ("tts:output=nan", "not a number"), ("tts:output=1;tts:output=0", "twice"),
])
def test_a_malformed_injection_spec_is_refused(spec, error):
    with pytest.raises(ValueError, match=error):
        moderation.parse_inject_spec(spec)


def test_an_injected_share_flags_that_share_of_jobs_and_each_job_always_the_same_way():
    import uuid

    assert moderation.parse_inject_spec(" image-generation:output=1.0 ; *:output=0.05 ") == {
        ("image-generation", "output"): 1.0, ("*", "output"): 0.05}
    ids = [uuid.UUID(int=n * 7919 + 1) for n in range(4000)]
    flagged = sum(moderation._draw(job_id) < 0.05 for job_id in ids)
    assert 120 <= flagged <= 280  # 5 % of 4000 is 200
    assert [moderation._draw(job_id) for job_id in ids[:50]] == [moderation._draw(job_id) for job_id in ids[:50]]


def test_an_image_the_screener_cannot_decode_within_the_limits_is_not_kept(auth_client, funded, project, storage,
                                                                            gpu_backend, settings):
    """The noop engine's 16 x 16 tile over a pixel limit of 100: never decoded, so never screened,
    so never kept; the job fails and is refunded."""
    gpu_backend("noop")
    settings.AUTEUR_MEDIA_MAX_PIXELS = 100
    job = finish(running(auth_client, project, "image-generation", {"prompt": "a fox"}))
    assert (job.status, job.error_code) == (JobStatus.FAILED, "invalid_result")
    assert ledger(job) == ["refund", "usage"]
    assert not MediaFile.objects.filter(source_job_id=job.pk).exists()
    assert not JobModeration.objects.filter(job_id=job.pk).exists()
    assert not [p for p in storage.rglob("*") if p.is_file() and not p.name.startswith(".")]


# ------------------------------------------------------------------------------------------- staff

HOLDS = "/admin/jobs/jobmoderation/"


def withheld_image(client: Any, project: Any, settings: Any) -> Job:
    settings.AUTEUR_SCREENING_INJECT = "image-generation:output=1.0"
    job = finish(running(client, project, "image-generation", {"prompt": "a fox"}))
    assert job.error_code == "output_moderated"
    return job


def test_staff_see_held_outputs_with_their_categories_and_release_one_charged_once(
        auth_client, funded, project, storage, gpu_backend, settings, superuser_client):
    gpu_backend("noop")
    job = withheld_image(auth_client, project, settings)
    listed = superuser_client.get(HOLDS)
    page = listed.content.decode()
    assert listed.status_code == 200 and str(job.pk) in page and "injected" in page
    balance = credit_balance_get(user=funded)

    for _ in range(2):  # the second click finds it released: nothing more
        response = superuser_client.post(HOLDS, {"action": "release_selected", "_selected_action": [str(job.pk)]},
                                         follow=True)
        assert response.status_code == 200
    hold = JobModeration.objects.get(job_id=job.pk)
    assert hold.state == "released" and hold.decided_by is not None and hold.decided_at is not None
    adjustments = CreditTransaction.objects.filter(user=funded, type="adjustment")
    assert [t.amount for t in adjustments] == [-job.credits_cost]
    assert adjustments[0].idempotency_key == f"moderation-release:{job.pk}"
    assert credit_balance_get(user=funded) == balance - job.credits_cost
    released = MediaFile.objects.get(source_job_id=job.pk)
    assert released.status == "ready" and released.project_id == project.pk
    assert auth_client.get(f"/api/v1/projects/{project.pk}/media").json()["count"] == 1
    events = JobEvent.objects.filter(job_id=job.pk, type="output_released")
    assert events.count() == 1 and events[0].data["output_media_ids"] == [str(released.pk)]
    job.refresh_from_db()
    assert (job.status, job.error_code) == (JobStatus.FAILED, "output_moderated")  # ended jobs stay ended


def test_a_release_the_balance_cannot_cover_is_refused_and_changes_nothing(
        auth_client, funded, project, storage, gpu_backend, settings, superuser_client):
    gpu_backend("noop")
    job = withheld_image(auth_client, project, settings)
    staff = User.objects.get(pk=superuser_client.session["_auth_user_id"])
    credit_adjust(user=funded, amount=-credit_balance_get(user=funded), reason="spent elsewhere", staff_user=staff)
    with pytest.raises(ApplicationError) as refused:
        moderation.moderation_release(job_id=job.pk, staff_user=staff)
    assert refused.value.code == "insufficient_credits"
    assert JobModeration.objects.get(job_id=job.pk).state == "held"
    assert not MediaFile.objects.filter(source_job_id=job.pk).exists()
    assert not CreditTransaction.objects.filter(idempotency_key=f"moderation-release:{job.pk}").exists()
    assert not JobEvent.objects.filter(job_id=job.pk, type="output_released").exists()
    assert credit_balance_get(user=funded) == 0


def test_a_release_after_the_quarantine_lapsed_is_refused_and_charges_nothing(
        auth_client, funded, project, storage, gpu_backend, settings, superuser_client):
    gpu_backend("noop")
    job = withheld_image(auth_client, project, settings)
    hold = JobModeration.objects.get(job_id=job.pk)
    get_storage().delete(hold.quarantine[0]["key"])  # what the sweep does once the lease is due
    balance = credit_balance_get(user=funded)
    response = superuser_client.post(HOLDS, {"action": "release_selected", "_selected_action": [str(job.pk)]},
                                     follow=True)
    assert response.status_code == 200 and "quarantine lapsed" in response.content.decode()
    assert JobModeration.objects.get(job_id=job.pk).state == "held"
    assert credit_balance_get(user=funded) == balance
    assert not CreditTransaction.objects.filter(idempotency_key=f"moderation-release:{job.pk}").exists()
    assert not MediaFile.objects.filter(source_job_id=job.pk).exists()


def test_staff_confirm_keeps_it_withheld_and_a_confirmed_hold_is_not_confirmed_again(
        auth_client, funded, project, storage, gpu_backend, settings, superuser_client):
    gpu_backend("noop")
    job = withheld_image(auth_client, project, settings)
    superuser_client.post(HOLDS, {"action": "confirm_selected", "_selected_action": [str(job.pk)]}, follow=True)
    hold = JobModeration.objects.get(job_id=job.pk)
    assert hold.state == "confirmed" and hold.decided_by is not None
    decided_at = hold.decided_at
    superuser_client.post(HOLDS, {"action": "confirm_selected", "_selected_action": [str(job.pk)]}, follow=True)
    assert JobModeration.objects.get(job_id=job.pk).decided_at == decided_at
    assert not MediaFile.objects.filter(source_job_id=job.pk).exists()
    assert get_storage().exists(hold.quarantine[0]["key"])


def test_the_api_role_cannot_read_holds():
    from django.db import connection

    from auteur.core.rls import API_ROLE
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT has_table_privilege('{API_ROLE}', 'job_moderations', 'SELECT'), "
                       f"has_table_privilege('{API_ROLE}', 'job_moderations', 'INSERT')")
        assert cursor.fetchone() == (False, False)


# ------------------------------------------------------------------------------------------- video


PADDED_VIDEO = "tests.gpu_tasks.probe_engines:padded_video"  # a text-to-video of the size its prompt names


def _clip(path: Path, seconds: int = 2) -> bytes:
    """A real H.264 video whose picture changes every frame (one key frame), 128 x 72 at 25 fps."""
    import subprocess

    import imageio_ffmpeg

    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error", "-f", "lavfi", "-i",
                    f"testsrc=size=128x72:rate=25:duration={seconds}", "-c:v", "libx264", "-g", "250",
                    "-pix_fmt", "yuv420p", str(path)], check=True)
    return path.read_bytes()


def _with_video(job_type: str, data: bytes) -> dict[str, Any]:
    result = fixed_result(JobType(job_type))
    result["outputs"] = {"video": {"data": data, "content_type": "video/mp4", "size_bytes": len(data),
                                   "filename": "made.mp4"}}
    return result


@pytest.mark.parametrize("job_type", ["lip-sync", "performance-cloning", "gaze-redirection", "video-generation"])
def test_an_injected_flag_withholds_a_generated_video_refunded_once_and_nothing_fetchable(
        auth_client, funded, project, media, storage, gpu_backend, settings, job_type):
    from credits.services.subscriptions import subscription_create
    from tests.jobs.support import valid_body

    gpu_backend("noop")
    subscription_create(user=funded, plan="pro")  # (text to video is a Pro feature)
    settings.AUTEUR_SCREENING_INJECT = f"{job_type}:output=1.0"
    job = finish(running(auth_client, project, job_type, valid_body(job_type, project, media)))
    hold = assert_withheld(auth_client, job, categories=["injected"], source="injected", inputs=3)
    assert [entry["name"] for entry in hold.quarantine] == ["video"]
    with get_storage().open(hold.quarantine[0]["key"]) as stored:
        assert stored.read(12)[4:8] == b"ftyp"  # the video, kept for staff only
    assert not [p for p in (storage / "projects").rglob("*") if p.is_file()]


@pytest.mark.slow
def test_a_plain_generated_video_passes_the_real_screener_and_is_kept(auth_client, funded, project, media, storage,
                                                                    gpu_backend, monkeypatch, tmp_path):
    """Frames spread over the whole video are scored by the real model (open_nsfw): a test pattern passes."""
    from tests.jobs.support import valid_body

    gpu_backend("noop")
    scored: list[int] = []
    real = gpu_client.screen_images

    def counted(frames: Any) -> Any:
        scored.append(len(frames))
        return real(frames)

    monkeypatch.setattr(gpu_client, "screen_images", counted)
    job = running(auth_client, project, "gaze-redirection", valid_body("gaze-redirection", project, media))
    job_result_store(job_id=job.pk, result=_with_video("gaze-redirection", _clip(tmp_path / "c.mp4")), job=job)
    job.refresh_from_db()
    assert job.status == JobStatus.COMPLETED, (job.error_code, job.error_message)
    assert MediaFile.objects.filter(source_job_id=job.pk).count() == 1
    assert not JobModeration.objects.filter(job_id=job.pk).exists()
    assert ledger(job) == ["usage"]
    assert sum(scored) == 8 * 3  # 8 moments, each frame whole and in 2 windows of the 16:9 picture
    assert not PendingObjectDeletion.objects.filter(key__startswith="quarantine/").exists()


@pytest.mark.slow
def test_a_flag_on_a_frame_deep_in_a_generated_video_withholds_it(auth_client, funded, project, media, storage,
                                                                 gpu_backend, monkeypatch, tmp_path):
    """What shows only at the video's last sampled moment is seen: the screener (the real model, its
    verdict turned into a refusal for that one frame, as no picture the model refuses can be made
    here) flags it, and the job is withheld with the screener's category, refunded once."""
    from media.probing.service import screening_frames_spread
    from tests.jobs.support import valid_body

    gpu_backend("noop")
    data = _clip(tmp_path / "c.mp4")
    spread = screening_frames_spread(tmp_path / "c.mp4", count=8)
    assert spread is not None and len(set(spread[::3])) == 8
    late = spread[-3]  # the whole frame of the last moment (7/8 of the way)
    real = gpu_client.screen_images

    def screen(frames: Any) -> Any:
        verdict = real(frames)
        if late in frames:
            return gpu_client.ImageScreening(categories=("sexual",), top_score=0.97,
                                             model_version=verdict.model_version)
        return verdict

    monkeypatch.setattr(gpu_client, "screen_images", screen)
    job = running(auth_client, project, "lip-sync", valid_body("lip-sync", project, media))
    job_result_store(job_id=job.pk, result=_with_video("lip-sync", data), job=job)
    job.refresh_from_db()
    hold = assert_withheld(auth_client, job, categories=["sexual"], source="embedded", inputs=3)
    assert hold.model_version.startswith("open_nsfw-onnx-")
    with get_storage().open(hold.quarantine[0]["key"]) as stored:
        assert stored.read() == data


@pytest.mark.slow
def test_a_generated_video_the_screener_cannot_decode_within_the_limits_is_not_kept(
        auth_client, funded, project, media, storage, gpu_backend, settings):
    """The noop engine's 64 x 36 video over a pixel limit of 100: never decoded, so never screened, so
    never kept; the job fails and is refunded."""
    from tests.jobs.support import valid_body

    gpu_backend("noop")
    job = running(auth_client, project, "lip-sync", valid_body("lip-sync", project, media))
    settings.AUTEUR_MEDIA_MAX_PIXELS = 100
    job = finish(job)
    assert (job.status, job.error_code) == (JobStatus.FAILED, "invalid_result")
    assert ledger(job) == ["refund", "usage"]
    assert not MediaFile.objects.filter(source_job_id=job.pk).exists()
    assert not JobModeration.objects.filter(job_id=job.pk).exists()
    assert not [p for p in storage.rglob("*") if p.is_file() and not p.name.startswith(".")]


@pytest.mark.slow
@pytest.mark.parametrize("flagged", [False, True])
def test_an_uploaded_video_is_screened_where_no_url_writes_then_kept_or_withheld_from_there(
        auth_client, funded, project, served, monkeypatch, tmp_path, settings, flagged):  # noqa: F811
    """A local runner PUTs the video to its target (as a Modal call does); the store moves it to the
    job's quarantine folder before reading it, so a late PUT to the target cannot change what is kept."""
    from credits.services.subscriptions import subscription_create
    from gpu_tasks.backends.local import LocalBackend
    from jobs.life.publish import Step as Steps
    from tests.jobs.conftest import wait_for

    subscription_create(user=funded, plan="pro")  # (text to video is a Pro feature)
    settings.AUTEUR_SCREENING_INJECT = "video-generation:output=1.0" if flagged else ""
    runner = LocalBackend(tmp_path / "calls", engines={"video-generation": PADDED_VIDEO}, upload_outputs=True)
    monkeypatch.setattr(gpu_client, "backend", lambda: runner)
    response = auth_client.post(f"{JOBS}/video-generation", {"project_id": str(project.pk),
                                                              "prompt": "bytes:100000 a cat"}, format="json")
    assert response.status_code == 202, response.json()
    job = Job.objects.get(pk=response.json()["job_id"])
    STEP_TASKS[job_spec(job.type).family, Steps.PREPARE].apply(args=(str(job.pk),))
    job.refresh_from_db()
    wait_for(lambda: runner.poll(job.gpu_call_id).done, timeout=120)
    job = finish(job)
    target = [p for p in (served / "gpu-outputs").rglob("video") if p.is_file()]
    assert target == [], "the upload was moved from its target"
    held = quarantine_key(job_id=job.pk, name="video")
    lease = PendingObjectDeletion.objects.filter(key=quarantine_folder(job_id=job.pk) + PREFIX_MARK)
    if flagged:
        hold = assert_withheld(auth_client, job, categories=["injected"], source="injected")
        assert [entry["key"] for entry in hold.quarantine] == [held] and (served / held).stat().st_size == 100_000
        assert lease.exists()
    else:
        assert job.status == JobStatus.COMPLETED, (job.error_code, job.error_message)
        (kept,) = MediaFile.objects.filter(source_job_id=job.pk)
        assert kept.file_size_bytes == 100_000 and (served / kept.storage_key).is_file()
        assert not (served / held).exists() and not lease.exists()  # moved on, and its lease gone with it


@pytest.mark.slow
def test_a_put_to_the_target_after_the_video_was_screened_is_never_kept(
        auth_client, funded, project, served, monkeypatch, tmp_path, settings):  # noqa: F811
    """The attack: a container taken over by a crafted input uploads a harmless video, states in its
    result the size and SHA-256 of another one, and PUTs that other one to its target (whose URL is
    still valid) once the first was screened. Had the store screened the target in place, the keep
    would move the late video, which matches what the result states. It screens the object it moved
    out of the target first and keeps only that one, which does not match: nothing is kept."""
    import hashlib
    import struct

    from credits.services.subscriptions import subscription_create
    from gpu_tasks.backends.local import LocalBackend
    from jobs.life.publish import Step as Steps
    from tests.jobs.conftest import wait_for

    subscription_create(user=funded, plan="pro")
    runner = LocalBackend(tmp_path / "calls", engines={"video-generation": PADDED_VIDEO}, upload_outputs=True)
    monkeypatch.setattr(gpu_client, "backend", lambda: runner)
    clip = _clip(tmp_path / "late.mp4")
    late = clip + struct.pack(">I4sQ", 1, b"free", 100_000 - len(clip))
    late += b"\x00" * (100_000 - len(late))  # the size the harmless one has
    real_poll, real_verdict = runner.poll, moderation.output_verdict
    screened: list[str] = []

    def stating_the_late_one(call_id: str) -> Any:
        status = real_poll(call_id)
        if status.result and "outputs" in status.result:
            status.result["outputs"]["video"]["sha256"] = hashlib.sha256(late).hexdigest()
        return status

    def screened_then_put_again(job: Job, result: dict[str, Any], landed: Any = None) -> Any:
        verdict = real_verdict(job, result, landed)
        screened.append(str(verdict))
        target = served / result["outputs"]["video"]["key"]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(late)  # the late PUT
        return verdict

    monkeypatch.setattr(runner, "poll", stating_the_late_one)
    monkeypatch.setattr(moderation, "output_verdict", screened_then_put_again)
    response = auth_client.post(f"{JOBS}/video-generation", {"project_id": str(project.pk),
                                                              "prompt": "bytes:100000 a cat"}, format="json")
    assert response.status_code == 202, response.json()
    job = Job.objects.get(pk=response.json()["job_id"])
    STEP_TASKS[job_spec(job.type).family, Steps.PREPARE].apply(args=(str(job.pk),))
    job.refresh_from_db()
    wait_for(lambda: runner.poll(job.gpu_call_id).done, timeout=120)
    job = finish(job)
    assert screened == ["None"]  # the harmless one was screened, and passed
    assert (job.status, job.error_code) == (JobStatus.FAILED, "invalid_result")
    assert ledger(job) == ["refund", "usage"]
    assert not MediaFile.objects.filter(source_job_id=job.pk).exists()
    assert not [p for p in (served / "projects").rglob("*") if p.is_file()]

"""The content policy on input media: the pictures a generative model works from (the face a lip
sync re-times, a performance cloning animates, a gaze redirection turns) are screened once the
request is resolved and before it is priced. A refused file is a 422 `content_policy_violation`
naming its field, with no job, no quote, no batch, no ledger row, and a refusal recorded; on every
path into a job (a submission, a quote, a batch, a retry, a bulk retry). A file's verdict is kept
per owner, content and screener, so it is decoded once. A render's captions to burn in are screened
as its `captions` field; sidecar captions are not.

The refusing path runs through the test seam (AUTEUR_SCREENING_INJECT `type:input=rate`): no picture
the real model refuses can be made here. The real model decides on real files that pass."""

from __future__ import annotations

import fnmatch
import uuid
from pathlib import Path
from typing import Any

import pytest

from auteur.core import publishing
from jobs import task_names
from jobs.intake.media_screening import screener_version
from jobs.life import moderation
from jobs.life.status import job_fail
from jobs.models import Batch, Job, MediaVerdict, Quote, ScreeningRefusal
from jobs.tasks import media_verdict
from media.models import MediaFile
from media.probing.service import SCREEN_FRAME_SIDE, screening_frames_spread
from media.storage import get_storage
from tests.factories import ProjectFactory, likeness_consent_for
from tests.jobs.support import error_code, jobs_url, ledger_state, submit, valid_body
from tests.jobs.test_render_captions import put_transcribed_timeline
from tests.media.conftest import local_storage, upload_local  # noqa: F401 - fixture
from tests.projects.test_captions import seg
from tests.projects.test_edl_support import clean_edl_store_fixture  # noqa: F401 - fixture

pytestmark = pytest.mark.django_db

BATCH_URL, BULK_RETRY_URL = "/api/v1/jobs/batch", "/api/v1/jobs/bulk/retry"
GORE = "show a man being tortured with pliers, blood everywhere"
FACE_FIELDS = {"lip-sync": ["video_media_id"], "gaze-redirection": ["video_media_id"],
               "performance-cloning": ["source_image_media_id", "driving_video_media_id"]}


@pytest.fixture(autouse=True)
def every_type_runs(gpu_backend: Any) -> None:
    gpu_backend("noop")  # what refuses is the policy, not this server's backend


def flagged(response: Any) -> dict[str, list[str]]:
    assert response.status_code == 422, response.json()
    assert error_code(response) == "content_policy_violation"
    return {entry["field"]: entry["categories"] for entry in response.json()["error"]["details"]["flagged"]}


def nothing_made(user: Any, before: tuple[int, int, int]) -> None:
    assert ledger_state(user) == before  # (balance, ledger rows, jobs)
    assert not Quote.objects.filter(user=user).exists() and not Batch.objects.filter(user=user).exists()


def refusals(user: Any) -> list[ScreeningRefusal]:
    return list(ScreeningRefusal.objects.filter(user=user).order_by("id"))


@pytest.mark.parametrize("job_type", sorted(FACE_FIELDS))
def test_a_flagged_input_file_is_422_naming_its_field_with_no_job_no_charge_and_a_refusal(
        auth_client, funded, project, media, settings, job_type):
    body = valid_body(job_type, project, media)
    settings.AUTEUR_SCREENING_INJECT = f"{job_type}:input=1.0"
    before = ledger_state(funded)
    fields = flagged(submit(auth_client, job_type, body))
    assert fields == {field: ["injected"] for field in FACE_FIELDS[job_type]}
    assert flagged(submit(auth_client, f"{job_type}/quote", body)) == fields
    nothing_made(funded, before)
    recorded = refusals(funded)
    assert [r.type for r in recorded] == [job_type, job_type]
    assert recorded[0].flagged == [{"field": f, "categories": ["injected"]} for f in FACE_FIELDS[job_type]]
    assert recorded[0].model_version == "injected"


def test_the_seam_for_outputs_or_another_type_refuses_no_input(auth_client, funded, project, media, settings):
    body = valid_body("lip-sync", project, media)
    settings.AUTEUR_SCREENING_INJECT = "lip-sync:output=1.0;gaze-redirection:input=1.0"
    response = submit(auth_client, "lip-sync", body)
    assert response.status_code == 202, response.json()
    assert not refusals(funded)


def test_a_batch_names_the_flagged_file_of_each_item_and_makes_nothing(auth_client, funded, project, media, settings):
    items = [{"type": "tts", "input": {"text": "Hello world"}},
             {"type": "gaze-redirection", "input": valid_body("gaze-redirection", project, media)},
             {"type": "lip-sync", "input": valid_body("lip-sync", project, media)}]
    settings.AUTEUR_SCREENING_INJECT = "gaze-redirection:input=1.0"
    before = ledger_state(funded)
    fields = flagged(auth_client.post(BATCH_URL, {"items": items}, format="json"))
    assert fields == {"items[1].video_media_id": ["injected"]}  # the same file, another type: not drawn
    nothing_made(funded, before)
    assert [r.type for r in refusals(funded)] == ["gaze-redirection"]


def failed_job(client: Any, job_type: str, body: dict[str, Any]) -> Job:
    """A job accepted, then failed with a retryable error and refunded."""
    response = submit(client, job_type, body)
    assert response.status_code == 202, response.json()
    job = Job.objects.get(pk=response.json()["job_id"])
    assert job_fail(job_id=job.pk, code="engine_error", detail="test", retryable=True)
    return job


def test_a_retry_and_a_bulk_retry_screen_the_files_again_and_charge_nothing(auth_client, funded, project, media,
                                                                          settings):
    job = failed_job(auth_client, "gaze-redirection", valid_body("gaze-redirection", project, media))
    settings.AUTEUR_SCREENING_INJECT = "gaze-redirection:input=1.0"  # the policy refuses it now
    before = ledger_state(funded)
    assert flagged(auth_client.post(jobs_url(f"/{job.pk}/retry"), {}, format="json")) == {
        "video_media_id": ["injected"]}
    assert flagged(auth_client.post(BULK_RETRY_URL, {"status": ["failed"]}, format="json")) == {
        f"jobs[{job.pk}].video_media_id": ["injected"]}
    nothing_made(funded, before)
    assert not Job.objects.filter(retry_of=job).exists()
    assert len(refusals(funded)) == 2  # the bulk retry's recorded although its transaction rolled back


def test_the_draw_is_fixed_by_the_file_and_takes_its_share(settings):
    settings.AUTEUR_SCREENING_INJECT = "lip-sync:input=0.25"
    shas = [uuid.UUID(int=n * 7919 + 1).hex * 2 for n in range(4000)]
    drawn = [moderation.injected("lip-sync", "input", sha) for sha in shas]
    assert 850 <= sum(drawn) <= 1150  # a quarter of 4000 is 1000
    assert drawn[:200] == [moderation.injected("lip-sync", "input", sha) for sha in shas[:200]]
    assert not any(moderation.injected("gaze-redirection", "input", sha) for sha in shas[:200])
    assert moderation.parse_inject_spec("lip-sync:input=1;lip-sync:output=0.5") == {
        ("lip-sync", "input"): 1.0, ("lip-sync", "output"): 0.5}
    with pytest.raises(ValueError, match="twice"):
        moderation.parse_inject_spec("lip-sync:input=1;lip-sync:input=0.5")


# ---------------------------------------------------------------------------------- the real model


def uploaded_faces(client: Any, project: Any, samples: Any) -> tuple[MediaFile, MediaFile]:
    """A real video and picture uploaded and probed, each covered by a likeness consent, with no
    verdict yet: the first request that names them screens them."""
    video = upload_local(client, project, samples.video, "video/mp4")
    image = upload_local(client, project, samples.png, "image/png")
    for media in (video, image):
        likeness_consent_for(media)
    MediaVerdict.objects.filter(user=project.user).delete()  # (the consent helper records a pass)
    return video, image


@pytest.mark.slow
def test_the_real_screener_passes_plain_files_records_each_verdict_once_and_reads_it_after(
        auth_client, funded, project, samples, local_storage):  # noqa: F811
    video, image = uploaded_faces(auth_client, project, samples)
    body = {"project_id": str(project.pk), "source_image_media_id": str(image.pk),
            "driving_video_media_id": str(video.pk)}
    response = submit(auth_client, "performance-cloning", body)
    assert response.status_code == 202, response.json()
    verdicts = {v.content_sha256: v for v in MediaVerdict.objects.filter(user=funded)}
    assert set(verdicts) == {video.content_sha256, image.content_sha256}
    for media in (video, image):
        verdict = verdicts[media.content_sha256]
        assert verdict.categories == [] and verdict.screener == screener_version()
        assert 0.0 <= verdict.top_score < 0.8
    # 4 frames of the 4:3 video, each whole and in 2 windows; the 4:3 picture's one frame, the same way.
    assert (verdicts[video.content_sha256].frames, verdicts[image.content_sha256].frames) == (12, 3)
    assert not refusals(funded)
    # Decided once: with the files' bytes gone, the next request reads the verdicts and decodes nothing.
    for media in (video, image):
        get_storage().delete(media.storage_key)
    again = submit(auth_client, "performance-cloning/quote", body)
    assert again.status_code == 201, again.json()
    assert MediaVerdict.objects.filter(user=funded).count() == 2


@pytest.mark.slow
def test_an_upload_is_screened_on_the_media_queue_once_ready_so_a_request_decodes_nothing(
        auth_client, funded, project, samples, local_storage, monkeypatch):  # noqa: F811
    sent: list[publishing.Message] = []
    monkeypatch.setattr(publishing.unsent, "attempt", sent.append)
    audio = upload_local(auth_client, project, samples.wav, "audio/wav")
    video, image = uploaded_faces(auth_client, project, samples)
    screenings = [m.args for m in sent if m.name == task_names.MEDIA_VERDICT]
    assert screenings == [(str(video.pk),), (str(image.pk),)]  # pictures only: not the audio
    assert task_routes_queue(task_names.MEDIA_VERDICT) == "media"
    assert [media_verdict(str(m.pk)) for m in (video, image, audio)] == [True, True, False]
    assert media_verdict(str(video.pk)) is False  # kept already: nothing decoded again
    assert {v.content_sha256 for v in MediaVerdict.objects.filter(user=funded, screener=screener_version())} == {
        video.content_sha256, image.content_sha256}
    for media in (video, image):  # the request reads the verdicts: the files' bytes are not needed
        get_storage().delete(media.storage_key)
    response = submit(auth_client, "performance-cloning", {"project_id": str(project.pk),
                                                           "source_image_media_id": str(image.pk),
                                                           "driving_video_media_id": str(video.pk)})
    assert response.status_code == 202, response.json()


def task_routes_queue(name: str) -> str:
    from auteur.core.queues import TASK_ROUTES

    return next(route["queue"] for pattern, route in TASK_ROUTES.items() if fnmatch.fnmatch(name, pattern))


@pytest.mark.slow
def test_another_owner_of_the_same_bytes_is_screened_for_itself(auth_client, funded, project, samples, settings,
                                                                local_storage):  # noqa: F811
    """A verdict is the owner's: another account's row for the same bytes is neither read nor reused."""
    video, _image = uploaded_faces(auth_client, project, samples)
    stranger = ProjectFactory.create().user
    MediaVerdict.objects.create(user=stranger, content_sha256=video.content_sha256, screener=screener_version(),
                                categories=["sexual"], top_score=0.99, frames=1)
    response = submit(auth_client, "gaze-redirection", {"project_id": str(project.pk),
                                                         "video_media_id": str(video.pk)})
    assert response.status_code == 202, response.json()
    assert MediaVerdict.objects.get(user=funded, content_sha256=video.content_sha256).categories == []


@pytest.mark.slow
def test_a_file_that_cannot_be_decoded_to_be_screened_is_refused_and_nothing_is_made(
        auth_client, funded, project, samples, settings, local_storage):  # noqa: F811
    video, _image = uploaded_faces(auth_client, project, samples)
    settings.AUTEUR_MEDIA_MAX_PIXELS = 100  # the probe's limit now refuses its 320 x 240 frames
    before = ledger_state(funded)
    response = submit(auth_client, "lip-sync", {"project_id": str(project.pk), "video_media_id": str(video.pk),
                                                "audio_media_id": str(upload_local(auth_client, project,
                                                                                   samples.wav, "audio/wav").pk)})
    assert response.status_code == 422 and error_code(response) == "media_unscreenable", response.json()
    assert response.json()["error"]["details"] == {"field": "video_media_id", "media_id": str(video.pk)}
    nothing_made(funded, before)
    assert not MediaVerdict.objects.filter(user=funded).exists() and not refusals(funded)


@pytest.mark.slow
def test_frames_are_spread_over_the_video_whatever_its_key_frames(samples, tmp_path: Path):
    """The sample has one key frame: the frames at 0, 0.5, 1 and 1.5 s are decoded, not the first four."""
    frames = screening_frames_spread(samples.video, count=4, duration_ms=2000)
    assert frames is not None and len(frames) == 12  # each whole, then 2 windows of the 4:3 frame
    wholes = frames[::3]
    assert all(len(f) == SCREEN_FRAME_SIDE * SCREEN_FRAME_SIDE * 3 for f in frames)
    assert len(set(wholes)) == 4  # testsrc moves: four distinct moments
    measured = screening_frames_spread(samples.video, count=4)  # its length read from the packets
    assert measured is not None and len(set(measured[::3])) == 4 and measured[0] == wholes[0]
    garbage = tmp_path / "x.mp4"
    garbage.write_bytes(b"\x00" * 4096)
    assert screening_frames_spread(garbage, count=4) is None


# ---------------------------------------------------------------------------------- burned captions


@pytest.mark.usefixtures("clean_edl_store")
def test_captions_to_burn_in_are_screened_as_the_captions_field_and_a_sidecar_is_not(
        auth_client, funded, project, media):
    put_transcribed_timeline(project, media["video"], [seg(GORE.split(), id="g")], clip_ms=4000)
    before = ledger_state(funded)
    response = submit(auth_client, "render", {"project_id": str(project.pk), "captions": "burn"})
    fields = flagged(response)
    assert list(fields) == ["captions"] and "violence_graphic" in fields["captions"]
    assert "pliers" not in response.content.decode()
    nothing_made(funded, before)
    [refusal] = refusals(funded)
    assert refusal.type == "render" and refusal.flagged[0]["field"] == "captions"
    # The same transcript delivered as sidecar files beside the video: the user's own text, not screened.
    sidecar = submit(auth_client, "render", {"project_id": str(project.pk), "captions": "sidecar"})
    assert sidecar.status_code == 202, sidecar.json()
    plain = submit(auth_client, "render", {"project_id": str(project.pk)})
    assert plain.status_code == 202, plain.json()
    assert len(refusals(funded)) == 1


def test_refused_input_files_count_towards_the_accounts_review_hold(auth_client, funded, project, media, settings):
    settings.AUTEUR_REVIEW_HOLD_REFUSALS_PER_DAY = 2
    body = valid_body("lip-sync", project, media)
    settings.AUTEUR_SCREENING_INJECT = "lip-sync:input=1.0"
    for _ in range(2):
        assert flagged(submit(auth_client, "lip-sync", body)) == {"video_media_id": ["injected"]}
    held = submit(auth_client, "lip-sync", body)
    assert held.status_code == 403 and error_code(held) == "account_under_review", held.json()
    assert held.json()["error"]["details"]["reason"] == "refusals"
    assert len(refusals(funded)) == 2  # the held request was refused before its file was screened

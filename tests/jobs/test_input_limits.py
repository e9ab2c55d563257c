"""An engine's limits on its media inputs that the files' probed facts show (lip sync's audio length,
performance cloning's and gaze redirection's frames) are checked at submission with the engine's own
numbers: past one, a 422 naming it, nothing charged, no job; GET /jobs/types lists them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from gpu_tasks.engines import gaze_redirection, lip_sync, performance_cloning
from gpu_tasks.input_bounds import MediaLimit
from jobs.models import Batch, Job, Quote
from jobs.specs import JOB_SPECS, job_spec
from media.models import MediaFile
from projects.models import Project
from tests.factories import likeness_consent_for, pictures_passed
from tests.jobs.support import error_code, jobs_url, ledger_state, submit, valid_body

pytestmark = pytest.mark.django_db

# (type, field, the file's kind, its facts past the limit, at the limit, the limit's name and max)
LIMITS = [
    ("lip-sync", "audio_media_id", "audio", {"duration_ms": 60_001}, {"duration_ms": 60_000}, "max_seconds", 60),
    ("performance-cloning", "driving_video_media_id", "video", {"duration_ms": 30_010, "metadata": {"fps": 30}},
     {"duration_ms": 30_000, "metadata": {"fps": 30}}, "max_frames", 900),
    ("gaze-redirection", "video_media_id", "video", {"duration_ms": 36_050, "metadata": {"fps": 25}},
     {"duration_ms": 36_000, "metadata": {"fps": 25}}, "max_frames", 900),
]


@pytest.fixture(autouse=True)
def _every_type_runs(gpu_backend: Callable[[str], None]) -> None:
    gpu_backend("noop")


def test_each_limit_is_the_engines_own_number():
    assert job_spec("lip-sync").media_limits == {"audio_media_id": MediaLimit(max_seconds=lip_sync.MAX_AUDIO_S)}
    assert job_spec("performance-cloning").media_limits == {
        "driving_video_media_id": MediaLimit(max_frames=performance_cloning.MAX_FRAMES)}
    assert job_spec("gaze-redirection").media_limits == {
        "video_media_id": MediaLimit(max_frames=gaze_redirection.MAX_FRAMES)}
    # Each field a limit names is a field of the type's input.
    for spec in JOB_SPECS.values():
        assert set(spec.media_limits) <= set(spec.references), spec.type


def _body(job_type: str, field: str, project: Project, media: dict[str, MediaFile], file: MediaFile) -> dict[str, Any]:
    if field in job_spec(job_type).likeness_of:
        likeness_consent_for(file)  # (the face in it consented: only its limits are in question)
    if field in job_spec(job_type).screened_media:
        pictures_passed(file)  # (its pictures screened and passed: no bytes of it are stored)
    return {**valid_body(job_type, project, media), field: str(file.pk)}


@pytest.mark.parametrize(("job_type", "field", "kind", "past", "at", "limit", "most"), LIMITS,
                         ids=[row[0] for row in LIMITS])
def test_a_file_past_its_engines_limit_is_refused_at_submission_and_nothing_is_charged(
        auth_client, funded, project, media, make_media, job_type, field, kind, past, at, limit, most):
    over = make_media(project, kind, **past)
    before = ledger_state(funded)
    body = _body(job_type, field, project, media, over)
    for response in (submit(auth_client, job_type, body),
                     auth_client.post(jobs_url(f"/{job_type}/quote"), body, format="json")):
        assert response.status_code == 422 and error_code(response) == "input_limit_exceeded", response.json()
        error = response.json()["error"]
        assert {k: error["details"][k] for k in ("field", "media_id", "limit", "max")} == {
            "field": field, "media_id": str(over.pk), "limit": limit, "max": most}
        assert error["details"]["value"] > most and field in error["message"] and str(most) in error["message"]
    items = [{"type": "tts", "input": {"text": "Hello"}}, {"type": job_type, "input": body}]
    batch = auth_client.post("/api/v1/jobs/batch", {"items": items}, format="json")
    assert batch.status_code == 422 and error_code(batch) == "input_limit_exceeded"
    assert batch.json()["error"]["details"]["item"] == 1
    assert ledger_state(funded) == before
    assert not Job.objects.exists() and not Quote.objects.exists() and not Batch.objects.exists()
    # At the limit, it is taken.
    ok = submit(auth_client, job_type, _body(job_type, field, project, media, make_media(project, kind, **at)))
    assert ok.status_code == 202, ok.json()


def test_a_file_whose_frame_rate_the_probe_did_not_give_is_left_to_the_engine(auth_client, funded, project, media,
                                                                               make_media):
    long = make_media(project, "video", duration_ms=120_000, metadata={})
    response = submit(auth_client, "gaze-redirection", _body("gaze-redirection", "video_media_id", project, media,
                                                             long))
    assert response.status_code == 202, response.json()


def test_the_types_list_shows_each_limit(auth_client, funded):
    types = {t["type"]: t for t in auth_client.get(jobs_url("/types")).json()["types"]}
    assert types["lip-sync"]["limits"] == [{"field": "audio_media_id", "limit": "max_seconds", "max": 60}]
    assert types["performance-cloning"]["limits"] == [
        {"field": "driving_video_media_id", "limit": "max_frames", "max": 900}]
    assert types["gaze-redirection"]["limits"] == [{"field": "video_media_id", "limit": "max_frames", "max": 900}]
    assert types["tts"]["limits"] == [] and types["render"]["limits"] == []

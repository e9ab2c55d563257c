"""A render's `captions` option: the cues it carries (output times, edits shown) and the files it delivers."""

from __future__ import annotations

from typing import Any

import numpy as np
import pysubs2
import pytest

from jobs.models import Job, JobStatus
from media.models import MediaFile
from media.storage import get_storage
from projects.edl.selectors import edl_get
from projects.edl.services import edl_replace
from tests.gpu_tasks.helpers import frame_at
from tests.jobs.conftest import Worker, wait_terminal
from tests.jobs.support import error_code, ledger_state, submit
from tests.media.conftest import upload_local
from tests.projects.test_captions import seg
from tests.projects.test_edl_support import (
    clean_edl_store_fixture,  # noqa: F401 - fixture
    clip,
)

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("clean_edl_store")]

SEGMENTS = [
    seg(["So", "um", "we", "start."], cut=(1,), id="a"),
    seg(["Their", "there."], start=2000, id="b", edited_text="They're there."),
]
UM_CUT = (600 - 40) - (250 + 40)
# The same, within the 2 s of the sample video.
SHORT_SEGMENTS = [SEGMENTS[0], seg(["Their", "there."], start=1200, id="b", edited_text="They're there.")]


@pytest.fixture
def worker(celery_worker: Worker) -> Worker:
    """The shared plain worker for the module's renders (the tests without one submit inside a
    rolled-back transaction: nothing is published)."""
    return celery_worker


def put_transcribed_timeline(project, media, segments: list[dict[str, Any]], clip_ms: int = 4000) -> None:
    doc = edl_get(project=project)
    video = doc["tracks"][0]
    video["clips"] = [clip(media, video, start=0, out=clip_ms, id="c0")]
    doc["transcript"] = {"segments": segments, "pauses": []}
    edl_replace(project=project, expected_version=doc["version"], data=doc)


def render(client, project, **body: Any):
    return submit(client, "render", {"project_id": str(project.pk), **body})


def params_of(response) -> dict[str, Any]:
    assert response.status_code == 202, response.json()
    return Job.objects.get(pk=response.json()["job_id"]).input_params


def test_burn_carries_an_ass_script_at_output_times_with_the_edited_text(auth_client, funded, project, media):
    put_transcribed_timeline(project, media["video"], SEGMENTS)
    params = params_of(render(auth_client, project, resolution="1280x720", captions="burn",
                              caption_style={"font_size": 40, "position": "top", "color": "#ffff00"}))
    assert params["captions"] == "burn" and "caption_style" not in params
    assert "captions_srt" not in params and "transcript" not in params["edl"]
    subs = pysubs2.SSAFile.from_string(params["captions_ass"], format_="ass")
    assert (subs.info["PlayResX"], subs.info["PlayResY"]) == ("1280", "720")
    style = subs.styles["Default"]
    assert style.fontsize == 40 and style.alignment == pysubs2.Alignment.TOP_CENTER
    assert (style.primarycolor.r, style.primarycolor.g, style.primarycolor.b) == (255, 255, 0)
    assert [e.plaintext for e in subs] == ["So we start.", "They're there."]
    # ASS keeps centiseconds.
    assert abs(subs[0].end - (1150 - UM_CUT)) <= 10
    assert abs(subs[1].start - (2000 - UM_CUT)) <= 10


def test_sidecar_carries_srt_and_vtt(auth_client, funded, project, media):
    put_transcribed_timeline(project, media["video"], SEGMENTS)
    params = params_of(render(auth_client, project, captions="sidecar"))
    assert "captions_ass" not in params
    for fmt in ("srt", "vtt"):
        subs = pysubs2.SSAFile.from_string(params[f"captions_{fmt}"], format_=fmt)
        assert [(e.start, e.plaintext) for e in subs] == [(0, "So we start."), (2000 - UM_CUT, "They're there.")]


def test_no_captions_by_default(auth_client, funded, project, media):
    put_transcribed_timeline(project, media["video"], SEGMENTS)
    params = params_of(render(auth_client, project))
    assert params["captions"] == "none"
    assert not {"captions_ass", "captions_srt", "captions_vtt"} & set(params)


@pytest.mark.parametrize("segments", [[], [seg(["Gone."], deleted=True)]])
def test_captions_without_words_to_show_are_422_and_nothing_is_charged(auth_client, funded, project, media,
                                                                       segments):
    put_transcribed_timeline(project, media["video"], segments)
    before = ledger_state(funded)
    response = render(auth_client, project, captions="burn")
    assert response.status_code == 422 and error_code(response) == "no_captions"
    assert ledger_state(funded) == before


def test_captions_stop_at_the_end_of_the_output_and_skip_clips_that_do_not_play(auth_client, funded, project,
                                                                               media):
    gone = {**seg(["Not", "played."], start=1000, id="x"), "clip_id": "deleted-clip"}
    put_transcribed_timeline(project, media["video"], [{**SEGMENTS[0], "clip_id": "c0"}, gone, SEGMENTS[1]],
                             clip_ms=2200)
    params = params_of(render(auth_client, project, captions="sidecar"))
    end = params["edl"]["settings"]["duration_ms"]
    assert end == 2200 - UM_CUT
    subs = pysubs2.SSAFile.from_string(params["captions_srt"], format_="srt")
    # "Their" starts before the end and is cut short there; "there." would start after it.
    assert [(e.plaintext, e.end) for e in subs] == [("So we start.", 1150 - UM_CUT), ("They're", end)]


@pytest.mark.parametrize(("body", "field"), [
    ({"captions": "subtitles"}, "captions"),
    ({"captions": "burn", "caption_style": {"font_size": 4}}, "caption_style"),
    ({"captions": "burn", "caption_style": {"position": "left"}}, "caption_style"),
    ({"captions": "burn", "caption_style": {"color": "red"}}, "caption_style"),
    ({"captions": "burn", "caption_style": {"font": "Comic Sans"}}, "caption_style"),
])
def test_a_bad_captions_option_is_400_and_nothing_is_charged(auth_client, funded, project, media, body, field):
    put_transcribed_timeline(project, media["video"], SEGMENTS)
    before = ledger_state(funded)
    response = render(auth_client, project, **body)
    assert response.status_code == 400 and error_code(response) == "validation_error"
    assert any(key.startswith(field) for key in response.json()["error"]["details"]["fields"])
    assert ledger_state(funded) == before


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_sidecar_render_stores_srt_and_vtt_media_beside_the_video(worker, auth_client, funded, project,
                                                                    samples):
    video = upload_local(auth_client, project, samples.video, "video/mp4")
    put_transcribed_timeline(project, video, SHORT_SEGMENTS, clip_ms=2000)
    job = wait_terminal(render(auth_client, project, captions="sidecar").json()["job_id"], timeout=180)
    assert job.status == JobStatus.COMPLETED, (job.error_code, job.error_detail)
    assert sorted(MediaFile.objects.filter(source_job_id=job.pk).values_list("type", flat=True)) == [
        "captions", "captions", "video"]
    assert len(job.output_data["output_media_ids"]) == 3
    for media in MediaFile.objects.filter(source_job_id=job.pk, type="captions"):
        fmt = "srt" if media.mime_type == "application/x-subrip" else "vtt"
        assert media.mime_type in ("application/x-subrip", "text/vtt") and media.status == "ready"
        with get_storage().open(media.storage_key) as fh:
            subs = pysubs2.SSAFile.from_string(fh.read().decode(), format_=fmt)
        assert [e.plaintext for e in subs] == ["So we start.", "They're there."]
        assert media.duration_ms == subs[-1].end


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_burned_in_captions_are_visible_in_the_rendered_video(worker, auth_client, funded, project, samples):
    video = upload_local(auth_client, project, samples.video, "video/mp4")
    put_transcribed_timeline(project, video, SHORT_SEGMENTS, clip_ms=2000)
    jobs = {mode: render(auth_client, project, resolution="320x240", captions=mode).json()["job_id"]
            for mode in ("none", "burn")}
    frames = {}
    for mode, job_id in jobs.items():
        job = wait_terminal(job_id, timeout=180)
        assert job.status == JobStatus.COMPLETED, (job.error_code, job.error_detail)
        [output] = MediaFile.objects.filter(source_job_id=job.pk)
        with get_storage().local_path(output.storage_key) as path:
            frames[mode] = frame_at(path, 0.5)  # "So we start." shows from 0 to 0.88 s
    diff = np.abs(frames["burn"] - frames["none"]).sum(axis=2)
    assert diff[180:].mean() > 5 * max(diff[:120].mean(), 1), "the bottom of the picture changed, the top did not"
    assert (diff[180:] > 150).sum() > 150, "text is drawn at the bottom"

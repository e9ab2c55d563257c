"""What a job sends to the GPU backend: its parameters, with each input as a ref."""

from __future__ import annotations

import io
import json
from typing import Any

import av
import pytest

from gpu_tasks.contract import EngineContext
from gpu_tasks.engines import compression
from jobs.models import Job
from jobs.specs import job_spec
from media.storage import get_storage
from tests.factories import MediaFileFactory
from tests.media.conftest import ffmpeg

pytestmark = pytest.mark.django_db


def job_of(user: Any, project: Any, job_type: str, **params: Any) -> Job:
    return Job.objects.create(user=user, project=project, type=job_type, credits_cost=1, input_params=params)


def test_each_media_input_goes_as_a_ref_named_after_its_field(funded, project):
    video = MediaFileFactory.create(user=funded, project=project, type="video")
    audio = MediaFileFactory.create(user=funded, project=project, type="audio")
    job = job_of(funded, project, "lip-sync", video_media_id=str(video.pk), audio_media_id=str(audio.pk))
    payload = job_spec("lip-sync").build_payload(job)
    assert payload["job_id"] == str(job.pk) and payload["video_media_id"] == str(video.pk)
    assert payload["video_media"]["path"].endswith(video.storage_key)
    assert payload["audio_media"]["path"].endswith(audio.storage_key)


def test_a_question_about_a_video_carries_its_transcript(funded, project):
    video = MediaFileFactory.create(user=funded, project=project, type="video", caption_key="captions/v.json")
    get_storage().save("captions/v.json", io.BytesIO(json.dumps({"text": "Hello there."}).encode()), "application/json")
    job = job_of(funded, project, "video-query", video_media_id=str(video.pk), question="Who speaks?")
    payload = job_spec("video-query").build_payload(job)
    assert payload["transcript"] == "Hello there." and payload["question"] == "Who speaks?"
    assert "path" in payload["video_media"]


def test_a_question_about_a_video_without_captions_has_no_transcript(funded, project):
    video = MediaFileFactory.create(user=funded, project=project, type="video")
    job = job_of(funded, project, "video-query", video_media_id=str(video.pk), question="Who speaks?")
    assert "transcript" not in job_spec("video-query").build_payload(job)


def test_each_media_input_carries_the_length_it_was_priced_for(funded, project):
    video = MediaFileFactory.create(user=funded, project=project, type="video", duration_ms=61_000)
    image = MediaFileFactory.create(user=funded, project=project, type="image", duration_ms=None)
    job = job_of(funded, project, "performance-cloning", driving_video_media_id=str(video.pk),
                 source_image_media_id=str(image.pk))
    payload = job_spec("performance-cloning").build_payload(job)
    assert payload["driving_video_media"]["max_duration_ms"] == 61_000
    assert "max_duration_ms" not in payload["source_image_media"]


def test_a_file_longer_than_it_was_priced_for_is_processed_only_for_the_priced_length(funded, project, tmp_path):
    """The object behind a ready file holds 6 s, the file was priced as 2 s (as a file swapped after
    its probe would present): the engine's output is 2 s."""
    source = tmp_path / "six-seconds.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=160x120:rate=25:duration=6", "-pix_fmt", "yuv420p", str(source))
    video = MediaFileFactory.create(user=funded, project=project, type="video", duration_ms=2000)
    with source.open("rb") as fh:
        get_storage().save(video.storage_key, fh, "video/mp4")
    job = job_of(funded, project, "compression", media_id=str(video.pk), preset="480p")
    payload = {**job_spec("compression").build_payload(job), "output_dir": str(tmp_path / "out")}
    result = compression.run(payload, EngineContext(workdir=tmp_path / "work", payload=payload))
    with av.open(result["outputs"]["video"]["path"]) as output:
        assert output.duration is not None and output.duration / 1_000_000 == pytest.approx(2.0, abs=0.1)

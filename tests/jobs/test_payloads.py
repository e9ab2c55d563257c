"""What a job sends to the GPU backend: its parameters, with each input as a ref."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest

from jobs.models import Job
from jobs.specs import job_spec
from media.storage import get_storage
from tests.factories import MediaFileFactory

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

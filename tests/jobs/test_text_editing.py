"""Text-based editing end to end: a spoken sentence is transcribed, three of its words are deleted
in the EDL's transcript, and the render through the real pipeline (local backend, real ffmpeg,
Whisper tiny.en) is shorter by exactly their span, on both streams, without them."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import av
import pytest

from jobs.models import Job, JobStatus
from media.models import MediaFile
from media.storage import get_storage
from projects.models import Project
from tests.factories import ProjectFactory
from tests.gpu_tasks.helpers import ffmpeg
from tests.jobs.conftest import speech_wav, upload_local, wait_terminal

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

# No famous phrase (a pangram would let Whisper's language model fill in the deleted words).
SENTENCE = "Our small team painted seven wooden boats during the cold winter."
DELETE = ["seven", "wooden", "boats"]
FPS = 25


def norm(word: str) -> str:
    return re.sub(r"[^a-z']", "", word.lower())


def heard(text: str) -> list[str]:
    return [norm(w) for w in text.split() if norm(w)]


@pytest.fixture
def project(funded) -> Project:
    return ProjectFactory.create(user=funded, name="Text edit", resolution="320x180")


def spoken_video(tmp_path: Path) -> Path:
    """A picture (a test pattern) with the sentence spoken by eSpeak NG as its sound."""
    wav = speech_wav(tmp_path / "speech.wav", SENTENCE)
    out = tmp_path / "spoken.mp4"
    ffmpeg("-f", "lavfi", "-i", f"testsrc=size=320x180:rate={FPS}", "-i", str(wav), "-c:v", "libx264",
           "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest", str(out))  # fmt: skip
    return out


def run_job(client: Any, job_type: str, body: dict[str, Any], timeout: float = 180) -> Job:
    response = client.post(f"/api/v1/jobs/{job_type}", body, format="json")
    assert response.status_code == 202, response.json()
    job = wait_terminal(response.json()["job_id"], timeout=timeout)
    assert job.status == JobStatus.COMPLETED, (job.error_code, job.error_detail)
    return job


def put_edl(client: Any, project: Project, edl: dict[str, Any]) -> dict[str, Any]:
    saved = client.put(f"/api/v1/projects/{project.pk}/edl", edl, format="json", HTTP_IF_MATCH=str(edl["version"]))
    assert saved.status_code == 200, saved.json()
    return saved.json()


def edl_with_transcript_of(client: Any, project: Project, media: MediaFile, timeout: float = 30) -> dict[str, Any]:
    """The EDL once the server has written the file's completed transcription into it."""
    deadline = time.monotonic() + timeout
    while True:
        edl: dict[str, Any] = client.get(f"/api/v1/projects/{project.pk}/edl").json()
        if any(seg["media_file_id"] == str(media.pk) for seg in edl["transcript"]["segments"]):
            return edl
        assert time.monotonic() < deadline, edl["transcript"]
        time.sleep(0.2)


def stream_seconds(path: Path) -> tuple[float, float]:
    with av.open(str(path)) as c:
        v, a = c.streams.video[0], c.streams.audio[0]
        assert v.duration and v.time_base and a.duration and a.time_base
        return float(v.duration * v.time_base), float(a.duration * a.time_base)


def test_deleting_three_words_cuts_their_span_from_picture_and_sound(celery_worker, auth_client, project, tmp_path):
    media = upload_local(auth_client, project, spoken_video(tmp_path), "video/mp4")
    assert media.duration_ms
    length = media.duration_ms - media.duration_ms % 40  # whole frames of both streams
    # The file on the video track (its picture) and on the audio track (its sound), in sync.
    edl = auth_client.get(f"/api/v1/projects/{project.pk}/edl").json()
    video_track, audio_track = edl["tracks"]
    placed = {"media_file_id": str(media.pk), "start_ms": 0, "duration_ms": length, "in_point_ms": 0,
              "out_point_ms": length, "effects": [], "deleted": False}  # fmt: skip
    video_track["clips"] = [{**placed, "id": "picture"}]
    audio_track["clips"] = [{**placed, "id": "sound"}]
    edl = put_edl(auth_client, project, edl)

    run_job(auth_client, "transcription", {"project_id": str(project.pk), "media_id": str(media.pk)})
    edl = edl_with_transcript_of(auth_client, project, media)
    assert {seg["clip_id"] for seg in edl["transcript"]["segments"]} == {"sound"}  # written once, not per clip
    words = [w for seg in edl["transcript"]["segments"] for w in seg["words"]]
    spoken = [norm(w["word"]) for w in words]
    assert all(w in spoken for w in DELETE), spoken
    first = spoken.index(DELETE[0])
    assert spoken[first : first + 3] == DELETE, spoken

    # Three words deleted in the transcript (PUT /edl), then a render.
    for word in words[first : first + 3]:
        word["deleted"] = True
    put_edl(auth_client, project, edl)
    render = run_job(auth_client, "render", {"project_id": str(project.pk), "frame_rate": FPS}, timeout=240)

    cuts = render.input_params["cuts"]
    [(cut_start, cut_end)] = cuts["spans"]
    assert cut_start <= words[first]["start_ms"] and cut_end >= words[first + 2]["end_ms"]
    removed_ms = cut_end - cut_start
    assert cuts["removed_ms"] == removed_ms and cuts["duration_before_ms"] == length
    assert render.output_data["duration_before_ms"] == length
    assert render.output_data["removed_ms"] == removed_ms
    assert render.output_data["duration_ms"] == length - removed_ms
    [output] = MediaFile.objects.filter(source_job_id=render.pk)
    frame_s = 1 / FPS
    with get_storage().local_path(output.storage_key) as path:
        video_s, audio_s = stream_seconds(Path(path))
    expected_s = (length - removed_ms) / 1000
    assert abs(video_s - expected_s) <= frame_s + 1e-6, (video_s, expected_s)
    assert abs(audio_s - expected_s) <= frame_s + 1e-6, (audio_s, expected_s)

    # Heard again: the deleted words are gone and (Whisper tiny allowing) the rest remain.
    again = run_job(auth_client, "transcription", {"project_id": str(project.pk), "media_id": str(output.pk)})
    now = heard(" ".join(w["word"] for seg in again.output_data["segments"] for w in seg["words"]))
    assert not set(DELETE) & set(now), now
    kept = [w for i, w in enumerate(spoken) if not first <= i < first + 3]
    assert sum(w in now for w in kept) >= 0.7 * len(kept), (kept, now)

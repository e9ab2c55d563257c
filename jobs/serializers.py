"""The input of each job type: what a client may send, and what the job stores.

Each serializer validates the body's shape (400 `validation_error`, unknown fields included),
then `job_request()` resolves what the body names against the database, scoped to the caller:
the project (404 `project_not_found`), its media files (404 `media_not_found` for a file of
another project or user, 422 `media_not_ready`, 422 `wrong_media_type`), a voice (404
`voice_not_found`), the timeline of a render (422 `empty_timeline`). It returns what
`jobs.services.job_submit` needs: the JSON `input_params` stored on the job (ids as strings,
plus `_quantities`, which a retry prices again with), the `quantities` the price is computed
from (never sent by the client), and the ids of the media to lock while the job is inserted.

Every type takes `project_id`: the job's outputs become media files of that project.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from rest_framework import serializers
from rest_framework import status as http

from auteur.api import StrictSerializer
from auteur.errors import ApplicationError
from auteur.users.models import User
from gpu_tasks.types import JobType
from media.models import MediaFile, MediaStatus, MediaType
from media.selectors import media_get, voice_get
from projects.edl.selectors import edl_snapshot
from projects.models import Project
from projects.selectors import project_get


class MediaNotReady(ApplicationError):
    status_code = http.HTTP_422_UNPROCESSABLE_ENTITY
    code = "media_not_ready"


class WrongMediaType(ApplicationError):
    status_code = http.HTTP_422_UNPROCESSABLE_ENTITY
    code = "wrong_media_type"


class EmptyTimeline(ApplicationError):
    status_code = http.HTTP_422_UNPROCESSABLE_ENTITY
    code = "empty_timeline"


@dataclass(frozen=True)
class JobRequest:
    project: Project
    input_params: dict[str, Any]
    quantities: dict[str, Any]
    media_ids: list[uuid.UUID]


def _multiple_of_64(value: int) -> None:
    if value % 64:
        raise serializers.ValidationError("Must be a multiple of 64.")


def _resolution(value: str) -> None:
    # The render engine's bounds (gpu_tasks/engines/render.py): even sizes, at most 7680x4320.
    width, sep, height = value.partition("x")
    if not (sep and width.isdigit() and height.isdigit()):
        raise serializers.ValidationError("Resolution must look like 1920x1080.")
    w, h = int(width), int(height)
    if not (16 <= w <= 7680 and 16 <= h <= 4320) or w % 2 or h % 2:
        raise serializers.ValidationError("Width and height must be even, between 16 and 7680x4320.")


class JobInputSerializer(StrictSerializer):
    """Base of every job type's input; `context["user"]` is the caller."""

    job_type: ClassVar[JobType]

    project_id = serializers.UUIDField()

    @property
    def user(self) -> User:
        user = self.context["user"]
        assert isinstance(user, User)
        return user

    def job_request(self) -> JobRequest:
        """Resolve the validated body against the database (call after is_valid)."""
        data = dict(self.validated_data)
        project = project_get(user=self.user, project_id=data.pop("project_id"))
        params, quantities, media = self.resolve(project, data)
        media_ids = [m.pk for m in media]
        return JobRequest(
            project=project,
            input_params={**params, "_quantities": quantities},
            quantities=quantities,
            media_ids=media_ids,
        )

    def resolve(
        self, project: Project, data: dict[str, Any]
    ) -> tuple[dict[str, Any], dict[str, Any], list[MediaFile]]:
        """(input_params, quantities, media used) for this type."""
        raise NotImplementedError

    def media(self, project: Project, field: str, media_id: uuid.UUID, kinds: Iterable[str]) -> MediaFile:
        """A ready file of the caller's project, of one of `kinds`."""
        media = media_get(user=self.user, project_id=project.pk, media_id=media_id)
        if media.status != MediaStatus.READY:
            raise MediaNotReady(
                f"The media file is not ready (status: {media.status}).",
                details={"field": field, "media_id": str(media.pk), "status": media.status},
            )
        allowed = sorted(str(k) for k in kinds)
        if media.type not in allowed:
            raise WrongMediaType(
                f"{field} must be a {' or '.join(allowed)} file, not {media.type}.",
                details={"field": field, "media_id": str(media.pk), "type": media.type, "allowed": allowed},
            )
        return media


def _duration(media: MediaFile) -> dict[str, Any]:
    """The quantity a length-priced job is charged on. A file whose length the probe could not
    read (a header without a duration, as live recorders write them) cannot be priced, so it is
    refused rather than charged the minimum whatever its real length."""
    if not media.duration_ms:
        raise ApplicationError(
            "This file's duration is unknown, so the job cannot be priced; re-encode or remux it.",
            code="media_duration_unknown", status_code=422, details={"media_id": str(media.pk)},
        )
    return {"duration_ms": int(media.duration_ms)}


# ----------------------------------------------------------------------------- audio


class TranscriptionInputSerializer(JobInputSerializer):
    """Speech to text with word timings. `language` is `en` only: the local engine (Whisper
    tiny.en) is English-only. With `script` (the known text) the words are aligned to it."""

    job_type = JobType.TRANSCRIPTION

    media_id = serializers.UUIDField(help_text="An audio or video file of the project.")
    language = serializers.ChoiceField(choices=["en"], default="en")
    script = serializers.CharField(required=False, max_length=100_000)
    speaker_diarization = serializers.BooleanField(default=True)

    def resolve(self, project: Project, data: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], list[MediaFile]]:
        media = self.media(project, "media_id", data["media_id"], (MediaType.AUDIO, MediaType.VIDEO))
        params: dict[str, Any] = {
            "media_id": str(media.pk),
            "language": data["language"],
            # The engines read `diarization` (gpu_tasks/engines/transcription_hf.py).
            "diarization": data["speaker_diarization"],
        }
        if data.get("script"):
            params["script"] = data["script"]
        return params, _duration(media), [media]


class TtsInputSerializer(JobInputSerializer):
    """Text to speech, in one of the caller's cloned voices when `voice_id` is given."""

    job_type = JobType.TTS

    text = serializers.CharField(min_length=1, max_length=5000)
    voice_id = serializers.UUIDField(required=False, allow_null=True)
    speed = serializers.FloatField(min_value=0.5, max_value=2.0, default=1.0)

    def resolve(self, project: Project, data: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], list[MediaFile]]:
        params: dict[str, Any] = {"text": data["text"], "speed": data["speed"], "voice_id": None}
        if data.get("voice_id"):
            voice = voice_get(user=self.user, voice_id=data["voice_id"])
            params.update(voice_id=str(voice.pk), voice_sample_key=voice.sample_key)
        return params, {"characters": len(data["text"])}, []


class AudioGenerationInputSerializer(JobInputSerializer):
    job_type = JobType.AUDIO_GENERATION

    prompt = serializers.CharField(min_length=1, max_length=1000)
    duration_sec = serializers.IntegerField(min_value=1, max_value=60, default=10)

    def resolve(self, project: Project, data: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], list[MediaFile]]:
        params = {"prompt": data["prompt"], "duration_sec": data["duration_sec"]}
        return params, {"duration_sec": data["duration_sec"]}, []


# ----------------------------------------------------------------------------- vision


class LipSyncInputSerializer(JobInputSerializer):
    """Re-time the face of `video_media_id` to `audio_media_id`; priced by the video's length."""

    job_type = JobType.LIP_SYNC

    video_media_id = serializers.UUIDField()
    audio_media_id = serializers.UUIDField()

    def resolve(self, project: Project, data: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], list[MediaFile]]:
        video = self.media(project, "video_media_id", data["video_media_id"], (MediaType.VIDEO,))
        audio = self.media(project, "audio_media_id", data["audio_media_id"], (MediaType.AUDIO,))
        params = {"video_media_id": str(video.pk), "audio_media_id": str(audio.pk)}
        return params, _duration(video), [video, audio]


class PerformanceCloningInputSerializer(JobInputSerializer):
    """Animate the face of a still image with the performance of a driving video."""

    job_type = JobType.PERFORMANCE_CLONING

    source_image_media_id = serializers.UUIDField()
    driving_video_media_id = serializers.UUIDField()

    def resolve(self, project: Project, data: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], list[MediaFile]]:
        image = self.media(project, "source_image_media_id", data["source_image_media_id"], (MediaType.IMAGE,))
        video = self.media(project, "driving_video_media_id", data["driving_video_media_id"], (MediaType.VIDEO,))
        params = {"source_image_media_id": str(image.pk), "driving_video_media_id": str(video.pk)}
        return params, _duration(video), [image, video]


class GazeRedirectionInputSerializer(JobInputSerializer):
    job_type = JobType.GAZE_REDIRECTION

    video_media_id = serializers.UUIDField()

    def resolve(self, project: Project, data: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], list[MediaFile]]:
        video = self.media(project, "video_media_id", data["video_media_id"], (MediaType.VIDEO,))
        return {"video_media_id": str(video.pk)}, _duration(video), [video]


class VideoQueryInputSerializer(JobInputSerializer):
    """A question about a video; the answer is in the job's output_data. Priced per question."""

    job_type = JobType.VIDEO_QUERY

    video_media_id = serializers.UUIDField()
    question = serializers.CharField(min_length=1, max_length=1000)

    def resolve(self, project: Project, data: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], list[MediaFile]]:
        video = self.media(project, "video_media_id", data["video_media_id"], (MediaType.VIDEO,))
        return {"video_media_id": str(video.pk), "question": data["question"]}, {}, [video]


# ----------------------------------------------------------------------------- generation


class VideoGenerationInputSerializer(JobInputSerializer):
    """Video from a text prompt (Pro plan)."""

    job_type = JobType.VIDEO_GENERATION

    prompt = serializers.CharField(min_length=1, max_length=2000)
    duration_sec = serializers.IntegerField(min_value=1, max_value=10, default=5)

    def resolve(self, project: Project, data: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], list[MediaFile]]:
        params = {"prompt": data["prompt"], "duration_sec": data["duration_sec"]}
        return params, {"duration_sec": data["duration_sec"]}, []


class ImageGenerationInputSerializer(JobInputSerializer):
    job_type = JobType.IMAGE_GENERATION

    prompt = serializers.CharField(min_length=1, max_length=2000)
    width = serializers.IntegerField(min_value=256, max_value=1536, default=1024, validators=[_multiple_of_64])
    height = serializers.IntegerField(min_value=256, max_value=1536, default=1024, validators=[_multiple_of_64])
    num_images = serializers.IntegerField(min_value=1, max_value=4, default=1)

    def resolve(self, project: Project, data: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], list[MediaFile]]:
        params = {k: data[k] for k in ("prompt", "width", "height", "num_images")}
        return params, {"images": data["num_images"]}, []


# ----------------------------------------------------------------------------- cpu


class CompressionInputSerializer(JobInputSerializer):
    """Re-encode a video to H.264/AAC with its short side at most 1080, 720 or 480 pixels."""

    job_type = JobType.COMPRESSION

    media_id = serializers.UUIDField(help_text="A video file of the project.")
    preset = serializers.ChoiceField(choices=["1080p", "720p", "480p"], default="720p")

    def resolve(self, project: Project, data: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], list[MediaFile]]:
        media = self.media(project, "media_id", data["media_id"], (MediaType.VIDEO,))
        return {"media_id": str(media.pk), "preset": data["preset"]}, _duration(media), [media]


class RenderInputSerializer(JobInputSerializer):
    """Render the project's current timeline to an MP4.

    The job keeps a snapshot of the timeline as it is now (later edits do not change this
    render), with `resolution` / `frame_rate` overriding the timeline's settings when given.
    """

    job_type = JobType.RENDER

    resolution = serializers.CharField(required=False, max_length=11, validators=[_resolution],
                                       help_text="WxH, e.g. 1280x720; default: the timeline's.")
    frame_rate = serializers.FloatField(required=False, min_value=1, max_value=120,
                                        help_text="Frames per second; default: the timeline's.")
    format = serializers.ChoiceField(choices=["mp4"], default="mp4")

    def resolve(self, project: Project, data: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], list[MediaFile]]:
        edl = edl_snapshot(project=project)
        # What the render does not read stays out of the job row (a transcript can be large).
        edl.pop("transcript", None)
        edl.pop("history", None)
        for track in edl.get("tracks") or []:
            track["clips"] = [c for c in track.get("clips") or [] if not c.get("deleted")]
        timeline = edl.setdefault("settings", {})
        if data.get("resolution"):
            width, _, height = data["resolution"].partition("x")
            timeline["resolution"] = {"width": int(width), "height": int(height)}
        if data.get("frame_rate") is not None:
            timeline["frame_rate"] = data["frame_rate"]
        clips = [c for t in edl.get("tracks") or [] for c in t["clips"]]
        if not clips:
            raise EmptyTimeline("The timeline has no clips to render.")
        media = self._clip_media(project, clips)
        duration = int(timeline.get("duration_ms") or max(c["start_ms"] + c["duration_ms"] for c in clips))
        params = {"format": data["format"], "edl": edl}
        return params, {"duration_ms": duration}, media

    def _clip_media(self, project: Project, clips: list[Mapping[str, Any]]) -> list[MediaFile]:
        ids = {c["media_file_id"] for c in clips}
        found = {str(m.pk): m for m in MediaFile.objects.filter(project=project, user=self.user, pk__in=ids)}
        problems = [
            {"clip_id": c["id"], "media_file_id": c["media_file_id"],
             "status": found[c["media_file_id"]].status if c["media_file_id"] in found else "missing"}
            for c in clips
            if c["media_file_id"] not in found or found[c["media_file_id"]].status != MediaStatus.READY
        ]
        if problems:
            raise MediaNotReady(
                "Some clips of the timeline use media that is not ready or no longer exists.",
                details={"clips": problems[:50]},
            )
        return sorted(found.values(), key=lambda m: m.pk)


INPUT_SERIALIZERS: Mapping[str, type[JobInputSerializer]] = {
    s.job_type.value: s
    for s in (
        TranscriptionInputSerializer,
        TtsInputSerializer,
        LipSyncInputSerializer,
        VideoGenerationInputSerializer,
        PerformanceCloningInputSerializer,
        GazeRedirectionInputSerializer,
        AudioGenerationInputSerializer,
        VideoQueryInputSerializer,
        RenderInputSerializer,
        CompressionInputSerializer,
        ImageGenerationInputSerializer,
    )
}
assert set(INPUT_SERIALIZERS) == {t.value for t in JobType}, "every job type needs an input serializer"

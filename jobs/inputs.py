"""The body each job type accepts: shape only (400 `validation_error`, unknown fields included).

What a body names is resolved against the database by `jobs.selectors.requests`: a field
declared as `MediaRef` is a media file of the job's project, of the kinds it lists, that must
be ready; a `VoiceRef` is one of the caller's cloned voices. Every type takes `project_id`: the
job's outputs become media files of that project. Only a render needs it; without it, the
project is the one the named media files share, or, for a type that names none, the user's
default "Library" project. Every type may take `webhook` (whose URL is checked here, name
resolution included, by the webhooks app's SSRF rules: 400 `invalid_webhook_url`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from auteur.api import StrictSerializer
from jobs.gpu_client import LANGUAGE_CHOICES
from media.models import MediaType
from projects.captions import POSITIONS
from webhooks.models import ALL_EVENT_TYPES, WebhookEventType
from webhooks.ssrf import MAX_URL_LENGTH, target_check


class MediaRef(serializers.UUIDField):
    """The id of a ready media file of the job's project, of one of `kinds`."""

    def __init__(self, *, kinds: Iterable[str], **kwargs: Any) -> None:
        self.kinds = tuple(sorted(str(k) for k in kinds))
        super().__init__(**kwargs)


class VoiceRef(serializers.UUIDField):
    """The id of one of the caller's cloned voices (optional: null is the engine's own voice)."""


class LanguageField(serializers.ChoiceField):
    """A spoken language: a Whisper language code, or `auto` to detect it. Which of them this
    server takes depends on its GPU backend (`languages` in GET /jobs/types); another is a 422
    `language_unsupported`, checked before anything is charged."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(choices=LANGUAGE_CHOICES, **kwargs)


def _multiple_of_64(value: int) -> None:
    if value % 64:
        raise serializers.ValidationError("Must be a multiple of 64.")


def _resolution(value: str) -> None:
    # The render engine's bounds: even sizes, at most 7680x4320.
    width, sep, height = value.partition("x")
    if not (sep and width.isdigit() and height.isdigit()):
        raise serializers.ValidationError("Resolution must look like 1920x1080.")
    w, h = int(width), int(height)
    if not (16 <= w <= 7680 and 16 <= h <= 4320) or w % 2 or h % 2:
        raise serializers.ValidationError("Width and height must be even, between 16 and 7680x4320.")


def _seed() -> serializers.IntegerField:
    return serializers.IntegerField(min_value=0, max_value=2**31 - 1, required=False,
                                    help_text="Same seed, same output; default: a fresh one, returned with it.")


class JobInput(StrictSerializer):
    """Base of every job type's input: the project, and where to send the job's events."""

    project_id = serializers.UUIDField(
        required=False,
        help_text="The project whose media the outputs become. Optional: without it, the project of the media "
                  "files the body names (they must share one: 422 `media_projects_differ`), or, when it names "
                  "none, your default \"Library\" project (made on first use).")
    webhook = serializers.CharField(
        max_length=MAX_URL_LENGTH, required=False,
        help_text="An https URL that receives the job's events, signed (Standard Webhooks) with the account's "
                  "jobs secret (GET /webhooks/default/secret). Private, loopback and link-local addresses are "
                  "refused: 400 `invalid_webhook_url`.")
    webhook_events_filter = serializers.ListField(
        child=serializers.ChoiceField(choices=WebhookEventType.choices), min_length=1, max_length=3, required=False,
        help_text="Which events go to `webhook`: `start`, `progress`, `completed` (every terminal state); "
                  "default: all three.")

    def validate_webhook(self, value: str) -> str:
        # 400 `invalid_webhook_url` (an ApplicationError, not a field error): the same rule, code
        # and reasons as an account webhook's URL.
        target_check(value)
        return value

    def to_internal_value(self, data: Any) -> Any:
        attrs = super().to_internal_value(data)
        if "webhook_events_filter" in attrs and "webhook" not in attrs:
            raise serializers.ValidationError({"webhook_events_filter": ["Only with a webhook."]})
        return attrs


@dataclass(frozen=True)
class WebhookRequest:
    """A submission's own webhook: stored beside the job, never in its input_params."""

    url: str
    events: tuple[str, ...]

    @classmethod
    def pop(cls, fields: dict[str, Any]) -> WebhookRequest | None:
        url = fields.pop("webhook", None)
        events = fields.pop("webhook_events_filter", None) or ALL_EVENT_TYPES
        return None if url is None else cls(url=url, events=tuple(events))


_AUDIO_OR_VIDEO = (MediaType.AUDIO, MediaType.VIDEO)


class TranscriptionInput(JobInput):
    """Speech to text with word timings. `language`: a Whisper language code, or `auto` to detect
    it (default `en`); the languages this server transcribes are listed by GET /jobs/types, and
    another is a 422 `language_unsupported` whose details name them. The result's `language` is
    the one transcribed (the detected one for `auto`). With `script` (the known text) the words
    are aligned to it."""

    media_id = MediaRef(kinds=_AUDIO_OR_VIDEO, help_text="An audio or video file of the project.")
    language = LanguageField(default="en")
    script = serializers.CharField(required=False, max_length=100_000)
    # Stored as `diarization`, the name the engines read.
    speaker_diarization = serializers.BooleanField(default=True, source="diarization")


class TtsInput(JobInput):
    """Text to speech, in one of the caller's cloned voices when `voice_id` is given."""

    text = serializers.CharField(min_length=1, max_length=5000)
    voice_id = VoiceRef(required=False, allow_null=True, default=None)
    speed = serializers.FloatField(min_value=0.5, max_value=2.0, default=1.0)


class AudioGenerationInput(JobInput):
    """Sound from a text prompt (Stable Audio Open: up to 47 s of 44.1 kHz stereo), as a WAV."""

    prompt = serializers.CharField(min_length=1, max_length=1000)
    negative_prompt = serializers.CharField(required=False, max_length=1000)
    duration_sec = serializers.IntegerField(min_value=1, max_value=47, default=10)
    seed = _seed()
    steps = serializers.IntegerField(min_value=1, max_value=200, required=False, help_text="Default: 100.")
    guidance = serializers.FloatField(min_value=0, max_value=20, required=False, help_text="Default: 7.")


class LipSyncInput(JobInput):
    """Re-time the face of `video_media_id` to `audio_media_id`; priced by the video's length."""

    video_media_id = MediaRef(kinds=(MediaType.VIDEO,))
    audio_media_id = MediaRef(kinds=(MediaType.AUDIO,))


class PerformanceCloningInput(JobInput):
    """Animate the face of a still image with the performance of a driving video (one frame per
    driving frame, with its sound)."""

    source_image_media_id = MediaRef(kinds=(MediaType.IMAGE,))
    driving_video_media_id = MediaRef(kinds=(MediaType.VIDEO,))
    relative = serializers.BooleanField(default=True, help_text="Motion relative to the first driving frame.")
    stitching = serializers.BooleanField(default=True, help_text="Keep the shoulders still while the face moves.")


_DEGREES = {"type": "number", "minimum": -30, "maximum": 30}


@extend_schema_field({"oneOf": [
    {"type": "string", "enum": ["camera"]},
    {"type": "object", "properties": {"yaw": _DEGREES, "pitch": _DEGREES}, "required": ["yaw", "pitch"],
     "additionalProperties": False},
]})
class GazeTarget(serializers.Field):
    """`"camera"`, or `{"yaw": degrees, "pitch": degrees}` within 30 degrees either way."""

    LIMIT = 30.0

    def to_internal_value(self, data: Any) -> Any:
        if data == "camera":
            return data
        if not isinstance(data, dict) or set(data) != {"yaw", "pitch"}:
            raise serializers.ValidationError('Must be "camera" or {"yaw": degrees, "pitch": degrees}.')
        for name, value in data.items():
            if isinstance(value, bool) or not isinstance(value, int | float) or abs(value) > self.LIMIT:
                raise serializers.ValidationError(f"{name} must be a number from -30 to 30 degrees.")
        return {"yaw": float(data["yaw"]), "pitch": float(data["pitch"])}

    def to_representation(self, value: Any) -> Any:
        return value


class GazeRedirectionInput(JobInput):
    """Turn the eyes of the face in a video towards the camera (or given angles), frame by frame."""

    video_media_id = MediaRef(kinds=(MediaType.VIDEO,))
    target = GazeTarget(default="camera")
    strength = serializers.FloatField(min_value=0, max_value=1, default=1.0)


class VideoQueryInput(JobInput):
    """A question about a video, optionally about a part of it (`start_ms`..`end_ms`); the answer
    and the times of the frames it looked at are in the job's output_data. The file's transcript,
    when it has one, is part of the question. Priced per question."""

    video_media_id = MediaRef(kinds=(MediaType.VIDEO,))
    question = serializers.CharField(min_length=1, max_length=1000)
    start_ms = serializers.IntegerField(min_value=0, required=False)
    end_ms = serializers.IntegerField(min_value=1, required=False)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if "start_ms" in attrs and "end_ms" in attrs and attrs["end_ms"] <= attrs["start_ms"]:
            raise serializers.ValidationError({"end_ms": ["Must be after start_ms."]})
        return attrs


class VideoGenerationInput(JobInput):
    """Video from a text prompt (Pro plan): an MP4 at 16 fps lasting exactly `duration_sec`."""

    prompt = serializers.CharField(min_length=1, max_length=2000)
    negative_prompt = serializers.CharField(required=False, max_length=2000)
    duration_sec = serializers.IntegerField(min_value=1, max_value=10, default=5)
    # The sizes Wan2.1-T2V-14B was trained at.
    resolution = serializers.ChoiceField(choices=["832x480", "480x832", "1280x720", "720x1280"], required=False,
                                         help_text="Default: 832x480.")
    seed = _seed()
    steps = serializers.IntegerField(min_value=1, max_value=100, required=False, help_text="Default: 50.")
    guidance = serializers.FloatField(min_value=1, max_value=20, required=False,
                                      help_text="Default 5; 1 turns classifier-free guidance off.")


class ImageGenerationInput(JobInput):
    """Images from a text prompt, one PNG media file each; the same seed gives the same images."""

    prompt = serializers.CharField(min_length=1, max_length=2000)
    negative_prompt = serializers.CharField(required=False, max_length=2000,
                                            help_text="Recorded; FLUX.1-schnell does not apply one.")
    width = serializers.IntegerField(min_value=256, max_value=1536, default=1024, validators=[_multiple_of_64])
    height = serializers.IntegerField(min_value=256, max_value=1536, default=1024, validators=[_multiple_of_64])
    num_images = serializers.IntegerField(min_value=1, max_value=4, default=1)
    seed = _seed()
    steps = serializers.IntegerField(min_value=1, max_value=50, required=False, help_text="Default: 4.")
    guidance = serializers.FloatField(min_value=0, max_value=20, required=False,
                                      help_text="Default 0; FLUX.1-schnell takes no guidance.")


class CompressionInput(JobInput):
    """Re-encode a video to H.264/AAC with its short side at most 1080, 720 or 480 pixels."""

    media_id = MediaRef(kinds=(MediaType.VIDEO,), help_text="A video file of the project.")
    preset = serializers.ChoiceField(choices=["1080p", "720p", "480p"], default="720p")


class CaptionStyleInput(StrictSerializer):
    """How burned-in captions look (font: Roboto)."""

    font_size = serializers.IntegerField(min_value=8, max_value=200, required=False,
                                         help_text="Pixels of the output frame; default: 5% of its height.")
    position = serializers.ChoiceField(choices=POSITIONS, default="bottom")
    color = serializers.RegexField(r"^#[0-9a-fA-F]{6}$", default="#ffffff", help_text="Text colour, #rrggbb.")

    class Meta:
        ref_name = "CaptionStyle"


class RenderInput(JobInput):
    """Render the project's current timeline to an MP4.

    The job keeps a snapshot of the timeline as it is now (later edits do not change this
    render), with `resolution` / `frame_rate` overriding the timeline's settings when given.
    Words, segments and pauses deleted in the transcript are cut from every track, keeping
    `cut_padding_ms` of silence beside the kept words, with an audio crossfade of
    `crossfade_ms` at each cut; the price is that of the timeline after the cuts.
    `captions` adds the transcript's captions as the edited timeline plays them (deleted words
    gone, `edited_text` shown): `burn` draws them into the picture (`caption_style`), `sidecar`
    delivers SRT and WebVTT files beside the video, as media of type `captions`. 422
    `no_captions` when the transcript has nothing to caption.
    """

    project_id = serializers.UUIDField(help_text="The project whose timeline is rendered.")

    resolution = serializers.CharField(required=False, max_length=11, validators=[_resolution],
                                       help_text="WxH, e.g. 1280x720; default: the timeline's.")
    frame_rate = serializers.FloatField(required=False, min_value=1, max_value=120,
                                        help_text="Frames per second; default: the timeline's.")
    format = serializers.ChoiceField(choices=["mp4"], default="mp4")
    cut_padding_ms = serializers.IntegerField(
        min_value=0, max_value=1000, default=40,
        help_text="Silence kept beside a kept word where deleted words, segments or pauses are cut (ms).")
    crossfade_ms = serializers.IntegerField(
        min_value=0, max_value=200, default=10,
        help_text="Length of the audio crossfade centred on each cut (ms); 0 joins the sound hard.")
    captions = serializers.ChoiceField(choices=["none", "burn", "sidecar"], default="none")
    caption_style = CaptionStyleInput(required=False, help_text="With `captions: burn`.")

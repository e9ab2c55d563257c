"""The body each job type accepts: shape only (400 `validation_error`, unknown fields included).

What a body names is resolved against the database by `jobs.selectors.requests`: a field
declared as `MediaRef` is a media file of the job's project, of the kinds it lists, that must
be ready; a `VoiceRef` is one of the caller's cloned voices. Every type takes `project_id`: the
job's outputs become media files of that project. Only a render needs it; without it, the
project is the one the named media files share, or, for a type that names none, the user's
default "Library" project. Every type may take `webhook` (whose URL is checked here, name
resolution included, by the webhooks app's SSRF rules: 400 `invalid_webhook_url`).

The bounds of a field that an engine checks too (lengths, sizes, durations, steps, guidance...)
are the engine's own, read from its declaration (`gpu_client.input_bounds`, declared in each engine
module's INPUT_BOUNDS): a request the engine would refuse is a 400 here, before any charge.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.fields import empty

from auteur.core.api import StrictSerializer
from jobs import gpu_client
from jobs.gpu_client import LANGUAGE_CHOICES, Bound, Choices, InputBound, Resolution
from jobs.models import JobPriority
from media.models import MediaType
from projects.captions import POSITIONS
from webhooks.models import ALL_EVENT_TYPES
from webhooks.ssrf import MAX_URL_LENGTH, target_check

# The longest start or run deadline a request may set: a week.
MAX_DEADLINE_SECONDS = 7 * 24 * 3600


class MediaRef(serializers.UUIDField):
    """The id of a ready media file of the job's project, of one of `kinds`. `screened`: a picture
    or video a generative model works from (a face it animates or re-times): its pictures are
    screened against the content policy before the job is priced (jobs.intake.media_screening)."""

    def __init__(self, *, kinds: Iterable[str], screened: bool = False, **kwargs: Any) -> None:
        self.kinds = tuple(sorted(str(k) for k in kinds))
        self.screened = screened
        super().__init__(**kwargs)


class VoiceRef(serializers.UUIDField):
    """The id of one of the caller's cloned voices (optional: null is the engine's own voice)."""


class ScreenedText(serializers.CharField):
    """Text a model is asked to act on: screened against the content policy before the job is
    priced (jobs.intake.screening), so a refused request is a 422 that charges nothing. `policy`
    "negative" is text that lists what the model must avoid (a negative prompt): only the
    categories whose words are an offence in themselves count there."""

    def __init__(self, *, policy: str = "full", **kwargs: Any) -> None:
        self.policy = policy
        super().__init__(**kwargs)


class LanguageField(serializers.ChoiceField):
    """A spoken language: a Whisper language code, or `auto` to detect it. Which of them this
    server takes depends on its GPU backend (`languages` in GET /jobs/types); another is a 422
    `language_unsupported`, checked before anything is charged."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(choices=LANGUAGE_CHOICES, **kwargs)


# ----------------------------------------------------------------------------- the engines' bounds


def _bound(bounds: Mapping[str, InputBound], name: str) -> Bound:
    bound = bounds[name]
    assert isinstance(bound, Bound), name
    return bound


def _upper(bound: Bound, key: str) -> dict[str, Any]:
    """The keyword that bounds a field above (none when the engine sets no upper bound)."""
    return {} if bound.high is None else {key: bound.high}


def _text(bounds: Mapping[str, InputBound], name: str, *, screened: str | None = None,
          **kwargs: Any) -> serializers.CharField:
    """Text of at most the engine's length (and at least its least, when it has one). A blank
    string is refused whatever the bound, as every CharField refuses it. `screened` (a policy of
    ScreenedText): text a model acts on, screened before the job is priced."""
    bound = _bound(bounds, name)
    if bound.low:
        kwargs["min_length"] = int(bound.low)
    if screened is not None:
        return ScreenedText(policy=screened, **_upper(bound, "max_length"), **kwargs)
    return serializers.CharField(**_upper(bound, "max_length"), **kwargs)


def _multiple_of(step: int) -> Callable[[int], None]:
    def check(value: int) -> None:
        if value % step:
            raise serializers.ValidationError(f"Must be a multiple of {step}.")

    return check


def _integer(bounds: Mapping[str, InputBound], name: str, **kwargs: Any) -> serializers.IntegerField:
    bound = _bound(bounds, name)
    if bound.multiple_of:
        kwargs["validators"] = [_multiple_of(bound.multiple_of)]
    return serializers.IntegerField(min_value=int(bound.low), **_upper(bound, "max_value"), **kwargs)


def _number(bounds: Mapping[str, InputBound], name: str, **kwargs: Any) -> serializers.FloatField:
    bound = _bound(bounds, name)
    return serializers.FloatField(min_value=bound.low, **_upper(bound, "max_value"), **kwargs)


def _default(bounds: Mapping[str, InputBound], name: str) -> Any:
    """The engine's default for a field: the input's default, or what its help text says."""
    bound = bounds[name]
    assert not isinstance(bound, Resolution), name
    return bound.default


def _choices(bounds: Mapping[str, InputBound], name: str) -> list[str]:
    choices = bounds[name]
    assert isinstance(choices, Choices), name
    return list(choices.values)


def _resolution(size: InputBound) -> Callable[[str], None]:
    """A "WxH" size within the render engine's: even sides, within its least and greatest."""
    assert isinstance(size, Resolution)

    def check(value: str) -> None:
        width, sep, height = value.partition("x")
        if not (sep and width.isdigit() and height.isdigit()):
            raise serializers.ValidationError("Resolution must look like 1920x1080.")
        w, h = int(width), int(height)
        if not (size.min_side <= w <= size.max_width and size.min_side <= h <= size.max_height) or w % 2 or h % 2:
            raise serializers.ValidationError(
                f"Width and height must be even, between {size.min_side} and {size.max_width}x{size.max_height}.")

    return check


def _seed(bounds: Mapping[str, InputBound]) -> serializers.IntegerField:
    return _integer(bounds, "seed", required=False,
                    help_text="Same seed, same output; default: a fresh one, returned with it.")


_TRANSCRIPTION = gpu_client.input_bounds("transcription")
_TTS = gpu_client.input_bounds("tts")
_AUDIO_GENERATION = gpu_client.input_bounds("audio-generation")
_GAZE = gpu_client.input_bounds("gaze-redirection")
_VIDEO_QUERY = gpu_client.input_bounds("video-query")
_VIDEO_GENERATION = gpu_client.input_bounds("video-generation")
_IMAGE_GENERATION = gpu_client.input_bounds("image-generation")
_COMPRESSION = gpu_client.input_bounds("compression")
_RENDER = gpu_client.input_bounds("render")


# ----------------------------------------------------------------------------- the inputs


# The field classes whose instances a request never changes after their __init__: their attributes
# are plain values, or containers (validators, error messages, choices) that DRF and this code only
# read. A copy of one that shares those attributes with the declared field behaves as the fresh
# field DRF's deep copy builds (each copy is bound to its own serializer, which sets only its own
# attributes). A ListField of such a child is copied with a copy of its child, bound to it as its
# __init__ binds it. Exact types: any other field is deep-copied as DRF does.
_SHAREABLE_FIELDS = frozenset({
    serializers.BooleanField, serializers.CharField, serializers.ChoiceField, serializers.FloatField,
    serializers.IntegerField, serializers.UUIDField, MediaRef, VoiceRef, LanguageField, ScreenedText,
})
# Defaults that a copy may share: DRF hands the default itself to the validated data, so a list or
# a dict default must be the field's own (deep-copied) or a request could change the next one's.
_IMMUTABLE_DEFAULTS = (type(None), bool, int, float, str, uuid.UUID)


def _shareable_value(value: Any) -> bool:
    return value is empty or callable(value) or isinstance(value, _IMMUTABLE_DEFAULTS)


def _field_copy(field: serializers.Field) -> serializers.Field:
    child = field.child if type(field) is serializers.ListField else None
    shareable = type(field) in _SHAREABLE_FIELDS or type(child) in _SHAREABLE_FIELDS
    # (`initial`, which only a browsable form shows, may be the class's own: DRF shares that one too.)
    if not (shareable and _shareable_value(field.default)
            and (_shareable_value(field.initial) or field.initial is getattr(type(field), "initial", empty))):
        return copy.deepcopy(field)
    clone = object.__new__(type(field))
    clone.__dict__.update(field.__dict__)
    if child is not None:
        # As ListField.__init__ binds its child: its own copy, bound to this copy.
        clone.child = _field_copy(child)  # type: ignore[attr-defined]
        clone.child.source = None  # type: ignore[attr-defined]
        clone.child.bind(field_name="", parent=clone)  # type: ignore[attr-defined]
    return clone


class JobInput(StrictSerializer):
    """Base of every job type's input: the project, and where to send the job's events."""

    def get_fields(self) -> dict[str, serializers.Field]:
        # DRF deep-copies every declared field for each serializer made, running each field's
        # __init__ again: a TTS input's fields cost 150 us of CPU a submission that way, 38 us so
        # (bench/pipeline_profile.md, 2026-11-29), for fields that a request never changes.
        return {name: _field_copy(field) for name, field in self._declared_fields.items()}

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
        child=serializers.ChoiceField(choices=ALL_EVENT_TYPES), min_length=1, max_length=3, required=False,
        help_text="Which events go to `webhook`: `start`, `progress`, `completed` (every terminal state); "
                  "default: all three.")

    priority = serializers.ChoiceField(
        choices=[label for _, label in JobPriority.choices], default="normal",
        help_text="Which of your own waiting jobs starts first: `high` before `normal` before `low`, then the "
                  "older. It never moves your job ahead of another user's.")
    start_within_seconds = serializers.IntegerField(
        min_value=1, max_value=MAX_DEADLINE_SECONDS, required=False,
        help_text="If the job has not started this many seconds after it is accepted, it ends `aborted` and is "
                  "refunded in full; it never starts late. The server's queue TTL for the type applies too "
                  "(`error_code` `queue_ttl` when it is the earlier).")
    run_within_seconds = serializers.IntegerField(
        min_value=1, max_value=MAX_DEADLINE_SECONDS, required=False,
        help_text="If the job is still running this many seconds after it started, it is canceled "
                  "(`error_code` `run_deadline`) and refunded the part not spent, as any cancel.")

    cache = serializers.BooleanField(
        default=True,
        help_text="Whether an identical earlier job of yours may serve this one (the same input files' content, "
                  "parameters, model version and seed): it then completes at once, with no GPU call, for the cache "
                  "price (a tenth of the price, at least 1 credit). `false` runs it anyway. Only types whose output "
                  "is a function of their input are cached; generators only when the request names a `seed`.")
    quote_id = serializers.UUIDField(
        required=False,
        help_text="A quote of this request (POST /jobs/{type}/quote, with this body less `quote_id`) that has not "
                  "expired: the job is charged the quoted price. 409 `quote_mismatch` when the body or the work "
                  "(the media's duration, the timeline) differs from the one quoted, 409 `quote_used` once it paid "
                  "for a job, 410 `quote_expired` after its time, 404 `quote_not_found`.")

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


@dataclass(frozen=True)
class Scheduling:
    """When a submission may start and run, and its priority among the user's own jobs: stored
    on the job's own columns, never in its input_params."""

    priority: int = JobPriority.NORMAL
    start_within_seconds: int | None = None
    run_within_seconds: int | None = None

    @classmethod
    def pop(cls, fields: dict[str, Any]) -> Scheduling:
        return cls(
            priority=JobPriority[fields.pop("priority", "normal").upper()],
            start_within_seconds=fields.pop("start_within_seconds", None),
            run_within_seconds=fields.pop("run_within_seconds", None),
        )


@dataclass(frozen=True)
class SubmissionOptions:
    """What a submission says of how to run its work, not of the work: where its events go, its
    scheduling, whether the cache may serve it and the quote it pays. Taken out of the validated
    fields in one place, by every path that submits (the API, a quote, an automatic
    transcription), so the fields left (the job's input_params, the cache key's input) are the
    work alone, whoever asked for it."""

    webhook: WebhookRequest | None
    scheduling: Scheduling
    use_cache: bool
    quote_id: uuid.UUID | None

    @classmethod
    def pop(cls, fields: dict[str, Any]) -> SubmissionOptions:
        return cls(webhook=WebhookRequest.pop(fields), scheduling=Scheduling.pop(fields),
                   use_cache=fields.pop("cache", True), quote_id=fields.pop("quote_id", None))


# The fields SubmissionOptions takes out: never part of a job's work.
SUBMISSION_OPTIONS = frozenset({"webhook", "webhook_events_filter", "priority", "start_within_seconds",
                                "run_within_seconds", "cache", "quote_id"})

_AUDIO_OR_VIDEO = (MediaType.AUDIO, MediaType.VIDEO)


class TranscriptionInput(JobInput):
    """Speech to text with word timings. `language`: a Whisper language code, or `auto` to detect
    it (default `en`); the languages this server transcribes are listed by GET /jobs/types, and
    another is a 422 `language_unsupported` whose details name them. The result's `language` is
    the one transcribed (the detected one for `auto`). With `script` (the known text) the words
    are aligned to it."""

    media_id = MediaRef(kinds=_AUDIO_OR_VIDEO, help_text="An audio or video file of the project.")
    language = LanguageField(default="en")
    script = _text(_TRANSCRIPTION, "script", required=False)
    # Stored as `diarization`, the name the engines read.
    speaker_diarization = serializers.BooleanField(default=True, source="diarization")


class TtsInput(JobInput):
    """Text to speech, in one of the caller's cloned voices when `voice_id` is given."""

    text = _text(_TTS, "text", screened="full")
    voice_id = VoiceRef(required=False, allow_null=True, default=None)
    speed = _number(_TTS, "speed", default=_default(_TTS, "speed"))


class AudioGenerationInput(JobInput):
    """Sound from a text prompt (Stable Audio Open: up to 47 s of 44.1 kHz stereo), as a WAV."""

    prompt = _text(_AUDIO_GENERATION, "prompt", screened="full")
    negative_prompt = _text(_AUDIO_GENERATION, "negative_prompt", screened="negative", required=False)
    duration_sec = _integer(_AUDIO_GENERATION, "duration_sec", default=_default(_AUDIO_GENERATION, "duration_sec"))
    seed = _seed(_AUDIO_GENERATION)
    steps = _integer(_AUDIO_GENERATION, "steps", required=False,
                     help_text=f"Default: {_default(_AUDIO_GENERATION, 'steps')}.")
    guidance = _number(_AUDIO_GENERATION, "guidance", required=False,
                       help_text=f"Default: {_default(_AUDIO_GENERATION, 'guidance'):g}.")


class LipSyncInput(JobInput):
    """Re-time the face of `video_media_id` to `audio_media_id`; priced by the video's length."""

    video_media_id = MediaRef(kinds=(MediaType.VIDEO,), screened=True)
    audio_media_id = MediaRef(kinds=(MediaType.AUDIO,))


class PerformanceCloningInput(JobInput):
    """Animate the face of a still image with the performance of a driving video (one frame per
    driving frame, with its sound)."""

    source_image_media_id = MediaRef(kinds=(MediaType.IMAGE,), screened=True)
    driving_video_media_id = MediaRef(kinds=(MediaType.VIDEO,), screened=True)
    relative = serializers.BooleanField(default=True, help_text="Motion relative to the first driving frame.")
    stitching = serializers.BooleanField(default=True, help_text="Keep the shoulders still while the face moves.")


def _angle(name: str) -> tuple[int | float, int | float]:
    bound = _bound(_GAZE, f"target.{name}")
    assert bound.high is not None
    return bound.low, bound.high


_ANGLES = {name: _angle(name) for name in ("yaw", "pitch")}


@extend_schema_field({"oneOf": [
    {"type": "string", "enum": ["camera"]},
    {"type": "object",
     "properties": {name: {"type": "number", "minimum": low, "maximum": high} for name, (low, high) in _ANGLES.items()},
     "required": ["yaw", "pitch"], "additionalProperties": False},
]})
class GazeTarget(serializers.Field):
    """`"camera"`, or `{"yaw": degrees, "pitch": degrees}` within the engine's angles (30 degrees
    either way)."""

    def to_internal_value(self, data: Any) -> Any:
        if data == "camera":
            return data
        if not isinstance(data, dict) or set(data) != {"yaw", "pitch"}:
            raise serializers.ValidationError('Must be "camera" or {"yaw": degrees, "pitch": degrees}.')
        for name, value in data.items():
            low, high = _ANGLES[name]
            if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
                raise serializers.ValidationError(f"{name} must be a number from {low} to {high} degrees.")
        return {"yaw": float(data["yaw"]), "pitch": float(data["pitch"])}

    def to_representation(self, value: Any) -> Any:
        return value


class GazeRedirectionInput(JobInput):
    """Turn the eyes of the face in a video towards the camera (or given angles), frame by frame."""

    video_media_id = MediaRef(kinds=(MediaType.VIDEO,), screened=True)
    target = GazeTarget(default="camera")
    strength = _number(_GAZE, "strength", default=_default(_GAZE, "strength"))


class VideoQueryInput(JobInput):
    """A question about a video, optionally about a part of it (`start_ms`..`end_ms`); the answer
    and the times of the frames it looked at are in the job's output_data. The file's transcript,
    when it has one, is part of the question. Priced per question."""

    video_media_id = MediaRef(kinds=(MediaType.VIDEO,))
    question = _text(_VIDEO_QUERY, "question", screened="full")
    start_ms = _integer(_VIDEO_QUERY, "start_ms", required=False)
    end_ms = _integer(_VIDEO_QUERY, "end_ms", required=False)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if "start_ms" in attrs and "end_ms" in attrs and attrs["end_ms"] <= attrs["start_ms"]:
            raise serializers.ValidationError({"end_ms": ["Must be after start_ms."]})
        return attrs


class VoiceConsentInput(JobInput):
    """Verify a speaker's consent to have their voice cloned: `recording_media_id` is the speaker
    reading the phrase of `challenge_id` (POST /voices/consent-challenges), `sample_media_id` the
    file a voice is to be made from. The recording must say the phrase and its speaker must be the
    sample's; the job's output_data says which checks passed and names the consent that a voice is
    then made with (POST /voices). Each challenge is read by one job: 404 `challenge_not_found`,
    409 `challenge_used`, 410 `challenge_expired`, nothing charged. Priced per verification, charged
    whether the checks pass or not."""

    challenge_id = serializers.UUIDField()
    recording_media_id = MediaRef(kinds=_AUDIO_OR_VIDEO, help_text="The speaker reading the challenge's phrase.")
    sample_media_id = MediaRef(kinds=(MediaType.AUDIO,), help_text="The audio file the voice is to be made from.")


class LikenessConsentInput(JobInput):
    """Verify a person's consent to the use of their face: `recording_media_id` is a video of the
    person reading the phrase of `challenge_id` on camera (POST /likeness/consent-challenges),
    `subject_media_id` the video or image whose face is to be used. The recording must say the phrase
    and show the face found in the subject; the job's output_data says which checks passed and names
    the consent, which then covers the subject's bytes: lip sync, performance cloning and gaze
    redirection of that file are accepted. Each challenge is read by one job (404
    `challenge_not_found`, 409 `challenge_used`, 410 `challenge_expired`, nothing charged). Priced per
    verification, charged whether the checks pass or not; never retried, batched or served from the cache."""

    challenge_id = serializers.UUIDField()
    recording_media_id = MediaRef(kinds=(MediaType.VIDEO,), help_text="The person reading the challenge's phrase "
                                                                     "on camera.")
    subject_media_id = MediaRef(kinds=(MediaType.VIDEO, MediaType.IMAGE),
                                help_text="The video or image whose face the consent is to cover.")


class VideoGenerationInput(JobInput):
    """Video from a text prompt (Pro plan): an MP4 at 16 fps lasting exactly `duration_sec`."""

    prompt = _text(_VIDEO_GENERATION, "prompt", screened="full")
    negative_prompt = _text(_VIDEO_GENERATION, "negative_prompt", screened="negative", required=False)
    duration_sec = _integer(_VIDEO_GENERATION, "duration_sec", default=_default(_VIDEO_GENERATION, "duration_sec"))
    # The sizes the declared Wan2.1 checkpoint was trained at.
    resolution = serializers.ChoiceField(choices=_choices(_VIDEO_GENERATION, "resolution"), required=False,
                                         help_text=f"Default: {_default(_VIDEO_GENERATION, 'resolution')}.")
    seed = _seed(_VIDEO_GENERATION)
    steps = _integer(_VIDEO_GENERATION, "steps", required=False,
                     help_text=f"Default: {_default(_VIDEO_GENERATION, 'steps')}.")
    guidance = _number(
        _VIDEO_GENERATION, "guidance", required=False,
        help_text=f"Default {_default(_VIDEO_GENERATION, 'guidance'):g}; "
                  f"{_bound(_VIDEO_GENERATION, 'guidance').low} turns classifier-free guidance off.")

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        # A request the engine's cost model puts past the type's time limit would only time out:
        # refused here, naming the most steps that fit at its size and length.
        _seconds, reason = gpu_client.video_generation_cost(attrs)
        if reason is not None:
            raise serializers.ValidationError({"steps": [reason]})
        return attrs


class ImageGenerationInput(JobInput):
    """Images from a text prompt, one PNG media file each; the same seed gives the same images."""

    prompt = _text(_IMAGE_GENERATION, "prompt", screened="full")
    negative_prompt = _text(_IMAGE_GENERATION, "negative_prompt", screened="negative", required=False,
                            help_text="Recorded; FLUX.1-schnell does not apply one.")
    width = _integer(_IMAGE_GENERATION, "width", default=_default(_IMAGE_GENERATION, "width"))
    height = _integer(_IMAGE_GENERATION, "height", default=_default(_IMAGE_GENERATION, "height"))
    num_images = _integer(_IMAGE_GENERATION, "num_images", default=_default(_IMAGE_GENERATION, "num_images"))
    seed = _seed(_IMAGE_GENERATION)
    steps = _integer(_IMAGE_GENERATION, "steps", required=False,
                     help_text=f"Default: {_default(_IMAGE_GENERATION, 'steps')}.")
    guidance = _number(
        _IMAGE_GENERATION, "guidance", required=False,
        help_text=f"Default {_default(_IMAGE_GENERATION, 'guidance'):g}; FLUX.1-schnell takes no guidance.")


class CompressionInput(JobInput):
    """Re-encode a video to H.264/AAC with its short side at most 1080, 720 or 480 pixels."""

    media_id = MediaRef(kinds=(MediaType.VIDEO,), help_text="A video file of the project.")
    preset = serializers.ChoiceField(choices=_choices(_COMPRESSION, "preset"), default=_default(_COMPRESSION, "preset"))
    # On by default: a compression makes the project's file lighter, so the project plays the
    # lighter file from then on (one undo step brings the source back); false keeps the timeline as is.
    replace_in_timeline = serializers.BooleanField(
        default=True,
        help_text="Once compressed, play the compressed file wherever the project's timeline plays the source (one "
                  "undo step); the job's `output_data.timeline` says how it went. Default true; false leaves the "
                  "timeline as it is. The compressed file is a version of the source either way (its "
                  "`derived_from_id`; the source's `latest_version_id` names its newest version).")


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

    resolution = serializers.CharField(required=False, max_length=11, validators=[_resolution(_RENDER["resolution"])],
                                       help_text="WxH, e.g. 1280x720; default: the timeline's.")
    frame_rate = _number(_RENDER, "frame_rate", required=False, help_text="Frames per second; default: the timeline's.")
    format = serializers.ChoiceField(choices=["mp4"], default="mp4")
    cut_padding_ms = serializers.IntegerField(
        min_value=0, max_value=1000, default=40,
        help_text="Silence kept beside a kept word where deleted words, segments or pauses are cut (ms).")
    crossfade_ms = _integer(
        _RENDER, "crossfade_ms", default=_default(_RENDER, "crossfade_ms"),
        help_text="Length of the audio crossfade centred on each cut (ms); 0 joins the sound hard.")
    captions = serializers.ChoiceField(choices=["none", "burn", "sidecar"], default="none")
    caption_style = CaptionStyleInput(required=False, help_text="With `captions: burn`.")

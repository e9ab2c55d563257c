"""The noop backend: every type "succeeds" at once with a fixed, plausible result. BENCHMARKS ONLY.

It runs no model and reads no input: it exists to measure the orchestration around inference
(submit -> spawn -> poll -> store -> finalize) without inference time, and, wrapped in
`FaultInjectingBackend`, to exercise retries and refunds. Never configure it where users get
results: transcripts are canned and media outputs are a 1 s black clip, silence or a grey tile.

Results have the same shape as the real engines' (see `gpu_tasks.contract`), with outputs
returned inline (`{"data": bytes}`) so the store step has real files to keep. The call id
encodes the type, so any process can poll it.
"""

from __future__ import annotations

import base64
import copy
import heapq
import io
import logging
import os
import random
import re
import threading
import time
import uuid
import wave
from collections.abc import Callable, Mapping
from functools import cache
from typing import Any

from gpu_tasks.announce import Announcement, Announcer
from gpu_tasks.backends.base import CallStatus, GpuBackend
from gpu_tasks.engines import engine_languages
from gpu_tasks.errors import GpuError, PermanentGpuError, TransientGpuError
from gpu_tasks.types import JobType, OutputKind, get_spec

# The call id carries the type and, for a held call, the time it ends (ms since the epoch).
logger = logging.getLogger(__name__)
_CALL_ID = re.compile(r"^noop-(?P<type>[a-z-]+?)-(?P<id>[0-9a-f]{32})(?:-(?P<until>[0-9]+))?\Z")
GPU_SECONDS = 0.5

# A 1 s, 64x36, black H.264/AAC MP4 (ffmpeg, bit-exact flags) and a 16x16 grey PNG.
_MP4_B64 = (
    "AAAAIGZ0eXBpc29tAAACAGlzb21pc28yYXZjMW1wNDEAAAU9bW9vdgAAAGxtdmhkAAAAAAAAAAAAAAAAAAAfQAAAH0AAAQAAAQAA"
    "AAAAAAAAAAAAAAEAAAAAAAAAAAAAAAAAAAABAAAAAAAAAAAAAAAAAABAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAwAA"
    "AkN0cmFrAAAAXHRraGQAAAADAAAAAAAAAAAAAAABAAAAAAAAH0AAAAAAAAAAAAAAAAAAAAAAAAEAAAAAAAAAAAAAAAAAAAABAAAA"
    "AAAAAAAAAAAAAABAAAAAAEAAAAAkAAAAAAAkZWR0cwAAABxlbHN0AAAAAAAAAAEAAB9AAAAAAAABAAAAAAG7bWRpYQAAACBtZGhk"
    "AAAAAAAAAAAAAAAAAABAAAAAQABVxAAAAAAALWhkbHIAAAAAAAAAAHZpZGUAAAAAAAAAAAAAAABWaWRlb0hhbmRsZXIAAAABZm1p"
    "bmYAAAAUdm1oZAAAAAEAAAAAAAAAAAAAACRkaW5mAAAAHGRyZWYAAAAAAAAAAQAAAAx1cmwgAAAAAQAAASZzdGJsAAAAwnN0c2QA"
    "AAAAAAAAAQAAALJhdmMxAAAAAAAAAAEAAAAAAAAAAAAAAAAAAAAAAEAAJABIAAAASAAAAAAAAAABDExhdmMgbGlieDI2NAAAAAAA"
    "AAAAAAAAAAAAAAAAAAAAGP//AAAAOGF2Y0MBZAAK/+EAGmdkAAqscgREf58BEAAAAwAQAAADACDxIlhGAQAHaOhDgZSyLP34+AAA"
    "AAAQcGFzcAAAAAEAAAABAAAAFGJ0cnQAAAAAAAAV8AAAAAAAAAAYc3R0cwAAAAAAAAABAAAAAQAAQAAAAAAcc3RzYwAAAAAAAAAB"
    "AAAAAQAAAAEAAAABAAAAFHN0c3oAAAAAAAACvgAAAAEAAAAUc3RjbwAAAAAAAAABAAAFcQAAAkl0cmFrAAAAXHRraGQAAAADAAAA"
    "AAAAAAAAAAACAAAAAAAAH0AAAAAAAAAAAAAAAAEBAAAAAAEAAAAAAAAAAAAAAAAAAAABAAAAAAAAAAAAAAAAAABAAAAAAAAAAAAA"
    "AAAAAAAkZWR0cwAAABxlbHN0AAAAAAAAAAEAAB9AAAAEAAABAAAAAAHBbWRpYQAAACBtZGhkAAAAAAAAAAAAAAAAAAAfQAAAI0BV"
    "xAAAAAAALWhkbHIAAAAAAAAAAHNvdW4AAAAAAAAAAAAAAABTb3VuZEhhbmRsZXIAAAABbG1pbmYAAAAQc21oZAAAAAAAAAAAAAAA"
    "JGRpbmYAAAAcZHJlZgAAAAAAAAABAAAADHVybCAAAAABAAABMHN0YmwAAAB+c3RzZAAAAAAAAAABAAAAbm1wNGEAAAAAAAAAAQAA"
    "AAAAAAAAAAEAEAAAAAAfQAAAAAAANmVzZHMAAAAAA4CAgCUAAgAEgICAF0AVAAAAAAAfQAAAAP8FgICABRWIVuUABoCAgAECAAAA"
    "FGJ0cnQAAAAAAAAfQAAAAP8AAAAgc3R0cwAAAAAAAAACAAAACAAABAAAAAABAAADQAAAAChzdHNjAAAAAAAAAAIAAAABAAAAAQAA"
    "AAEAAAACAAAACAAAAAEAAAAUc3RzegAAAAAAAAAEAAAACQAAABhzdGNvAAAAAAAAAAIAAAVtAAAILwAAABpzZ3BkAQAAAHJvbGwA"
    "AAACAAAAAf//AAAAHHNiZ3AAAAAAcm9sbAAAAAEAAAAJAAAAAQAAAD11ZHRhAAAANW1ldGEAAAAAAAAAIWhkbHIAAAAAAAAAAG1k"
    "aXJhcHBsAAAAAAAAAAAAAAAACGlsc3QAAAAIZnJlZQAAAuptZGF0ARggBwAAAqEGBf//ndxF6b3m2Ui3lizYINkj7u94MjY0IC0g"
    "Y29yZSAxNjUgLSBILjI2NC9NUEVHLTQgQVZDIGNvZGVjIC0gQ29weWxlZnQgMjAwMy0yMDI1IC0gaHR0cDovL3d3dy52aWRlb2xh"
    "bi5vcmcveDI2NC5odG1sIC0gb3B0aW9uczogY2FiYWM9MSByZWY9MTYgZGVibG9jaz0xOjA6MCBhbmFseXNlPTB4MzoweDEzMyBt"
    "ZT11bWggc3VibWU9MTAgcHN5PTEgcHN5X3JkPTEuMDA6MC4wMCBtaXhlZF9yZWY9MSBtZV9yYW5nZT0yNCBjaHJvbWFfbWU9MSB0"
    "cmVsbGlzPTIgOHg4ZGN0PTEgY3FtPTAgZGVhZHpvbmU9MjEsMTEgZmFzdF9wc2tpcD0xIGNocm9tYV9xcF9vZmZzZXQ9LTIgdGhy"
    "ZWFkcz0xIGxvb2thaGVhZF90aHJlYWRzPTEgc2xpY2VkX3RocmVhZHM9MCBucj0wIGRlY2ltYXRlPTEgaW50ZXJsYWNlZD0wIGJs"
    "dXJheV9jb21wYXQ9MCBjb25zdHJhaW5lZF9pbnRyYT0wIGJmcmFtZXM9OCBiX3B5cmFtaWQ9MiBiX2FkYXB0PTIgYl9iaWFzPTAg"
    "ZGlyZWN0PTMgd2VpZ2h0Yj0xIG9wZW5fZ29wPTAgd2VpZ2h0cD0yIGtleWludD0yNTAga2V5aW50X21pbj0xIHNjZW5lY3V0PTQw"
    "IGludHJhX3JlZnJlc2g9MCByY19sb29rYWhlYWQ9NjAgcmM9Y3JmIG1idHJlZT0xIGNyZj01MS4wIHFjb21wPTAuNjAgcXBtaW49"
    "MCBxcG1heD02OSBxcHN0ZXA9NCBpcF9yYXRpbz0xLjQwIGFxPTE6MS4wMACAAAAAFWWIgQACvxILW/+EiX0HhbmWAIyqWQEYIAcB"
    "GCAHARggBwEYIAcBGCAHARggBwEYIAcBGCAH"
)
_PNG_B64 = (
    "iVBORw0KGgoAAAANSUhEUgAAABAAAAAQCAIAAACQkWg2AAAACXBIWXMAAAABAAAAAQBPJcTWAAAAGUlEQVR4nGNsaGhgIAWwkKR6"
    "VMOohiGlAQD3PAG+dQ2rPwAAAABJRU5ErkJggg=="
)


@cache
def _silence_wav(seconds: float = 1.0, rate: int = 16000) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(b"\x00\x00" * int(seconds * rate))
    return buf.getvalue()


def _output(data: bytes, content_type: str, filename: str) -> dict[str, Any]:
    return {"data": data, "content_type": content_type, "size_bytes": len(data), "filename": filename}


def _video() -> dict[str, Any]:
    return {
        "outputs": {"video": _output(base64.b64decode(_MP4_B64), "video/mp4", "noop.mp4")},
        "duration_ms": 1000,
        "width": 64,
        "height": 36,
    }


def _audio() -> dict[str, Any]:
    return {
        "outputs": {"audio": _output(_silence_wav(), "audio/wav", "noop.wav")},
        "duration_ms": 1000,
        "sample_rate": 16000,
    }


def _transcript() -> dict[str, Any]:
    words = [
        {"word": "Hello", "start_ms": 0, "end_ms": 400, "confidence": 0.98},
        {"word": "world.", "start_ms": 450, "end_ms": 900, "confidence": 0.95},
    ]
    return {
        "language": "en",
        "duration_ms": 1000,
        "text": "Hello world.",
        "segments": [
            {
                "id": "seg-0001",
                "speaker": "Speaker 1",
                "start_ms": 0,
                "end_ms": 900,
                "text": "Hello world.",
                "words": words,
            }
        ],
        "model": "noop",
        "diarization": {"performed": False, "reason": "noop backend"},
        "alignment": {"mode": "none"},
    }


def _image() -> dict[str, Any]:
    data = base64.b64decode(_PNG_B64)
    return {"outputs": {"image_1": _output(data, "image/png", "noop.png")}, "width": 16, "height": 16}


def _answer() -> dict[str, Any]:
    return {"answer": "This is a canned answer from the noop backend.", "timestamps_ms": [0]}


def _verification() -> dict[str, Any]:
    # A check that ran and heard nothing like the phrase (each type adds its other check's figures,
    # as unlike as they come): the noop backend never verifies anyone's consent.
    return {"phrase": {"challenge_wer": 1.0, "phrase_wer": 1.0, "transcript_words": 0}}


# The canned result of each kind of output, so a new job type needs nothing here.
_CANNED: Mapping[OutputKind, Callable[[], dict[str, Any]]] = {
    OutputKind.VIDEO: _video,
    OutputKind.AUDIO: _audio,
    OutputKind.IMAGE: _image,
    OutputKind.TRANSCRIPT: _transcript,
    OutputKind.ANSWER: _answer,
    OutputKind.VERIFICATION: _verification,
}


# What each type's engine reports beside its kind's fields, canned: every backend gives a type the
# same keys (jobs.output_schema; tests/jobs/test_output_schema.py checks each type's canned result).
_GENERATED = {"model": "noop", "seed": 0, "steps": 1}
_ENGINE_FIELDS: Mapping[JobType, Mapping[str, Any]] = {
    JobType.TRANSCRIPTION: {},
    JobType.TTS: {"voice_cloned": False, "engine": "noop"},
    JobType.LIP_SYNC: {"fps": 25.0, "frames": 25, "faces_found": 1, "face_detector": "noop", "restoration": "none",
                       "model": "noop"},
    JobType.VIDEO_GENERATION: {"fps": 16, "frames": 16, **_GENERATED},
    JobType.PERFORMANCE_CLONING: {"fps": 25.0, "frames": 25, "model": "noop"},
    JobType.GAZE_REDIRECTION: {"fps": 25.0, "frames": 25, "model": "noop"},
    JobType.AUDIO_GENERATION: {"channels": 1, "guidance": 0.0, **_GENERATED},
    JobType.VIDEO_QUERY: {"frames": 1, "range_ms": [0, 1000], "transcript_truncated": False, "model": "noop"},
    JobType.RENDER: {"frame_rate": 25, "clips": 1, "duration_before_ms": 1000, "removed_ms": 0, "cuts": 0},
    JobType.COMPRESSION: {"preset": "480p", "input_size_bytes": len(base64.b64decode(_MP4_B64)),
                          "output_size_bytes": len(base64.b64decode(_MP4_B64))},
    JobType.IMAGE_GENERATION: {"num_images": 1, "guidance": 0.0, "notes": [], **_GENERATED},
    JobType.VOICE_CONSENT: {"speaker": {"similarity": 0.0, "stretch_similarity": 0.0},
                            "models": {"transcription": "noop", "speaker": "noop"}},
    JobType.LIKENESS_CONSENT: {"face": {"similarity": None, "recording_faces": 0, "subject_faces": 0},
                               "liveness": {"sync": None, "mouth_motion": 0.0, "frames": 0},
                               "models": {"transcription": "noop", "face_detector": "noop", "face_embedding": "noop"}},
}


def fixed_result(job_type: JobType) -> dict[str, Any]:
    """The canned result of `job_type`: its kind's, with its engine's own fields (a fresh dict each time)."""
    return {**_CANNED[get_spec(job_type).output](), **copy.deepcopy(dict(_ENGINE_FIELDS[JobType(job_type)]))}


class _Alarm:
    """Announces each held call when its time is up: one daemon thread per process, a heap."""

    def __init__(self, announcer: Announcer) -> None:
        self.announcer = announcer
        self.heap: list[tuple[float, str]] = []
        self.cond = threading.Condition()
        self.thread: threading.Thread | None = None

    def add(self, at: float, call_id: str) -> None:
        with self.cond:
            heapq.heappush(self.heap, (at, call_id))
            if self.thread is None or not self.thread.is_alive():  # started after a fork too
                self.thread = threading.Thread(target=self._run, name="noop-alarm", daemon=True)
                self.thread.start()
            self.cond.notify()

    def _run(self) -> None:
        while True:
            with self.cond:
                while not self.heap or self.heap[0][0] > time.time():
                    self.cond.wait(timeout=(self.heap[0][0] - time.time()) if self.heap else None)
                _, call_id = heapq.heappop(self.heap)
            try:
                self.announcer(Announcement(call_id, "succeeded"))
            except Exception:  # a lost announcement is the reaper's to recover
                logger.warning("noop: could not announce %s", call_id, exc_info=True)


def _media_minutes(payload: Mapping[str, Any]) -> float:
    """Minutes of media a call is given: its span's, or its media's (as its ref declares it)."""
    span = payload.get("span")
    if isinstance(span, Mapping):
        return max(0, int(span.get("end_ms", 0)) - int(span.get("start_ms", 0))) / 60_000
    media = payload.get("media")
    return (int(media.get("max_duration_ms") or 0) / 60_000) if isinstance(media, Mapping) else 0.0


class NoopBackend(GpuBackend):
    """Succeeds for every type, at once or after `hold_seconds`. Benchmarks and drills only.

    `hold_seconds`: each call stays "running" that long, plus a uniformly drawn share of
    `hold_spread_seconds` (so that the ends of calls spawned together are spread, as real
    durations are), plus `hold_per_media_minute` for each minute of media it is given (its
    `span`, a piece of a long file, or else its media's length: a call takes time in proportion
    to its length, as a transcription does); `status_latency_s`: each poll takes that
    long, as a status call over the network would; `announcer`: told when a call ends, by a
    thread of the spawning process (a call whose process dies is never announced: the reaper's
    poll finds it); `spawn_log`: a file that gets a line "<job id> <call id>" for every call
    spawned, by any process on the machine (a drill counts the GPU calls each job started);
    `spawn_latency_s`: each spawn takes that long, as a container's start request does.
    """

    name = "noop"

    def __init__(
        self, *, hold_seconds: float = 0.0, hold_spread_seconds: float = 0.0, status_latency_s: float = 0.0,
        announcer: Announcer | None = None, hold_per_media_minute: float = 0.0, spawn_log: str = "",
        spawn_latency_s: float = 0.0,
    ) -> None:
        self.hold_seconds = hold_seconds
        self.hold_per_media_minute = hold_per_media_minute
        self.hold_spread_seconds = hold_spread_seconds
        self.status_latency_s = status_latency_s
        self.announcer = announcer
        self._alarm = _Alarm(announcer) if announcer is not None else None
        self.spawn_log = spawn_log
        self.spawn_latency_s = spawn_latency_s

    @property
    def announces(self) -> bool:
        return self.announcer is not None

    def unavailable_reason(self, job_type: str) -> str | None:
        try:
            get_spec(job_type)
        except GpuError as exc:
            return exc.message
        return None

    def languages(self, job_type: str) -> frozenset[str]:
        # Stands in for production: what the Modal engine takes.
        return engine_languages(job_type, "modal")

    def gpu_ladder(self, job_type: str) -> tuple[str, ...]:
        # Stands in for production: Modal's ladder (a call on any class succeeds here).
        return tuple(gpu.value for gpu in get_spec(job_type).gpu_ladder)

    def spawn(self, job_type: str, payload: Mapping[str, Any], *, gpu: str | None = None) -> str:
        if self.spawn_latency_s > 0:
            time.sleep(self.spawn_latency_s)
        spec = get_spec(job_type)
        call_id = f"noop-{spec.job_type.value}-{uuid.uuid4().hex}"
        hold = self.hold_seconds + self.hold_per_media_minute * _media_minutes(payload)
        if hold > 0:
            until = time.time() + hold + self.hold_spread_seconds * random.random()  # noqa: S311 (timing)
            call_id += f"-{int(until * 1000)}"
            if self._alarm is not None:
                self._alarm.add(until, call_id)
        if self.spawn_log:
            # One write of one short line in append mode: lines of concurrent processes never mix.
            fd = os.open(self.spawn_log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, f"{payload.get('job_id', '')} {call_id}\n".encode())
            finally:
                os.close(fd)
        # A call that is not held is done already: the spawning step's first look stores it.
        return call_id

    def poll(self, call_id: str) -> CallStatus:
        if self.status_latency_s > 0:
            time.sleep(self.status_latency_s)
        match = _CALL_ID.match(call_id or "")
        if not match:
            return CallStatus.failed(TransientGpuError("worker_lost", "no such noop call"))
        try:
            job_type = JobType(match["type"])
        except ValueError:
            return CallStatus.failed(PermanentGpuError("internal", "malformed noop call id"))
        if match["until"] and time.time() * 1000 < int(match["until"]):
            return CallStatus.running()
        return CallStatus.succeeded(fixed_result(job_type), GPU_SECONDS)

    def cancel(self, call_id: str) -> None:
        return None

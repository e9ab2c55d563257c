"""Probing and decoding media with FFmpeg's own libraries (PyAV); no ffprobe binary needed.

Every input is opened with the demuxer and protocol whitelists (gpu_tasks/input_policy.py), and
the decoders take `max_s`: the seconds of the input the job paid for, past which they stop.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gpu_tasks.errors import PermanentGpuError
from gpu_tasks.input_policy import descriptor_of, forced_format, input_options, span_file_format, start_shift_us

if TYPE_CHECKING:
    import numpy as np


@dataclass(frozen=True)
class MediaInfo:
    duration_s: float
    has_video: bool
    has_audio: bool
    width: int | None = None
    height: int | None = None
    fps: float | None = None


def open_input(path: Path, *, fd: int | None = None) -> Any:
    """The input at `path` as a PyAV container, opened under the whitelists; through `fd` (read from
    its start, by FFmpeg's `fd` protocol and no other) where the caller holds the file open and may
    not open it by path (a confined child)."""
    import av

    options = input_options(path)
    source = str(path)
    fd = descriptor_of(path) if fd is None else fd
    if fd is not None:
        os.lseek(fd, 0, os.SEEK_SET)  # FFmpeg reads from where the descriptor is: a second pass starts over
        source = "fd:"
        options.update(fd=str(fd), protocol_whitelist="fd")
    try:
        return av.open(source, format=forced_format(path), options=options)
    except (av.FFmpegError, UnicodeDecodeError) as exc:
        raise PermanentGpuError("invalid_media", f"cannot open media: {type(exc).__name__}") from exc


def input_size(path: Path) -> int:
    """The input's size in bytes (a descriptor path's by its descriptor: its name cannot be opened)."""
    fd = descriptor_of(path)
    return os.fstat(fd).st_size if fd is not None else path.stat().st_size


def probe(path: Path) -> MediaInfo:
    with open_input(path) as container:
        video = container.streams.video[0] if container.streams.video else None
        audio = container.streams.audio[0] if container.streams.audio else None
        duration = container.duration / 1_000_000 if container.duration else 0.0
        if not duration:
            for stream in (video, audio):
                if stream is not None and stream.duration and stream.time_base:
                    duration = max(duration, float(stream.duration * stream.time_base))
        fps = float(video.average_rate) if video is not None and video.average_rate else None
        return MediaInfo(
            duration_s=duration,
            has_video=video is not None,
            has_audio=audio is not None,
            width=video.codec_context.width if video is not None else None,
            height=video.codec_context.height if video is not None else None,
            fps=fps,
        )


def video_fps(path: Path, name: str) -> float:
    """The frames per second of the video input `name`; one without video or a rate is invalid."""
    info = probe(path)
    if not info.has_video:
        raise PermanentGpuError("invalid_media", f"{name} has no video stream")
    if not info.fps:
        raise PermanentGpuError("invalid_media", f"{name} has no frame rate")
    return info.fps


def decoded_frames(path: Path, name: str, *, max_s: float | None = None) -> Iterator[Any]:
    """The video input `name`'s frames as PyAV frames, decoded as they are read, up to `max_s`
    seconds after the first one."""
    import av

    try:
        with open_input(path) as container:
            if not container.streams.video:
                raise PermanentGpuError("invalid_media", f"{name} has no video stream")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            first: float | None = None
            for frame in container.decode(stream):
                if max_s is not None and frame.time is not None:
                    first = frame.time if first is None else first
                    if frame.time - first >= max_s:
                        return
                yield frame
    except (av.FFmpegError, UnicodeDecodeError) as exc:
        raise PermanentGpuError("invalid_media", f"cannot decode {name}: {type(exc).__name__}") from exc


# How far before its target a seek may land (a keyframe's distance; audio frames are all keyframes).
SEEK_LEAD_MAX_S = 30.0


def decode_audio(path: Path, sample_rate: int = 16000, *, max_s: float | None = None,
                 start_s: float = 0.0) -> np.ndarray:
    """The first audio stream as mono float32 PCM at `sample_rate` (what Whisper models take),
    from `start_s` to `max_s` seconds into it: decoding starts at a seek to `start_s` (a piece
    of a long file reads its own span, not what comes before) and stops at `max_s`."""
    import av
    import numpy as np

    chunks: list[np.ndarray] = []
    wanted = None if max_s is None else round(max_s * sample_rate)
    have = skip = 0
    first: float | None = None
    with open_input(path) as container:
        if not container.streams.audio:
            raise PermanentGpuError("invalid_media", "the media has no audio stream")
        resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
        # Times from the file's own start (a container may start at 8 s): as the samples are counted.
        base = ((container.start_time or 0) + start_shift_us(path)) / 1_000_000
        try:
            if start_s > 0 and not span_file_format(path):  # a span file starts where this seek lands
                # To the last keyframe at or before it (every audio frame is one): what precedes
                # `start_s` in the first frames decoded is dropped below, by their own time.
                container.seek(int((base + start_s) * 1_000_000), backward=True, any_frame=False)
            checked = start_s <= 0
            for frame in container.decode(audio=0):
                at = None if frame.time is None else float(frame.time) - base
                if not checked:
                    # The first frame decoded is at most SEEK_LEAD_MAX_S before `start_s`: a file
                    # whose times say more (crafted) would have the piece decode all it holds.
                    if at is not None and not start_s - SEEK_LEAD_MAX_S <= at <= start_s + SEEK_LEAD_MAX_S:
                        raise PermanentGpuError("invalid_media", "the audio's timestamps do not allow a seek")
                    checked = True
                if at is not None and at + frame.samples / frame.sample_rate <= start_s:
                    if at < start_s - SEEK_LEAD_MAX_S:  # times that step back: the rest would be decoded unpaid
                        raise PermanentGpuError("invalid_media", "the audio's timestamps do not allow a seek")
                    continue  # wholly before the start: what the seek landed before it, or an encoder's priming
                if first is None:  # samples are counted from here: those before `start_s` are dropped
                    first = start_s if at is None else min(start_s, at)
                    skip = round((start_s - first) * sample_rate)
                    wanted = None if max_s is None else skip + round((max_s - start_s) * sample_rate)
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray().reshape(-1))
                    have += len(chunks[-1])
                if wanted is not None and have >= wanted:
                    break
            else:
                for out in resampler.resample(None):
                    chunks.append(out.to_ndarray().reshape(-1))
        except av.FFmpegError as exc:
            raise PermanentGpuError("invalid_media", f"cannot decode audio: {type(exc).__name__}") from exc
    audio = np.concatenate(chunks)[skip:wanted] if chunks else None
    if audio is None or not len(audio):
        raise PermanentGpuError("invalid_media", "the audio stream is empty")
    return audio.astype(np.float32, copy=False)

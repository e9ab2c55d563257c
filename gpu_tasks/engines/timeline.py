"""What a render's timeline snapshot means: its clips (or the pieces cuts made of them), checked,
and the picture flattened to the top-most clip at each instant on the project's frame grid.

The semantics are described in gpu_tasks/engines/render.py, which builds the ffmpeg graph.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

from gpu_tasks.engines import effects as clip_fx
from gpu_tasks.engines.effects import NO_EFFECTS, ClipEffects, Stretch
from gpu_tasks.errors import PermanentGpuError
from gpu_tasks.input_bounds import Resolution

MAX_CLIPS = 400
MAX_DURATION_MS = 4 * 3600 * 1000
MIN_SIDE, MAX_WIDTH, MAX_HEIGHT = 16, 7680, 4320  # pixels; both sides even (yuv420p)
MIN_FRAME_RATE, MAX_FRAME_RATE = 1, 120
RESOLUTION = Resolution(MIN_SIDE, MAX_WIDTH, MAX_HEIGHT)
MEDIA_KINDS = ("video", "audio", "image")


@dataclass(frozen=True)
class RenderInput:
    path: Path
    kind: str
    has_audio: bool = False
    has_video: bool = False


@dataclass(frozen=True)
class Clip:
    track: int
    order: int
    media_file_id: str
    start_ms: int
    duration_ms: int
    in_point_ms: int
    cut_in: bool = False  # a cut made this edge: the sound crossfades there (engines/render_cuts.py)
    cut_out: bool = False
    effects: ClipEffects = NO_EFFECTS
    first: bool = True  # holds the start of the clip as placed (a cut piece may not): fade-ins apply
    last: bool = True  # holds its end: fade-outs apply
    offset_ms: int = 0  # from the clip's own start to this piece's (text overlay times are the clip's)

    @property
    def end_ms(self) -> int:
        return self.start_ms + self.duration_ms

    def stretch(self, start_ms: int, end_ms: int) -> Stretch:
        """The part of this clip between two timeline instants, for its effects' filters."""
        return Stretch(
            offset_ms=self.offset_ms + start_ms - self.start_ms,
            duration_ms=end_ms - start_ms,
            starts_clip=self.first and start_ms == self.start_ms,
            ends_clip=self.last and end_ms == self.end_ms,
        )


@dataclass(frozen=True)
class Piece:
    """A stretch of the output's picture: a part of one clip, or black (clip None)."""

    start_ms: int
    end_ms: int
    frames: int
    clip: Clip | None


@dataclass(frozen=True)
class Timeline:
    width: int
    height: int
    fps: Fraction
    video_clips: tuple[Clip, ...]
    audio_clips: tuple[Clip, ...]
    total_ms: int


def int_field(value: Any, what: str, *, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
        raise PermanentGpuError("invalid_input", f"{what} must be a number")
    if value < minimum:
        raise PermanentGpuError("invalid_input", f"{what} must be >= {minimum}")
    return round(value)


def _frame_rate(value: float) -> Fraction:
    # 23.976, 29.97, 59.94 are NTSC rates: N*1000/1001 exactly, not 2997/100.
    for nominal in (24, 30, 48, 60, 120):
        ntsc = Fraction(nominal * 1000, 1001)
        if abs(value - float(ntsc)) < 0.01:
            return ntsc
    return Fraction(value).limit_denominator(1000)


def parse_timeline(edl: Mapping[str, Any]) -> Timeline:
    if not isinstance(edl, Mapping):
        raise PermanentGpuError("invalid_input", "edl must be an object")
    settings = edl.get("settings") or {}
    resolution = settings.get("resolution") or {}
    width = int_field(resolution.get("width", 1920), "resolution.width", minimum=MIN_SIDE)
    height = int_field(resolution.get("height", 1080), "resolution.height", minimum=MIN_SIDE)
    if width > MAX_WIDTH or height > MAX_HEIGHT or width % 2 or height % 2:
        raise PermanentGpuError("invalid_input", f"resolution must be even and at most {MAX_WIDTH}x{MAX_HEIGHT}")
    raw_fps = settings.get("frame_rate", 30)
    if (
        isinstance(raw_fps, bool)
        or not isinstance(raw_fps, int | float)
        or not MIN_FRAME_RATE <= raw_fps <= MAX_FRAME_RATE
    ):
        raise PermanentGpuError("invalid_input", f"frame_rate must be between {MIN_FRAME_RATE} and {MAX_FRAME_RATE}")
    fps = _frame_rate(float(raw_fps))

    video: list[Clip] = []
    audio: list[Clip] = []
    tracks = edl.get("tracks") or []
    if not isinstance(tracks, list):
        raise PermanentGpuError("invalid_input", "tracks must be a list")
    for t_index, track in enumerate(tracks):
        kind = track.get("type") if isinstance(track, Mapping) else None
        if kind not in ("video", "audio"):
            raise PermanentGpuError("invalid_input", f"track {t_index}: type must be video or audio")
        for c_index, raw in enumerate(track.get("clips") or []):
            if not isinstance(raw, Mapping):
                raise PermanentGpuError("invalid_input", f"track {t_index} clip {c_index}: not an object")
            if raw.get("deleted"):
                continue
            where = f"track {t_index} clip {c_index}"
            clip = Clip(
                track=t_index,
                order=c_index,
                media_file_id=str(raw.get("media_file_id") or ""),
                start_ms=int_field(raw.get("start_ms", 0), f"{where}: start_ms"),
                duration_ms=int_field(raw.get("duration_ms", 0), f"{where}: duration_ms", minimum=1),
                in_point_ms=int_field(raw.get("in_point_ms", 0) or 0, f"{where}: in_point_ms"),
                cut_in=bool(raw.get("cut_in")),
                cut_out=bool(raw.get("cut_out")),
                effects=clip_fx.parse_effects(raw.get("effects"), where),
                first=raw.get("first") is not False,
                last=raw.get("last") is not False,
                offset_ms=int_field(raw.get("clip_offset_ms", 0) or 0, f"{where}: clip_offset_ms"),
            )
            out_point = raw.get("out_point_ms")
            if out_point is not None and int_field(out_point, f"{where}: out_point_ms") <= clip.in_point_ms:
                raise PermanentGpuError("invalid_input", f"{where}: out_point_ms must be after in_point_ms")
            if not clip.media_file_id:
                raise PermanentGpuError("invalid_input", f"{where}: media_file_id missing")
            (video if kind == "video" else audio).append(clip)
    clips = video + audio
    if not clips:
        raise PermanentGpuError("invalid_input", "the timeline has no clips")
    if len(clips) > MAX_CLIPS:
        raise PermanentGpuError("invalid_input", f"at most {MAX_CLIPS} clips per render")
    total_ms = max(c.end_ms for c in clips)
    if total_ms > MAX_DURATION_MS:
        raise PermanentGpuError("invalid_input", "the timeline is longer than 4 hours")
    return Timeline(width, height, fps, tuple(video), tuple(audio), total_ms)


def frame_at(ms: int, fps: Fraction) -> int:
    return round(Fraction(ms, 1000) * fps)


def flatten_video(clips: Sequence[Clip], total_ms: int, fps: Fraction) -> list[Piece]:
    """The picture as consecutive pieces: for each instant, the top-most clip (or black)."""
    bounds = sorted({0, total_ms, *(c.start_ms for c in clips), *(c.end_ms for c in clips)})
    # Top-most first: a later track covers an earlier one; within a track a later clip wins.
    ranked = sorted(clips, key=lambda c: (c.track, c.order), reverse=True)
    spans: list[tuple[int, int, Clip | None]] = []
    for start, end in itertools.pairwise(bounds):
        if start >= total_ms:
            break
        winner = next((c for c in ranked if c.start_ms <= start and c.end_ms >= end), None)
        if spans and spans[-1][2] is winner and spans[-1][1] == start:
            spans[-1] = (spans[-1][0], end, winner)
        else:
            spans.append((start, end, winner))
    pieces = []
    for start, end, clip in spans:
        frames = frame_at(end, fps) - frame_at(start, fps)
        if frames > 0:  # a sliver shorter than half a frame disappears on the frame grid
            pieces.append(Piece(start, end, frames, clip))
    return pieces


def check_inputs(timeline: Timeline, inputs: Mapping[str, RenderInput]) -> None:
    for clip in timeline.video_clips:
        source = inputs.get(clip.media_file_id)
        if source is None:
            raise PermanentGpuError("invalid_input", f"media {clip.media_file_id} is not in the render's media map")
        if source.kind == "audio" or (source.kind == "video" and not source.has_video):
            raise PermanentGpuError("invalid_media", f"media {clip.media_file_id} on a video track has no picture")
    for clip in timeline.audio_clips:
        source = inputs.get(clip.media_file_id)
        if source is None:
            raise PermanentGpuError("invalid_input", f"media {clip.media_file_id} is not in the render's media map")
        if not source.has_audio:
            raise PermanentGpuError("invalid_media", f"media {clip.media_file_id} on an audio track has no sound")

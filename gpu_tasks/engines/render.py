"""Render: an EDL snapshot to an H.264/AAC MP4, in ONE ffmpeg invocation with a filter_complex.

Payload:
    {"edl": {"settings": {"resolution": {"width", "height"}, "frame_rate"},
             "tracks": [{"type": "video"|"audio", "clips": [{"media_file_id", "start_ms", "duration_ms",
                         "in_point_ms", "out_point_ms", "deleted"}]}]},
     "media": {media_file_id: {"kind": "video"|"audio"|"image", "path" | "url": ...}},
     "encoder_preset"?: "veryfast", "crf"?: 20, "include_video_audio"?: false, "crossfade_ms"?: 10,
     "cuts"?: {"duration_before_ms", "spans"}, "captions"?: ... (gpu_tasks/engines/captions.py)}
Result: `{"outputs": {"video": ref, "captions_srt"?, "captions_vtt"?}, "duration_ms", "width", "height",
"frame_rate", "clips", "duration_before_ms", "removed_ms", "cuts"}` (the last three: of the snapshot's cuts).

Semantics (what an editor's timeline means):
- The output runs from 0 to the end of the last non-deleted clip on any track.
- Video tracks: where several tracks have a clip at the same time, the later track in the list
  is on top (as V2 covers V1); clips are full-frame, so the top clip is what shows. Times with no
  clip are black. Each clip shows its source from `in_point_ms` for `duration_ms` (speed 1), scaled
  to fit the project resolution with black bars (aspect kept). A source shorter than its clip
  holds its last frame. Image clips are held for their duration. Video sits on the project's frame
  grid: every boundary is rounded to the nearest frame, so durations add up exactly.
- Audio tracks: every clip is trimmed the same way, placed at `start_ms` (adelay) and all are
  summed (amix, no normalisation, as a mixer would). Video clips contribute their own sound
  only with `include_video_audio` (an editor normally links it as a separate audio clip).
  With no audio at all the output still carries a silent AAC track.

Cuts (deleted words) arrive as pieces of clips: an edge a cut made (`cut_in` / `cut_out`) is a
hard cut of the picture on the frame grid and a crossfade of the sound (engines/render_cuts.py).

Every clip becomes one ffmpeg input seeked with `-ss`/`-t` (fast input seeking: the part before
`in_point_ms` is skipped, not decoded to the end); the graph normalises each piece (fps, scale,
pad, format) and concatenates the video pieces, then mixes the audio.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

from gpu_tasks.contract import EngineContext, ProgressFn
from gpu_tasks.engines import captions as render_captions
from gpu_tasks.engines.compression import X264_SPEEDS
from gpu_tasks.engines.ffmpeg import run_ffmpeg
from gpu_tasks.engines.media import probe
from gpu_tasks.engines.render_cuts import DEFAULT_CROSSFADE_MS, audio_window, crossfade_of, cut_summary
from gpu_tasks.errors import PermanentGpuError
from gpu_tasks.input_policy import ffmpeg_input

MAX_CLIPS = 400
MAX_DURATION_MS = 4 * 3600 * 1000
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

    @property
    def end_ms(self) -> int:
        return self.start_ms + self.duration_ms


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


def _int(value: Any, what: str, *, minimum: int = 0) -> int:
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
    width = _int(resolution.get("width", 1920), "resolution.width", minimum=16)
    height = _int(resolution.get("height", 1080), "resolution.height", minimum=16)
    if width > 7680 or height > 4320 or width % 2 or height % 2:
        raise PermanentGpuError("invalid_input", "resolution must be even and at most 7680x4320")
    raw_fps = settings.get("frame_rate", 30)
    if isinstance(raw_fps, bool) or not isinstance(raw_fps, int | float) or not 1 <= raw_fps <= 120:
        raise PermanentGpuError("invalid_input", "frame_rate must be between 1 and 120")
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
                start_ms=_int(raw.get("start_ms", 0), f"{where}: start_ms"),
                duration_ms=_int(raw.get("duration_ms", 0), f"{where}: duration_ms", minimum=1),
                in_point_ms=_int(raw.get("in_point_ms", 0) or 0, f"{where}: in_point_ms"),
                cut_in=bool(raw.get("cut_in")),
                cut_out=bool(raw.get("cut_out")),
            )
            out_point = raw.get("out_point_ms")
            if out_point is not None and _int(out_point, f"{where}: out_point_ms") <= clip.in_point_ms:
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


def _secs(ms: int | float) -> str:
    return f"{ms / 1000:.3f}"


def build_command(
    timeline: Timeline,
    inputs: Mapping[str, RenderInput],
    output: Path,
    *,
    encoder_preset: str = "veryfast",
    crf: int = 20,
    include_video_audio: bool = False,
    crossfade_ms: int = DEFAULT_CROSSFADE_MS,
    subtitles: Path | None = None,
) -> list[str]:
    """The ffmpeg arguments (without the binary) that render `timeline` to `output`."""
    w, h, fps = timeline.width, timeline.height, timeline.fps
    fps_s = f"{fps.numerator}/{fps.denominator}"
    frame_ms = 1000 / float(fps)
    args: list[str] = []
    graph: list[str] = []
    video_labels: list[str] = []
    audio_labels: list[str] = []
    n_inputs = 0

    def add_input(path: Path, seek_ms: int, dur_ms: float, *, image: bool = False) -> int:
        nonlocal n_inputs
        if image:
            args.extend(ffmpeg_input(path, "-loop", "1", "-framerate", fps_s, "-t", _secs(dur_ms)))
        else:
            seek = ["-ss", _secs(seek_ms)] if seek_ms > 0 else []
            args.extend(ffmpeg_input(path, *seek, "-t", _secs(dur_ms)))
        n_inputs += 1
        return n_inputs - 1

    def audio_chain(clip: Clip, label: str) -> None:
        window = audio_window(
            start_ms=clip.start_ms, duration_ms=clip.duration_ms, in_point_ms=clip.in_point_ms,
            cut_in=clip.cut_in, cut_out=clip.cut_out, total_ms=timeline.total_ms, crossfade_ms=crossfade_ms,
        )  # fmt: skip
        index = add_input(inputs[clip.media_file_id].path, window.seek_ms, window.source_ms)
        graph.append(",".join([
            f"[{index}:a:0]asetpts=PTS-STARTPTS", "aresample=48000",
            "aformat=sample_fmts=fltp:channel_layouts=stereo", f"atrim=end={_secs(window.duration_ms)}",
            *window.filters(), f"adelay=delays={window.at_ms}:all=1[{label}]",
        ]))  # fmt: skip
        audio_labels.append(label)

    for n, piece in enumerate(flatten_video(timeline.video_clips, timeline.total_ms, fps)):
        label = f"v{n}"
        dur_ms = piece.end_ms - piece.start_ms
        if piece.clip is None:
            graph.append(
                f"color=c=black:s={w}x{h}:r={fps_s},format=yuv420p,setsar=1,trim=end_frame={piece.frames}[{label}]"
            )
            video_labels.append(label)
            continue
        source = inputs[piece.clip.media_file_id]
        seek = piece.clip.in_point_ms + (piece.start_ms - piece.clip.start_ms)
        # One frame of slack so rounding never leaves the trim short; tpad covers a short source.
        index = add_input(source.path, seek, dur_ms + frame_ms, image=source.kind == "image")
        graph.append(
            f"[{index}:v:0]setpts=PTS-STARTPTS,fps={fps_s},"
            f"scale={w}:{h}:force_original_aspect_ratio=decrease,pad={w}:{h}:(ow-iw)/2:(oh-ih)/2:color=black,"
            f"setsar=1,format=yuv420p,tpad=stop_mode=clone:stop_duration={_secs(dur_ms + frame_ms)},"
            f"trim=end_frame={piece.frames},setpts=PTS-STARTPTS[{label}]"
        )
        video_labels.append(label)
        if include_video_audio and source.kind == "video" and source.has_audio:
            # The part of the clip this piece shows; a cut's crossfade only at the clip's own edges.
            clip = piece.clip
            shown = dataclasses.replace(
                clip, start_ms=piece.start_ms, duration_ms=dur_ms, in_point_ms=seek,
                cut_in=clip.cut_in and piece.start_ms == clip.start_ms,
                cut_out=clip.cut_out and piece.end_ms == clip.end_ms,
            )  # fmt: skip
            audio_chain(shown, f"va{n}")

    for n, clip in enumerate(timeline.audio_clips):
        audio_chain(clip, f"a{n}")

    total = _secs(timeline.total_ms)
    finish = render_captions.burn_filter(subtitles) if subtitles else "null"  # captions: drawn last
    concat = f"concat=n={len(video_labels)}:v=1:a=0," if len(video_labels) > 1 else ""
    graph.append("".join(f"[{lbl}]" for lbl in video_labels) + f"{concat}{finish}[vout]")
    if not audio_labels:
        graph.append(f"anullsrc=r=48000:cl=stereo,atrim=end={total}[aout]")
    elif len(audio_labels) == 1:
        graph.append(f"[{audio_labels[0]}]apad=whole_dur={total},atrim=end={total}[aout]")
    else:
        graph.append(
            "".join(f"[{lbl}]" for lbl in audio_labels)
            + f"amix=inputs={len(audio_labels)}:duration=longest:normalize=0:dropout_transition=0,"
            f"apad=whole_dur={total},atrim=end={total}[aout]"
        )
    args += [
        "-filter_complex", ";".join(graph),
        "-map", "[vout]", "-map", "[aout]",
        "-c:v", "libx264", "-preset", encoder_preset, "-crf", str(crf), "-pix_fmt", "yuv420p",
        "-r", fps_s, "-fps_mode", "cfr",
        "-c:a", "aac", "-b:a", "192k", "-ar", "48000",
        "-t", total, "-movflags", "+faststart",
        "-y", str(output),
    ]  # fmt: skip
    return args


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


def render_timeline(
    edl: Mapping[str, Any],
    media: Mapping[str, tuple[Path, str]],
    output: Path,
    *,
    progress: ProgressFn | None = None,
    timeout_s: float | None = None,
    encoder_preset: str = "veryfast",
    crf: int = 20,
    include_video_audio: bool = False,
    crossfade_ms: int = DEFAULT_CROSSFADE_MS,
    subtitles: Path | None = None,
) -> Timeline:
    """Render `edl` with `media` (media_file_id -> (local path, kind)) to `output`."""
    timeline = parse_timeline(edl)
    used = {c.media_file_id for c in (*timeline.video_clips, *timeline.audio_clips)}
    inputs: dict[str, RenderInput] = {}
    for media_id in used:
        if media_id not in media:
            raise PermanentGpuError("invalid_input", f"media {media_id} is not in the render's media map")
        path, kind = media[media_id]
        if kind not in MEDIA_KINDS:
            raise PermanentGpuError("invalid_input", f"media {media_id}: kind must be one of {MEDIA_KINDS}")
        info = probe(path)
        inputs[media_id] = RenderInput(path, kind, has_audio=info.has_audio, has_video=info.has_video)
    check_inputs(timeline, inputs)
    args = build_command(
        timeline, inputs, output, encoder_preset=encoder_preset, crf=crf,
        include_video_audio=include_video_audio, crossfade_ms=crossfade_ms, subtitles=subtitles,
    )  # fmt: skip
    run_ffmpeg(args, total_s=timeline.total_ms / 1000, progress=progress, timeout_s=timeout_s)
    return timeline


def run(payload: Mapping[str, Any], ctx: EngineContext) -> dict[str, Any]:
    media_map = payload.get("media")
    if not isinstance(media_map, Mapping):
        raise PermanentGpuError("invalid_input", "media must map media_file_id to an input")
    encoder_preset = str(payload.get("encoder_preset") or "veryfast")
    if encoder_preset not in X264_SPEEDS:
        raise PermanentGpuError("invalid_input", f"encoder_preset must be one of {X264_SPEEDS}")
    crf = _int(payload.get("crf", 20), "crf")
    if not 0 <= crf <= 51:
        raise PermanentGpuError("invalid_input", "crf must be between 0 and 51")
    crossfade_ms = crossfade_of(payload)
    timeline = parse_timeline(payload.get("edl") or {})
    used = {c.media_file_id for c in (*timeline.video_clips, *timeline.audio_clips)}
    local: dict[str, tuple[Path, str]] = {}
    for media_id in sorted(used):
        entry = media_map.get(media_id)
        if not isinstance(entry, Mapping):
            raise PermanentGpuError("invalid_input", f"media {media_id} is not in the render's media map")
        local[media_id] = (ctx.input_path(entry, f"media-{len(local)}"), str(entry.get("kind") or "video"))
    out = ctx.output_path("video", ".mp4")
    render_timeline(
        payload["edl"],
        local,
        out,
        progress=ctx.progress,
        timeout_s=ctx.remaining_s(),
        encoder_preset=encoder_preset,
        crf=crf,
        include_video_audio=bool(payload.get("include_video_audio")),
        crossfade_ms=crossfade_ms,
        subtitles=render_captions.prepare(payload, ctx),
    )
    ref = ctx.deliver("video", out, "video/mp4")
    fps = timeline.fps
    return {
        "outputs": {"video": ref, **render_captions.deliver(payload, ctx)},
        "duration_ms": timeline.total_ms,
        "width": timeline.width,
        "height": timeline.height,
        "frame_rate": float(fps) if fps.denominator != 1 else fps.numerator,
        "clips": len(timeline.video_clips) + len(timeline.audio_clips),
        **cut_summary(payload.get("cuts"), timeline.total_ms),
    }

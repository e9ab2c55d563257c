"""Render: an EDL snapshot to an H.264/AAC MP4, in ONE ffmpeg invocation with a filter_complex.

Payload:
    {"edl": {"settings": {"resolution": {"width", "height"}, "frame_rate"},
             "tracks": [{"type": "video"|"audio", "clips": [{"media_file_id", "start_ms", "duration_ms",
                         "in_point_ms", "out_point_ms", "deleted", "effects"?, "first"?, "last"?,
                         "clip_offset_ms"?}]}]},
     "media": {media_file_id: {"kind": "video"|"audio"|"image", "path" | "url": ...}},
     "encoder_preset"?: "veryfast", "crf"?: 20, "include_video_audio"?: false, "crossfade_ms"?: 10,
     "cuts"?: {"duration_before_ms", "spans"},
     "captions"?: "none"|"burn"|"sidecar", "captions_ass" | "captions_srt" + "captions_vtt"}
Result: `{"outputs": {"video": ref, "captions_srt"?, "captions_vtt"?}, "duration_ms", "width", "height",
"frame_rate", "clips", "duration_before_ms", "removed_ms", "cuts"}` (the last three: of the snapshot's
cuts); captions: gpu_tasks/engines/captions.py.

Semantics (what an editor's timeline means):
- The output runs from 0 to the end of the last non-deleted clip on any track.
- Video tracks: where several tracks have a clip at the same time, the later track in the list
  is on top (as V2 covers V1); clips are full-frame, so the top clip is what shows. Times with no
  clip are black. Each clip shows its source from `in_point_ms` for `duration_ms` (times its speed),
  fitted to the project resolution (default: black bars, aspect kept). A source shorter than its clip
  holds its last frame. Image clips are held for their duration. Video sits on the project's frame
  grid: every boundary is rounded to the nearest frame, so durations add up exactly.
- Audio tracks: every clip is trimmed the same way, placed at `start_ms` (adelay) and all are
  summed onto a silent bed of the timeline's length (amix, no normalisation, as a mixer would).
  Video clips contribute their own sound only with `include_video_audio` (an editor normally
  links it as a separate audio clip).
  With no audio at all the output still carries a silent AAC track.
- Effects (gpu_tasks/engines/effects.py) apply per clip, in its video and audio chains; a piece
  of a clip split by cuts has `first`/`last` (absent: true) and `clip_offset_ms` (absent: 0).

Cuts (deleted words) arrive as pieces of clips: an edge a cut made (`cut_in` / `cut_out`) is a
hard cut of the picture on the frame grid and a crossfade of the sound (engines/render_cuts.py).

Every clip becomes one ffmpeg input seeked with `-ss`/`-t` (fast input seeking: the part before
`in_point_ms` is skipped, not decoded to the end); the graph normalises each piece (fps, scale,
pad, format) and concatenates the video pieces, then mixes the audio.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from gpu_tasks.contract import EngineContext, ProgressFn
from gpu_tasks.engines import captions as render_captions
from gpu_tasks.engines import effects as clip_fx
from gpu_tasks.engines.compression import X264_SPEEDS
from gpu_tasks.engines.effects import Stretch
from gpu_tasks.engines.ffmpeg import run_ffmpeg
from gpu_tasks.engines.media import open_input, probe
from gpu_tasks.engines.render_cuts import (
    DEFAULT_CROSSFADE_MS,
    MAX_CROSSFADE_MS,
    audio_window,
    crossfade_of,
    cut_summary,
)
from gpu_tasks.engines.timeline import (
    MAX_FRAME_RATE,
    MEDIA_KINDS,
    MIN_FRAME_RATE,
    RESOLUTION,
    Clip,
    RenderInput,
    Timeline,
    check_inputs,
    flatten_video,
    int_field,
    parse_timeline,
)
from gpu_tasks.errors import PermanentGpuError
from gpu_tasks.input_bounds import Bound
from gpu_tasks.input_policy import ffmpeg_input

# The timeline's model lives in engines/timeline.py; these names stay importable from here.
__all__ = ["Clip", "flatten_video", "parse_timeline", "render_timeline", "run"]

log = logging.getLogger(__name__)

# What the API's input reads (gpu_tasks.input_bounds): a render's `resolution` and `frame_rate`
# replace the snapshot's settings, which parse_timeline() checks; crossfade_of() checks the fade.
INPUT_BOUNDS = {
    "resolution": RESOLUTION,
    "frame_rate": Bound("number", MIN_FRAME_RATE, MAX_FRAME_RATE),
    "crossfade_ms": Bound("number", 0, MAX_CROSSFADE_MS, DEFAULT_CROSSFADE_MS),
}



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

    def audio_chain(clip: Clip, stretch: Stretch, label: str) -> None:
        """The sound of `clip` (a clip, or the part of one a video piece shows): its own input,
        widened at cut edges for the crossfade, at the clip's rate, with its gain and fades."""
        fx = clip.effects
        window = audio_window(
            start_ms=clip.start_ms, duration_ms=clip.duration_ms, in_point_ms=clip.in_point_ms,
            cut_in=clip.cut_in, cut_out=clip.cut_out, total_ms=timeline.total_ms, crossfade_ms=crossfade_ms,
            rate=fx.rate,
        )  # fmt: skip
        # A clip's own fades apply at its own edges, where no cut widened the window.
        stretch = dataclasses.replace(stretch, duration_ms=window.duration_ms)
        index = add_input(inputs[clip.media_file_id].path, window.seek_ms, window.source_ms)
        chain = [
            f"[{index}:a:0]asetpts=PTS-STARTPTS", "aresample=48000", "aformat=sample_fmts=fltp:channel_layouts=stereo",
            clip_fx.audio_tempo(fx).rstrip(","), f"atrim=end={_secs(window.duration_ms)}",
            clip_fx.audio_level(fx, stretch).rstrip(","), *window.filters(), f"adelay=delays={window.at_ms}:all=1",
        ]
        graph.append(",".join(f for f in chain if f) + f"[{label}]")
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
        fx, stretch = piece.clip.effects, piece.clip.stretch(piece.start_ms, piece.end_ms)
        seek = piece.clip.in_point_ms + round(clip_fx.source_ms(fx, piece.start_ms - piece.clip.start_ms))
        # One frame of slack so rounding never leaves the trim short; tpad covers a short source.
        span_ms = clip_fx.source_ms(fx, dur_ms + frame_ms)
        index = add_input(source.path, seek, span_ms, image=source.kind == "image")
        graph.append(
            f"[{index}:v:0]{clip_fx.video_source(fx)},fps={fps_s},{clip_fx.video_fit(fx, w, h)},"
            f"setsar=1,format=yuv420p,tpad=stop_mode=clone:stop_duration={_secs(dur_ms + frame_ms)},"
            f"trim=end_frame={piece.frames},setpts=PTS-STARTPTS{clip_fx.video_overlays(fx, stretch, h)}[{label}]"
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
            audio_chain(shown, stretch, f"va{n}")

    for n, clip in enumerate(timeline.audio_clips):
        audio_chain(clip, clip.stretch(clip.start_ms, clip.end_ms), f"a{n}")

    total = _secs(timeline.total_ms)
    # Burned-in captions are drawn last, on the finished picture.
    finish = render_captions.burn_filter(subtitles) if subtitles else "null"
    if len(video_labels) == 1:
        graph.append(f"[{video_labels[0]}]{finish}[vout]")
    else:
        graph.append(
            "".join(f"[{lbl}]" for lbl in video_labels) + f"concat=n={len(video_labels)}:v=1:a=0,{finish}[vout]"
        )
    # The sound is a silent bed of the timeline's length with every clip mixed onto it: the mix
    # ends with the bed, so it runs the timeline's length by construction. (Padding the mix of
    # clips that end early with apad was seen to drop the padding, at random, in ffmpeg 9.)
    bed = f"anullsrc=r=48000:cl=stereo,atrim=end={total}"
    if not audio_labels:
        graph.append(f"{bed}[aout]")
    else:
        graph.append(f"{bed}[bed]")
        graph.append(
            "[bed]" + "".join(f"[{lbl}]" for lbl in audio_labels)
            + f"amix=inputs={len(audio_labels) + 1}:duration=first:normalize=0:dropout_transition=0[aout]"
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
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    # A render is delivered only once both of its streams run the timeline's length: ffmpeg can
    # exit 0 with a stream cut short. A short one is rendered once more, then fails with ffmpeg's
    # own report.
    for attempt in (1, 2):
        remaining = None if deadline is None else max(1.0, deadline - time.monotonic())
        reported = run_ffmpeg(args, total_s=timeline.total_ms / 1000, progress=progress, timeout_s=remaining)
        short = short_streams(output, timeline.total_ms, 1000 / float(timeline.fps))
        if not short:
            return timeline
        log.warning("render attempt %d came out short (%s); ffmpeg reported: %s", attempt, short, reported or "nothing")
    raise PermanentGpuError("internal", f"the rendered file came out short twice ({short}): {reported[-400:]}")


def short_streams(path: Path, total_ms: int, frame_ms: float) -> str:
    """Which of the file's streams end earlier than `total_ms` by more than two frames (at least
    100 ms, several AAC frames), as "video 2.540 s of 4.140 s"; empty when none does."""
    slack_ms = max(100.0, 2 * frame_ms)
    short = []
    with open_input(path) as container:
        for stream in (*container.streams.video[:1], *container.streams.audio[:1]):
            seconds = float(stream.duration * stream.time_base) if stream.duration and stream.time_base else 0.0
            if seconds * 1000 < total_ms - slack_ms:
                short.append(f"{stream.type} {seconds:.3f} s of {total_ms / 1000:.3f} s")
    return ", ".join(short)


def run(payload: Mapping[str, Any], ctx: EngineContext) -> dict[str, Any]:
    media_map = payload.get("media")
    if not isinstance(media_map, Mapping):
        raise PermanentGpuError("invalid_input", "media must map media_file_id to an input")
    encoder_preset = str(payload.get("encoder_preset") or "veryfast")
    if encoder_preset not in X264_SPEEDS:
        raise PermanentGpuError("invalid_input", f"encoder_preset must be one of {X264_SPEEDS}")
    crf = int_field(payload.get("crf", 20), "crf")
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
    captions = render_captions.prepare(payload, ctx)
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
        subtitles=captions.burn,
    )
    ref = ctx.deliver("video", out, "video/mp4")
    fps = timeline.fps
    return {
        "outputs": {"video": ref, **render_captions.deliver(captions, ctx)},
        "duration_ms": timeline.total_ms,
        "width": timeline.width,
        "height": timeline.height,
        "frame_rate": float(fps) if fps.denominator != 1 else fps.numerator,
        "clips": len(timeline.video_clips) + len(timeline.audio_clips),
        **cut_summary(payload.get("cuts"), timeline.total_ms),
    }

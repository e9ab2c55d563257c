"""Compression: re-encode a video to a 1080p/720p/480p preset, H.264/AAC in MP4.

Payload: `{"media": input_ref, "preset": "1080p"|"720p"|"480p", "encoder_preset"?: x264 speed}`.
Result: `{"outputs": {"video": ref}, "preset", "width", "height", "duration_ms", "input_size_bytes",
"output_size_bytes"}`.

The preset bounds the *short* side of the picture (1080p = 1920x1080 landscape or 1080x1920
portrait), the aspect ratio is kept, and a source already at or below the preset is never
upscaled. The scale is an ffmpeg expression evaluated on the decoded (auto-rotated) frames,
so phone videos with a rotation flag come out the right way round.

A long video is compressed in pieces (gpu_tasks.pieces): with `span: {start_ms, end_ms}` the call
encodes only the frames of that span, video only, starting on the keyframe at `start_ms`;
`join_pieces` puts the pieces' encodings end to end (stream copy) and encodes the source's audio
once, whole, beside them, so no seam is heard. The worker runs it as `join`, an engine of its own
under a local runner (jobs.gpu_client.join_pieces): its ffmpeg parses files that GPU containers and
the user produced, so it runs in the engines' sandbox, whatever the backend.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from gpu_tasks.contract import EngineContext, input_limit_s
from gpu_tasks.engines.ffmpeg import run_ffmpeg
from gpu_tasks.engines.media import probe
from gpu_tasks.errors import PermanentGpuError
from gpu_tasks.input_bounds import Choices
from gpu_tasks.input_policy import ffmpeg_concat_input, ffmpeg_input
from gpu_tasks.pieces import span_of

PRESETS: dict[str, dict[str, Any]] = {
    "1080p": {"short_side": 1080, "crf": 23, "audio_bitrate": "128k"},
    "720p": {"short_side": 720, "crf": 23, "audio_bitrate": "128k"},
    "480p": {"short_side": 480, "crf": 26, "audio_bitrate": "96k"},
}
DEFAULT_PRESET = "720p"
# What the API's input reads (gpu_tasks.input_bounds): run() checks the same table.
INPUT_BOUNDS = {"preset": Choices(tuple(PRESETS), DEFAULT_PRESET)}
X264_SPEEDS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow")


def scale_filter(short_side: int) -> str:
    t = short_side
    # Landscape: bound the height; portrait: bound the width. min(..) never upscales; -2 keeps the
    # aspect ratio with an even size (yuv420p needs even dimensions), trunc(../2)*2 makes ours even.
    w = f"if(gte(iw\\,ih)\\,-2\\,trunc(min(iw\\,{t})/2)*2)"
    h = f"if(gte(iw\\,ih)\\,trunc(min(ih\\,{t})/2)*2\\,-2)"
    return f"scale=w='{w}':h='{h}',setsar=1"


def run(payload: Mapping[str, Any], ctx: EngineContext) -> dict[str, Any]:
    preset_name = str(payload.get("preset") or DEFAULT_PRESET)
    if preset_name not in PRESETS:
        raise PermanentGpuError("invalid_input", f"preset must be one of {sorted(PRESETS)}")
    speed = str(payload.get("encoder_preset") or "fast")
    if speed not in X264_SPEEDS:
        raise PermanentGpuError("invalid_input", f"encoder_preset must be one of {X264_SPEEDS}")
    preset = PRESETS[preset_name]
    span = span_of(payload)
    source = ctx.input_path(payload.get("media"), "media", span=span, streams=("video",))
    max_s = input_limit_s(payload.get("media"))
    info = probe(source)
    if not info.has_video:
        raise PermanentGpuError("invalid_media", "the media has no video stream")
    out = ctx.output_path("video", ".mp4")
    video = ["-c:v", "libx264", "-preset", speed, "-crf", str(preset["crf"]), "-pix_fmt", "yuv420p"]
    if span is None:
        args = [
            *ffmpeg_input(source, max_s=max_s),
            "-map", "0:v:0", "-map", "0:a:0?", "-vf", scale_filter(preset["short_side"]), *video,
            "-c:a", "aac", "-b:a", preset["audio_bitrate"], "-movflags", "+faststart", "-y", str(out),
        ]  # fmt: skip
        total_s = info.duration_s if max_s is None else min(info.duration_s, max_s)
    else:
        args, total_s = _span_args(source, span, scale_filter(preset["short_side"]), video, out)
    remaining = ctx.remaining_s()
    run_ffmpeg(args, total_s=total_s, progress=ctx.progress, timeout_s=remaining)
    result_info = probe(out)
    input_size = ctx.source_size(source)
    ref = ctx.deliver("video", out, "video/mp4")
    return {
        "outputs": {"video": ref},
        "preset": preset_name,
        "width": result_info.width,
        "height": result_info.height,
        "duration_ms": round(result_info.duration_s * 1000),
        "input_size_bytes": input_size,
        "output_size_bytes": ref["size_bytes"],
    }


def _span_args(source: Path, span: tuple[int, int], scale: str, video: list[str], out: Path) -> tuple[list[str], float]:
    """Encode the frames of [start, end) only: the input is sought to `start` (the keyframe there:
    ffmpeg drops nothing before it and counts the output's time from it), `trim` ends before the
    first frame at `end`, and every frame is kept as it comes (`passthrough`: none doubled or
    dropped to make a constant rate), so the pieces' frames add up to the whole's."""
    start_ms, end_ms = span
    length_s = (end_ms - start_ms) / 1000
    args = [
        *ffmpeg_input(source, "-t", f"{length_s + 1:.3f}", seek_s=start_ms / 1000 if start_ms else None),
        "-map", "0:v:0", "-an", "-vf", f"trim=end={length_s:.3f},setpts=PTS-STARTPTS,{scale}",
        "-fps_mode", "passthrough", *video, "-movflags", "+faststart", "-y", str(out),
    ]  # fmt: skip
    return args, length_s


def join(payload: Mapping[str, Any], ctx: EngineContext) -> dict[str, Any]:
    """`join_pieces` as an engine. Payload: `{"pieces": [input_ref, ...] in order, "media": the
    source's input_ref, "preset"}`. Result: `{"outputs": {"video": ref}}`."""
    preset_name = str(payload.get("preset") or DEFAULT_PRESET)
    if preset_name not in PRESETS:
        raise PermanentGpuError("invalid_input", f"preset must be one of {sorted(PRESETS)}")
    refs = payload.get("pieces")
    if not isinstance(refs, list) or not refs:
        raise PermanentGpuError("invalid_input", "pieces must be a list of the pieces' videos")
    pieces = [ctx.input_path(ref, f"piece {index}") for index, ref in enumerate(refs)]
    source = ctx.input_path(payload.get("media"), "media")
    out = ctx.output_path("video", ".mp4")
    join_pieces(pieces, source, out, preset_name=preset_name, timeout_s=ctx.remaining_s())
    return {"outputs": {"video": ctx.deliver("video", out, "video/mp4")}}


def join_pieces(pieces: list[Path], source: Path, out: Path, *, preset_name: str, timeout_s: float | None) -> None:
    """One MP4 of the pieces' video, end to end as they were encoded (no frame re-encoded, none
    added or lost), with the source's first audio stream encoded once at the preset's bitrate."""
    preset = PRESETS[preset_name]
    listing = out.with_suffix(".txt")
    quoted = ["file '" + str(path).replace("'", "'\\''") + "'" for path in pieces]
    listing.write_text("ffconcat version 1.0\n" + "\n".join(quoted) + "\n")
    args = [
        *ffmpeg_concat_input(listing), *ffmpeg_input(source),
        "-map", "0:v:0", "-map", "1:a:0?", "-c:v", "copy",
        "-c:a", "aac", "-b:a", preset["audio_bitrate"], "-movflags", "+faststart", "-y", str(out),
    ]  # fmt: skip
    try:
        run_ffmpeg(args, total_s=0.0, timeout_s=timeout_s)  # no progress to report: the pieces were the work
    finally:
        listing.unlink(missing_ok=True)

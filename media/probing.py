"""What a media file really is: PyAV for the facts, the ffmpeg binary for thumbnails.

There is no ffprobe binary in any wheel; PyAV links FFmpeg's own libraries, which is what
ffprobe uses. Thumbnails come from the ffmpeg that imageio-ffmpeg ships. No Django here.
"""

from __future__ import annotations

import logging
import subprocess
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

NOT_DECODABLE = "not a decodable media file"
# Containers FFmpeg uses for a single still image.
STILL_IMAGE_FORMATS = ("png_pipe", "jpeg_pipe", "webp_pipe")
# The only demuxers FFmpeg may use on an uploaded file, and the only protocol. FFmpeg otherwise
# picks a demuxer by content or by file extension among hundreds: a text file becomes an ANSI
# "video" (tty), and playlist formats (HLS, concat) would make it open other files or URLs
# named inside the upload and render them into a thumbnail the user can download.
FORMAT_WHITELIST = ",".join((
    "mov,mp4,m4a,3gp,3g2,mj2",  # mp4, mov, m4a
    "matroska,webm",
    "wav",
    "mp3",
    "aac",
    "flac",
    "ogg",
    *STILL_IMAGE_FORMATS,
))
SAFE_INPUT_OPTIONS = {"format_whitelist": FORMAT_WHITELIST, "protocol_whitelist": "file"}
THUMBNAIL_WIDTH = 320
FFMPEG_TIMEOUT_SECONDS = 60


@dataclass
class ProbeResult:
    ok: bool
    rejection_reason: str = ""
    duration_ms: int | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


def _rate(value: Fraction | None) -> float | None:
    if not value:
        return None
    return round(float(value), 3)


def probe_file(path: Path, declared_type: str) -> ProbeResult:
    """Open the file with PyAV, decode one frame of its main stream, and check the type claimed."""
    import av

    try:
        with av.open(str(path), metadata_errors="ignore", options=dict(SAFE_INPUT_OPTIONS)) as container:
            video = next((s for s in container.streams.video if not _is_attached_picture(s)), None)
            audio = container.streams.audio[0] if container.streams.audio else None
            fmt = container.format.name
            still = fmt in STILL_IMAGE_FORMATS
            if video is None and audio is None:
                return ProbeResult(ok=False, rejection_reason=NOT_DECODABLE)

            mismatch = _type_mismatch(declared_type, has_video=video is not None, has_audio=audio is not None,
                                      still=still)
            if mismatch:
                return ProbeResult(ok=False, rejection_reason=mismatch)

            # A header is not enough: a truncated or forged file can parse and not decode.
            main = video if declared_type in ("video", "image") else audio
            assert main is not None
            if next(iter(container.decode(main)), None) is None:
                return ProbeResult(ok=False, rejection_reason=NOT_DECODABLE)

            duration_ms: int | None = None
            if not still and container.duration is not None and container.duration > 0:
                duration_ms = int(container.duration * 1000 // av.time_base)
            metadata: dict[str, Any] = {
                "format": fmt,
                "width": video.codec_context.width if video else None,
                "height": video.codec_context.height if video else None,
                "video_codec": video.codec_context.name if video else None,
                "audio_codec": audio.codec_context.name if audio else None,
                "sample_rate": audio.codec_context.sample_rate if audio else None,
                "channels": audio.codec_context.layout.nb_channels if audio else None,
                "fps": _rate(video.average_rate or video.guessed_rate) if video and not still else None,
                "bit_rate": container.bit_rate or None,
            }
    except (av.FFmpegError, OSError, ValueError, StopIteration) as exc:
        logger.info("probe: not decodable (%s)", type(exc).__name__)
        return ProbeResult(ok=False, rejection_reason=NOT_DECODABLE)
    return ProbeResult(ok=True, duration_ms=duration_ms, metadata=metadata)


def _is_attached_picture(stream: Any) -> bool:
    # Cover art in an m4a/mp3 is a one-frame "video" stream; it does not make the file a video.
    from av.stream import Disposition

    return bool(stream.disposition & Disposition.attached_pic)


def _type_mismatch(declared: str, *, has_video: bool, has_audio: bool, still: bool) -> str:
    if declared == "video":
        if not has_video:
            return "type mismatch: declared video but the file has no video stream"
        if still:
            return "type mismatch: declared video but the file is a still image"
    elif declared == "audio":
        if not has_audio:
            return "type mismatch: declared audio but the file has no audio stream"
    elif declared == "image":
        if not has_video:
            return "type mismatch: declared image but the file has no image"
        if not still:
            return "type mismatch: declared image but the file is not a still image"
    return ""


def ffmpeg_exe() -> str:
    import imageio_ffmpeg

    return str(imageio_ffmpeg.get_ffmpeg_exe())


def make_thumbnail(src: Path, dst: Path, *, media_type: str, duration_ms: int | None) -> bool:
    """Write a JPEG at most THUMBNAIL_WIDTH wide to ``dst``; False if ffmpeg could not.

    For a video, a frame one second in (or at the middle of a shorter clip), so that a fade
    from black does not give a black thumbnail; input seeking (-ss before -i) is fast.
    """
    scale = f"scale='min({THUMBNAIL_WIDTH},iw)':-2"
    offsets: list[float] = [0.0]
    if media_type == "video" and duration_ms:
        offsets = [min(1.0, duration_ms / 2000), 0.0]
    for offset in offsets:
        cmd = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-nostdin", "-y"]
        if offset:
            cmd += ["-ss", f"{offset:.3f}"]
        for name, value in SAFE_INPUT_OPTIONS.items():
            cmd += [f"-{name}", value]
        cmd += ["-i", str(src), "-frames:v", "1", "-vf", scale, "-q:v", "4", "-f", "image2", str(dst)]
        try:
            subprocess.run(cmd, check=True, capture_output=True, timeout=FFMPEG_TIMEOUT_SECONDS)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
            logger.warning("thumbnail: ffmpeg failed (%s)", type(exc).__name__)
            continue
        if dst.is_file() and dst.stat().st_size > 0:
            return True
    return False

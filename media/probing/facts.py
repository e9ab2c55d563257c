"""What a media file really is: PyAV for the facts, the ffmpeg binary for thumbnails.

There is no ffprobe binary in any wheel; PyAV links FFmpeg's own libraries, which is what
ffprobe uses. Thumbnails come from the ffmpeg that imageio-ffmpeg ships. No Django here: the
probe runs in a child process with memory and CPU limits (media/probing/sandbox.py).

The duration is measured from the packets, not read from the header: a header is whatever the
uploader wrote, and a WebM that says 1 s can hold an hour. Reading packets is demuxing only (no
decoding), about 0.6 s for an hour of audio in 20 ms packets.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import struct
import subprocess
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

from gpu_tasks.input_policy import SAFE_INPUT_OPTIONS, STILL_IMAGE_FORMATS, ffmpeg_input

logger = logging.getLogger(__name__)

NOT_DECODABLE = "not a decodable media file"
SIZE_UNREADABLE = "the picture's size cannot be read, or is larger than allowed"
OVER_LIMITS = "the file could not be examined within the memory and time allowed"
THUMBNAIL_WIDTH = 320
FFMPEG_TIMEOUT_SECONDS = 60
# 8192 x 8192: 8K video and 48-megapixel photos pass; a frame of it decodes in about 100 MB.
DEFAULT_MAX_PIXELS = 8192 * 8192
# A muxer's own duration is kept when the packets end at most this far past it: encoder delay and
# padding overrun it by a few milliseconds, which must not push an exact 10-minute file into a
# second price unit. Beyond it the header is lying, and the packets are the length.
HEADER_SLACK_S = 1.0


@dataclass
class ProbeResult:
    ok: bool
    rejection_reason: str = ""
    duration_ms: int | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


def content_sha256(path: Path) -> str:
    """The SHA-256 of a file's bytes, read in 1 MiB pieces: what identifies its content (the same
    file uploaded twice, to two projects, has the same one)."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _rate(value: Fraction | None) -> float | None:
    if not value:
        return None
    return round(float(value), 3)


def probe_file(
    path: Path, declared_type: str, *, max_pixels: int = DEFAULT_MAX_PIXELS, fd: int | None = None
) -> ProbeResult:
    """Open the file with PyAV, check the type claimed and the picture's size, decode one frame
    of its main stream, and measure its length from every packet's timestamps.

    `fd`: the file already open (read through FFmpeg's `fd` protocol, and no other): the
    sandboxed probe opens it before it gives up the rights to open it by `path`."""
    import av

    # FFmpeg's decoders refuse a frame above `max_pixels` before allocating it, including the
    # ones that opening the file runs to fill in stream parameters; one thread keeps the memory
    # a decode takes predictable.
    options = {**SAFE_INPUT_OPTIONS, "max_pixels": str(max_pixels), "threads": "1"}
    source = str(path)
    if fd is not None:
        source = "fd:"
        options.update(fd=str(fd), protocol_whitelist="fd")
    try:
        with av.open(source, metadata_errors="ignore", options=options) as container:
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
            if video is not None:
                too_large = _size_refusal(video.codec_context.width, video.codec_context.height, max_pixels)
                if too_large:
                    return ProbeResult(ok=False, rejection_reason=too_large)

            main = video if declared_type in ("video", "image") else audio
            assert main is not None
            main.codec_context.thread_count = 1
            decoded, length_s = _scan(container, main, [s for s in (video, audio) if s is not None])
            # A header is not enough: a truncated or forged file can parse and not decode.
            if not decoded:
                return ProbeResult(ok=False, rejection_reason=NOT_DECODABLE)

            duration_ms: int | None = None
            header_s = container.duration / av.time_base if container.duration and container.duration > 0 else None
            if not still and length_s is not None:
                if header_s is not None and length_s <= header_s + HEADER_SLACK_S:
                    length_s = min(length_s, header_s)
                duration_ms = int(length_s * 1000) or None
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
    except MemoryError:  # FFmpeg's ENOMEM too: the probe's address space is limited
        logger.warning("probe: out of memory")
        return ProbeResult(ok=False, rejection_reason=OVER_LIMITS)
    except (av.FFmpegError, OSError, ValueError, StopIteration) as exc:
        logger.info("probe: not decodable (%s)", type(exc).__name__)
        return ProbeResult(ok=False, rejection_reason=NOT_DECODABLE)
    return ProbeResult(ok=True, duration_ms=duration_ms, metadata=metadata)


def probe_confined(*, path: str, declared_type: str, max_pixels: int, fd: int | None) -> dict[str, Any]:
    """`probe_file` as a confined child runs it (media/probing/sandbox.py): through the descriptor it
    was handed (None: the file could not be opened)."""
    if fd is None:
        return asdict(ProbeResult(ok=False, rejection_reason=NOT_DECODABLE))
    return asdict(probe_file(Path(path), declared_type, max_pixels=max_pixels, fd=fd))


def voice_pcm(*, path: str, fd: int | None, max_ms: int, sample_rate: int, ffmpeg: str, timeout_s: float,
              ) -> dict[str, Any]:
    """The first `max_ms` of the file's first audio stream as mono 16-bit PCM at `sample_rate`, decoded
    by ffmpeg from the descriptor this confined child was handed (FFmpeg's `fd` protocol, no other):
    ffmpeg runs with the child's sandbox, limits and empty environment. {"pcm": base64} or
    {"error": ffmpeg's last words}."""
    if fd is None:
        return {"error": "the file could not be opened"}
    options = {**SAFE_INPUT_OPTIONS, "protocol_whitelist": "fd"}
    cmd = [ffmpeg, "-hide_banner", "-loglevel", "error", "-nostdin",
           *(arg for name, value in options.items() for arg in (f"-{name}", value)),
           # -t before -i: ffmpeg stops reading the input there, however long the upload is.
           "-fd", str(fd), "-t", f"{max_ms / 1000:.3f}", "-i", "fd:", "-map", "0:a:0", "-vn", "-sn", "-dn",
           "-ac", "1", "-ar", str(sample_rate), "-f", "s16le", "pipe:1"]
    try:
        done = subprocess.run(cmd, pass_fds=(fd,), capture_output=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        return {"error": f"ffmpeg ran past {timeout_s} s"}
    except OSError as exc:
        return {"error": f"ffmpeg could not be started: {exc}"}
    if done.returncode != 0 or not done.stdout:
        return {"error": done.stderr[-500:].decode(errors="replace") or f"ffmpeg exited {done.returncode}"}
    return {"pcm": base64.b64encode(done.stdout).decode()}


def _square_windows(frame: Any, side: int, crop: int, tiles: int) -> list[bytes]:
    """Up to `tiles` square windows along a frame's long side (none for a square frame), as
    `screen_frames` describes them."""
    width, height = int(frame.width), int(frame.height)
    if tiles < 2 or width <= 0 or height <= 0 or width == height:
        return []
    wide = width > height
    long_side = min(round(side * max(width, height) / min(width, height)), side * tiles)
    if long_side <= side:
        return []
    size = {"width": long_side, "height": side} if wide else {"width": side, "height": long_side}
    rgb = frame.to_ndarray(**size, format="rgb24", interpolation="BILINEAR")
    count = min(tiles, -(-long_side // side))
    offset = (side - crop) // 2
    windows = []
    for i in range(count):
        start = round(i * (long_side - side) / (count - 1)) if count > 1 else 0
        square = rgb[:, start:start + side] if wide else rgb[start:start + side, :]
        windows.append(square[offset:offset + crop, offset:offset + crop].tobytes())
    return windows


def screen_frames(*, path: str, fd: int | None, max_pixels: int, count: int, every_s: float, side: int = 256,
                  crop: int = 224, tiles: int = 1) -> dict[str, Any]:
    """Frames of a picture or a video for the image screener (gpu_tasks.screening.image), decoded in
    this confined child from the descriptor it was handed: the first frame, then one every
    `every_s` seconds, at most `count`; each resized to `side` x `side` (bilinear), its centre
    `crop` x `crop` kept, as RGB bytes. A frame that is not square also gives up to `tiles` square
    windows along its long side (resized so its short side is `side`, the long side at most `tiles`
    times that), each cropped the same way: what lies near the edges of a wide picture is scored
    too, undistorted. A picture over `max_pixels` is refused before it is decoded, as the probe
    refuses it. {"frames": [base64...]} or {"error": why}."""
    import av

    if fd is None:
        return {"error": "the file could not be opened"}
    options = {**SAFE_INPUT_OPTIONS, "max_pixels": str(max_pixels), "threads": "1", "fd": str(fd),
               "protocol_whitelist": "fd"}
    offset = (side - crop) // 2
    frames: list[str] = []
    try:
        with av.open("fd:", metadata_errors="ignore", options=options) as container:
            video = next((s for s in container.streams.video if not _is_attached_picture(s)), None)
            if video is None:
                return {"error": "no picture"}
            too_large = _size_refusal(video.codec_context.width, video.codec_context.height, max_pixels)
            if too_large:
                return {"error": too_large}
            video.codec_context.thread_count = 1
            due = 0.0
            for frame in container.decode(video):
                at = float(frame.time) if frame.time is not None else due
                if frames and at < due:
                    continue
                rgb = frame.to_ndarray(width=side, height=side, format="rgb24", interpolation="BILINEAR")
                frames.append(base64.b64encode(rgb[offset:offset + crop, offset:offset + crop].tobytes()).decode())
                frames.extend(base64.b64encode(window).decode()
                              for window in _square_windows(frame, side, crop, tiles))
                due = at + every_s
                if len(frames) >= count:
                    break
    except MemoryError:
        return {"error": "out of memory"}
    except (av.FFmpegError, OSError, ValueError) as exc:
        return {"error": f"not decodable ({type(exc).__name__})"}
    return {"frames": frames} if frames else {"error": "no frame decoded"}


def screen_frames_spread(*, path: str, fd: int | None, max_pixels: int, count: int, duration_s: float | None = None,
                         side: int = 256, crop: int = 224, tiles: int = 1,
                         moments: list[float] | None = None) -> dict[str, Any]:
    """`count` frames of a picture or a video spread over its length, for the image screener,
    decoded in this confined child: the first frame, then the frame shown at each `i / count` of
    the length, or, given `moments` (count - 1 fractions in [0, 1)), at `(i - 1 + moments[i - 1]) /
    (count - 1)` of it: one moment drawn in each of count - 1 equal stretches of the whole length,
    whatever the key frames are. The packets are read first (no
    decoding): the length, measured from them, never from the header, which a file may state
    falsely (`duration_s`, the length the probe measured, is taken when given), and where the key
    frames are. Each frame is then reached by decoding on from the last one when no key frame lies
    between them, else after a seek to the key frame before it: each frame is decoded at most once,
    and never more than from its key frame. Each is cropped and windowed as `screen_frames` does. A
    picture gives its one frame. {"frames": [base64...], "seen": [seconds...]} or {"error": why}."""
    import bisect

    import av

    if fd is None:
        return {"error": "the file could not be opened"}
    options = {**SAFE_INPUT_OPTIONS, "max_pixels": str(max_pixels), "threads": "1", "fd": str(fd),
               "protocol_whitelist": "fd"}
    offset = (side - crop) // 2
    frames: list[str] = []
    seen: list[float] = []

    def keep(frame: Any, at: float) -> None:
        rgb = frame.to_ndarray(width=side, height=side, format="rgb24", interpolation="BILINEAR")
        frames.append(base64.b64encode(rgb[offset:offset + crop, offset:offset + crop].tobytes()).decode())
        frames.extend(base64.b64encode(window).decode() for window in _square_windows(frame, side, crop, tiles))
        seen.append(round(at, 3))

    try:
        with av.open("fd:", metadata_errors="ignore", options=options) as container:
            video = next((s for s in container.streams.video if not _is_attached_picture(s)), None)
            if video is None:
                return {"error": "no picture"}
            too_large = _size_refusal(video.codec_context.width, video.codec_context.height, max_pixels)
            if too_large:
                return {"error": too_large}
            video.codec_context.thread_count = 1
            base = video.time_base or Fraction(1, 1000)
            start = video.start_time or 0
            end, keys = start, []
            for packet in container.demux(video):
                if packet.pts is not None:
                    end = max(end, packet.pts + (packet.duration or 0))
                    if packet.is_keyframe:
                        keys.append(packet.pts)
            keys.sort()
            length = float((end - start) * base) if duration_s is None else duration_s
            container.seek(start, stream=video, backward=True)
            decoded = container.decode(video)
            first = next(decoded, None)
            if first is None:
                return {"error": "no frame decoded"}
            keep(first, 0.0)
            last = first
            for i in range(1, max(1, count)):
                share = i / count if moments is None else (i - 1 + min(max(moments[i - 1], 0.0), 0.999)) / (count - 1)
                target = start + int(length * share / base)
                key = keys[bisect.bisect_right(keys, target) - 1] if keys and keys[0] <= target else None
                if key is not None and last.pts is not None and key > last.pts:
                    container.seek(key, stream=video, backward=True)
                    decoded = container.decode(video)
                chosen = None
                for frame in decoded:
                    chosen = frame
                    if frame.pts is None or frame.pts >= target:
                        break
                if chosen is None or chosen.pts == last.pts:
                    continue  # past the end, or the same frame again (a picture, a still)
                keep(chosen, float((target - start) * base))
                last = chosen
    except MemoryError:
        return {"error": "out of memory"}
    except (av.FFmpegError, OSError, ValueError) as exc:
        return {"error": f"not decodable ({type(exc).__name__})"}
    return {"frames": frames, "seen": seen}


def probe_captions(path: Path) -> ProbeResult:
    """A subtitle file (SRT, WebVTT, UTF-8): it parses, and lasts until its last cue ends."""
    import pysubs2

    try:
        subs = pysubs2.load(str(path), encoding="utf-8")
    except (pysubs2.Pysubs2Error, UnicodeDecodeError, ValueError, OSError):
        return ProbeResult(ok=False, rejection_reason=NOT_DECODABLE)
    end_ms = max((event.end for event in subs), default=0)
    return ProbeResult(ok=True, duration_ms=end_ms or None, metadata={"format": subs.format, "cues": len(subs)})


# The WAVE formats read without FFmpeg, by (format tag, bits per sample): integer PCM and IEEE
# float, with FFmpeg's names for them.
_WAV_CODECS = {
    (1, 8): "pcm_u8", (1, 16): "pcm_s16le", (1, 24): "pcm_s24le", (1, 32): "pcm_s32le",
    (3, 32): "pcm_f32le", (3, 64): "pcm_f64le",
}
_WAV_MAX_CHUNKS = 16  # chunk headers read before the data chunk, at the most
_WAV_MAX_CHANNELS = 8
_WAV_MAX_RATE = 384_000


def probe_pcm_wav(path: Path) -> ProbeResult | None:
    """A plain PCM (or float) WAV, read without FFmpeg; None for any other file.

    A RIFF header is a handful of fixed-size little-endian fields: this reads at most
    `_WAV_MAX_CHUNKS` chunk headers and the format chunk with `struct`, decodes nothing (every
    byte of PCM is a sample) and allocates nothing that the file sizes, so no crafted byte
    reaches a C parser. It accepts only what it accounts for entirely: the format chunk before
    a data chunk that lies wholly inside the file, of whole frames, at least one of them. Anything
    else (an extensible or compressed format, a truncated or padded file, another container
    named .wav) is None, and the caller probes the file in the sandbox as any other.
    Gives what `probe_file` gives for the same file (tests/media/test_wav_probe.py compares them).
    """
    try:
        size = path.stat().st_size
        with path.open("rb") as fh:
            riff = fh.read(12)
            if len(riff) < 12 or riff[:4] != b"RIFF" or riff[8:] != b"WAVE":
                return None
            fmt: tuple[int, ...] | None = None
            offset = 12
            for _ in range(_WAV_MAX_CHUNKS):
                fh.seek(offset)
                header = fh.read(8)
                if len(header) < 8:
                    return None
                chunk_id, (chunk_size,) = header[:4], struct.unpack("<I", header[4:])
                if chunk_id == b"fmt ":
                    body = fh.read(16) if 16 <= chunk_size <= 18 else b""
                    if len(body) < 16 or fmt is not None:
                        return None
                    fmt = struct.unpack("<HHIIHH", body)
                elif chunk_id == b"data":
                    if offset + 8 + chunk_size > size:  # truncated, or a size that lies
                        return None
                    return _pcm_result(fmt, data_bytes=chunk_size, file_bytes=size)
                offset += 8 + chunk_size + (chunk_size & 1)  # chunks are padded to an even length
    except OSError:
        return None
    return None


def _pcm_result(fmt: tuple[int, ...] | None, *, data_bytes: int, file_bytes: int) -> ProbeResult | None:
    if fmt is None:
        return None
    tag, channels, rate, byte_rate, block_align, bits = fmt
    codec = _WAV_CODECS.get((tag, bits))
    if (
        codec is None or not 1 <= channels <= _WAV_MAX_CHANNELS or not 1 <= rate <= _WAV_MAX_RATE
        or block_align != channels * bits // 8 or byte_rate != rate * block_align or data_bytes % block_align
    ):
        return None
    frames = data_bytes // block_align
    if frames == 0:
        return None
    # FFmpeg's container bit rate: the whole file's bits over its duration (rounded to the nearest
    # microsecond, at least 3 for one frame at the highest rate), rounded down.
    duration_us = (frames * 1_000_000 + rate // 2) // rate
    bit_rate = file_bytes * 8 * 1_000_000 // duration_us
    metadata: dict[str, Any] = {
        "format": "wav", "width": None, "height": None, "video_codec": None, "audio_codec": codec,
        "sample_rate": rate, "channels": channels, "fps": None, "bit_rate": bit_rate,
    }
    return ProbeResult(ok=True, duration_ms=int(frames / rate * 1000) or None, metadata=metadata)


def _scan(container: Any, main: Any, streams: list[Any]) -> tuple[bool, float | None]:
    """One pass over the packets of `streams`: whether `main` decodes to a frame (only its first
    packets are decoded), and the span from the earliest packet to the latest packet's end, in
    seconds (None without timestamps)."""
    decoded = False
    first: dict[int, int] = {}
    last: dict[int, int] = {}
    for packet in container.demux(*streams):
        index = packet.stream_index
        if not decoded and index == main.index:
            decoded = bool(main.decode(packet))  # the empty packet at the end flushes the decoder
        ts = packet.pts if packet.pts is not None else packet.dts
        if ts is None:
            continue
        end = ts + (packet.duration or 0)
        if index not in first or ts < first[index]:
            first[index] = ts
        if index not in last or end > last[index]:
            last[index] = end
    if not last:
        return decoded, None
    bases = {s.index: s.time_base for s in streams}
    start = min(first[i] * bases[i] for i in first)
    end = max(last[i] * bases[i] for i in last)
    return decoded, float(end - start) if end > start else None


def _size_refusal(width: int, height: int, max_pixels: int) -> str:
    """Why a picture of `width` x `height` is refused before anything decodes it; "" if it is not."""
    if not width or not height:
        return SIZE_UNREADABLE
    if width * height > max_pixels:
        return f"the picture is too large: {width}x{height} is more than {max_pixels:,} pixels"
    return ""


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
        seek = ["-ss", f"{offset:.3f}"] if offset else []
        cmd = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-nostdin", "-y", *ffmpeg_input(src, *seek),
               "-frames:v", "1", "-vf", scale, "-q:v", "4", "-f", "image2", str(dst)]
        try:
            subprocess.run(cmd, check=True, capture_output=True, timeout=FFMPEG_TIMEOUT_SECONDS)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
            logger.warning("thumbnail: ffmpeg failed (%s)", type(exc).__name__)
            continue
        if dst.is_file() and dst.stat().st_size > 0:
            return True
    return False

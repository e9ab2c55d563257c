"""How untrusted media is opened, by the upload probe and by every engine alike.

FFmpeg otherwise picks a demuxer by content or by file extension among hundreds: a text file
becomes an ANSI "video" (tty), and playlist formats (HLS, concat) make it open other files or
URLs named inside the file, so a crafted upload could make an engine read the worker's files or
fetch from the network. Every PyAV open passes `SAFE_INPUT_OPTIONS`; every ffmpeg command line
names its inputs with `ffmpeg_input`. No imports: the Django side (media/probing/facts.py) shares it.
"""

from __future__ import annotations

import re
from os import PathLike

# Containers FFmpeg uses for a single still image.
STILL_IMAGE_FORMATS = ("png_pipe", "jpeg_pipe", "webp_pipe")
# The only demuxers FFmpeg may use on an input, and the only protocol.
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
# A piece's span, copied by this process from its input's packets (gpu_tasks.ranged) into NUT, the
# one container that keeps every timestamp exactly as it was. Only a file this process registered
# is opened as NUT (and as nothing else): no input from outside ever is. Its own start is its first
# packet's time, later than the source's: each registered file keeps the source's start minus its
# own (microseconds), and a seek or a time counted "from the start" adds it, so an engine reads the
# span file at the same times as the source.
SPAN_FORMAT = "nut"
_SPAN_FILES: dict[str, int] = {}


def register_span_file(path: str | PathLike[str], shift_us: int) -> None:
    _SPAN_FILES[str(path)] = shift_us


def span_file_format(path: str | PathLike[str]) -> str | None:
    """SPAN_FORMAT for a span file this process wrote, else None (FFmpeg picks under the whitelist)."""
    return SPAN_FORMAT if str(path) in _SPAN_FILES else None


def start_shift_us(path: str | PathLike[str]) -> int:
    """What to add to `path`'s own start time for its source's: 0 but for a span file."""
    return _SPAN_FILES.get(str(path), 0)


# A still image's container by its first bytes. FFmpeg would otherwise pick its `image2` demuxer
# for a file named `*.jpg` (by the name alone, before reading a byte), which the whitelist refuses,
# so a JPEG staged under its own name would not open at all.
_STILL_IMAGE_MAGIC = ((b"\xff\xd8\xff", "jpeg_pipe"), (b"\x89PNG\r\n\x1a\n", "png_pipe"))


def still_image_format(path: str | PathLike[str]) -> str | None:
    """The still-image container a named file holds (by its magic bytes), else None. Descriptor
    paths need none: "fd:" has no name for FFmpeg to guess from."""
    if descriptor_of(path) is not None:
        return None
    try:
        with open(path, "rb") as file:
            head = file.read(12)
    except OSError:
        return None  # FFmpeg answers for a file that cannot be read
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp_pipe"
    return next((name for magic, name in _STILL_IMAGE_MAGIC if head.startswith(magic)), None)


def forced_format(path: str | PathLike[str]) -> str | None:
    """The demuxer `path` is opened with, where its name must not choose one: a span file's, a
    named still image's; else None (FFmpeg probes the content under the whitelist)."""
    return span_file_format(path) or still_image_format(path)


def input_options(path: str | PathLike[str]) -> dict[str, str]:
    """The whitelists `path` is opened under."""
    if descriptor_of(path) is not None:
        return {**SAFE_INPUT_OPTIONS, "protocol_whitelist": "fd"}
    if span_file_format(path):
        return {**SAFE_INPUT_OPTIONS, "format_whitelist": SPAN_FORMAT}
    return dict(SAFE_INPUT_OPTIONS)


# An input the local runner holds open for its engine, which may not open the file by name (it runs
# as another uid): "/dev/fd/<n>", read through the descriptor by FFmpeg's `fd` protocol and sought,
# so that a piece of a long file reads its own span and not the whole file.
DESCRIPTOR_PATH = re.compile(r"^/dev/fd/([3-9]|[1-9][0-9]{1,8})\Z")  # never 0-2, ASCII digits only


def descriptor_of(path: str | PathLike[str]) -> int | None:
    """The descriptor a "/dev/fd/<n>" input names, or None for a file's path."""
    found = DESCRIPTOR_PATH.match(str(path))
    return int(found.group(1)) if found else None


def ffmpeg_input(path: str | PathLike[str], *options: str, max_s: float | None = None,
                 seek_s: float | None = None) -> list[str]:
    """The ffmpeg arguments that open `path` as one input under the whitelists, with its other
    input `options` (`-loop`...), given `seek_s` starting that many seconds from the source's start
    (`-ss`), and given `max_s`, reading no more than that many seconds.
    A descriptor path is read through the descriptor, by the `fd` protocol and no other (the
    caller passes the descriptor to ffmpeg: gpu_tasks.engines.ffmpeg.run_ffmpeg does)."""
    fd = descriptor_of(path)
    args = [arg for name, value in input_options(path).items() for arg in (f"-{name}", value)]
    if (forced := forced_format(path)) is not None:
        args += ["-f", forced]
    if span_file_format(path) is not None:
        seek_s = seek_s or 0.0  # from the source's start, which is not the span file's
    if seek_s is not None:
        args += ["-ss", f"{(round(seek_s * 1_000_000) + start_shift_us(path)) / 1_000_000:.6f}"]
    if max_s is not None:
        args += ["-t", f"{max_s:.3f}"]
    if fd is not None:
        return [*args, *options, "-fd", str(fd), "-i", "fd:"]
    return [*args, *options, "-i", str(path)]


def ffmpeg_concat_input(listing: str | PathLike[str]) -> list[str]:
    """The ffmpeg arguments that open `listing`, a concat list this process wrote naming files its
    own calls produced, as one input: the concat demuxer, and under it only the MP4 family."""
    return ["-f", "concat", "-safe", "0", "-format_whitelist", "concat,mov,mp4,m4a,3gp,3g2,mj2",
            "-protocol_whitelist", "file", "-i", str(listing)]

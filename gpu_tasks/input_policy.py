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


# An input the local runner holds open for its engine, which may not open the file by name (it runs
# as another uid): "/dev/fd/<n>", read through the descriptor by FFmpeg's `fd` protocol and sought,
# so that a piece of a long file reads its own span and not the whole file.
DESCRIPTOR_PATH = re.compile(r"^/dev/fd/([3-9]|[1-9][0-9]{1,8})\Z")  # never 0-2, ASCII digits only


def descriptor_of(path: str | PathLike[str]) -> int | None:
    """The descriptor a "/dev/fd/<n>" input names, or None for a file's path."""
    found = DESCRIPTOR_PATH.match(str(path))
    return int(found.group(1)) if found else None


def ffmpeg_input(path: str | PathLike[str], *options: str, max_s: float | None = None) -> list[str]:
    """The ffmpeg arguments that open `path` as one input under the whitelists, with its other
    input `options` (`-ss`, `-loop`...) and, given `max_s`, reading no more than that many seconds.
    A descriptor path is read through the descriptor, by the `fd` protocol and no other (the
    caller passes the descriptor to ffmpeg: gpu_tasks.engines.ffmpeg.run_ffmpeg does)."""
    fd = descriptor_of(path)
    whitelists = {**SAFE_INPUT_OPTIONS, **({"protocol_whitelist": "fd"} if fd is not None else {})}
    args = [arg for name, value in whitelists.items() for arg in (f"-{name}", value)]
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

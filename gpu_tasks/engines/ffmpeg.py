"""Running the ffmpeg binary with progress: `-progress pipe:1` parsed against the expected duration."""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from collections.abc import Sequence
from functools import cache

from gpu_tasks.contract import ProgressFn
from gpu_tasks.errors import PermanentGpuError

_MEDIA_ERRORS = (
    "invalid data found",
    "moov atom not found",
    "does not contain any stream",
    "could not find codec parameters",
    "error while decoding",
    "invalid argument",
    "no such file",
    "matches no streams",
)


@cache
def ffmpeg_exe() -> str:
    """The ffmpeg binary: $AUTEUR_FFMPEG, else the one the imageio-ffmpeg wheel ships."""
    explicit = os.environ.get("AUTEUR_FFMPEG")
    if explicit:
        return explicit
    import imageio_ffmpeg

    return str(imageio_ffmpeg.get_ffmpeg_exe())


def parse_progress_line(line: str, total_s: float) -> float | None:
    """Percent done for one `-progress` line, or None if the line carries no position."""
    key, _, value = line.strip().partition("=")
    if key == "progress" and value == "end":
        return 100.0
    if key not in ("out_time_us", "out_time_ms") or not value.lstrip("-").isdigit() or total_s <= 0:
        return None
    # Both keys are in microseconds (out_time_ms is a historical misnomer in ffmpeg).
    seconds = max(0, int(value)) / 1_000_000
    return min(99.9, 100.0 * seconds / total_s)


def run_ffmpeg(
    args: Sequence[str],
    *,
    total_s: float,
    progress: ProgressFn | None = None,
    timeout_s: float | None = None,
) -> str:
    """Run `ffmpeg <args>` (args must not name -progress), reporting percent done through `progress`.

    A failing run raises `invalid_media` when ffmpeg says the input is unreadable, else `internal`.
    A run that succeeds returns the end of what ffmpeg reported at level error (usually nothing):
    a caller that finds its output wrong has ffmpeg's own account of why.
    """
    cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-progress", "pipe:1", "-nostats", *args]
    # Inputs read through a descriptor (`-fd N -i fd:`): passed to ffmpeg, read from their start.
    descriptors = tuple(int(args[i + 1]) for i, arg in enumerate(args[:-1]) if arg == "-fd")
    for fd in descriptors:
        os.lseek(fd, 0, os.SEEK_SET)
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    # stderr goes to a file: a chatty ffmpeg can never fill a pipe and deadlock us.
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL, text=True,
                                pass_fds=descriptors)
        assert proc.stdout is not None
        last = -1.0
        try:
            for line in proc.stdout:
                pct = parse_progress_line(line, total_s)
                if pct is not None and progress is not None and pct >= last + 0.5:
                    last = pct
                    progress(pct)
                if deadline is not None and time.monotonic() > deadline:
                    raise PermanentGpuError("timeout", "ffmpeg ran past its time limit")
            remaining = None if deadline is None else max(0.1, deadline - time.monotonic())
            rc = proc.wait(timeout=remaining)
        except subprocess.TimeoutExpired:
            raise PermanentGpuError("timeout", "ffmpeg ran past its time limit") from None
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        if rc != 0:
            err.seek(0)
            tail = err.read()[-2000:].decode("utf-8", "replace").strip()
            lowered = tail.lower()
            code = "invalid_media" if any(marker in lowered for marker in _MEDIA_ERRORS) else "internal"
            raise PermanentGpuError(code, f"ffmpeg exited with {rc}: {tail[-400:]}")
        err.seek(0)
        reported = err.read()[-2000:].decode("utf-8", "replace").strip()
    if progress is not None and last < 100.0:
        progress(100.0)
    return reported

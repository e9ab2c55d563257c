"""Engines that the local backend's tests run in place of a type's own (`LocalBackend(engines=...)`),
to look at what a runner gets: its environment, its memory, how many run beside it."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any


def dump_env(payload: dict[str, Any], ctx: Any) -> dict[str, Any]:
    return {"env": dict(os.environ)}


def allocate(payload: dict[str, Any], ctx: Any) -> dict[str, Any]:
    """Allocate `mb` MiB and touch every page of it."""
    block = bytearray(int(payload["mb"]) * 2**20)
    block[:: 4096] = b"x" * len(block[:: 4096])
    return {"allocated_mb": len(block) // 2**20}


def hold(payload: dict[str, Any], ctx: Any) -> dict[str, Any]:
    """Mark itself running in `dir`, count how many are running, and wait for `dir/go`."""
    shared = Path(payload["dir"])
    mark = shared / f"running-{os.getpid()}"
    mark.touch()
    try:
        beside = len(list(shared.glob("running-*")))
        while not (shared / "go").exists():
            time.sleep(0.02)
        return {"running_at_start": beside}
    finally:
        mark.unlink()


def progress_steps(payload: dict[str, Any], ctx: Any) -> dict[str, Any]:
    """Report 25 % then 60 %, with a pause for the runner to notice each."""
    for pct in (25, 60):
        ctx.progress(pct)
        time.sleep(0.3)
    return {"steps": 2}


# ----------------------------------------------------------------------------- attacks
# What an engine that a crafted input took over could try, run in the sandbox the local backend
# gives it. Each returns what happened, so that the test can assert it was refused.


def _attempt(action: Any) -> str:
    try:
        action()
    except OSError as exc:
        return type(exc).__name__
    return "done"


def read_environs(payload: dict[str, Any], ctx: Any) -> dict[str, Any]:
    """Read the worker's /proc environ (its pid in the payload) and the runner's (our parent)."""
    return {
        "worker": _attempt(lambda: Path(f"/proc/{payload['pid']}/environ").read_bytes()),
        "runner": _attempt(lambda: Path(f"/proc/{os.getppid()}/environ").read_bytes()),
        "worker_mem": _attempt(lambda: Path(f"/proc/{payload['pid']}/mem").open("rb").close()),
    }


def read_secret(payload: dict[str, Any], ctx: Any) -> dict[str, Any]:
    """Read a file of the deployment's secrets folder (its path in the payload), and list the folder."""
    listing: list[str] | str
    try:
        listing = sorted(os.listdir(Path(payload["path"]).parent))
    except OSError as exc:
        listing = type(exc).__name__
    return {"file": _attempt(lambda: Path(payload["path"]).read_bytes()), "listing": listing}


def connect(payload: dict[str, Any], ctx: Any) -> dict[str, Any]:
    """Open a TCP connection to `port` on loopback (Redis, say)."""
    import socket

    def dial() -> None:
        socket.create_connection(("127.0.0.1", int(payload["port"])), timeout=5).close()

    return {"connect": _attempt(dial)}


def trespass(payload: dict[str, Any], ctx: Any) -> dict[str, Any]:
    """Write into another call's folder (`victim`, its call directory) and into our own call's."""
    victim = Path(payload["victim"])
    own = Path(payload["output_dir"]).parent.parent  # box/out -> the call directory
    attempts = {
        "victim_box_file": lambda: (victim / "box" / "pwned").write_text("x"),
        "victim_progress": lambda: (victim / "box" / "progress.json").write_text('{"progress": 99}'),
        "victim_status": lambda: (victim / "status.json").write_text("{}"),
        "victim_out": lambda: (victim / "out").mkdir(),
        "victim_call": lambda: (victim / "call.json").write_text("{}"),
        "own_status": lambda: (own / "status.json").write_text("{}"),
        "own_call": lambda: (own / "call.json").write_text("{}"),
    }
    return {name: _attempt(action) for name, action in attempts.items()}


def _wav(ctx: Any) -> Path:
    from gpu_tasks.backends.noop import _silence_wav

    path = ctx.output_path("audio", ".wav")
    path.write_bytes(_silence_wav())
    return Path(path)


def environ_ref(payload: dict[str, Any], ctx: Any) -> dict[str, Any]:
    """Name the process's own environment as the output (the worker would copy its secrets)."""
    return {"outputs": {"audio": {"path": "/proc/self/environ", "content_type": "audio/wav", "size_bytes": 100,
                                  "filename": "voice.wav"}}}


def symlink_out(payload: dict[str, Any], ctx: Any) -> dict[str, Any]:
    """A symlink inside the output folder that points out of it, to `target`."""
    out = Path(payload["output_dir"])
    out.mkdir(parents=True, exist_ok=True)
    link = out / "voice.wav"
    link.symlink_to(payload["target"])
    return {"outputs": {"audio": {"path": str(link), "content_type": "audio/wav", "size_bytes": 100,
                                  "filename": "voice.wav"}}}


# What a TTS engine reports beside its audio (jobs/output_schema.py): a probe whose job completes gives it.
TTS_FIELDS = {"duration_ms": 100, "sample_rate": 16000, "voice_cloned": False, "engine": "probe"}


def absolute_filename(payload: dict[str, Any], ctx: Any) -> dict[str, Any]:
    """A real output whose `filename` is an absolute path elsewhere (a write anywhere)."""
    ref = ctx.deliver("audio", _wav(ctx), "audio/wav")
    ref["filename"] = payload["target"]
    return {"outputs": {"audio": ref}, **TTS_FIELDS}


def html_audio(payload: dict[str, Any], ctx: Any) -> dict[str, Any]:
    """A real output labelled as a web page."""
    ref = ctx.deliver("audio", _wav(ctx), "text/html")
    return {"outputs": {"audio": ref}}


def big_output(payload: dict[str, Any], ctx: Any) -> dict[str, Any]:
    """An output of `bytes` bytes."""
    path = ctx.output_path("audio", ".wav")
    path.write_bytes(b"\0" * int(payload["bytes"]))
    return {"outputs": {"audio": ctx.deliver("audio", path, "audio/wav")}}


def read_input(payload: dict[str, Any], ctx: Any) -> dict[str, Any]:
    """Read the input as given, and the worker's original of it (its path in `original`)."""
    given = ctx.input_path(payload["media"], "media")
    return {"given": Path(given).read_text(), "given_path": str(given),
            "original": _attempt(lambda: Path(payload["original"]).read_text())}


def write_padded_mp4(path: Path, size: int) -> Path:
    """A playable 1 s MP4 of exactly `size` bytes: the noop backend's clip followed by a top-level
    `free` box (64-bit size) that fills the rest, left sparse on disk (ffmpeg skips it)."""
    import struct

    from gpu_tasks.backends.noop import fixed_result
    from gpu_tasks.types import JobType

    clip = fixed_result(JobType.VIDEO_GENERATION)["outputs"]["video"]["data"]
    with open(path, "wb") as fh:
        fh.write(clip + struct.pack(">I4sQ", 1, b"free", size - len(clip)))
        fh.truncate(size)
    return path


def video_fields() -> dict[str, Any]:
    """What a text-to-video engine reports beside its video (jobs/output_schema.py)."""
    from gpu_tasks.backends.noop import fixed_result
    from gpu_tasks.types import JobType

    return {k: v for k, v in fixed_result(JobType.VIDEO_GENERATION).items() if k != "outputs"}


def padded_video(payload: dict[str, Any], ctx: Any) -> dict[str, Any]:
    """A text-to-video whose video has the size its prompt names ("bytes:N"), delivered as the
    payload says (to its output target, when it has one)."""
    size = int(str(payload["prompt"]).split("bytes:")[1].split()[0])
    out = write_padded_mp4(ctx.output_path("video", ".mp4"), size)
    return {**video_fields(), "outputs": {"video": ctx.deliver("video", out, "video/mp4")}}


def escape(payload: dict[str, Any], ctx: Any) -> dict[str, Any]:
    """Start a process in a session of its own (out of the runner's group), its command line marked
    with `marker`, report some progress, and run on."""
    import subprocess
    import sys

    subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)", payload["marker"]],
                     start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ctx.progress(10)
    time.sleep(600)
    return {}


def open_sockets(payload: dict[str, Any], ctx: Any) -> dict[str, Any]:
    """How many sockets this engine process holds open (inherited from its runner or not)."""
    import stat

    count = 0
    for name in os.listdir("/proc/self/fd"):
        try:
            count += stat.S_ISSOCK(os.fstat(int(name)).st_mode)
        except OSError:
            continue
    return {"sockets": count}

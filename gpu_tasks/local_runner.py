"""The local backend's runner: `python -m gpu_tasks.local_runner <call_dir>`.

Started detached (its own session, so its pid is also its process group id) by
`LocalBackend.spawn`. It is a small supervisor that forks the engine into a child process and
enforces the type's time limit from outside the engine, so a limit is kept even while the
engine sits in C code (CTranslate2, ffmpeg):

    call_dir/call.json       written by spawn: job type, payload, time limit, slots, memory limit
    call_dir/pid.json        written by spawn: the runner's pid and start time
    call_dir/started.json    written by the runner once it holds one of the machine's runner
                             slots (gpu_tasks.runner_slots) and starts the engine: until then
                             the call waits in line, and its time limit has not started
    call_dir/progress.json   written by the engine child: {"progress": 0-100}
    call_dir/outcome.json    written by the engine child: its result or error
    call_dir/status.json     the final status, written once (first writer wins) by the runner,
                             or by a canceller; pollers read only this and progress.json

If the runner dies without a status (SIGKILL, OOM killer, host reboot), pollers find its pid
gone and report the call as a transient `worker_lost`; the engine child notices that it was
orphaned and kills its process group, so no work is left running behind a lost call.

The engine child runs under a memory limit (RLIMIT_DATA, `memory_limit_bytes` in call.json):
an engine that allocates past it gets a MemoryError (or its library's allocation failure) and
the call fails with the permanent `gpu_oom`, once, instead of the machine swapping or the
kernel's OOM killer picking a victim. RLIMIT_DATA rather than RLIMIT_AS: torch and the BLAS
libraries reserve far more address space than they ever touch, which only RLIMIT_AS counts.
The supervisor itself stays unlimited, so it can always write the status.

The runner announces the call's start, its progress (every PROGRESS_ANNOUNCE_STEP points) and its
end on the Redis list whose URL it reads from its stdin (gpu_tasks.announce), so that nothing
polls it; an empty line means no announcements. The URL stays in the supervisor, which reads it
before the engine child is forked and never passes it on. A runner killed before it announces
is found by the reaper's poll.

The runner's environment is built by the backend from an allowlist (`LocalBackend.runner_env`):
it holds no Django, JWT, database, broker or cloud secret, since an engine parses user media.
"""

from __future__ import annotations

import importlib
import os
import resource
import shutil
import signal
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

from gpu_tasks import _jsonfile
from gpu_tasks.announce import Announcement, Announcer, RedisAnnouncer
from gpu_tasks.contract import status_record
from gpu_tasks.errors import GpuError, PermanentGpuError, TransientGpuError, classify_exception
from gpu_tasks.runner_slots import RunnerSlots

POLL_INTERVAL_S = 0.05
PROGRESS_ANNOUNCE_STEP = 10.0
SLOTS_DIR = "slots"  # under the calls directory, shared by every runner started from it
# How libraries report that an allocation was refused (the limit's doing, not a bug).
_ALLOCATION_FAILURES = ("can't allocate memory", "cannot allocate memory", "bad_alloc", "out of memory")


class ProgressWriter:
    """Engine progress to progress.json, throttled to whole-percent steps."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.last = -1.0

    def __call__(self, pct: float) -> None:
        pct = max(0.0, min(100.0, float(pct)))
        if pct >= self.last + 1.0 or (pct == 100.0 and self.last < 100.0):
            self.last = pct
            _jsonfile.write_atomic(self.path, {"progress": round(pct, 1), "at": time.time()})


def _watch_parent(parent_pid: int) -> None:
    # Orphaned (the supervisor was killed): take the whole group down, ffmpeg included.
    while os.getppid() == parent_pid:
        time.sleep(0.25)
    os.killpg(os.getpgrp(), signal.SIGKILL)


def _work(call_dir: Path, call: dict[str, Any], deadline: float, parent_pid: int) -> None:
    """In the engine child: run the engine and write outcome.json."""
    from gpu_tasks.contract import EngineContext

    threading.Thread(target=_watch_parent, args=(parent_pid,), daemon=True).start()
    started = time.monotonic()
    workdir = call_dir / "work"
    limit = int(call.get("memory_limit_bytes") or 0)
    if limit:
        resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
    try:
        engine = _engine(call)
        ctx = EngineContext(
            workdir=workdir,
            payload=call["payload"],
            progress=ProgressWriter(call_dir / "progress.json"),
            deadline=deadline,
        )
        result = engine(call["payload"], ctx)
        outcome = status_record("succeeded", result=result, gpu_seconds=time.monotonic() - started)
        _jsonfile.write_atomic(call_dir / "outcome.json", outcome)
    except BaseException as exc:  # noqa: BLE001 - whatever happens, the poller gets an outcome
        error = _over_limit(exc, limit) or classify_exception(exc)
        if error.code == "internal":
            traceback.print_exc()
        _jsonfile.write_atomic(
            call_dir / "outcome.json", status_record("failed", error=error, gpu_seconds=time.monotonic() - started)
        )
    finally:
        # Downloaded inputs and scratch files are never needed again; outputs were moved to output_dir.
        shutil.rmtree(workdir, ignore_errors=True)


def _engine(call: dict[str, Any]) -> Any:
    from gpu_tasks.engines import load_engine

    if call.get("engine"):  # a backend built with an engine of its own for the type (tests)
        module_name, _, attr = str(call["engine"]).partition(":")
        return getattr(importlib.import_module(module_name), attr)
    return load_engine(call["job_type"], "local")


def _over_limit(exc: BaseException, limit: int) -> GpuError | None:
    """The permanent `gpu_oom` when an allocation failed under the memory limit."""
    if not limit:
        return None
    text = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, MemoryError) or any(marker in text.lower() for marker in _ALLOCATION_FAILURES):
        return PermanentGpuError("gpu_oom", f"the engine went over the local runner's memory limit "
                                            f"({limit // 2**20} MiB): {text[:300]}")
    return None


class _Announce:
    """Best effort: a failed announcement is logged, and the reaper's poll recovers the call."""

    def __init__(self, announcer: Announcer | None, call_id: str) -> None:
        self.announcer = announcer
        self.call_id = call_id
        self.last_progress = -PROGRESS_ANNOUNCE_STEP

    def __call__(self, outcome: str, progress: float | None = None) -> None:
        if self.announcer is None:
            return
        try:
            self.announcer(Announcement(self.call_id, outcome, progress))  # type: ignore[arg-type]
        except Exception as exc:  # noqa: BLE001 - never let an announcement fail the call
            print(f"could not announce {outcome}: {type(exc).__name__}", file=sys.stderr)

    def progress(self, call_dir: Path) -> None:
        record = _jsonfile.read(call_dir / "progress.json") or {}
        value = float(record.get("progress") or 0.0)
        if value >= self.last_progress + PROGRESS_ANNOUNCE_STEP:
            self.last_progress = value
            self("progress", value)


def _read_announce_url() -> str | None:
    try:
        line = sys.stdin.readline().strip() if sys.stdin is not None else ""
    except (OSError, ValueError):
        line = ""
    return line or None


def supervise(call_dir: Path, announce_url: str | None = None) -> int:
    announce = _Announce(RedisAnnouncer(announce_url) if announce_url else None, call_dir.name)
    call = _jsonfile.read(call_dir / "call.json")
    if call is None:
        print(f"no call.json in {call_dir}", file=sys.stderr)
        return 2
    limit_s = float(call["time_limit_s"])
    slots = int(call.get("slots") or 0)
    # Held until this process and its engine child have exited: the kernel releases it then.
    if slots:
        RunnerSlots(call_dir.parent / SLOTS_DIR, slots).acquire()
    _jsonfile.write_atomic(call_dir / "started.json", {"at": time.time()})
    announce("progress", 0.0)  # it holds a slot: its time limit starts now
    announce.last_progress = 0.0
    started = time.monotonic()
    deadline = started + limit_s
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the engine child
        code = 0
        try:
            _work(call_dir, call, deadline, os.getppid())
        except BaseException:  # noqa: BLE001 - the child must reach os._exit, never return into our loop
            traceback.print_exc()
            code = 1
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)

    while True:
        done, wait_status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            elapsed = time.monotonic() - started
            timeout = PermanentGpuError("timeout", f"{call['job_type']} ran past its {limit_s:.0f} s time limit")
            _jsonfile.write_once(call_dir / "status.json", status_record("failed", error=timeout, gpu_seconds=elapsed))
            announce("failed")
            # Our own session: this takes the engine child, its ffmpeg and this runner down together.
            os.killpg(os.getpgrp(), signal.SIGKILL)
        announce.progress(call_dir)
        time.sleep(POLL_INTERVAL_S)

    outcome = _jsonfile.read(call_dir / "outcome.json")
    if outcome is None:
        how = f"signal {os.WTERMSIG(wait_status)}" if os.WIFSIGNALED(wait_status) else f"exit {wait_status >> 8}"
        error = TransientGpuError("worker_lost", f"the engine process died without a result ({how})")
        outcome = status_record("failed", error=error, gpu_seconds=time.monotonic() - started)
    _jsonfile.write_once(call_dir / "status.json", outcome)
    announce("succeeded" if outcome.get("state") == "succeeded" else "failed")
    return 0


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m gpu_tasks.local_runner CALL_DIR", file=sys.stderr)
        return 2
    return supervise(Path(argv[1]), _read_announce_url())


if __name__ == "__main__":
    sys.exit(main(sys.argv))

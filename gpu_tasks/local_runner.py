"""The local backend's runner: `python -m gpu_tasks.local_runner <call_dir>`.

Started detached (its own session, so its pid is also its process group id) by
`LocalBackend.spawn`. It is a small supervisor that forks the engine into a child process and
enforces the type's time limit from outside the engine, so a limit is kept even while the
engine sits in C code (CTranslate2, ffmpeg). The engine parses user media, so the child runs
in the sandbox the backend chose (`gpu_tasks.sandbox`): in `uid` mode as a uid leased for this
call alone, with no network and no access to the worker's files or to any other call's. The
call's folder is split accordingly:

    call_dir/                mode 0711, the worker's: only the worker and this supervisor write here
      call.json              written by spawn: job type, payload, time limit, slots, memory
                             limit, sandbox, result limits
      pid.json               written by spawn: the runner's pid and start time
      started.json           written by the runner once it holds one of the machine's runner
                             slots (gpu_tasks.runner_slots) and starts the engine: until then
                             the call waits in line, and its time limit has not started
      status.json            the final status, written once (first writer wins) by the runner,
                             or by a canceller; pollers read only this and box/progress.json
      out/                   the outputs, as the runner copied them out of the box (or the
                             payload's `output_dir`)
      box/                   mode 0700, the engine child's uid's: the only folder it can write
        inputs/              its inputs, staged by the runner (below)
        work/, out/          its scratch files and the outputs it delivers
        progress.json        written by the engine child: {"progress": 0-100}
        outcome.json         written by the engine child: its result or error

The engine child never touches the network or the worker's files: the runner stages its inputs
into the box before it starts (a URL downloaded when the child has no network; in `uid` mode a
path copied, since the worker's files are not the child's to read, or, for a piece of a long
file, held open for it to read through the descriptor it inherits), and afterwards reads what
the child wrote as untrusted input: outcome.json bounded in size, its result checked
(`gpu_tasks.results`: only files inside box/out, opened without following links, plain JSON
within the limits), each output copied into `out/` (or streamed to its `output_targets` entry).
The box is then deleted, and in `uid` mode every process the uid still runs is killed, before
the uid's lease goes back.

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
polls it; an empty line means no announcements. The URL stays in the supervisor, which makes
itself non-dumpable: the engine child, whose memory is a copy of the supervisor's, has no
network to use it on, and closes the sockets it inherited (the supervisor's connection to Redis
among them) before it runs anything else.

The runner's environment is built by the backend from an allowlist (`LocalBackend.runner_env`):
it holds no Django, JWT, database, broker or cloud secret, since an engine parses user media.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import resource
import shutil
import signal
import stat
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from gpu_tasks import _jsonfile
from gpu_tasks import sandbox as isolation
from gpu_tasks.announce import Announcement, Announcer, RedisAnnouncer, sane_progress
from gpu_tasks.backends.base import CallStatus
from gpu_tasks.call_trace import CallPhases
from gpu_tasks.contract import HTTP_TIMEOUT, MAX_INPUT_BYTES, download, input_ref_kind, status_record, upload_output
from gpu_tasks.errors import GpuError, PermanentGpuError, TransientGpuError, classify_exception
from gpu_tasks.results import PATH, OutputPolicy, ResultLimits, check_result, copy_output, open_output
from gpu_tasks.runner_slots import RunnerSlots
from gpu_tasks.sandbox import Sandbox, UidLeases

POLL_INTERVAL_S = 0.05
PROGRESS_ANNOUNCE_STEP = 10.0
SLOTS_DIR = "slots"  # under the calls directory, shared by every runner started from it
BOX = "box"
PROGRESS_MAX_BYTES = 4096
# How libraries report that an allocation was refused (the limit's doing, not a bug).
_ALLOCATION_FAILURES = ("can't allocate memory", "cannot allocate memory", "bad_alloc", "out of memory")
# Folders an engine reads by path besides Python's and the project's: its weights and caches.
_READ_DIRS_ENV = ("AUTEUR_MODELS_DIR", "HF_HOME", "HF_HUB_CACHE", "TORCH_HOME")
_PROJECT_ROOT = Path(__file__).resolve().parent.parent


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


def read_progress(box: Path) -> float | None:
    """The progress the engine child last wrote, if it is a plausible figure (it is its word)."""
    try:
        record = _jsonfile.read(box / "progress.json", max_bytes=PROGRESS_MAX_BYTES)
    except _jsonfile.TooLarge:
        return None
    return sane_progress(record.get("progress")) if isinstance(record, dict) else None


def _watch_parent(parent_pid: int) -> None:
    # Orphaned (the supervisor was killed): take the whole group down, ffmpeg included.
    while os.getppid() == parent_pid:
        time.sleep(0.25)
    os.killpg(os.getpgrp(), signal.SIGKILL)


def _work(box: Path, call: dict[str, Any], payload: dict[str, Any], deadline: float, parent_pid: int,
          sandbox: Sandbox, uid: int | None) -> None:
    """In the engine child: isolate it, run the engine and write outcome.json into the box."""
    from gpu_tasks.contract import EngineContext

    started = time.monotonic()
    _close_sockets()
    try:
        # First, while this process has a single thread (a user namespace needs it).
        reachable: list[str | os.PathLike[str]] = [
            _PROJECT_ROOT, box, *(os.environ[name] for name in _READ_DIRS_ENV if os.environ.get(name))
        ]
        isolation.enter(sandbox, uid, reachable=reachable)
    except OSError as exc:
        unisolated = PermanentGpuError("internal", f"the engine's sandbox could not be set up: {exc}")
        _jsonfile.write_atomic(box / "outcome.json", status_record("failed", error=unisolated))
        return
    if sandbox.separate_uid:
        # The worker's home and temporary folders are not this uid's: its own, in the box.
        for name in ("home", "tmp"):
            (box / name).mkdir(mode=0o700, exist_ok=True)
        os.environ.update(HOME=str(box / "home"), TMPDIR=str(box / "tmp"), XDG_CACHE_HOME=str(box / "home"))
        tempfile.tempdir = None
    threading.Thread(target=_watch_parent, args=(parent_pid,), daemon=True).start()
    workdir = box / "work"
    limit = int(call.get("memory_limit_bytes") or 0)
    if limit:
        resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
    phases = CallPhases(payload)
    try:
        with phases.phase("engine.load"):
            engine = _engine(call)
        ctx = EngineContext(
            workdir=workdir,
            payload=payload,
            progress=ProgressWriter(box / "progress.json"),
            deadline=deadline,
        )
        with phases.phase("engine.run"):
            result = engine(payload, ctx)
        outcome = status_record("succeeded", result=result, gpu_seconds=time.monotonic() - started,
                                trace=phases.record())
        _jsonfile.write_atomic(box / "outcome.json", outcome)
    except BaseException as exc:  # noqa: BLE001 - whatever happens, the poller gets an outcome
        error = _over_limit(exc, limit) or classify_exception(exc)
        if error.code == "internal":
            traceback.print_exc()
        _jsonfile.write_atomic(box / "outcome.json", status_record(
            "failed", error=error, gpu_seconds=time.monotonic() - started, trace=phases.record()))
    finally:
        # Downloaded inputs and scratch files are never needed again; outputs were moved to out/.
        shutil.rmtree(workdir, ignore_errors=True)


def _close_sockets() -> None:
    """In the engine child: close every socket inherited from the runner (its Redis connection for
    announcements): the child has no network of its own, and none of its runner's either. Its
    files stay: its output, its runner's slot (held until both have exited), its inputs."""
    for name in os.listdir("/proc/self/fd"):
        try:
            fd = int(name)
            if stat.S_ISSOCK(os.fstat(fd).st_mode):
                os.close(fd)  # this process's copy only: the runner's connection is untouched
        except (OSError, ValueError):
            continue


def _engine(call: dict[str, Any]) -> Any:
    from gpu_tasks.engines import load_engine

    if call.get("engine"):  # a backend built with an engine of its own for the type (a join, the tests' probes)
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


# -- what the runner does for the engine child: its inputs before, its outputs after ----------------------


# The types whose engine reads a piece of a long file through a descriptor (gpu_tasks.input_policy).
READ_BY_DESCRIPTOR = frozenset({"compression", "transcription"})


def stage_inputs(payload: Mapping[str, Any], box: Path, sandbox: Sandbox, uid: int | None, *,
                 by_descriptor: bool = False) -> dict[str, Any]:
    """The payload the engine child gets: its input refs made local files it can read (a URL
    downloaded when it has no network; a path copied when it runs as another uid, or, with
    `by_descriptor`, a piece's source held open for it: "/dev/fd/<n>", which it inherits and seeks
    in, reading its span and not the whole file), no upload targets, and its own output folder."""
    inputs = box / "inputs"
    counter = iter(range(1, 10_000))

    def stage(value: Any, key: str | None) -> Any:
        if key in ("edl", "output_targets", "output_dir"):
            return value
        if isinstance(value, Mapping):
            kind = _input_kind(value)
            if kind == "path" and str(value["path"]).startswith(("/dev/fd/", "/proc/")):
                # Only the runner names a descriptor: never one of its own that a payload spells.
                raise PermanentGpuError("invalid_input", "an input path names a descriptor")
            if kind == "path" and sandbox.separate_uid and by_descriptor:
                return _held_open(value)
            if (kind == "url" and sandbox.network_isolated) or (kind == "path" and sandbox.separate_uid):
                return _staged(value, kind, inputs, next(counter), uid)
            return {k: stage(v, k) for k, v in value.items()}
        if isinstance(value, list):
            return [stage(v, None) for v in value]
        return value

    staged = {k: stage(v, k) for k, v in payload.items() if k not in ("output_targets", "output_dir")}
    staged["output_dir"] = str(box / "out")
    return staged


def _input_kind(value: Mapping[str, Any]) -> str | None:
    try:
        return input_ref_kind(value)
    except GpuError:
        return None


def _staged(ref: Mapping[str, Any], kind: str, inputs: Path, number: int, uid: int | None) -> dict[str, Any]:
    inputs.mkdir(mode=0o700, exist_ok=True)
    if uid is not None:
        os.chown(inputs, uid, uid)
    source = ref["url"] if kind == "url" else ref["path"]
    suffix = "".join(ch for ch in Path(urlsplit(source).path if kind == "url" else source).suffix[:10]
                     if ch.isalnum() or ch == ".")
    dest = inputs / f"input-{number}{suffix}"
    if kind == "url":
        download(source, dest, timeout=HTTP_TIMEOUT)
    else:
        _copy_input(Path(source), dest)
    if uid is not None:
        os.chown(dest, uid, uid)
    os.chmod(dest, 0o400)
    return {**{k: v for k, v in ref.items() if k not in ("url", "path")}, "path": str(dest)}


def _held_open(ref: Mapping[str, Any]) -> dict[str, Any]:
    """The input file open read-only for the engine child, which inherits the descriptor: it reads
    what it seeks to, as another uid, without a copy (a regular file within the size limit)."""
    try:
        fd = os.open(ref["path"], os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        raise PermanentGpuError("invalid_input", "an input file cannot be read") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_INPUT_BYTES:
        os.close(fd)
        raise PermanentGpuError("invalid_input", "an input is not a regular file within the size limit")
    return {**{k: v for k, v in ref.items() if k != "path"}, "path": f"/dev/fd/{fd}"}


def _copy_input(source: Path, dest: Path) -> None:
    try:
        fd = os.open(source, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        raise PermanentGpuError("invalid_input", "an input file cannot be read") from None
    with os.fdopen(fd, "rb") as src:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise PermanentGpuError("invalid_input", "an input is not a regular file")
        if info.st_size > MAX_INPUT_BYTES:
            raise PermanentGpuError("invalid_input", "input larger than the size limit")
        with open(dest, "xb") as out:
            remaining = info.st_size
            while remaining > 0:
                try:
                    copied = os.copy_file_range(src.fileno(), out.fileno(), remaining)
                except OSError:  # across filesystems on older kernels, or not supported: by hand
                    shutil.copyfileobj(src, out, 1 << 20)
                    break
                if copied == 0:
                    break
                remaining -= copied


def collect_outputs(call: Mapping[str, Any], result: Any, box: Path, out_dir: Path, limits: ResultLimits) -> Any:
    """The engine child's result as the runner reports it: checked as untrusted input (its
    files only from box/out), each output copied into `out_dir`, or streamed from the box to its
    target where the payload gives one (nothing of it is then written outside the box)."""
    checked = check_result(call["job_type"], result, policy=OutputPolicy(frozenset({PATH}), root=box / "out"),
                           limits=limits)
    targets = call["payload"].get("output_targets") or {}
    out_dir.mkdir(parents=True, exist_ok=True)
    outputs: dict[str, dict[str, Any]] = {}
    for name, ref in checked.get("outputs", {}).items():
        fd = open_output(ref[PATH], box / "out", max_bytes=limits.max_file_bytes, name=f"output {name}")
        kept = {k: v for k, v in ref.items() if k != PATH}
        if name in targets:
            with os.fdopen(fd, "rb") as fh:
                size = os.fstat(fd).st_size
                kept.update(upload_output(fh, size, targets[name], ref["content_type"], timeout=HTTP_TIMEOUT))
            outputs[name] = kept
            continue
        dest = out_dir / ref["filename"]
        if dest.exists() or dest.is_symlink():
            dest = out_dir / f"{name}-{ref['filename']}"
        size = copy_output(fd, dest, max_bytes=limits.max_file_bytes, name=f"output {name}")
        outputs[name] = {**kept, PATH: str(dest), "size_bytes": size}
    return {**checked, "outputs": outputs} if "outputs" in checked else checked


def final_status(call: Mapping[str, Any], outcome: Any, box: Path, limits: ResultLimits) -> dict[str, Any]:
    """status.json's record from the child's outcome, which is its word: normalized, and a
    success only once its result has been checked and its outputs collected."""
    status = CallStatus.from_record(outcome if isinstance(outcome, dict) else {})
    trace = status.trace.record() if status.trace else None
    if status.state != "succeeded":
        error = status.error or PermanentGpuError("internal", "the engine failed without an error")
        return status_record("failed", error=error, gpu_seconds=status.gpu_seconds, trace=trace)
    out_dir = Path(call["payload"].get("output_dir") or box.parent / "out")
    try:
        result = collect_outputs(call, status.result, box, out_dir, limits)
    except GpuError as exc:
        print(f"the engine's result was refused: {exc.message}", file=sys.stderr)
        return status_record("failed", error=exc, gpu_seconds=status.gpu_seconds, trace=trace)
    return status_record("succeeded", result=result, gpu_seconds=status.gpu_seconds, trace=trace)


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

    def progress(self, box: Path) -> None:
        value = read_progress(box) or 0.0
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
    # It holds the announce URL, and its engine child, maybe of its own uid, must not read it here.
    isolation.make_non_dumpable()
    announce = _Announce(RedisAnnouncer(announce_url) if announce_url else None, call_dir.name)
    call = _jsonfile.read(call_dir / "call.json")
    if call is None:
        print(f"no call.json in {call_dir}", file=sys.stderr)
        return 2
    sandbox = Sandbox.from_dict(call.get("sandbox"))
    limits = ResultLimits.from_dict(call.get("limits"))
    limit_s = float(call["time_limit_s"])
    slots = int(call.get("slots") or 0)
    # Held until this process and its engine child have exited: the kernel releases it then.
    if slots:
        RunnerSlots(call_dir.parent / SLOTS_DIR, slots).acquire()
    uid = UidLeases(sandbox).acquire()[0] if sandbox.separate_uid else None
    # A cancel (LocalBackend.cancel) asks with SIGTERM: everything of the call goes at once, what
    # left the group too, while this process still holds the uid (no other call has it yet).
    signal.signal(signal.SIGTERM, lambda signum, frame: _stop_everything(uid))
    box = isolation.private_dir(call_dir / BOX, sandbox, uid)
    _jsonfile.write_atomic(call_dir / "started.json", {"at": time.time()})
    announce("progress", 0.0)  # it holds a slot: its time limit starts now
    announce.last_progress = 0.0
    started = time.monotonic()
    deadline = started + limit_s
    try:
        payload = stage_inputs(call["payload"], box, sandbox, uid,
                               by_descriptor=call["job_type"] in READ_BY_DESCRIPTOR and "span" in call["payload"])
    except GpuError as exc:
        _end(call_dir, box, status_record("failed", error=exc, gpu_seconds=time.monotonic() - started), announce)
        return 0
    sys.stdout.flush()
    sys.stderr.flush()
    # The child watches for this pid, taken before the fork: its parent read after the fork would
    # already be another process if the runner were killed before the child first ran.
    runner = os.getpid()
    pid = os.fork()
    if pid == 0:  # the engine child
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        code = 0
        try:
            # Without the call's own payload: its output targets are the runner's to use, not the engine's.
            _work(box, {k: v for k, v in call.items() if k != "payload"}, payload, deadline, runner, sandbox,
                  uid)
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
            if uid is not None:
                isolation.kill_uid(uid)  # what left the group (setsid) too
            # Our own session: this takes the engine child, its ffmpeg and this runner down together.
            os.killpg(os.getpgrp(), signal.SIGKILL)
        announce.progress(box)
        time.sleep(POLL_INTERVAL_S)

    if uid is not None:
        isolation.kill_uid(uid)  # nothing of the engine outlives it, so nothing can touch its outputs
    try:
        outcome = _jsonfile.read(box / "outcome.json", max_bytes=limits.max_json_bytes + 65536)
    except _jsonfile.TooLarge:
        outcome = status_record("failed", error=PermanentGpuError("invalid_result", "the engine's outcome is larger "
                                                                  "than the result limit"))
    if outcome is None:
        how = f"signal {os.WTERMSIG(wait_status)}" if os.WIFSIGNALED(wait_status) else f"exit {wait_status >> 8}"
        error = TransientGpuError("worker_lost", f"the engine process died without a result ({how})")
        outcome = status_record("failed", error=error, gpu_seconds=time.monotonic() - started)
    _end(call_dir, box, final_status(call, outcome, box, limits), announce)
    return 0


def _stop_everything(uid: int | None) -> None:
    """Kill the call: every process of its uid, then this process's group (itself included)."""
    if uid is not None:
        isolation.kill_uid(uid)
    os.killpg(os.getpgrp(), signal.SIGKILL)


def _end(call_dir: Path, box: Path, record: dict[str, Any], announce: _Announce) -> None:
    # The box first: whoever reads the status finds the call's inputs and scratch files gone.
    with contextlib.suppress(OSError):
        shutil.rmtree(box)
    _jsonfile.write_once(call_dir / "status.json", record)
    announce("succeeded" if record.get("state") == "succeeded" else "failed")


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m gpu_tasks.local_runner CALL_DIR", file=sys.stderr)
        return 2
    return supervise(Path(argv[1]), _read_announce_url())


if __name__ == "__main__":
    sys.exit(main(sys.argv))

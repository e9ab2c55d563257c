"""The local backend: the CPU engines, run by a detached runner process per call.

`spawn` writes the call to `<base_dir>/<call_id>/` and starts `python -m gpu_tasks.local_runner`
in its own session, then returns (a few milliseconds): the Celery worker never runs inference
in its own process and never waits for it. Everything about a call lives in its directory (see
`gpu_tasks.local_runner`), so any worker process on the same machine (or sharing `base_dir`
and its process namespace) can poll or cancel it, including after the spawning process was
SIGKILLed. `base_dir` comes from the caller (settings: `AUTEUR_GPU_LOCAL_DIR`).

The engines run in the sandbox of `sandbox` (`gpu_tasks.sandbox`; by default the best this
machine allows, logged once per process): in `uid` mode, as a uid of the call's own with no
network, able to write only its call's `box/`. What comes back from there is checked as input,
by the runner and again by `output_policy`: a result's files are kept only from inside
`<call_dir>/out`, which the engine cannot write.

Outputs are copied by the runner to `<call_dir>/out` (or the payload's `output_dir`, which the
store step of the jobs app never uses: it keeps files only from the call's own folder); they
stay until `release(call_id)` (or `cleanup()`) deletes the call directory.

At most `slots` runners run engines at once on the machine (gpu_tasks.runner_slots); a call
beyond them waits in line, reported as running with `waiting=True` (nothing spent, its time
limit not started). Each engine runs under `memory_limit_mb`, in the minimal environment of
`runner_env`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from gpu_tasks import _jsonfile
from gpu_tasks import sandbox as isolation
from gpu_tasks.backends.base import CallStatus, GpuBackend
from gpu_tasks.contract import status_record
from gpu_tasks.engines import engine_languages, weights
from gpu_tasks.errors import GpuError, PermanentGpuError, TransientGpuError
from gpu_tasks.local_runner import BOX, read_progress
from gpu_tasks.results import PATH, UPLOADED, OutputPolicy, ResultLimits, refused
from gpu_tasks.sandbox import Sandbox
from gpu_tasks.types import get_spec

logger = logging.getLogger(__name__)

_CALL_ID = re.compile(r"^local-[0-9a-f]{32}\Z")
_PROJECT_ROOT = Path(__file__).resolve().parents[2]
# The runner enforces the limit itself; this backstop only catches a runner that cannot.
_BACKSTOP_GRACE_S = 60.0
# How long a cancel waits for the runner to stop its call itself before it kills the runner's group.
STOP_WAIT_S = 1.0
# How often `run` looks at the call it waits for.
RUN_POLL_INTERVAL_S = 0.05
# What a runner inherits of the worker's environment: what Python, the engines, their libraries
# and ffmpeg need, and nothing else. Above all no secret (Django's, JWT, database, broker,
# cloud, a hub token): an engine parses user media, and whatever it can read a crafted file
# could try to exfiltrate.
RUNNER_ENV_NAMES = frozenset({
    "PATH", "HOME", "TMPDIR", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "LD_LIBRARY_PATH",
    "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS",
    "AUTEUR_WHISPER_THREADS", "AUTEUR_FFMPEG", "HF_HOME", "HF_HUB_CACHE", "TORCH_HOME",
})


class LocalBackend(GpuBackend):
    name = "local"

    def __init__(
        self,
        base_dir: str | os.PathLike[str],
        *,
        python: str | None = None,
        time_limits: Mapping[str, float] | None = None,
        models_dir: str | os.PathLike[str] | None = None,
        slots: int = 0,
        memory_limit_mb: int = 0,
        engines: Mapping[str, str] | None = None,
        announce_url: str | None = None,
        result_limits: ResultLimits | None = None,
        sandbox: Sandbox | None = None,
        upload_outputs: bool = False,
    ) -> None:
        self.base_dir = Path(base_dir)
        self.python = python or sys.executable
        self.time_limits = dict(time_limits or {})
        self.slots = slots  # runners at once on the machine; 0: no cap
        self.memory_limit_mb = memory_limit_mb  # per engine process; 0: none
        # "module:function" to run for a type instead of its engine: the join of a job's pieces
        # (jobs.gpu_client.join_pieces), and the tests' probes.
        self.engines = dict(engines or {})
        # Where the engines' weights are (the runner gets it as AUTEUR_MODELS_DIR).
        self.models_dir = Path(models_dir) if models_dir is not None else weights.models_dir()
        # Where runners announce their calls' progress and end (gpu_tasks.announce). It reaches
        # the runner on its stdin, never in its environment or files, which the engine can read.
        self.announce_url = announce_url
        self.result_limits = result_limits or ResultLimits()
        # Whether the runner PUTs a type's large outputs to targets the caller gives (object
        # storage that is not this machine's disk), instead of leaving them in the call's folder.
        self.upload_outputs = upload_outputs
        self.sandbox = sandbox if sandbox is not None else isolation.detect()
        isolation.log_once(self.sandbox, logger)

    @property
    def announces(self) -> bool:
        return self.announce_url is not None

    # -- the interface -------------------------------------------------------------------------
    def unavailable_reason(self, job_type: str) -> str | None:
        try:
            spec = get_spec(job_type)
        except GpuError as exc:
            return exc.message
        if spec.job_type.value in self.engines:
            return None  # an engine of the backend's own for the type (a join, the tests' probes)
        if not spec.local:
            return f"{spec.job_type.value} has no engine on the local backend"
        if spec.weights is None:
            return None
        return weights.missing_weights(spec.weights.folder, spec.weights.marker, spec.job_type.value, self.models_dir)

    def languages(self, job_type: str) -> frozenset[str]:
        return engine_languages(job_type, "local")

    def output_targets(self, job_type: str) -> Mapping[str, str]:
        return get_spec(job_type).uploaded_outputs if self.upload_outputs else {}

    def spawn(self, job_type: str, payload: Mapping[str, Any], *, gpu: str | None = None) -> str:
        spec = get_spec(job_type)
        reason = self.unavailable_reason(job_type)
        if reason is not None:
            raise PermanentGpuError("feature_unavailable", reason)
        payload = dict(payload)
        call_id = f"local-{uuid.uuid4().hex}"
        call_dir = self.base_dir / call_id
        payload.setdefault("output_dir", str(call_dir / "out"))
        call = {
            "job_type": spec.job_type.value,
            "payload": payload,
            "time_limit_s": float(self.time_limits.get(spec.job_type.value, spec.time_limit_s)),
            "created_at": time.time(),
            "slots": self.slots,
            "memory_limit_bytes": self.memory_limit_mb * 2**20,
            "engine": self.engines.get(spec.job_type.value),
            "sandbox": self.sandbox.to_dict(),
            "limits": self.result_limits.to_dict(),
        }
        try:
            json.dumps(call)
        except (TypeError, ValueError) as exc:
            raise PermanentGpuError("invalid_input", f"payload is not JSON: {exc}") from None
        try:
            if not self.base_dir.is_dir():
                # Other uids (the engines') may pass through, not list which calls there are.
                self.base_dir.mkdir(parents=True, mode=0o711, exist_ok=True)
            # Passable by the call's engine on its way to its box, writable by the worker alone.
            call_dir.mkdir(mode=0o711)
            os.chmod(call_dir, 0o711)  # noqa: S103 - a stricter umask would lock the engine out
            _jsonfile.write_atomic(call_dir / "call.json", call)
            with open(call_dir / "runner.log", "ab") as log:
                proc = subprocess.Popen(
                    [self.python, "-m", "gpu_tasks.local_runner", str(call_dir)],
                    cwd=_PROJECT_ROOT,
                    env=self.runner_env(),
                    stdin=subprocess.PIPE,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # own session and group: survives us, killable as a group
                    close_fds=True,
                )
                assert proc.stdin is not None
                with proc.stdin:
                    proc.stdin.write(((self.announce_url or "") + "\n").encode())
        except OSError as exc:
            raise TransientGpuError("capacity", f"could not start the local runner: {exc}") from exc
        _jsonfile.write_atomic(call_dir / "pid.json", {"pid": proc.pid, "create_time": _create_time(proc.pid)})
        # Reap the runner when it exits so it never lingers as a zombie of this worker process.
        threading.Thread(target=proc.wait, name=f"reap-{call_id}", daemon=True).start()
        return call_id

    def run(self, job_type: str, payload: Mapping[str, Any]) -> tuple[str, CallStatus]:
        """Spawn a call and wait here for its end: work that a worker waits for anyway (the join of
        a job's pieces), run in the engines' sandbox. The runner keeps the time limit; a wait cut
        short (the step's own time limit) cancels the call. The caller releases it."""
        call_id = self.spawn(job_type, payload)
        try:
            while not (status := self.poll(call_id)).done:
                time.sleep(RUN_POLL_INTERVAL_S)
        except BaseException:
            self.cancel(call_id)
            raise
        return call_id, status

    def poll(self, call_id: str) -> CallStatus:
        call_dir = self._call_dir(call_id)
        if call_dir is None or not (call_dir / "call.json").is_file():
            return CallStatus.failed(TransientGpuError("worker_lost", "no such local call (its files are gone)"))
        status = self._status(call_dir)
        if status is not None:
            return status
        if self._runner_alive(call_dir):
            started = _jsonfile.read(call_dir / "started.json")
            if not isinstance(started, dict):
                return CallStatus.running(None, waiting=True)  # in line for a slot, or starting
            call = _jsonfile.read(call_dir / "call.json") or {}
            elapsed = time.time() - float(started.get("at") or time.time())
            if elapsed > float(call.get("time_limit_s") or 0) + _BACKSTOP_GRACE_S:
                error = PermanentGpuError("timeout", "the call ran past its time limit")
                self._finish(call_dir, error, gpu_seconds=elapsed)
                return self.poll(call_id)
            return CallStatus.running(read_progress(call_dir / BOX))
        # The runner may have written its status and exited between our two reads.
        status = self._status(call_dir)
        if status is not None:
            return status
        return CallStatus.failed(TransientGpuError("worker_lost", "the local runner died without reporting a result"))

    def _status(self, call_dir: Path) -> CallStatus | None:
        try:
            record = _jsonfile.read(call_dir / "status.json", max_bytes=self.result_limits.max_json_bytes + 65536)
        except _jsonfile.TooLarge:
            return CallStatus.failed(refused("its status is larger than the result limit"))
        if record is None:
            return None
        return CallStatus.from_record(record if isinstance(record, dict) else {})

    def output_policy(self, call_id: str) -> OutputPolicy:
        """Files only from `<call_dir>/out`, where the runner copies the outputs it checked and
        the engine cannot write; a folder derived from the call id, never read from a file."""
        call_dir = self._call_dir(call_id)
        if call_dir is None:
            return OutputPolicy(frozenset({UPLOADED}))
        return OutputPolicy(frozenset({PATH, UPLOADED}), root=call_dir / "out")

    def cancel(self, call_id: str) -> None:
        call_dir = self._call_dir(call_id)
        if call_dir is None or not call_dir.is_dir():
            return
        self._finish(call_dir, PermanentGpuError("canceled", "canceled by the caller"))

    def release(self, call_id: str) -> None:
        call_dir = self._call_dir(call_id)
        if call_dir is None or not call_dir.is_dir():
            return
        if self._runner_alive(call_dir):
            self.cancel(call_id)
        shutil.rmtree(call_dir, ignore_errors=True)

    # -- housekeeping ----------------------------------------------------------------------------
    def cleanup(self, max_age_s: float) -> int:
        """Delete finished calls older than `max_age_s` (a periodic task calls this); returns how many."""
        removed = 0
        cutoff = time.time() - max_age_s
        if not self.base_dir.is_dir():
            return 0
        for call_dir in self.base_dir.iterdir():
            if not _CALL_ID.match(call_dir.name):
                continue
            try:
                if call_dir.stat().st_mtime > cutoff:
                    continue
                if not (call_dir / "status.json").exists() and self._runner_alive(call_dir):
                    continue  # still running (a call past its time limit is the reaper's business)
            except FileNotFoundError:
                continue
            shutil.rmtree(call_dir, ignore_errors=True)
            removed += 1
        return removed

    # -- internals -------------------------------------------------------------------------------
    def _call_dir(self, call_id: str) -> Path | None:
        # The id becomes a path: only our own format, never '../'.
        return self.base_dir / call_id if _CALL_ID.match(call_id or "") else None

    def runner_env(self) -> dict[str, str]:
        """The runner's whole environment: RUNNER_ENV_NAMES from ours, and what the engines need."""
        env = {name: value for name, value in os.environ.items() if name in RUNNER_ENV_NAMES}
        env.setdefault("PATH", os.defpath)
        env["PYTHONPATH"] = str(_PROJECT_ROOT)
        env["PYTHONUNBUFFERED"] = "1"
        env["HF_HUB_OFFLINE"] = env["TRANSFORMERS_OFFLINE"] = env["HF_DATASETS_OFFLINE"] = "1"
        env[weights.MODELS_DIR_ENV] = str(self.models_dir)
        return env

    def _runner_alive(self, call_dir: Path) -> bool:
        info = _jsonfile.read(call_dir / "pid.json")
        if not info:
            # spawn writes pid.json right after starting the runner; a call this young is starting.
            call = _jsonfile.read(call_dir / "call.json") or {}
            return time.time() - float(call.get("created_at") or 0) < 5.0
        return _pid_alive(int(info["pid"]), info.get("create_time"))

    def _finish(self, call_dir: Path, error: GpuError, gpu_seconds: float = 0.0) -> None:
        """Record the call's end as `error`, then stop it: SIGTERM first, on which the runner kills
        every process of the call's uid (what left its group too) and its group; then, if the
        runner still runs after STOP_WAIT_S, SIGKILL to its group (the runner leads its own). The
        signals go to this runner only: by a pidfd opened once its pid was found to be it, and the
        group only while that same process still leads it (a gone runner's pid may be reused)."""
        _jsonfile.write_once(call_dir / "status.json", status_record("failed", error=error, gpu_seconds=gpu_seconds))
        info = _jsonfile.read(call_dir / "pid.json")
        if not info:
            return
        pid, created = int(info["pid"]), info.get("create_time")
        try:
            pidfd = os.pidfd_open(pid)
        except OSError:
            return  # gone
        try:
            if not _pid_alive(pid, created):
                return
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(pidfd, signal.SIGTERM)
            deadline = time.monotonic() + STOP_WAIT_S
            while time.monotonic() < deadline and _pid_alive(pid, created):
                time.sleep(0.005)
            if _pid_alive(pid, created):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)
        finally:
            os.close(pidfd)


def _create_time(pid: int) -> float | None:
    import psutil

    try:
        return float(psutil.Process(pid).create_time())
    except psutil.Error:
        return None


def _pid_alive(pid: int, create_time: float | None) -> bool:
    """The runner is alive: the pid exists, is not a zombie, and is the same process (not a reuse)."""
    import psutil

    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        return create_time is None or abs(proc.create_time() - float(create_time)) < 1.0
    except psutil.Error:
        return False

"""The upload probe in a limited child process: memory and CPU limits, a wall-clock timeout.

A media file is untrusted input to FFmpeg's parsers: a crafted one can ask for gigabytes, spin
the CPU, or crash the process that reads it. So the process that parses it is never the worker:
each worker process keeps one probe server (media/probe_server.py), a separate Python started
with a minimal environment (no secrets) that imports PyAV once and forks a child per probe. The
child opens the file, enters the sandbox (gpu_tasks.sandbox: a uid of its own and no network
where the machine allows it, which the server logs once), and lowers its own RLIMIT_AS and
RLIMIT_CPU before it parses the file; the server kills it past the wall-clock timeout. The
process that starts the server makes itself non-dumpable, so that a child of its own uid (no
uid sandbox) cannot read its environment or memory either. Whatever happens to the child, the
caller gets a ProbeResult: a child that runs out of memory, CPU or time, or dies, rejects the
file with a plain reason, and the worker itself is never at risk. A probe forked from the warm
server costs about 15 ms of CPU where a fresh interpreter importing PyAV for each file cost
about 100 ms; the sandbox adds about 1 ms of it (bench/probe_sandbox.py).

The server is started on the first probe of a process, and belongs to that process (its PID is
recorded): a process forked from it (a Celery pool process) starts its own, and the server exits
when its stdin closes, that is when the process that started it exits, however it exits. A
server found dead before a request is replaced and the request sent again; one that dies, hangs
or answers garbage after it is killed and replaced, and that file is rejected as a failed child
would have rejected it. One probe at a time per process (a lock): Celery's prefork pool runs one
task per process anyway. No Django here.
"""

from __future__ import annotations

import json
import logging
import os
import select
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gpu_tasks.sandbox as isolation
from media.probing import DEFAULT_MAX_PIXELS, OVER_LIMITS, ProbeResult

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
# Time allowed past the probe's own timeout for the server to answer: it forks, waits and writes
# one line, so only a server that is stuck or gone takes longer.
ANSWER_MARGIN_SECONDS = 10.0
# Starting an interpreter and importing PyAV: a quarter of a second idle, seconds under load.
STARTUP_TIMEOUT_SECONDS = 60.0


@dataclass(frozen=True)
class ProbeLimits:
    memory_bytes: int = 2 * 1024**3  # address space: PyAV and FFmpeg take about 150 MB of it
    cpu_seconds: int = 120
    timeout_seconds: float = 300.0
    max_pixels: int = DEFAULT_MAX_PIXELS
    # How the children are isolated (gpu_tasks.sandbox), fixed when the server starts.
    sandbox: str = "auto"
    sandbox_uid_base: int = isolation.DEFAULT_UID_BASE
    sandbox_uid_count: int = isolation.DEFAULT_UID_COUNT


class ProbeServerUnavailable(RuntimeError):
    """The probe server could not be started: a fault of this machine, not of the file."""


class ServerLost(Exception):
    """The server was gone before it read the request."""


class ProbeServer:
    """One running `python -m media.probe_server` and the pipes to it.

    `probe`: "module:function" the children run instead of probe_file (tests run attacks so)."""

    def __init__(self, limits: ProbeLimits | None = None, *, probe: str = "") -> None:
        limits = limits or ProbeLimits()
        env = {"PATH": os.environ.get("PATH", ""), "LANG": "C.UTF-8"}
        self.owner = os.getpid()
        # The process that starts parsers of untrusted media keeps its memory and environment to
        # itself: a child that shares its uid (no uid sandbox here) could read them otherwise.
        isolation.make_non_dumpable()
        args = ["--sandbox", limits.sandbox, "--uid-base", str(limits.sandbox_uid_base),
                "--uid-count", str(limits.sandbox_uid_count), *(["--probe", probe] if probe else [])]
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "media.probe_server", *args],
            cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0,
        )  # fmt: skip
        self._buffer = b""
        ready = self.read_answer(time.monotonic() + STARTUP_TIMEOUT_SECONDS)
        if not ready or ready.get("ready") is not True:
            self.stop()
            raise ProbeServerUnavailable(f"the probe server did not start (exit status {self.proc.returncode})")
        self.sandbox = str(ready.get("sandbox") or "")
        _log_sandbox_once(self.sandbox, full=ready.get("mode") == "uid" and ready.get("network_isolated") is True)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def send(self, request: bytes) -> None:
        assert self.proc.stdin is not None
        if self.proc.poll() is not None:
            raise ServerLost
        try:
            while request:
                request = request[self.proc.stdin.write(request) or 0 :]
        except (BrokenPipeError, ConnectionResetError) as exc:
            raise ServerLost from exc

    def read_answer(self, deadline: float) -> dict[str, Any] | None:
        """The server's next line as a JSON object; None if it closed, ran past the deadline or
        wrote something else."""
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
                return None
            chunk = os.read(fd, 65536)
            if not chunk:
                return None
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        try:
            answer = json.loads(line)
        except ValueError:
            return None
        return answer if isinstance(answer, dict) else None

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()
        self.close_pipes()

    def close_pipes(self) -> None:
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                pipe.close()


_lock = threading.Lock()
_server: ProbeServer | None = None
_sandbox_logged: set[str] = set()


def _log_sandbox_once(description: str, *, full: bool) -> None:
    """What the probe's children can reach, said once per process (a warning when degraded)."""
    if description and description not in _sandbox_logged:
        _sandbox_logged.add(description)
        logger.log(logging.INFO if full else logging.WARNING, "probe %s", description)


def _server_for_this_process(limits: ProbeLimits | None = None) -> ProbeServer:
    global _server
    if _server is not None and _server.owner != os.getpid():
        _forget_inherited_server()
    if _server is None:
        _server = ProbeServer(limits)
    return _server


def stop_server() -> None:
    """Kill this process's probe server, if it has one; the next probe starts another."""
    global _server
    if _server is not None and _server.owner == os.getpid():
        _server.stop()
    _server = None


def _forget_inherited_server() -> None:
    """In a forked child: the parent's server is not ours to use or to kill, and our copy of its
    stdin must close so that it still sees EOF when the parent exits."""
    global _server, _lock
    _lock = threading.Lock()  # a copy taken while another thread held it would never be released
    if _server is not None:
        _server.close_pipes()
        _inherited.append(_server)  # kept: a Popen collected in a non-parent would try to reap it
        _server = None


_inherited: list[ProbeServer] = []
os.register_at_fork(after_in_child=_forget_inherited_server)


def current_server_pid() -> int | None:
    """The pid of this process's probe server, if one is running."""
    return _server.pid if _server is not None and _server.owner == os.getpid() else None


def _ask(request: bytes, limits: ProbeLimits) -> dict[str, Any] | None:
    """Send one request to this process's server and read its answer; None (and the server
    replaced) if it died, hung or answered garbage after the request was written."""
    server = _server_for_this_process(limits)
    try:
        server.send(request)
    except ServerLost:
        # Gone before it saw this file (killed earlier, say): not the file's doing.
        logger.warning("probe: the probe server %s had exited; starting another", server.pid)
        stop_server()
        server = _server_for_this_process(limits)
        try:
            server.send(request)
        except ServerLost as exc:
            stop_server()
            raise ProbeServerUnavailable("the probe server exited before reading a request") from exc
    answer = server.read_answer(time.monotonic() + limits.timeout_seconds + ANSWER_MARGIN_SECONDS)
    if answer is None or not (isinstance(answer.get("result"), dict) or isinstance(answer.get("failed"), str)):
        logger.warning("probe: the probe server %s died, hung or answered garbage; replacing it", server.pid)
        stop_server()
        return None
    return answer


def probe_isolated(path: Path, declared_type: str, *, limits: ProbeLimits) -> ProbeResult:
    """`probe_file` run in a limited child process; a child that fails rejects the file."""
    request = json.dumps({
        "path": str(path), "declared_type": declared_type, "max_pixels": limits.max_pixels,
        "memory_bytes": limits.memory_bytes, "cpu_seconds": limits.cpu_seconds,
        "timeout_seconds": limits.timeout_seconds,
    }).encode() + b"\n"  # fmt: skip
    with _lock:
        try:
            answer = _ask(request, limits)
        except BaseException:
            # Interrupted mid-request (a task's soft time limit, say): the server's answer to this
            # file must never be read as the answer for the next one.
            stop_server()
            raise
        if answer is None:
            return ProbeResult(ok=False, rejection_reason=OVER_LIMITS)
    if "failed" in answer:
        logger.warning("probe: the child %s", answer["failed"])
        return ProbeResult(ok=False, rejection_reason=OVER_LIMITS)
    try:
        return ProbeResult(**answer["result"])
    except TypeError:
        logger.warning("probe: the probe server answered an unreadable result")
        return ProbeResult(ok=False, rejection_reason=OVER_LIMITS)

"""Run a parser of untrusted input in a sandboxed child process, under memory, CPU and time limits.

The rule it serves: whatever a user sends is parsed with bounded work. A parser that could still
run away on a crafted input (a C or C++ extension, a recursive reader, a library that expands
references) never runs in the process that serves requests or jobs: `call` runs it in a child of
a warm server, and a child that spends its budget, crashes or answers garbage costs its caller a
`BudgetSpent` (which the caller answers as a 4xx naming the input as too costly), never the
process. A function refuses its input by raising `Refused(code, message, details)`, which reaches
the caller as it was raised.

Each process keeps one server per module of functions (gpu_tasks/confined_server.py): a separate
Python started with a minimal environment (no secrets) that imports the module once and forks a
child per call. The child opens the call's file if it names one, enters the sandbox
(gpu_tasks.sandbox: a uid of its own and no network where the machine allows it, which the
server logs once) and lowers its own RLIMIT_AS and RLIMIT_CPU before the function runs; the
server kills it past the wall-clock timeout. The process that starts a server makes itself
non-dumpable, so that a child of its own uid (no uid sandbox) cannot read its environment or
memory either. A call forked from the warm server costs a few milliseconds where a fresh
interpreter importing the parser's libraries costs a quarter of a second or more
(bench/probe_sandbox.py measures the media probe's).

A server is started on the first call of a process, and belongs to that process (its PID is
recorded): a process forked from it (a Celery pool process, a gunicorn worker) starts its own, and
the server exits when its stdin closes, that is when the process that started it exits, however it
exits. A server found dead before a request is replaced and the request sent again; one that
dies, hangs or answers garbage after it is killed and replaced, and the call fails as a failed
child would. One call at a time per server (a lock). No Django here: the functions' modules must
not import it either.
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gpu_tasks.sandbox as isolation

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
# Time allowed past a call's own timeout for the server to answer: it forks, waits and writes one
# line, so only a server that is stuck or gone takes longer.
ANSWER_MARGIN_SECONDS = 10.0
# Starting an interpreter and importing the module: a quarter of a second idle, seconds under load.
STARTUP_TIMEOUT_SECONDS = 60.0

# Why a child did not answer, as `BudgetSpent.cause`.
CAUSE_MEMORY, CAUSE_CPU, CAUSE_TIME, CAUSE_NESTING, CAUSE_CRASH = "memory", "cpu", "time", "nesting", "crash"


@dataclass(frozen=True)
class Limits:
    memory_bytes: int = 1024**3  # address space, the libraries the server preloads included
    cpu_seconds: int = 10
    timeout_seconds: float = 20.0
    max_result_bytes: int = 64 * 1024**2
    # Added to the children's nice value: a parser in a serving process's child yields the CPU to
    # the requests beside it (a lower priority costs it only when the CPU is contended).
    nice: int = 0
    # How the children are isolated (gpu_tasks.sandbox), fixed when a server starts.
    sandbox: str = "auto"
    sandbox_uid_base: int = isolation.DEFAULT_UID_BASE
    sandbox_uid_count: int = isolation.DEFAULT_UID_COUNT
    # The modules the server imports once, so that no child pays for them: the function's own by
    # default. Calls with the same modules (and sandbox) share a server, whatever their function.
    preload: tuple[str, ...] = field(default=())


class Refused(Exception):
    """Raised by a confined function to refuse its input: carried to the caller as it was raised."""

    def __init__(self, code: str, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.details = code, message, details or {}

    def as_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "details": self.details}


class BudgetSpent(Exception):
    """The child ran out of memory, CPU or time, nested too deep, crashed or answered garbage."""

    def __init__(self, cause: str, why: str) -> None:
        super().__init__(why)
        self.cause = cause


class ServerUnavailable(RuntimeError):
    """A confined server could not be started: a fault of this machine, not of the input."""


class ServerLost(Exception):
    """The server was gone before it read the request."""


class Server:
    """One running `python -m gpu_tasks.confined_server` and the pipes to it."""

    def __init__(self, limits: Limits, preload: tuple[str, ...]) -> None:
        env = {"PATH": os.environ.get("PATH", ""), "LANG": "C.UTF-8"}
        self.owner = os.getpid()
        # The process that starts parsers of untrusted input keeps its memory and environment to
        # itself: a child that shares its uid (no uid sandbox here) could read them otherwise.
        isolation.make_non_dumpable()
        args = ["--sandbox", limits.sandbox, "--uid-base", str(limits.sandbox_uid_base),
                "--uid-count", str(limits.sandbox_uid_count), "--preload", ",".join(preload)]
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gpu_tasks.confined_server", *args],
            cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0,
        )  # fmt: skip
        self._buffer = b""
        ready = self.read_answer(time.monotonic() + STARTUP_TIMEOUT_SECONDS)
        if not ready or ready.get("ready") is not True:
            self.stop()
            raise ServerUnavailable(f"the confined server did not start (exit status {self.proc.returncode})")
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
            view = memoryview(request)
            while view:
                view = view[self.proc.stdin.write(view) or 0 :]
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
            chunk = os.read(fd, 1 << 20)
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
# A process's servers, by what they import and how their children are isolated (`server_key`).
_servers: dict[tuple[str, ...], Server] = {}
_owner = os.getpid()
_sandbox_logged: set[str] = set()


def _log_sandbox_once(description: str, *, full: bool) -> None:
    """What the children can reach, said once per process (a warning when degraded)."""
    if description and description not in _sandbox_logged:
        _sandbox_logged.add(description)
        logger.log(logging.INFO if full else logging.WARNING, "confined parsers: %s", description)


def server_key(function: str, limits: Limits) -> tuple[str, ...]:
    """Which of a process's servers runs `function`: one per sandbox setting and modules imported."""
    return (limits.sandbox, *(limits.preload or (function.partition(":")[0],)))


def _server_for(key: tuple[str, ...], limits: Limits) -> Server:
    if _owner != os.getpid():
        _forget_inherited_servers()
    server = _servers.get(key)
    if server is None:
        server = _servers[key] = Server(limits, key[1:])
    return server


def stop_server(key: tuple[str, ...]) -> None:
    """Kill this process's server `key`, if it has one; the next call starts another."""
    server = _servers.pop(key, None)
    if server is not None and server.owner == os.getpid():
        server.stop()


def stop_servers() -> None:
    for key in list(_servers):
        stop_server(key)


def _forget_inherited_servers() -> None:
    """In a forked child: the parent's servers are not ours to use or to kill, and our copies of
    their stdin must close so that they still see EOF when the parent exits."""
    global _lock, _owner
    _lock = threading.Lock()  # a copy taken while another thread held it would never be released
    _owner = os.getpid()
    for server in _servers.values():
        server.close_pipes()
        _inherited.append(server)  # kept: a Popen collected in a non-parent would try to reap it
    _servers.clear()


_inherited: list[Server] = []
os.register_at_fork(after_in_child=_forget_inherited_servers)


def server_pid(key: tuple[str, ...]) -> int | None:
    """The pid of this process's server `key`, if one is running."""
    server = _servers.get(key)
    return server.pid if server is not None and server.owner == os.getpid() else None


def _ask(request: bytes, key: tuple[str, ...], limits: Limits) -> dict[str, Any] | None:
    """Send one request to this process's server and read its answer; None (and the server
    replaced) if it died, hung or answered garbage after the request was written."""
    server = _server_for(key, limits)
    try:
        server.send(request)
    except ServerLost:
        # Gone before it saw this input (killed earlier, say): not the input's doing.
        logger.warning("confined: the server %s had exited; starting another", server.pid)
        stop_server(key)
        server = _server_for(key, limits)
        try:
            server.send(request)
        except ServerLost as exc:
            stop_server(key)
            raise ServerUnavailable("the confined server exited before reading a request") from exc
    answer = server.read_answer(time.monotonic() + limits.timeout_seconds + ANSWER_MARGIN_SECONDS)
    if answer is None or not ("result" in answer or isinstance(answer.get("refused"), dict)
                              or isinstance(answer.get("failed"), str)):
        logger.warning("confined: the server %s died, hung or answered garbage; replacing it", server.pid)
        stop_server(key)
        return None
    return answer


def call(function: str, *, limits: Limits, data: bytes | None = None, path: str | os.PathLike[str] | None = None,
         **args: Any) -> Any:
    """`function` ("module:name") called in a limited, sandboxed child with `args` (JSON values),
    plus `data=` the bytes given, and `path=` with `fd=` a descriptor of it opened for the child
    (None if it could not be opened); its JSON result.

    Raises `Refused` as the function raised it, `BudgetSpent` for a child that did not answer, and
    `ServerUnavailable` when no server could be started."""
    header = json.dumps({
        "function": function, "args": args, "path": None if path is None else str(path),
        "size": len(data) if data is not None else 0, "memory_bytes": limits.memory_bytes,
        "cpu_seconds": limits.cpu_seconds, "timeout_seconds": limits.timeout_seconds,
        "max_result_bytes": limits.max_result_bytes, "nice": limits.nice,
    }).encode() + b"\n"  # fmt: skip
    key = server_key(function, limits)
    with _lock:
        try:
            answer = _ask(header + (data or b""), key, limits)
        except BaseException:
            # Interrupted mid-request (a task's soft time limit, say): the server's answer to this
            # input must never be read as the answer for the next one.
            stop_server(key)
            raise
    if answer is None:
        raise BudgetSpent(CAUSE_CRASH, "the server died, hung or answered garbage")
    if "failed" in answer:
        logger.warning("confined: %s: the child %s", function, answer["failed"])
        raise BudgetSpent(str(answer.get("cause") or CAUSE_CRASH), str(answer["failed"]))
    if "refused" in answer:
        refused = answer["refused"]
        details = refused.get("details")
        raise Refused(str(refused.get("code")), str(refused.get("message")), details if isinstance(details, dict)
                      else {})
    return answer["result"]

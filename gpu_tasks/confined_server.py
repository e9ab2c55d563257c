"""The confined server: one sandboxed interpreter that forks a limited child for every call.

Started by gpu_tasks/confined.py (`python -m gpu_tasks.confined_server`, minimal environment, no
secrets) once per process and module, it imports the module whose functions it runs (and what
that module imports) once, so that every child starts with them loaded. Each request is one JSON
line on stdin naming a `module:function`, its keyword arguments and its limits, followed by
`size` bytes of input; a child forked from the server opens the request's `path` if it names one
(with the worker's rights, in the worker's view of the file system), takes the sandbox's uid
(gpu_tasks.sandbox, where the machine allows it), lowers its own RLIMIT_AS and RLIMIT_CPU, calls
the function, writes its JSON result to a pipe and exits. The server itself enters at start what
every child inherits: a network namespace of its own (no network), in `userns` mode a user
namespace, in `uid` mode a mount namespace in which Python and the project stay readable by the
children's uid. It makes itself non-dumpable and says which sandbox applies in its first line
(`{"ready": true, "sandbox": ...}`).

The server never runs the function itself: it only waits for the child under the wall-clock
deadline (SIGKILL past it, or once the child has written more than the request allows) and
answers one JSON line on stdout: `{"result": ...}`, `{"refused": {"code", "message", "details"}}`
when the function refused its input (`confined.Refused`), or `{"failed": why, "cause": ...}` for a
child that ran out of memory, CPU or time, crashed or wrote garbage. It exits when its stdin
closes, so a process that dies, however it dies, leaves no server behind. No Django here.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import os
import resource
import select
import signal
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import gpu_tasks.sandbox as isolation
from gpu_tasks.confined import CAUSE_CPU, CAUSE_CRASH, CAUSE_MEMORY, CAUSE_NESTING, CAUSE_TIME, Refused
from gpu_tasks.sandbox import Sandbox

_PROJECT_ROOT = Path(__file__).resolve().parent.parent
# A child's exit status for what it could tell of its own failure before exiting.
_EXIT_MEMORY, _EXIT_NESTING = 3, 4
_MAX_REQUEST_LINE = 64 * 1024


@dataclasses.dataclass
class _Server:
    sandbox: Sandbox
    # The file system as the worker sees it, for the children to open their file through: the
    # server's own view may cover folders closed to other uids (see `_start`).
    root: int | None = None


_server = _Server(isolation.NO_SANDBOX)


def _arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m gpu_tasks.confined_server")
    parser.add_argument("--sandbox", choices=("auto", "off"), default="auto")
    parser.add_argument("--uid-base", type=int, default=isolation.DEFAULT_UID_BASE)
    parser.add_argument("--uid-count", type=int, default=isolation.DEFAULT_UID_COUNT)
    parser.add_argument("--preload", default="", help="modules imported once, comma-separated")
    return parser.parse_args(argv)


def _start(args: argparse.Namespace) -> Sandbox:
    """Isolate the server's network (its children inherit it) and make it non-dumpable; the
    sandbox that applies, degraded to what really worked."""
    sandbox = isolation.detect(args.sandbox, args.uid_base, args.uid_count)
    isolation.make_non_dumpable()
    try:
        isolation.isolate_network(sandbox)
    except isolation.SandboxError as exc:
        print(f"confined server: no network namespace ({exc}); the children keep the network", file=sys.stderr)
        sandbox = dataclasses.replace(sandbox, network_isolated=False,
                                      mode="none" if sandbox.mode == "userns" else sandbox.mode)
    if sandbox.separate_uid:
        # Once for every child (a mount namespace per call cost about 9 ms of wall time).
        _server.root = os.open("/", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            isolation.reach(sandbox, [*isolation.python_paths(), _PROJECT_ROOT], sandbox.probe_uid)
        except isolation.SandboxError as exc:
            print(f"confined server: the children cannot run as uid {sandbox.probe_uid} ({exc})", file=sys.stderr)
            os.close(_server.root)
            _server.root = None
            sandbox = dataclasses.replace(sandbox, mode="none")
    _server.sandbox = sandbox
    return sandbox


class CallerGone(Exception):
    """The caller's end of stdin closed (or it broke the one-request-at-a-time protocol)."""


class _Input:
    """Stdin, read in chunks: request lines and the input bytes that follow them."""

    def __init__(self) -> None:
        self.buffer = b""

    def _more(self) -> None:
        chunk = os.read(0, 1 << 20)
        if not chunk:
            raise CallerGone
        self.buffer += chunk

    def line(self) -> bytes:
        while (newline := self.buffer.find(b"\n")) < 0:
            if len(self.buffer) > _MAX_REQUEST_LINE:
                raise CallerGone
            self._more()
        line, self.buffer = self.buffer[:newline], self.buffer[newline + 1 :]
        return line

    def exactly(self, size: int) -> bytes:
        while len(self.buffer) < size:
            self._more()
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data


def serve(argv: list[str] | None = None) -> int:
    args = _arguments(sys.argv[1:] if argv is None else argv)
    # Before anything starts a thread: a user namespace is for single-threaded processes only.
    sandbox = _start(args)
    for module in filter(None, args.preload.split(",")):
        importlib.import_module(module)  # once here, so that every forked child starts with it loaded
    # A Ctrl-C in the worker's terminal reaches this process group too; the worker decides.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    stdin = _Input()
    try:
        _answer({"ready": True, "sandbox": sandbox.describe(), "mode": sandbox.mode,
                 "network_isolated": sandbox.network_isolated})
        while True:
            _answer(handle(stdin))
    except (CallerGone, BrokenPipeError):
        return 0


@dataclasses.dataclass(frozen=True)
class Request:
    function: str
    args: dict[str, Any]
    path: str | None
    size: int
    memory_bytes: int
    cpu_seconds: int
    timeout_seconds: float
    max_result_bytes: int
    nice: int = 0


def _request(line: bytes) -> Request:
    raw = json.loads(line)
    args = raw.get("args") or {}
    if not isinstance(args, dict) or not isinstance(raw.get("function"), str):
        raise TypeError("malformed")
    return Request(str(raw["function"]), args, None if raw.get("path") is None else str(raw["path"]),
                   int(raw.get("size") or 0), int(raw["memory_bytes"]), int(raw["cpu_seconds"]),
                   float(raw["timeout_seconds"]), int(raw["max_result_bytes"]), int(raw.get("nice") or 0))


def handle(stdin: _Input) -> dict[str, Any]:
    """One request: fork a limited child to run the function, wait for it under the deadline."""
    try:
        request = _request(stdin.line())
    except (ValueError, KeyError, TypeError):
        return {"failed": "malformed request", "cause": CAUSE_CRASH}
    data = stdin.exactly(request.size) if request.size > 0 else None
    read_end, write_end = os.pipe()
    deadline = time.monotonic() + request.timeout_seconds
    server = os.getpid()
    try:
        pid = os.fork()
    except OSError as exc:  # out of processes or memory: this request fails, the server serves on
        os.close(read_end)
        os.close(write_end)
        return {"failed": f"could not be forked ({exc.strerror})", "cause": CAUSE_CRASH}
    if pid == 0:
        os.close(read_end)
        _child(write_end, request, data, server)
    os.close(write_end)
    return _collect(pid, read_end, deadline, request)


def _function(name: str) -> Callable[..., Any]:
    module, _, attribute = name.partition(":")
    function: Callable[..., Any] = getattr(importlib.import_module(module), attribute)
    return function


def _child(out: int, request: Request, data: bytes | None, server: int) -> NoReturn:
    code = 1
    try:
        # Dies with the server: a child left running after a SIGKILLed server has no one to
        # enforce its deadline (opening a FIFO, say, blocks for ever). Set again after the uid
        # changes, which clears it. `server` is the pid the server had before the fork, never the
        # child's parent read afterwards: a server killed before the child first runs has already
        # left it to another parent, whose death the child would then wait for instead.
        isolation.die_with_parent()
        if os.getppid() != server:
            os._exit(1)
        # The server's pipes are not the child's: one held by a stray child would hide the
        # server's death from the caller.
        devnull = os.open(os.devnull, os.O_RDWR)
        os.dup2(devnull, 0)
        os.dup2(devnull, 1)
        kwargs = dict(request.args)
        if request.path is not None:
            kwargs["path"] = request.path
            # Opened with the worker's rights and in its view of the file system, before both are
            # given up: the function reads its file through this descriptor only.
            try:
                if _server.root is not None:
                    kwargs["fd"] = os.open(request.path.lstrip("/"), os.O_RDONLY | os.O_CLOEXEC, dir_fd=_server.root)
                else:
                    kwargs["fd"] = os.open(request.path, os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                kwargs["fd"] = None
        if _server.root is not None:
            os.close(_server.root)
        if data is not None:
            kwargs["data"] = data
        function = _function(request.function)
        # The server entered the network and mount namespaces; what is left is the uid.
        isolation.drop_privileges(_server.sandbox, _server.sandbox.probe_uid)
        isolation.die_with_parent()
        if os.getppid() != server:
            os._exit(1)
        if request.nice > 0:
            os.nice(request.nice)
        resource.setrlimit(resource.RLIMIT_AS, (request.memory_bytes, request.memory_bytes))
        # Past the soft limit the kernel sends SIGXCPU, which ends the process.
        resource.setrlimit(resource.RLIMIT_CPU, (request.cpu_seconds, request.cpu_seconds + 1))
        try:
            answer: dict[str, Any] = {"result": function(**kwargs)}
        except Refused as refusal:
            answer = {"refused": refusal.as_dict()}
        payload = json.dumps(answer, allow_nan=False).encode()
        while payload:
            payload = payload[os.write(out, payload) :]
        code = 0
    except MemoryError:
        code = _EXIT_MEMORY
    except RecursionError:
        code = _EXIT_NESTING
    except BaseException:  # noqa: BLE001 - a child never returns into the server's loop: logged, exit 1
        traceback.print_exc()
    finally:
        os._exit(code)


def _collect(pid: int, pipe: int, deadline: float, request: Request) -> dict[str, Any]:
    """Read the child's answer until it exits, killing it at the deadline or past the answer's size."""
    pidfd = os.pidfd_open(pid)
    chunks: list[bytes] = []
    received = 0
    watched = [pipe, pidfd, 0]
    try:
        # Done when the child has exited and its pipe is drained (EOF).
        while pidfd in watched or pipe in watched:
            remaining = deadline - time.monotonic()
            readable = select.select(watched, [], [], remaining)[0] if remaining > 0 else []
            if not readable:
                return _kill(pid, f"ran past {request.timeout_seconds} s", CAUSE_TIME)
            if 0 in readable:
                # The caller writes nothing while a call runs: stdin readable means it closed.
                _kill(pid, "", CAUSE_CRASH)
                raise CallerGone
            if pipe in readable:
                chunk = os.read(pipe, 1 << 20)
                received += len(chunk)
                if received > request.max_result_bytes:
                    return _kill(pid, f"answered more than {request.max_result_bytes} bytes", CAUSE_MEMORY)
                if chunk:
                    chunks.append(chunk)
                else:
                    watched.remove(pipe)
            if pidfd in readable:
                watched.remove(pidfd)
    finally:
        os.close(pipe)
        os.close(pidfd)
    status, cpu = _reap(pid)
    if os.WIFSIGNALED(status):
        signum = os.WTERMSIG(status)
        # Past RLIMIT_CPU's soft limit the kernel sends SIGXCPU, past the hard one SIGKILL.
        spent = signum == signal.SIGXCPU or (signum == signal.SIGKILL and cpu >= request.cpu_seconds)
        return {"failed": f"killed by {signal.Signals(signum).name}", "cause": CAUSE_CPU if spent else CAUSE_CRASH}
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        cause = {_EXIT_MEMORY: CAUSE_MEMORY, _EXIT_NESTING: CAUSE_NESTING}.get(code, CAUSE_CRASH)
        return {"failed": f"exited with {code}", "cause": cause}
    try:
        answer = json.loads(b"".join(chunks))
    except ValueError:
        return {"failed": "unreadable result", "cause": CAUSE_CRASH}
    if not isinstance(answer, dict) or not ("result" in answer or isinstance(answer.get("refused"), dict)):
        return {"failed": "unreadable result", "cause": CAUSE_CRASH}
    return answer


def _reap(pid: int) -> tuple[int, float]:
    """The child's wait status and the CPU seconds it used."""
    _, status, usage = os.wait4(pid, 0)
    return status, usage.ru_utime + usage.ru_stime


def _kill(pid: int, why: str, cause: str) -> dict[str, Any]:
    os.kill(pid, signal.SIGKILL)
    _reap(pid)
    return {"failed": why, "cause": cause}


def _answer(message: dict[str, Any]) -> None:
    data = json.dumps(message).encode() + b"\n"
    while data:
        data = data[os.write(1, data) :]


if __name__ == "__main__":
    sys.exit(serve())

"""The probe server: one sandboxed interpreter that forks a limited child for every probe.

Started by media/probe_sandbox.py (`python -m media.probe_server`, minimal environment, no
secrets) once per process that probes. It imports PyAV and media.probing once; each request
(one JSON line on stdin) is probed by a child forked from it, which opens the file, takes the
probe's own uid (gpu_tasks.sandbox, where the machine allows it), lowers its own RLIMIT_AS and
RLIMIT_CPU, parses the file through the descriptor it opened, writes its ProbeResult as JSON to a
pipe and exits. The server itself enters at start what every child inherits: a network
namespace of its own (no network), in `userns` mode a user namespace, in `uid` mode a mount
namespace in which Python and the project stay readable by the probe's uid (the children open
their file through a descriptor of the worker's view of the file system, then close it). It
makes itself non-dumpable, and says which sandbox applies in its first line (`{"ready": true,
"sandbox": ...}`). The server never parses media: it only waits for the child under the
wall-clock deadline (SIGKILL past it) and answers one JSON line on stdout, `{"result": {...}}`
or `{"failed": "why"}` for a child that was killed, ran out of time or exited non-zero. It
exits when its stdin closes, so a worker that dies, however it dies, leaves no server behind.
No Django here.

`--probe module:function` replaces `probe_file` in the children (tests run attacks this way:
the function gets the request's path and declared type, the open descriptor and the pixel cap).
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
from dataclasses import asdict
from pathlib import Path
from typing import Any, NoReturn

import gpu_tasks.sandbox as isolation
from gpu_tasks.sandbox import Sandbox
from media.probing import NOT_DECODABLE, ProbeResult, probe_file

_PROJECT_ROOT = Path(__file__).resolve().parent.parent
ProbeFn = Callable[..., ProbeResult]


@dataclasses.dataclass
class _Server:
    sandbox: Sandbox
    probe: ProbeFn
    # The file system as the worker sees it, for the children to open their file through: the
    # server's own view may cover folders closed to other uids (see `_start`).
    root: int | None = None


_server = _Server(isolation.NO_SANDBOX, probe_file)


def _arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m media.probe_server")
    parser.add_argument("--sandbox", choices=("auto", "off"), default="auto")
    parser.add_argument("--uid-base", type=int, default=isolation.DEFAULT_UID_BASE)
    parser.add_argument("--uid-count", type=int, default=isolation.DEFAULT_UID_COUNT)
    parser.add_argument("--probe", default="", help="module:function run instead of probe_file (tests)")
    return parser.parse_args(argv)


def _start(args: argparse.Namespace) -> Sandbox:
    """Isolate the server's network (its children inherit it) and make it non-dumpable; the
    sandbox that applies, degraded to what really worked."""
    if args.probe:
        module, _, name = args.probe.partition(":")
        _server.probe = getattr(importlib.import_module(module), name)
    sandbox = isolation.detect(args.sandbox, args.uid_base, args.uid_count)
    isolation.make_non_dumpable()
    try:
        isolation.isolate_network(sandbox)
    except isolation.SandboxError as exc:
        print(f"probe server: no network namespace ({exc}); the children keep the network", file=sys.stderr)
        sandbox = dataclasses.replace(sandbox, network_isolated=False,
                                      mode="none" if sandbox.mode == "userns" else sandbox.mode)
    if sandbox.separate_uid:
        # Once for every child (a mount namespace per probe cost about 9 ms of wall time).
        _server.root = os.open("/", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            isolation.reach(sandbox, [*isolation.python_paths(), _PROJECT_ROOT], sandbox.probe_uid)
        except isolation.SandboxError as exc:
            print(f"probe server: the children cannot run as uid {sandbox.probe_uid} ({exc})", file=sys.stderr)
            os.close(_server.root)
            _server.root = None
            sandbox = dataclasses.replace(sandbox, mode="none")
    _server.sandbox = sandbox
    return sandbox


class CallerGone(Exception):
    """The caller's end of stdin closed (or it broke the one-request-at-a-time protocol)."""


def serve(argv: list[str] | None = None) -> int:
    # Before anything starts a thread: a user namespace is for single-threaded processes only.
    sandbox = _start(_arguments(sys.argv[1:] if argv is None else argv))
    import av  # noqa: F401  # once here, so that every forked child starts with it loaded

    # A Ctrl-C in the worker's terminal reaches this process group too; the worker decides.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    buffer = b""
    try:
        _answer({"ready": True, "sandbox": sandbox.describe(), "mode": sandbox.mode,
                 "network_isolated": sandbox.network_isolated})
        while True:
            newline = buffer.find(b"\n")
            if newline < 0:
                chunk = os.read(0, 65536)
                if not chunk:
                    return 0  # the caller exited
                buffer += chunk
                continue
            line, buffer = buffer[:newline], buffer[newline + 1 :]
            _answer(handle(line))
    except (CallerGone, BrokenPipeError):
        return 0


def handle(line: bytes) -> dict[str, Any]:
    """One request: fork a limited child to probe the file, wait for it under the deadline."""
    try:
        request = json.loads(line)
        path = str(request["path"])
        declared_type = str(request["declared_type"])
        max_pixels = int(request["max_pixels"])
        memory_bytes = int(request["memory_bytes"])
        cpu_seconds = int(request["cpu_seconds"])
        timeout = float(request["timeout_seconds"])
    except (ValueError, KeyError, TypeError):
        return {"failed": "malformed request"}
    read_end, write_end = os.pipe()
    deadline = time.monotonic() + timeout
    try:
        pid = os.fork()
    except OSError as exc:  # out of processes or memory: this request fails, the server serves on
        os.close(read_end)
        os.close(write_end)
        return {"failed": f"could not be forked ({exc.strerror})"}
    if pid == 0:
        os.close(read_end)
        _child(write_end, path, declared_type, max_pixels, memory_bytes, cpu_seconds)
    os.close(write_end)
    return _collect(pid, read_end, deadline, timeout)


def _child(out: int, path: str, declared_type: str, max_pixels: int, memory_bytes: int, cpu_seconds: int) -> NoReturn:
    code = 1
    try:
        server = os.getppid()
        # Dies with the server: a child left running after a SIGKILLed server has no one to
        # enforce its deadline (opening a FIFO, say, blocks for ever). Set again after the uid
        # changes, which clears it.
        isolation.die_with_parent()
        if os.getppid() != server:
            os._exit(1)
        # The server's pipes are not the child's: one held by a stray child would hide the
        # server's death from the caller.
        devnull = os.open(os.devnull, os.O_RDWR)
        os.dup2(devnull, 0)
        os.dup2(devnull, 1)
        # Opened with the worker's rights (a file only it may read) and in its view of the file
        # system, before both are given up.
        try:
            if _server.root is not None:
                fd: int | None = os.open(path.lstrip("/"), os.O_RDONLY | os.O_CLOEXEC, dir_fd=_server.root)
            else:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            fd = None
        if _server.root is not None:
            os.close(_server.root)
        # The server entered the network and mount namespaces; what is left is the uid.
        isolation.drop_privileges(_server.sandbox, _server.sandbox.probe_uid)
        isolation.die_with_parent()
        if os.getppid() != server:
            os._exit(1)
        resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
        # Past the soft limit the kernel sends SIGXCPU, which ends the process.
        resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 1))
        if fd is None:
            result = ProbeResult(ok=False, rejection_reason=NOT_DECODABLE)
        else:
            result = _server.probe(Path(path), declared_type, max_pixels=max_pixels, fd=fd)
        data = json.dumps(asdict(result)).encode()
        while data:
            data = data[os.write(out, data) :]
        code = 0
    except BaseException:  # noqa: BLE001 - a child never returns into the server's loop: logged, exit 1
        traceback.print_exc()
    finally:
        os._exit(code)


def _collect(pid: int, pipe: int, deadline: float, timeout: float) -> dict[str, Any]:
    """Read the child's result until it exits, killing it at the deadline."""
    pidfd = os.pidfd_open(pid)
    chunks: list[bytes] = []
    watched = [pipe, pidfd, 0]
    try:
        # Done when the child has exited and its pipe is drained (EOF).
        while pidfd in watched or pipe in watched:
            remaining = deadline - time.monotonic()
            readable = select.select(watched, [], [], remaining)[0] if remaining > 0 else []
            if not readable:
                return _kill(pid, f"ran past {timeout} s")
            if 0 in readable:
                # The caller writes nothing while a probe runs: stdin readable means it closed.
                _kill(pid, "")
                raise CallerGone
            if pipe in readable:
                chunk = os.read(pipe, 65536)
                if chunk:
                    chunks.append(chunk)
                else:
                    watched.remove(pipe)
            if pidfd in readable:
                watched.remove(pidfd)
    finally:
        os.close(pipe)
        os.close(pidfd)
    status = os.waitpid(pid, 0)[1]
    if os.WIFSIGNALED(status):
        return {"failed": f"killed by {signal.Signals(os.WTERMSIG(status)).name}"}
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        return {"failed": f"exited with {code}"}
    try:
        result = json.loads(b"".join(chunks))
        ProbeResult(**result)
    except (ValueError, TypeError):
        return {"failed": "unreadable result"}
    return {"result": result}


def _kill(pid: int, why: str) -> dict[str, Any]:
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return {"failed": why}


def _answer(message: dict[str, Any]) -> None:
    data = json.dumps(message).encode() + b"\n"
    while data:
        data = data[os.write(1, data) :]


if __name__ == "__main__":
    sys.exit(serve())

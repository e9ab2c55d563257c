"""What a parser that a crafted input took over (or simply ran away on) could do, run by the confined
server as a parser would be (`gpu_tasks.confined.call("tests.gpu_tasks.confined_attacks:<name>", ...)`)."""

from __future__ import annotations

import ctypes
import os
import socket
import time
from typing import Any

from gpu_tasks.confined import Refused
from tests.media.probe_attacks import attempt


def echo(*, data: bytes, suffix: str) -> dict[str, Any]:
    return {"length": len(data), "head": data[:8].decode(), "suffix": suffix}


def refuse(*, data: bytes) -> None:
    raise Refused("interchange_invalid", "The file is not one.", {"seen": len(data)})


def hog_memory(*, data: bytes) -> None:
    """Keeps every block it asks for, as an expanding reader keeps the objects it builds."""
    kept = []
    while True:
        kept.append(bytearray(64 * 1024 * 1024))


def spin(*, data: bytes) -> None:
    while True:
        pass


def sleep(*, data: bytes) -> None:
    time.sleep(3600)


def recurse(*, data: bytes) -> int:
    def down(n: int) -> int:
        return down(n + 1) + 1

    return down(0)


def crash(*, data: bytes) -> None:
    """What a C extension's bad pointer does: SIGSEGV."""
    ctypes.string_at(0)


def flood(*, data: bytes) -> str:
    return "x" * (8 * 1024 * 1024)


def escape(*, data: bytes, port: int, worker: int) -> dict[str, Any]:
    """What a child taken over would try: the worker's secrets, the network."""
    return {
        "uid": os.getuid(),
        "environ": sorted(os.environ),
        "worker_environ": attempt(lambda: open(f"/proc/{worker}/environ", "rb").read()),
        "loopback": attempt(lambda: socket.create_connection(("127.0.0.1", port), timeout=5).close()),
    }

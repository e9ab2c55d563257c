"""What a probe child that a crafted file took over could try, run by the confined server in place of
probe_confined (`probe_isolated(..., function="tests.media.probe_attacks:<name>")`). The file it is
given holds the worker's pid; the answer's rejection_reason reports, as JSON, what each attempt came
to."""

from __future__ import annotations

import json
import os
import socket
from dataclasses import asdict
from pathlib import Path
from typing import Any

from media.probing.facts import ProbeResult


def attempt(action: Any) -> str:
    try:
        action()
    except OSError as exc:
        return type(exc).__name__
    return "done"


def escape(*, path: str, declared_type: str, max_pixels: int, fd: int) -> dict[str, Any]:
    worker = int(os.read(fd, 64).split()[0])
    port = int(declared_type)

    def dial() -> None:
        socket.create_connection(("127.0.0.1", port), timeout=5).close()

    outcome = {
        "uid": os.getuid(),
        "worker_environ": attempt(lambda: Path(f"/proc/{worker}/environ").read_bytes()),
        "server_environ": attempt(lambda: Path(f"/proc/{os.getppid()}/environ").read_bytes()),
        "reopen_by_path": attempt(lambda: Path(path).read_bytes()),
        "loopback": attempt(dial),
    }
    return asdict(ProbeResult(ok=False, rejection_reason=json.dumps(outcome)))


def escape_scan(*, path: str, fd: int, port: int) -> dict[str, Any]:
    """The same attempts, from a scan that plans a long file's pieces (jobs/life/pieces.py)."""
    worker = int(os.read(fd, 64).split()[0])
    return {
        "uid": os.getuid(),
        "environ": sorted(os.environ),
        "worker_environ": attempt(lambda: Path(f"/proc/{worker}/environ").read_bytes()),
        "loopback": attempt(lambda: socket.create_connection(("127.0.0.1", port), timeout=5).close()),
    }

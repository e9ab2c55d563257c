"""What a probe child that a crafted file took over could try, run by a probe server started with
`--probe tests.media.probe_attacks:<name>` in place of probe_file. The file it is given holds the
worker's pid; the answer's rejection_reason reports, as JSON, what each attempt came to."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Any

from media.probing import ProbeResult


def _attempt(action: Any) -> str:
    try:
        action()
    except OSError as exc:
        return type(exc).__name__
    return "done"


def escape(path: Path, declared_type: str, *, max_pixels: int, fd: int) -> ProbeResult:
    worker = int(os.read(fd, 64).split()[0])
    port = int(declared_type)

    def dial() -> None:
        socket.create_connection(("127.0.0.1", port), timeout=5).close()

    outcome = {
        "uid": os.getuid(),
        "worker_environ": _attempt(lambda: Path(f"/proc/{worker}/environ").read_bytes()),
        "server_environ": _attempt(lambda: Path(f"/proc/{os.getppid()}/environ").read_bytes()),
        "reopen_by_path": _attempt(lambda: path.read_bytes()),
        "loopback": _attempt(dial),
    }
    return ProbeResult(ok=False, rejection_reason=json.dumps(outcome))

"""Loopback ports: free ones, ones stable per checkout, and waiting until something listens."""

from __future__ import annotations

import contextlib
import hashlib
import socket
import subprocess
import threading
import time
from pathlib import Path

from devstack import DevStackError


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        # As the servers do: a port whose last connections linger in TIME_WAIT is still usable.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def preferred_port(base: int, var_dir: Path) -> int:
    """A port stable for one checkout (so its URLs survive restarts) and different for another.

    Falls back to any free port when the preferred one is taken.
    """
    port = base + port_offset(var_dir)
    return port if port_is_free(port) else free_port()


def port_offset(var_dir: Path) -> int:
    digest = hashlib.sha256(str(var_dir.resolve()).encode()).digest()
    return int.from_bytes(digest[:4], "big") % 1000


def wait_for_port(
    port: int,
    timeout: float,
    proc: subprocess.Popen[bytes] | None = None,
    *,
    stop: threading.Event | None = None,
    host: str = "127.0.0.1",
) -> None:
    """Return once `host`:`port` accepts a connection; give up if `proc` exits or `stop` is set."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise DevStackError(f"process exited with {proc.returncode} before listening on {port}")
        if stop is not None and stop.is_set():
            raise DevStackError(f"stopped before anything listened on {port}")
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
            return
        time.sleep(0.05)
    raise DevStackError(f"nothing listens on {host}:{port} after {timeout:.0f}s")

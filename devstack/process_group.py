"""Stopping a child that leads its own process group, so that none of its descendants is left behind."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from typing import Any


def stop_group(proc: subprocess.Popen[Any], timeout: float = 15.0, sig: int = signal.SIGTERM) -> None:
    """Stop a process that leads its own group (start_new_session): `sig`, then SIGKILL after `timeout`."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)

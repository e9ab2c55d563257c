"""Stopping a child that leads its own process group, so that none of its descendants is left behind."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from typing import Any

import psutil


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


def children_running(parent_pid: int, marker: str, recursive: bool = False) -> list[psutil.Process]:
    """The live children of a process whose command line contains `marker`.

    A child that exits while the list is read (gone, or a zombie not yet reaped) is left out:
    it runs nothing any more.
    """
    found = []
    for child in psutil.Process(parent_pid).children(recursive=recursive):
        try:
            if marker in " ".join(child.cmdline()):
                found.append(child)
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            continue
    return found

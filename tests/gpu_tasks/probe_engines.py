"""Engines that the local backend's tests run in place of a type's own (`LocalBackend(engines=...)`),
to look at what a runner gets: its environment, its memory, how many run beside it."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any


def dump_env(payload: dict[str, Any], ctx: Any) -> dict[str, Any]:
    return {"env": dict(os.environ)}


def allocate(payload: dict[str, Any], ctx: Any) -> dict[str, Any]:
    """Allocate `mb` MiB and touch every page of it."""
    block = bytearray(int(payload["mb"]) * 2**20)
    block[:: 4096] = b"x" * len(block[:: 4096])
    return {"allocated_mb": len(block) // 2**20}


def hold(payload: dict[str, Any], ctx: Any) -> dict[str, Any]:
    """Mark itself running in `dir`, count how many are running, and wait for `dir/go`."""
    shared = Path(payload["dir"])
    mark = shared / f"running-{os.getpid()}"
    mark.touch()
    try:
        beside = len(list(shared.glob("running-*")))
        while not (shared / "go").exists():
            time.sleep(0.02)
        return {"running_at_start": beside}
    finally:
        mark.unlink()


def progress_steps(payload: dict[str, Any], ctx: Any) -> dict[str, Any]:
    """Report 25 % then 60 %, with a pause for the runner to notice each."""
    for pct in (25, 60):
        ctx.progress(pct)
        time.sleep(0.3)
    return {"steps": 2}

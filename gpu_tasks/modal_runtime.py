"""What every Modal function does inside its container: run one engine, return an outcome record.

A Modal function never lets an exception escape to Modal: it returns the same outcome record as
the local runner (`gpu_tasks.contract.status_record`), with the error already classified
(`gpu_oom`, `invalid_media`, ...). Exceptions only cross the wire when Modal itself fails the
call (its timeout, a crashed container), and the client maps those (see `modal_backend`).
This module does not import `modal`, so it is tested directly.
"""

from __future__ import annotations

import contextlib
import tempfile
import time
import traceback
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from gpu_tasks.announce import Announcement
from gpu_tasks.call_trace import CallPhases
from gpu_tasks.contract import EngineContext, status_record
from gpu_tasks.engines import load_engine
from gpu_tasks.errors import classify_exception
from gpu_tasks.types import get_spec

ProgressSink = Callable[[float], None]


class ThrottledProgress:
    """Engine progress to a sink (a modal.Dict write), at most every `min_interval_s` or 5 points."""

    def __init__(self, sink: ProgressSink, min_interval_s: float = 2.0) -> None:
        self.sink = sink
        self.min_interval_s = min_interval_s
        self.last_pct = -100.0
        self.last_at = 0.0

    def __call__(self, pct: float) -> None:
        now = time.monotonic()
        if pct >= self.last_pct + 5.0 or (now - self.last_at >= self.min_interval_s and pct > self.last_pct):
            self.last_pct, self.last_at = pct, now
            # Progress is best effort: never fail the inference for it.
            with contextlib.suppress(Exception):
                self.sink(round(float(pct), 1))


def run_call(job_type: str, payload: Mapping[str, Any], *, progress: ProgressSink | None = None) -> dict[str, Any]:
    """Run `job_type`'s Modal engine on `payload`; the outcome record, never an exception."""
    started = time.monotonic()
    phases = CallPhases(payload)
    try:
        spec = get_spec(job_type)
        with phases.phase("engine.load"):
            engine = load_engine(spec.job_type.value, "modal")
        with tempfile.TemporaryDirectory(prefix="auteur-") as tmp:
            ctx = EngineContext(
                workdir=Path(tmp),
                payload=payload,
                progress=ThrottledProgress(progress) if progress else (lambda _pct: None),
                allow_paths=False,  # the worker's files are not visible in the container
                deadline=started + spec.time_limit_s,
            )
            with phases.phase("engine.run"):
                result = engine(payload, ctx)
        return status_record("succeeded", result=result, gpu_seconds=time.monotonic() - started,
                             trace=phases.record())
    except Exception as exc:  # noqa: BLE001 - every failure becomes a classified outcome record
        error = classify_exception(exc)
        if error.code == "internal":
            traceback.print_exc()  # to the Modal function's logs: an internal error is a bug to fix
        return status_record("failed", error=error, gpu_seconds=time.monotonic() - started, trace=phases.record())


class QueueAnnouncer:
    """Announces a call's progress and end on a modal.Queue (anything with `put(value)`).

    Best effort: a put that fails is dropped, and the reaper's poll finds the call instead."""

    def __init__(self, queue: Any, call_id: str) -> None:
        self.queue = queue
        self.call_id = call_id

    def progress(self, pct: float) -> None:
        self._put(Announcement(self.call_id, "progress", pct))

    def outcome(self, record: Mapping[str, Any]) -> None:
        self._put(Announcement(self.call_id, "succeeded" if record.get("state") == "succeeded" else "failed"))

    def _put(self, announcement: Announcement) -> None:
        with contextlib.suppress(Exception):
            self.queue.put(announcement.dumps())

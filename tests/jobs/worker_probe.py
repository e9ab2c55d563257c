"""Imported by a test worker (`start_worker(include=...)`): remote-control commands that report
what the worker keeps of revocations, so a test can show that cancelling jobs leaves nothing there,
and whether it is dumpable."""

from __future__ import annotations

from typing import Any

from celery.worker import state as worker_state
from celery.worker.control import inspect_command


@inspect_command()
def revocation_state(state: Any, **kwargs: Any) -> dict[str, int]:
    """How many task ids and stamped-header values this worker holds as revoked."""
    stamps = sum(len(values) if isinstance(values, list | set | tuple) else 1
                 for values in worker_state.revoked_stamps.values())
    return {"revoked_ids": len(worker_state.revoked), "revoked_stamps": stamps}


@inspect_command()
def dumpable(state: Any, **kwargs: Any) -> dict[str, int]:
    """Whether the worker's main process is dumpable (prctl PR_GET_DUMPABLE: 0 means not)."""
    import ctypes

    return {"dumpable": int(ctypes.CDLL(None).prctl(3, 0, 0, 0, 0))}

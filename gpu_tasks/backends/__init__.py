"""GPU backends behind one interface (`base.GpuBackend`), and `make_backend` to build the configured one.

- `local`: CPU engines in a detached runner process per call (`local.LocalBackend`);
- `modal`: the deployed Modal app (`modal_backend.ModalBackend`); render and compression, which
  run on CPU, stay on the worker (`local`) unless `cpu_types_on_modal` is set; a CPU type that the
  Modal app does not run (the voice- and likeness-consent checks) stays on the worker whatever is set;
- `noop`: instant canned results, for benchmarks only (`noop.NoopBackend`);
- any of them wrapped in `faults.FaultInjectingBackend` when a fault spec is given.
"""

from __future__ import annotations

import os
from typing import Any

from gpu_tasks.backends.base import CallStatus, GpuBackend
from gpu_tasks.types import CPU_JOB_TYPES, JOB_TYPES

BACKEND_NAMES = ("local", "modal", "noop")

__all__ = ["BACKEND_NAMES", "CallStatus", "GpuBackend", "make_backend"]


def make_backend(
    name: str,
    *,
    local_dir: str | os.PathLike[str] | None = None,
    modal_app: str | None = None,
    modal_environment: str | None = None,
    cpu_types_on_modal: bool = False,
    faults: str | None = None,
    fault_seed: int | None = None,
    announce_url: str | None = None,
    noop_hold_seconds: float = 0.0,
    noop_hold_spread_seconds: float = 0.0,
    noop_status_latency_s: float = 0.0,
    noop_hold_per_media_minute: float = 0.0,
    noop_spawn_log: str = "",
    noop_spawn_latency_s: float = 0.0,
    **local_options: Any,
) -> GpuBackend:
    """The backend named `name` (settings pass `AUTEUR_GPU_BACKEND`, `AUTEUR_GPU_LOCAL_DIR`, ...).

    `announce_url`: the Redis list calls announce their end on (`gpu_tasks.announce`); without
    it the noop backend announces nothing and callers poll. `noop_*`: the noop backend's held
    calls, simulated status latency, and the file each spawn is written to (benchmarks, drills).
    Raises ValueError for an unknown name, a local backend without `local_dir`, or a bad fault spec.
    """
    backend: GpuBackend
    if name == "noop":
        from gpu_tasks.announce import RedisAnnouncer
        from gpu_tasks.backends.noop import NoopBackend

        backend = NoopBackend(
            hold_seconds=noop_hold_seconds,
            hold_spread_seconds=noop_hold_spread_seconds,
            hold_per_media_minute=noop_hold_per_media_minute,
            status_latency_s=noop_status_latency_s,
            announcer=RedisAnnouncer(announce_url) if announce_url else None,
            spawn_log=noop_spawn_log,
            spawn_latency_s=noop_spawn_latency_s,
        )
    elif name in ("local", "modal"):
        from gpu_tasks.backends.local import LocalBackend

        local = LocalBackend(local_dir, announce_url=announce_url, **local_options) if local_dir else None
        if name == "local":
            if local is None:
                raise ValueError("the local GPU backend needs local_dir (AUTEUR_GPU_LOCAL_DIR)")
            backend = local
        else:
            from gpu_tasks.backends.modal_backend import DEFAULT_APP_NAME, ModalBackend
            from gpu_tasks.backends.routing import RoutingBackend

            remote = ModalBackend(modal_app or DEFAULT_APP_NAME, environment_name=modal_environment,
                                  announcements=announce_url is not None)
            on_worker = [t for t in CPU_JOB_TYPES if not cpu_types_on_modal or not JOB_TYPES[t].modal]
            if local is None or not on_worker:
                backend = remote
            else:
                routes = {t.value: "local" for t in on_worker}
                backend = RoutingBackend({"modal": remote, "local": local}, default="modal", routes=routes)
    else:
        raise ValueError(f"unknown GPU backend {name!r} (expected one of {BACKEND_NAMES})")
    if faults:
        from gpu_tasks.backends.faults import FaultInjectingBackend

        backend = FaultInjectingBackend(backend, faults, seed=fault_seed)
    return backend

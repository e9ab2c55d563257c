"""The one module through which the Django side reaches GPU inference (CONVENTIONS.md rule 10).

It builds the configured backend from settings once per process. Tests replace Modal's cloud
below this module (gpu_tasks' Modal backend takes a fake `modal` client), never above it.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from django.conf import settings

from gpu_tasks.backends import CallStatus, GpuBackend, make_backend
from gpu_tasks.types import JOB_TYPES, JobTypeSpec


@lru_cache(maxsize=1)
def backend() -> GpuBackend:
    return make_backend(
        settings.AUTEUR_GPU_BACKEND,
        local_dir=settings.AUTEUR_GPU_LOCAL_DIR,
        modal_app=settings.AUTEUR_MODAL_APP,
        faults=settings.AUTEUR_FAULT_INJECTION or None,
        fault_seed=settings.AUTEUR_FAULT_SEED,
    )


def reset() -> None:
    """Forget the built backend (tests that change the GPU settings call this)."""
    backend.cache_clear()


def spec(job_type: str) -> JobTypeSpec:
    return JOB_TYPES[job_type]  # type: ignore[index]


def supports(job_type: str) -> bool:
    return backend().supports(job_type)


def spawn(job_type: str, payload: dict[str, Any]) -> str:
    return backend().spawn(job_type, payload)


def poll(call_id: str) -> CallStatus:
    return backend().poll(call_id)


def cancel(call_id: str) -> None:
    backend().cancel(call_id)


def release(call_id: str) -> None:
    backend().release(call_id)

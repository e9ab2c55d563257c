"""A backend that sends each job type to one of several backends (e.g. CPU types stay local)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gpu_tasks.announce import Announcement
from gpu_tasks.backends.base import CallStatus, GpuBackend
from gpu_tasks.errors import TransientGpuError
from gpu_tasks.results import REMOTE_OUTPUTS, OutputPolicy


class RoutingBackend(GpuBackend):
    """`routes` maps a job type to the name of a backend in `backends`; others go to `default`.

    Call ids are prefixed with the backend's name ("local:..."), so poll and cancel find it again.
    """

    def __init__(self, backends: Mapping[str, GpuBackend], default: str, routes: Mapping[str, str]) -> None:
        if default not in backends or any(name not in backends for name in routes.values()):
            raise ValueError("every route must name one of the backends")
        self.backends = dict(backends)
        self.default = default
        self.routes = dict(routes)
        self.name = "+".join(backends)

    @property
    def announces(self) -> bool:
        return all(backend.announces for backend in self.backends.values())

    def take_announcements(self, max_items: int, timeout_s: float) -> list[Announcement]:
        taken: list[Announcement] = []
        for backend in self.backends.values():
            taken += backend.take_announcements(max_items, timeout_s if not taken else 0.0)
        return taken

    def stored_call_ids(self, call_id: str) -> list[str]:
        # Announcements carry the inner backend's id; the job stored it with the route's prefix.
        return [f"{name}:{inner}" for name, backend in self.backends.items()
                for inner in backend.stored_call_ids(call_id)]

    @property
    def holds_announcements(self) -> bool:
        return any(backend.holds_announcements for backend in self.backends.values())

    def check(self) -> None:
        for backend in self.backends.values():
            backend.check()

    def backend_for(self, job_type: str) -> tuple[str, GpuBackend]:
        name = self.routes.get(job_type, self.default)
        return name, self.backends[name]

    def unavailable_reason(self, job_type: str) -> str | None:
        return self.backend_for(job_type)[1].unavailable_reason(job_type)

    def languages(self, job_type: str) -> frozenset[str]:
        return self.backend_for(job_type)[1].languages(job_type)

    def gpu_ladder(self, job_type: str) -> tuple[str, ...]:
        return self.backend_for(job_type)[1].gpu_ladder(job_type)

    def output_targets(self, job_type: str) -> Mapping[str, str]:
        return self.backend_for(job_type)[1].output_targets(job_type)

    def spawn(self, job_type: str, payload: Mapping[str, Any], *, gpu: str | None = None) -> str:
        name, backend = self.backend_for(job_type)
        return f"{name}:{backend.spawn(job_type, payload, gpu=gpu)}"

    def _split(self, call_id: str) -> tuple[GpuBackend | None, str]:
        name, sep, inner = call_id.partition(":")
        return (self.backends.get(name) if sep else None), inner

    def poll(self, call_id: str) -> CallStatus:
        backend, inner = self._split(call_id)
        if backend is None:
            return CallStatus.failed(TransientGpuError("worker_lost", "call id names no configured backend"))
        return backend.poll(inner)

    def cancel(self, call_id: str) -> None:
        backend, inner = self._split(call_id)
        if backend is not None:
            backend.cancel(inner)

    def release(self, call_id: str) -> None:
        backend, inner = self._split(call_id)
        if backend is not None:
            backend.release(inner)

    def output_policy(self, call_id: str) -> OutputPolicy:
        backend, inner = self._split(call_id)
        return backend.output_policy(inner) if backend is not None else REMOTE_OUTPUTS

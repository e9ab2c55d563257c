from __future__ import annotations

from pathlib import Path

import pytest

from gpu_tasks.backends import make_backend
from gpu_tasks.backends.faults import FaultInjectingBackend
from gpu_tasks.backends.local import LocalBackend
from gpu_tasks.backends.modal_backend import ModalBackend
from gpu_tasks.backends.noop import NoopBackend
from gpu_tasks.backends.routing import RoutingBackend


def test_make_backend_builds_each_kind(tmp_path: Path) -> None:
    assert isinstance(make_backend("noop"), NoopBackend)
    local = make_backend("local", local_dir=tmp_path)
    assert isinstance(local, LocalBackend) and local.base_dir == tmp_path
    assert isinstance(make_backend("modal"), ModalBackend)
    wrapped = make_backend("noop", faults="tts:permanent=0.5", fault_seed=3)
    assert isinstance(wrapped, FaultInjectingBackend) and isinstance(wrapped.inner, NoopBackend)
    with pytest.raises(ValueError):
        make_backend("cuda-on-my-laptop")
    with pytest.raises(ValueError):
        make_backend("local")
    with pytest.raises(ValueError):
        make_backend("noop", faults="tts:boom=1")


def test_modal_with_a_local_dir_keeps_cpu_types_on_the_worker(tmp_path: Path) -> None:
    backend = make_backend("modal", local_dir=tmp_path)
    assert isinstance(backend, RoutingBackend)
    assert isinstance(backend.backend_for("render")[1], LocalBackend)
    assert isinstance(backend.backend_for("compression")[1], LocalBackend)
    assert isinstance(backend.backend_for("transcription")[1], ModalBackend)
    assert backend.supports("transcription") and backend.supports("tts") and backend.supports("render")
    assert all(backend.supports(t) for t in ("lip-sync", "video-generation")), "Modal runs every type"
    assert backend.poll("nobody:xyz").state == "failed"
    assert isinstance(backend.backend_for("voice-consent")[1], LocalBackend)
    # CPU types on Modal too, but for one the Modal app does not run: it stays on the worker.
    everything_remote = make_backend("modal", local_dir=tmp_path, cpu_types_on_modal=True)
    assert isinstance(everything_remote, RoutingBackend)
    assert isinstance(everything_remote.backend_for("render")[1], ModalBackend)
    assert isinstance(everything_remote.backend_for("compression")[1], ModalBackend)
    assert isinstance(everything_remote.backend_for("voice-consent")[1], LocalBackend)
    assert isinstance(make_backend("modal", cpu_types_on_modal=True), ModalBackend)


def test_routing_prefixes_call_ids_and_routes_polls_back(tmp_path: Path) -> None:
    backend = RoutingBackend({"noop": NoopBackend(), "local": LocalBackend(tmp_path)}, default="local",
                             routes={"tts": "noop"})  # fmt: skip
    call_id = backend.spawn("tts", {"text": "hi"})
    assert call_id.startswith("noop:noop-tts-")
    assert backend.poll(call_id).state == "succeeded"
    with pytest.raises(ValueError):
        RoutingBackend({"noop": NoopBackend()}, default="missing", routes={})

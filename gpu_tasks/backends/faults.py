"""Fault injection: a wrapper backend that makes calls fail or hang at configured rates.

For drills and tests of retries, refunds, the reaper and time limits, on top of any backend
(usually `noop` or `local`). The spec string, e.g. from `AUTEUR_GPU_FAULTS`:

    transcription:transient=0.2,permanent=0.1,hang=0.02;tts:permanent=0.5;*:spawn_transient=0.05

Per job type (`*` = every type not named), the probability of each fault:

- `transient`: the call fails with a retryable `TransientGpuError("capacity")` (reported by poll);
- `permanent`: the call fails with `PermanentGpuError("gpu_oom")` (reported by poll);
- `hang`: the call never finishes and never announces (poll reports `running` forever; cancel
  is accepted);
- `spawn_transient` / `spawn_permanent`: `spawn` itself raises that error (nothing started);
- `oom`: the call fails `gpu_oom` when it runs on its type's own GPU class, and passes through to
  the wrapped backend on a larger class of the type's ladder (an input too large for the smaller
  card: the jobs app tries it again on the next class).

Each spawn draws one number: the faults' rates are disjoint slices of [0, 1) and must sum to at
most 1; the rest passes through to the wrapped backend. With a `seed`, the sequence of decisions
is deterministic (per backend instance). The decision is written into the call id, so a call
spawned in one process fails or hangs the same way when polled from any other.
"""

from __future__ import annotations

import random
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gpu_tasks.backends.base import CallStatus, GpuBackend
from gpu_tasks.errors import PermanentGpuError, TransientGpuError
from gpu_tasks.results import OutputPolicy
from gpu_tasks.types import JobType, get_spec

FAULT_KINDS = ("transient", "permanent", "hang", "spawn_transient", "spawn_permanent", "oom")
_FAULT_ID = re.compile(r"^fault-(?P<kind>transient|permanent|hang)-(?P<type>[a-z-]+)-[0-9a-f]{32}$")
_NUMBER = re.compile(r"^(?:\d+(?:\.\d*)?|\.\d+)$")


@dataclass(frozen=True)
class FaultRates:
    transient: float = 0.0
    permanent: float = 0.0
    hang: float = 0.0
    spawn_transient: float = 0.0
    spawn_permanent: float = 0.0
    oom: float = 0.0

    def pick(self, draw: float) -> str | None:
        edge = 0.0
        for kind in FAULT_KINDS:
            edge += getattr(self, kind)
            if draw < edge:
                return kind
        return None


def parse_fault_spec(spec: str) -> dict[str, FaultRates]:
    """Parse a spec string (see the module docstring) into rates per job type ('*' for the rest).

    Raises ValueError for anything malformed: unknown type or fault, a rate outside [0, 1],
    rates of one type summing past 1, a type named twice.
    """
    table: dict[str, FaultRates] = {}
    for part in (p.strip() for p in (spec or "").split(";")):
        if not part:
            continue
        type_name, sep, body = part.partition(":")
        type_name = type_name.strip()
        if not sep or not body.strip():
            raise ValueError(f"fault spec {part!r}: expected 'type:fault=rate,...'")
        if type_name != "*":
            try:
                type_name = JobType(type_name).value
            except ValueError:
                raise ValueError(f"fault spec: unknown job type {type_name!r}") from None
        if type_name in table:
            raise ValueError(f"fault spec: {type_name!r} given twice")
        rates: dict[str, float] = {}
        for item in (i.strip() for i in body.split(",")):
            kind, eq, value = (s.strip() for s in item.partition("="))
            if not eq or kind not in FAULT_KINDS:
                raise ValueError(f"fault spec {part!r}: unknown fault {kind!r} (expected one of {FAULT_KINDS})")
            if kind in rates:
                raise ValueError(f"fault spec {part!r}: {kind!r} given twice")
            if not _NUMBER.match(value) or not 0.0 <= float(value) <= 1.0:
                raise ValueError(f"fault spec {part!r}: rate {value!r} is not a number in [0, 1]")
            rates[kind] = float(value)
        if sum(rates.values()) > 1.0 + 1e-9:
            raise ValueError(f"fault spec {part!r}: rates sum past 1")
        table[type_name] = FaultRates(**rates)
    return table


class FaultInjectingBackend(GpuBackend):
    """Wraps `inner`, failing or hanging calls at the rates of `spec`."""

    def __init__(self, inner: GpuBackend, spec: str | Mapping[str, FaultRates], *, seed: int | None = None) -> None:
        self.inner = inner
        self.rates = parse_fault_spec(spec) if isinstance(spec, str) else dict(spec)
        self.rng = random.Random(seed)  # noqa: S311 - drills, not security
        self.name = f"{inner.name}+faults"

    @property
    def announces(self) -> bool:
        # As the wrapped backend. An injected failure needs no announcement: it fails at once, so
        # the spawning step's first look finds it (and a transient one's re-spawn is looked at
        # again). An injected hang is never announced, as a hung container says nothing: with an
        # announcing backend only the reaper can end it (its repoll, its time-out).
        return self.inner.announces

    def unavailable_reason(self, job_type: str) -> str | None:
        return self.inner.unavailable_reason(job_type)

    def languages(self, job_type: str) -> frozenset[str]:
        return self.inner.languages(job_type)

    def _rates_for(self, job_type: str) -> FaultRates:
        return self.rates.get(job_type) or self.rates.get("*") or FaultRates()

    def spawn(self, job_type: str, payload: Mapping[str, Any], *, gpu: str | None = None) -> str:
        if not self.inner.supports(job_type):
            return self.inner.spawn(job_type, payload, gpu=gpu)  # the inner backend's own refusal
        kind = self._rates_for(job_type).pick(self.rng.random())
        if kind == "oom":
            kind = "permanent" if not gpu or gpu == get_spec(job_type).gpu.value else None
        if kind == "spawn_transient":
            raise TransientGpuError("capacity", "injected fault: no GPU capacity at spawn")
        if kind == "spawn_permanent":
            raise PermanentGpuError("model_unavailable", "injected fault: model unavailable at spawn")
        if kind is not None:
            return f"fault-{kind}-{job_type}-{uuid.uuid4().hex}"
        return self.inner.spawn(job_type, payload, gpu=gpu)

    def poll(self, call_id: str) -> CallStatus:
        match = _FAULT_ID.match(call_id)
        if match is None:
            return self.inner.poll(call_id)
        kind = match["kind"]
        if kind == "hang":
            return CallStatus.running(None, injected="hang")
        if kind == "transient":
            return CallStatus.failed(TransientGpuError("capacity", "injected fault: GPU capacity lost"), 1.0)
        return CallStatus.failed(PermanentGpuError("gpu_oom", "injected fault: out of GPU memory"), 1.0)

    def cancel(self, call_id: str) -> None:
        if _FAULT_ID.match(call_id) is None:
            self.inner.cancel(call_id)

    def release(self, call_id: str) -> None:
        if _FAULT_ID.match(call_id) is None:
            self.inner.release(call_id)

    def gpu_ladder(self, job_type: str) -> tuple[str, ...]:
        return self.inner.gpu_ladder(job_type)

    def output_targets(self, job_type: str) -> Mapping[str, str]:
        return self.inner.output_targets(job_type)

    def output_policy(self, call_id: str) -> OutputPolicy:
        return self.inner.output_policy(call_id)

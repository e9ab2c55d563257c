"""When a call did what, for the job's trace: its phases as wall-clock intervals.

A payload carries a W3C `traceparent` (the worker's `gpu.spawn` span) where the worker exports
traces. The call then times its phases (`CallPhases`) and returns them in its outcome record's
`trace`; the worker makes them spans of the job's trace once the call ends. A container exports
nothing itself: it needs no collector in reach, and a call whose payload has no traceparent
records nothing.

The record comes from a container, so it is read strictly (`CallTrace.of`): a traceparent of the
W3C form, at most MAX_PHASES phases of the names below, each a plain interval of integers.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

# W3C Trace Context, version 00; an all-zero trace or span id is invalid.
TRACEPARENT = re.compile(r"00-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-[0-9a-f]{2}")
PHASES = frozenset({"inputs", "engine.load", "engine.run", "outputs"})
MAX_PHASES = 16
# Times are nanoseconds since the epoch: between 2020 and 2100.
_EARLIEST_NS, _LATEST_NS = 1_577_836_800 * 10**9, 4_102_444_800 * 10**9


@dataclass(frozen=True)
class Phase:
    name: str
    start_ns: int
    end_ns: int


@dataclass(frozen=True)
class CallTrace:
    traceparent: str
    phases: tuple[Phase, ...]

    def record(self) -> dict[str, Any]:
        return {"traceparent": self.traceparent, "phases": [[p.name, p.start_ns, p.end_ns] for p in self.phases]}

    @staticmethod
    def of(value: Any) -> CallTrace | None:
        """A call's `trace` as its outcome record holds it; None for none, or for anything else
        than the strict form above."""
        if not isinstance(value, Mapping):
            return None
        traceparent, phases = value.get("traceparent"), value.get("phases")
        if not isinstance(traceparent, str) or not TRACEPARENT.fullmatch(traceparent):
            return None
        if not isinstance(phases, list) or len(phases) > MAX_PHASES:
            return None
        found = []
        for item in phases:
            if not (isinstance(item, list) and len(item) == 3 and isinstance(item[0], str) and item[0] in PHASES
                    and all(type(t) is int and _EARLIEST_NS <= t <= _LATEST_NS for t in item[1:])
                    and item[1] <= item[2]):
                return None
            found.append(Phase(item[0], item[1], item[2]))
        return CallTrace(traceparent, tuple(found))


class CallPhases:
    """A call's phases as it runs them: `with phases.phase("engine.run"): ...`. Records nothing
    unless the payload carries a traceparent."""

    def __init__(self, payload: Mapping[str, Any]) -> None:
        traceparent = payload.get("traceparent")
        self.traceparent = traceparent if isinstance(traceparent, str) and TRACEPARENT.fullmatch(traceparent) else ""
        self.phases: list[Phase] = []

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        if not self.traceparent:
            yield
            return
        start = time.time_ns()
        try:
            yield
        finally:
            if len(self.phases) < MAX_PHASES:
                self.phases.append(Phase(name, start, time.time_ns()))

    def record(self) -> dict[str, Any] | None:
        """The outcome record's `trace`; None where nothing is recorded."""
        return CallTrace(self.traceparent, tuple(self.phases)).record() if self.traceparent else None

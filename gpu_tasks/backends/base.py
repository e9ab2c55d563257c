"""The GPU backend interface: spawn a call, poll it from anywhere, cancel it.

Contract (what `jobs/gpu_client.py` relies on):

- `supports(job_type)` / `unavailable_reason(job_type)`: whether this backend can run the type
  now, and if not why (no engine, weights missing). The jobs app refuses a type it cannot run
  (503 `feature_unavailable`, with the reason) before charging anything.
- `languages(job_type)`: the spoken languages the type's engine here takes (Whisper codes and
  `auto`; empty for a type that takes none). The jobs app refuses another language (422
  `language_unsupported`) before charging anything.
- `spawn(job_type, payload, gpu=None) -> call_id`: starts the work and returns at once (never
  waits for the inference). `gpu`: a class of the type's ladder (`JobTypeSpec.gpu_ladder`) to
  run it on instead of its own, after a call ran out of GPU memory; a backend whose machines
  have one kind of accelerator (the local runner, the noop backend) runs it as it would anyway.
  The call id is an opaque string of at most 200 characters to store on the job;
  any process may poll or cancel it later. Raises `PermanentGpuError` (unknown or unsupported
  type, invalid payload) or `TransientGpuError` (backend unreachable, no capacity: spawn again
  later). Spawning twice starts two calls: the caller stores the id before polling.
- `poll(call_id) -> CallStatus`: never blocks on the inference. A `failed` status carries the
  call's `GpuError`; if that error is transient the call is over and the caller may spawn a new
  one. `poll` *raises* `TransientGpuError` only when it could not learn the state (backend
  unreachable): the call may still be running, so poll again later.
- `cancel(call_id)`: best effort and idempotent; cancelling a finished or unknown call is a no-op.
- `release(call_id)`: the caller has stored the outputs; the backend may delete its files.
- `output_targets(job_type)`: {output name: content type} of the outputs the type's calls
  upload to targets the caller gives in the payload (`gpu_tasks.contract`); empty where every
  output comes back in the result.
- `output_policy(call_id)`: the output refs this backend produces for the call (their forms,
  and the call's own output folder where it leaves files). A result is kept only as far as it
  fits (`gpu_tasks.results`): a call's container is not trusted to say where its outputs are.

Payload and result shapes, inputs and outputs: see `gpu_tasks.contract`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from gpu_tasks.announce import Announcement, sane_progress
from gpu_tasks.call_trace import CallTrace
from gpu_tasks.errors import GpuError, PermanentGpuError
from gpu_tasks.results import REMOTE_OUTPUTS, OutputPolicy, refused

# The most accelerator seconds a call can report: a day (no type's time limit comes near it).
MAX_GPU_SECONDS = 86_400.0

CallState = Literal["running", "succeeded", "failed"]


@dataclass(frozen=True)
class CallStatus:
    state: CallState
    progress: float | None = None  # 0-100 when the engine reports it
    result: dict[str, Any] | None = None  # on success
    error: GpuError | None = None  # on failure
    gpu_seconds: float = 0.0  # accelerator (or, locally, worker CPU) seconds spent by the call
    details: dict[str, Any] = field(default_factory=dict)  # backend-specific, for logs only
    # Running, but not started yet: the backend keeps it waiting for capacity (a local runner
    # in line for a slot). Nothing is spent, and its time limit has not started.
    waiting: bool = False
    trace: CallTrace | None = None  # its phases, for the job's trace (gpu_tasks.call_trace)

    @property
    def done(self) -> bool:
        return self.state != "running"

    @staticmethod
    def running(progress: Any = None, *, waiting: bool = False, **details: Any) -> CallStatus:
        return CallStatus("running", progress=sane_progress(progress), details=details, waiting=waiting)

    @staticmethod
    def succeeded(result: dict[str, Any], gpu_seconds: float = 0.0) -> CallStatus:
        return CallStatus("succeeded", progress=100.0, result=result, gpu_seconds=gpu_seconds)

    @staticmethod
    def failed(error: GpuError, gpu_seconds: float = 0.0) -> CallStatus:
        return CallStatus("failed", error=error, gpu_seconds=gpu_seconds)

    @staticmethod
    def from_record(record: Mapping[str, Any]) -> CallStatus:
        """From a final outcome record (`gpu_tasks.contract.status_record`), as a container or a
        runner wrote it: a success whose result is not an object, or whose seconds are not a
        plain number, is a failure (`invalid_result`)."""
        gpu_seconds = record.get("gpu_seconds") or 0.0
        if (not isinstance(gpu_seconds, int | float) or isinstance(gpu_seconds, bool)
                or not 0.0 <= gpu_seconds <= MAX_GPU_SECONDS):  # NaN fails both comparisons
            if record.get("state") == "succeeded":
                return CallStatus.failed(refused("its GPU seconds are not a plain number"))
            gpu_seconds = 0.0
        gpu_seconds = float(gpu_seconds)
        return replace(CallStatus._outcome(record, gpu_seconds), trace=CallTrace.of(record.get("trace")))

    @staticmethod
    def _outcome(record: Mapping[str, Any], gpu_seconds: float) -> CallStatus:
        if record.get("state") == "succeeded":
            result = record.get("result")
            if result is None:
                result = {}
            if not isinstance(result, dict):
                return CallStatus.failed(refused("it is not an object"), gpu_seconds)
            return CallStatus.succeeded(result, gpu_seconds)
        error = record.get("error")
        if not isinstance(error, dict):
            return CallStatus.failed(PermanentGpuError("internal", "the call failed without a readable error"),
                                     gpu_seconds)
        return CallStatus.failed(GpuError.from_dict(error), gpu_seconds)


class GpuBackend(ABC):
    """One way of running GPU work (see the module docstring for the contract)."""

    name: str = "abstract"

    @property
    def announces(self) -> bool:
        """Whether every call announces its end (`gpu_tasks.announce`); if not, callers must poll."""
        return False

    def supports(self, job_type: str) -> bool:
        return self.unavailable_reason(job_type) is None

    @property
    def holds_announcements(self) -> bool:
        """Whether `take_announcements` has anything to give (the consumer then forwards them)."""
        return False

    def take_announcements(self, max_items: int, timeout_s: float) -> list[Announcement]:
        """Announcements this backend holds itself (a cloud queue), for the consumer to forward
        to its Redis list. Backends that announce onto that list directly return none."""
        return []

    def stored_call_ids(self, call_id: str) -> list[str]:
        """The call ids a job may have stored for an announced `call_id` (a router prefixes them)."""
        return [call_id]

    def languages(self, job_type: str) -> frozenset[str]:
        """The spoken languages the type's engine on this backend takes (see the module docstring)."""
        return frozenset()

    def check(self) -> None:
        """Raise when the backend does not answer now (readiness). Backends that run in this
        process always answer."""
        return None

    @abstractmethod
    def unavailable_reason(self, job_type: str) -> str | None:
        """Why this backend cannot run `job_type` now, in words for a user; None when it can."""

    @abstractmethod
    def spawn(self, job_type: str, payload: Mapping[str, Any], *, gpu: str | None = None) -> str: ...

    @abstractmethod
    def poll(self, call_id: str) -> CallStatus: ...

    @abstractmethod
    def cancel(self, call_id: str) -> None: ...

    def release(self, call_id: str) -> None:
        return None

    def gpu_ladder(self, job_type: str) -> tuple[str, ...]:
        """The larger GPU classes, in order, a call of the type out of GPU memory is spawned on
        again (`spawn(gpu=...)`); none where every call runs on one kind of machine (a call out
        of memory there would be out of memory again)."""
        return ()

    def output_targets(self, job_type: str) -> Mapping[str, str]:
        """{output name: content type} of the outputs this backend's calls of `job_type` PUT to
        the targets the caller gives (see the module docstring); none by default."""
        return {}

    def output_policy(self, call_id: str) -> OutputPolicy:
        """The output refs this backend produces for `call_id`: by default uploaded objects and
        inline bytes only, never a path on this machine."""
        return REMOTE_OUTPUTS

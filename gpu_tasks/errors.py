"""The error taxonomy of GPU work: what failed, and whether trying again can help.

Every failure that leaves `gpu_tasks` is a `GpuError` with a machine-readable `code` drawn from
a closed set, so the jobs app can store it as the job's `error_code` without translating:

- `TransientGpuError` (`retryable=True`): the work did not run or did not finish for reasons
  outside the job itself: the network, GPU capacity, a Modal 5xx, a worker that died. Running
  the same input again later can succeed.
- `PermanentGpuError` (`retryable=False`): the same input would fail again: it ran out of GPU
  memory, the media cannot be decoded, the input is invalid, the model is not deployed, the
  type is not implemented by this backend, the time limit was hit, or an internal bug.

Errors cross process boundaries (the local runner's status file, Modal's return value) as the
plain dict of `to_dict()`, and come back through `GpuError.from_dict()`.
"""

from __future__ import annotations

from typing import Any, ClassVar

MESSAGE_MAX_CHARS = 1000

TRANSIENT_CODES = frozenset(
    {
        "network",  # a download, upload or backend call failed or timed out on the wire
        "capacity",  # no GPU available now / rate limited / resource exhausted
        "backend_error",  # the backend itself failed (Modal 5xx, internal failure)
        "worker_lost",  # the process running the call died without reporting (SIGKILL, OOM killer)
    }
)
PERMANENT_CODES = frozenset(
    {
        "gpu_oom",
        "invalid_media",
        "model_unavailable",
        "invalid_input",
        "internal",
        "timeout",
        "feature_unavailable",
        "canceled",
        "invalid_result",  # the call's result is not what the backend produces (gpu_tasks.results)
        "face_not_found",  # too few frames of the video show a face for the feature to work on
    }
)


class GpuError(Exception):
    """A failure of GPU work, with a stable `code` and whether retrying can help."""

    default_retryable: ClassVar[bool] = False
    codes: ClassVar[frozenset[str]] = TRANSIENT_CODES | PERMANENT_CODES

    def __init__(self, code: str, message: str = "", *, retryable: bool | None = None) -> None:
        if code not in self.codes:
            raise ValueError(f"unknown {type(self).__name__} code {code!r} (expected one of {sorted(self.codes)})")
        self.code = code
        self.message = message or code.replace("_", " ")
        self.retryable = self.default_retryable if retryable is None else retryable
        super().__init__(f"{code}: {self.message}")

    @property
    def kind(self) -> str:
        return "transient" if isinstance(self, TransientGpuError) else "permanent"

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "retryable": self.retryable, "kind": self.kind}

    @staticmethod
    def from_dict(data: dict[str, Any]) -> GpuError:
        # Written by a runner or a container: bounded, and a code outside the closed set below
        # becomes `internal` / `backend_error`.
        code = str(data.get("code") or "internal")[:40]
        message = str(data.get("message") or "")[:MESSAGE_MAX_CHARS]
        if data.get("kind") == "transient" or code in TRANSIENT_CODES:
            cls: type[GpuError] = TransientGpuError
        else:
            cls = PermanentGpuError
        if code not in cls.codes:
            # A status written by a newer version with a code this one does not know.
            return cls("internal" if cls is PermanentGpuError else "backend_error", f"{code}: {message}")
        # Whether trying again can help follows from the code's class, never from the writer's word:
        # a container that calls its own failure retryable would buy itself another call.
        return cls(code, message)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, GpuError) and type(self) is type(other) and self.to_dict() == other.to_dict()

    def __hash__(self) -> int:
        return hash((type(self), self.code, self.message))

    def __reduce__(self) -> tuple[Any, ...]:
        # Keyword-only `retryable` would otherwise be lost when pickled (Modal, multiprocessing).
        return (_rebuild, (type(self), self.code, self.message, self.retryable))


def _rebuild(cls: type[GpuError], code: str, message: str, retryable: bool) -> GpuError:
    return cls(code, message, retryable=retryable)


class TransientGpuError(GpuError):
    """Network, capacity, backend 5xx, lost worker: the same input may succeed later."""

    default_retryable = True
    codes = TRANSIENT_CODES


class PermanentGpuError(GpuError):
    """The same input would fail again: report it to the user, refund, do not retry."""

    default_retryable = False
    codes = PERMANENT_CODES


def classify_exception(exc: BaseException) -> GpuError:
    """Map an exception raised by engine code to the taxonomy (unknown ones are `internal`).

    `gpu_oom` is the GPU's memory only (torch's OutOfMemoryError, CUDA's "out of memory"): a
    larger GPU class may hold the input. Python's MemoryError is the host's memory, which no larger
    GPU gives more of, so it is `internal` (the container is sized wrong, or an engine leaks),
    whatever its text says."""
    if isinstance(exc, GpuError):
        return exc
    text = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, MemoryError):
        return PermanentGpuError("internal", f"host memory exhausted: {text[:470]}")
    lowered = text.lower()
    if "outofmemoryerror" in lowered.replace(" ", "") or "cuda out of memory" in lowered:
        return PermanentGpuError("gpu_oom", text[:500])
    return PermanentGpuError("internal", text[:500])


def raise_for_http(status: int, what: str) -> None:
    """The error a signed URL's answer of `status` means for a call (none below 400)."""
    if status < 400:
        return
    if status in (408, 429) or status >= 500:
        raise TransientGpuError("network", f"{what} failed: HTTP {status}")
    if status == 403:
        # The call's signed URLs last AUTEUR_SIGNED_URL_TTL_SECONDS (15 minutes by default) from its
        # spawn; a call that began later finds them expired. Spawned again, it gets fresh ones.
        raise TransientGpuError("network", f"{what} refused: HTTP 403 (its signed URL expired before the call began)")
    raise PermanentGpuError("invalid_input", f"{what} refused: HTTP {status}")

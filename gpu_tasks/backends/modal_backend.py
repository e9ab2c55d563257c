"""The Modal backend: spawn the deployed app's functions by name, poll and cancel their calls.

Deploy the app first (`modal deploy gpu_tasks/modal_app.py`, see that module). Then:

- spawn: `modal.Function.from_name(app, fn).spawn(payload)`, where `fn` is the type's function
  on the GPU class asked for (`JobTypeSpec.modal_function_on`: `lip_sync`, `lip_sync_on_l40s`,
  ...); the call id is the FunctionCall's
  `object_id` ("fc-..."), valid from any process with the same Modal credentials.
- poll: `modal.FunctionCall.from_id(id).get(timeout=0)`: the builtin `TimeoutError` means still
  running (progress then comes from the `auteur-gpu-progress` modal.Dict the function writes);
  a value is the function's outcome record (`gpu_tasks.contract.status_record`).
- cancel: `FunctionCall.cancel()`.

Payloads must carry inputs as URLs (`{"url": ...}`: the worker's paths don't exist in Modal's
containers); `output_dir` is dropped; a type's large outputs are PUT to the `output_targets`
the worker gives (a call's return travels through Modal's return path, capped at 256 MiB), the
others returned inline.

Errors. The function classifies its own failures (the outcome record); what remains is Modal's:
- transient (spawn again / poll again later): connection errors, Modal's 5xx and internal
  failures (`ServiceError`, `InternalError`, `InternalFailure`), `ResourceExhaustedError`
  (capacity, rate limits), any non-Modal error on the wire (OSError, gRPC);
- permanent: `FunctionTimeoutError` -> `timeout`; `NotFoundError` on spawn (app or function not
  deployed) -> `model_unavailable`; `InvalidError`/`RequestSizeError` -> `invalid_input`; an
  expired result or a call Modal has lost -> `worker_lost` (transient: spawn again);
  `AuthError`/`PermissionDeniedError`, exceptions raised by the remote code and anything else
  -> `internal`.

`modal` is imported lazily at the one place it is used (`self.modal`); tests inject a fake there.
"""

from __future__ import annotations

import builtins
import contextlib
import importlib
from collections.abc import Mapping
from types import ModuleType
from typing import Any

from gpu_tasks.announce import Announcement
from gpu_tasks.backends.base import CallStatus, GpuBackend
from gpu_tasks.engines import engine_languages
from gpu_tasks.errors import GpuError, PermanentGpuError, TransientGpuError
from gpu_tasks.types import get_spec

DEFAULT_APP_NAME = "auteur-gpu"
PROGRESS_DICT_NAME = "auteur-gpu-progress"


def events_queue_name(app_name: str) -> str:
    """The modal.Queue the app's calls announce their progress and end on."""
    return f"{app_name}-events"


def _has_path_input(value: Any) -> bool:
    if isinstance(value, Mapping):
        if isinstance(value.get("path"), str):
            return True
        return any(_has_path_input(v) for k, v in value.items() if k != "edl")
    if isinstance(value, list | tuple):
        return any(_has_path_input(v) for v in value)
    return False


class ModalBackend(GpuBackend):
    name = "modal"

    def __init__(
        self,
        app_name: str = DEFAULT_APP_NAME,
        *,
        environment_name: str | None = None,
        modal_module: ModuleType | Any | None = None,
        progress_dict: str | None = PROGRESS_DICT_NAME,
        announcements: bool = False,
    ) -> None:
        self.app_name = app_name
        # Whether the consumer drains the app's events queue (the deployed app always announces).
        self.announcements = announcements
        self.environment_name = environment_name
        self._modal = modal_module
        self.progress_dict = progress_dict

    @property
    def modal(self) -> Any:
        if self._modal is None:
            self._modal = importlib.import_module("modal")
        return self._modal

    # -- the interface -------------------------------------------------------------------------
    def unavailable_reason(self, job_type: str) -> str | None:
        try:
            spec = get_spec(job_type)
        except GpuError as exc:
            return exc.message
        return None if spec.modal else f"{spec.job_type.value} has no engine deployed on Modal yet"

    def languages(self, job_type: str) -> frozenset[str]:
        return engine_languages(job_type, "modal")

    def output_targets(self, job_type: str) -> Mapping[str, str]:
        return get_spec(job_type).uploaded_outputs

    def gpu_ladder(self, job_type: str) -> tuple[str, ...]:
        return tuple(gpu.value for gpu in get_spec(job_type).gpu_ladder)

    def spawn(self, job_type: str, payload: Mapping[str, Any], *, gpu: str | None = None) -> str:
        spec = get_spec(job_type)
        name = spec.modal_function_on(gpu)  # one function per class of the type's ladder (modal_app)
        if not spec.modal:
            raise PermanentGpuError("feature_unavailable", f"{spec.job_type.value} is not deployed on Modal yet")
        if _has_path_input(payload):
            raise PermanentGpuError("invalid_input", "Modal needs URL inputs ({'url': ...}), not local paths")
        body = {k: v for k, v in payload.items() if k != "output_dir"}
        try:
            kwargs = {"environment_name": self.environment_name} if self.environment_name else {}
            function = self.modal.Function.from_name(self.app_name, name, **kwargs)
            call = function.spawn(body)
            return str(call.object_id)
        except Exception as exc:
            raise self.map_error(exc, during="spawn") from exc

    def poll(self, call_id: str) -> CallStatus:
        try:
            call = self.modal.FunctionCall.from_id(call_id)
            record = call.get(timeout=0)
        except builtins.TimeoutError:
            return CallStatus.running(self._progress(call_id))
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:
            cancelled = getattr(self.modal.exception, "InputCancellation", None)
            if cancelled is not None and isinstance(exc, cancelled):
                return CallStatus.failed(PermanentGpuError("canceled", "the Modal call was cancelled"))
            error = self.map_error(exc, during="poll")
            if self._is_connectivity(exc):
                raise error from exc  # we could not learn the state: poll again later
            return CallStatus.failed(error)
        if not isinstance(record, Mapping) or "state" not in record:
            return CallStatus.failed(PermanentGpuError("internal", "the Modal function returned no outcome record"))
        self._forget_progress(call_id)
        return CallStatus.from_record(record)

    def cancel(self, call_id: str) -> None:
        modal = self.modal
        try:
            modal.FunctionCall.from_id(call_id).cancel()
        except Exception as exc:
            if isinstance(exc, modal.exception.NotFoundError):
                return  # unknown or long gone: nothing to cancel
            error = self.map_error(exc, during="cancel")
            if error.retryable:
                raise error from exc
        self._forget_progress(call_id)

    @property
    def announces(self) -> bool:
        return self.announcements

    @property
    def holds_announcements(self) -> bool:
        return self.announcements

    def take_announcements(self, max_items: int, timeout_s: float) -> list[Announcement]:
        """Up to `max_items` announcements from the app's modal.Queue, waiting at most `timeout_s`.

        A get is destructive: the consumer hands them on to its Redis list at once, and one that
        is lost in between is found by the reaper's poll."""
        if not self.announcements:
            return []
        try:
            kwargs = {"environment_name": self.environment_name} if self.environment_name else {}
            queue = self.modal.Queue.from_name(events_queue_name(self.app_name), create_if_missing=True, **kwargs)
            items = queue.get_many(max_items, block=True, timeout=timeout_s)
        except Exception as exc:
            raise self.map_error(exc, during="take announcements") from exc
        return [a for a in map(Announcement.loads, items or []) if a is not None]

    def check(self) -> None:
        """One round trip to Modal: the length of the app's events queue."""
        try:
            kwargs = {"environment_name": self.environment_name} if self.environment_name else {}
            self.modal.Queue.from_name(events_queue_name(self.app_name), create_if_missing=True, **kwargs).len()
        except Exception as exc:
            raise self.map_error(exc, during="check") from exc

    # -- errors ----------------------------------------------------------------------------------
    def _is_connectivity(self, exc: BaseException) -> bool:
        e = self.modal.exception
        transient_types = (e.ConnectionError, e.ServiceError, e.InternalError, e.ResourceExhaustedError)
        return isinstance(exc, transient_types) or not isinstance(exc, e.Error)

    def map_error(self, exc: BaseException, *, during: str) -> GpuError:
        """Map an exception raised by the modal client to the taxonomy."""
        if isinstance(exc, GpuError):
            return exc
        e = self.modal.exception
        text = f"Modal {during}: {type(exc).__name__}: {exc}"[:500]
        if isinstance(exc, e.FunctionTimeoutError):
            return PermanentGpuError("timeout", text)
        if isinstance(exc, e.OutputExpiredError):
            return TransientGpuError("worker_lost", text)
        if isinstance(exc, e.ResourceExhaustedError):
            return TransientGpuError("capacity", text)
        if isinstance(exc, e.ConnectionError):
            return TransientGpuError("network", text)
        if isinstance(exc, e.ServiceError | e.InternalError | e.InternalFailure):
            return TransientGpuError("backend_error", text)
        if isinstance(exc, e.NotFoundError):
            if during == "spawn":
                return PermanentGpuError("model_unavailable", f"{text} (is the app deployed?)")
            return TransientGpuError("worker_lost", text)
        if isinstance(exc, e.InvalidError | e.RequestSizeError):
            return PermanentGpuError("invalid_input", text)
        if not isinstance(exc, e.Error):
            return TransientGpuError("network", text)  # OSError, gRPC and friends on the wire
        return PermanentGpuError("internal", text)

    # -- progress ----------------------------------------------------------------------------------
    def _progress(self, call_id: str) -> float | None:
        if not self.progress_dict:
            return None
        try:
            value = self.modal.Dict.from_name(self.progress_dict).get(call_id)
            return float(value) if value is not None else None
        except Exception:  # noqa: BLE001 - progress is best effort
            return None

    def _forget_progress(self, call_id: str) -> None:
        if not self.progress_dict:
            return
        with contextlib.suppress(Exception):  # best effort: entries also expire on their own
            self.modal.Dict.from_name(self.progress_dict).pop(call_id, None)

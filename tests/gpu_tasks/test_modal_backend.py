"""The Modal backend against a fake `modal` module, injected at the one place the client is used.

The fake keeps Modal's real exception classes (the mapping is what is under test) and replaces
the cloud: `Function.from_name(...).spawn()` either replays scripted outcomes or runs the deployed
function's own body with `.local()` (gpu_tasks.modal_app), fetching URL inputs from and uploading
outputs to a loopback HTTP server that stands in for signed object-storage URLs.
"""

from __future__ import annotations

import builtins
import dataclasses
import hashlib
import http.server
import itertools
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import modal
import modal.exception as mx
import pytest

from gpu_tasks import types
from gpu_tasks.backends.modal_backend import ModalBackend
from gpu_tasks.errors import GpuError, PermanentGpuError, TransientGpuError
from gpu_tasks.types import JOB_TYPES
from tests.gpu_tasks.helpers import streams


class FakeCall:
    def __init__(self, object_id: str, outcomes: list[Any]) -> None:
        self.object_id = object_id
        self.outcomes = outcomes
        self.cancelled = False
        self.cancel_error: BaseException | None = None

    def get(self, timeout: float | None = None) -> Any:
        assert timeout == 0, "the backend must never block on a call"
        item = self.outcomes.pop(0) if len(self.outcomes) > 1 else self.outcomes[0]
        if isinstance(item, BaseException):
            raise item
        return item

    def cancel(self) -> None:
        if self.cancel_error is not None:
            raise self.cancel_error
        self.cancelled = True


class FakeModal:
    """Stands in for the `modal` module: Function, FunctionCall, Dict and the real `exception`."""

    exception = mx

    def __init__(self) -> None:
        self.calls: dict[str, FakeCall] = {}
        self.lookups: list[tuple[str, str, dict[str, Any]]] = []
        self.payloads: list[dict[str, Any]] = []
        self.script: list[Any] | None = None  # outcomes for the next spawn; None runs the function
        # What the function does instead of the deployed one: (function name, payload) -> outcome record.
        self.body: Callable[[str, dict[str, Any]], Any] | None = None
        self.spawn_error: BaseException | None = None
        self.from_id_error: BaseException | None = None
        self.progress: dict[str, float] = {}
        self._ids = itertools.count(1)
        fake = self

        class Function:
            @staticmethod
            def from_name(app_name: str, name: str, **kwargs: Any) -> Any:
                fake.lookups.append((app_name, name, kwargs))
                return _Fn(name)

        class _Fn:
            def __init__(self, name: str) -> None:
                self.name = name

            def spawn(self, payload: dict[str, Any]) -> FakeCall:
                if fake.spawn_error is not None:
                    raise fake.spawn_error
                fake.payloads.append(payload)
                if fake.script is not None:
                    outcomes = list(fake.script)
                elif fake.body is not None:
                    outcomes = [fake.body(self.name, payload)]
                else:
                    from gpu_tasks import modal_app

                    outcomes = [getattr(modal_app, self.name).local(payload)]
                call = FakeCall(f"fc-{next(fake._ids):04d}", outcomes)
                fake.calls[call.object_id] = call
                return call

        class FunctionCall:
            @staticmethod
            def from_id(call_id: str) -> FakeCall:
                if fake.from_id_error is not None:
                    raise fake.from_id_error
                if call_id not in fake.calls:
                    raise mx.NotFoundError(f"no call {call_id}")
                return fake.calls[call_id]

        class _Dict:
            def get(self, key: str) -> float | None:
                return fake.progress.get(key)

            def pop(self, key: str, default: Any = None) -> Any:
                return fake.progress.pop(key, default)

        class Dict:
            @staticmethod
            def from_name(name: str, **kwargs: Any) -> _Dict:
                return _Dict()

        self.Function = Function
        self.FunctionCall = FunctionCall
        self.Dict = Dict


@pytest.fixture
def fake() -> FakeModal:
    return FakeModal()


@pytest.fixture
def backend(fake: FakeModal) -> ModalBackend:
    return ModalBackend("auteur-test", environment_name="staging", modal_module=fake)


def record(state: str = "succeeded", **extra: Any) -> dict[str, Any]:
    return {"state": state, "result": {"text": "hi"}, "error": None, "gpu_seconds": 12.5, **extra}


def test_spawn_by_name_then_poll_running_then_succeeded(fake: FakeModal, backend: ModalBackend) -> None:
    fake.script = [builtins.TimeoutError(), builtins.TimeoutError(), record()]
    call_id = backend.spawn("transcription", {"media": {"url": "https://r2.example/a.wav"}, "output_dir": "/x"})
    assert call_id == "fc-0001"
    assert fake.lookups == [("auteur-test", "transcription", {"environment_name": "staging"})]
    assert fake.payloads == [{"media": {"url": "https://r2.example/a.wav"}}], "output_dir means nothing on Modal"
    fake.progress[call_id] = 42.0
    first = backend.poll(call_id)
    assert (first.state, first.progress) == ("running", 42.0)
    assert backend.poll(call_id).state == "running"
    done = backend.poll(call_id)
    assert done.state == "succeeded" and done.result == {"text": "hi"} and done.gpu_seconds == 12.5
    assert call_id not in fake.progress


def test_a_failed_outcome_record_keeps_its_classified_error(fake: FakeModal, backend: ModalBackend) -> None:
    fake.script = [record("failed", result=None, error=PermanentGpuError("gpu_oom", "4K too big").to_dict())]
    status = backend.poll(backend.spawn("tts", {"text": "hi"}))
    assert status.state == "failed" and status.error == PermanentGpuError("gpu_oom", "4K too big")
    fake.script = ["not a record"]
    assert backend.poll(backend.spawn("tts", {"text": "hi"})).error.code == "internal"  # type: ignore[union-attr]


def test_types_without_model_code_and_local_paths_are_refused_before_modal(
    fake: FakeModal, backend: ModalBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    on_modal = [t for t in types.JobType if types.JOB_TYPES[t].modal]
    assert all(backend.supports(t) for t in on_modal), "every type but the worker's own has its engine on Modal"
    assert not backend.supports("voice-consent"), "the consent check runs on the worker, never on Modal"
    undeployed = dataclasses.replace(types.JOB_TYPES[types.JobType.LIP_SYNC], modal_engine=None)
    monkeypatch.setattr(types, "JOB_TYPES", {**types.JOB_TYPES, types.JobType.LIP_SYNC: undeployed})
    assert not backend.supports("lip-sync") and "Modal" in str(backend.unavailable_reason("lip-sync"))
    with pytest.raises(PermanentGpuError) as info:
        backend.spawn("lip-sync", {"video_media": {"url": "https://x/v.mp4"}})
    assert info.value.code == "feature_unavailable"
    with pytest.raises(PermanentGpuError) as info:
        backend.spawn("transcription", {"media": {"path": "/srv/media/a.wav"}})
    assert info.value.code == "invalid_input"
    with pytest.raises(PermanentGpuError):
        backend.spawn("render", {"edl": {}, "media": {"m": {"kind": "video", "path": "/a.mp4"}}})
    assert fake.lookups == [], "nothing reached Modal"


@pytest.mark.parametrize(
    ("exc", "kind", "code"),
    [
        (mx.NotFoundError("app not deployed"), PermanentGpuError, "model_unavailable"),
        (mx.ConnectionError("refused"), TransientGpuError, "network"),
        (mx.ResourceExhaustedError("quota"), TransientGpuError, "capacity"),
        (mx.ServiceError("503"), TransientGpuError, "backend_error"),
        (mx.InternalError("500"), TransientGpuError, "backend_error"),
        (mx.InvalidError("bad arg"), PermanentGpuError, "invalid_input"),
        (mx.RequestSizeError("too big"), PermanentGpuError, "invalid_input"),
        (mx.AuthError("token"), PermanentGpuError, "internal"),
        (OSError("connection reset"), TransientGpuError, "network"),
    ],
)
def test_spawn_errors_map_to_the_taxonomy(
    fake: FakeModal, backend: ModalBackend, exc: BaseException, kind: type[GpuError], code: str
) -> None:
    fake.spawn_error = exc
    with pytest.raises(kind) as info:
        backend.spawn("transcription", {"media": {"url": "https://r2.example/a.wav"}})
    assert info.value.code == code
    assert info.value.retryable is (kind is TransientGpuError)


@pytest.mark.parametrize(
    ("exc", "code", "retryable"),
    [
        (mx.FunctionTimeoutError("600 s"), "timeout", False),
        (mx.RemoteError("container crashed"), "internal", False),
        (mx.ExecutionError("cannot deserialize"), "internal", False),
        (mx.InternalFailure("retriable"), "backend_error", True),
        (mx.OutputExpiredError(), "worker_lost", True),
        (mx.InputCancellation(), "canceled", False),
    ],
)
def test_poll_reports_call_failures_as_failed_status(
    fake: FakeModal, backend: ModalBackend, exc: BaseException, code: str, retryable: bool
) -> None:
    fake.script = [exc]
    status = backend.poll(backend.spawn("tts", {"text": "hi"}))
    assert status.state == "failed" and status.error is not None
    assert (status.error.code, status.error.retryable) == (code, retryable)


@pytest.mark.parametrize(
    "exc", [mx.ConnectionError("down"), mx.ServiceError("502"), mx.ResourceExhaustedError("rate"), OSError("reset")]
)
def test_poll_raises_transient_when_the_state_is_unknown(
    fake: FakeModal, backend: ModalBackend, exc: BaseException
) -> None:
    fake.script = [record()]
    call_id = backend.spawn("tts", {"text": "hi"})
    fake.from_id_error = exc
    with pytest.raises(TransientGpuError):
        backend.poll(call_id)
    fake.from_id_error = None
    assert backend.poll(call_id).state == "succeeded", "the call was fine all along"


def test_poll_of_an_unknown_call_is_a_lost_call(backend: ModalBackend) -> None:
    status = backend.poll("fc-unknown")
    assert status.state == "failed" and status.error is not None and status.error.code == "worker_lost"


def test_cancel_cancels_the_function_call(fake: FakeModal, backend: ModalBackend) -> None:
    fake.script = [builtins.TimeoutError()]
    call_id = backend.spawn("transcription", {"media": {"url": "https://r2.example/a.wav"}})
    backend.cancel(call_id)
    assert fake.calls[call_id].cancelled
    backend.cancel("fc-unknown")  # NotFound: nothing to cancel
    fake.calls[call_id].cancel_error = mx.ConnectionError("down")
    with pytest.raises(TransientGpuError):
        backend.cancel(call_id)


# -- the deployed functions' bodies, run with .local() ------------------------------------------


class _Storage(http.server.BaseHTTPRequestHandler):
    files: dict[str, bytes] = {}
    uploads: dict[str, bytes] = {}

    def do_GET(self) -> None:
        if self.path == "/flaky":
            self.send_error(503)
            return
        if self.path == "/expired":  # as S3 and R2 answer a signed URL past its expiry
            self.send_error(403)
            return
        body = self.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_PUT(self) -> None:
        self.uploads[self.path] = self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        return None


@pytest.fixture
def storage(hd_video: Path) -> Iterator[str]:
    _Storage.files = {"/media/hd.mp4": hd_video.read_bytes()}
    _Storage.uploads = {}
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Storage)
    # shutdown() waits for the loop's next poll: 0.05 s, not the default 0.5 s
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_compression_runs_in_the_modal_function_body_with_signed_urls(
    backend: ModalBackend, storage: str, tmp_path: Path
) -> None:
    payload = {
        "media": {"url": f"{storage}/media/hd.mp4"},
        "preset": "480p",
        "output_targets": {"video": {"key": "k/out", "url": f"{storage}/upload/out.mp4",
                                     "headers": {"Content-Type": "video/mp4"}, "max_bytes": 10**8}},
    }
    status = backend.poll(backend.spawn("compression", payload))
    assert status.state == "succeeded", status.error
    ref = status.result["outputs"]["video"]  # type: ignore[index]
    assert ref["uploaded"] is True and "path" not in ref and "data" not in ref and ref["key"] == "k/out"
    uploaded = tmp_path / "uploaded.mp4"
    uploaded.write_bytes(_Storage.uploads["/upload/out.mp4"])
    assert ref["size_bytes"] == uploaded.stat().st_size
    assert ref["sha256"] == hashlib.sha256(uploaded.read_bytes()).hexdigest()
    assert streams(uploaded)["video"]["height"] == 480
    assert status.gpu_seconds > 0


def test_without_upload_urls_outputs_come_back_inline(backend: ModalBackend, storage: str, tmp_path: Path) -> None:
    status = backend.poll(backend.spawn("compression", {"media": {"url": f"{storage}/media/hd.mp4"}, "preset": "720p"}))
    assert status.state == "succeeded", status.error
    ref = status.result["outputs"]["video"]  # type: ignore[index]
    out = tmp_path / "inline.mp4"
    out.write_bytes(ref["data"])
    assert streams(out)["video"]["height"] == 720


@pytest.mark.parametrize(
    ("path", "code", "retryable"),
    [("/missing", "invalid_input", False), ("/flaky", "network", True), ("/expired", "network", True)],
)
def test_input_download_failures_are_classified_inside_the_function(
    backend: ModalBackend, storage: str, path: str, code: str, retryable: bool
) -> None:
    status = backend.poll(backend.spawn("compression", {"media": {"url": f"{storage}{path}"}, "preset": "480p"}))
    assert status.state == "failed" and status.error is not None
    assert (status.error.code, status.error.retryable) == (code, retryable)
    assert "127.0.0.1" not in status.error.message, "signed URLs never appear in errors"


def test_every_type_is_deployed_with_its_gpu_timeout_and_concurrency() -> None:
    from gpu_tasks import modal_app

    for spec in JOB_TYPES.values():
        assert isinstance(getattr(modal_app, spec.modal_function), modal.Function)
        options = modal_app.function_options(spec)
        assert options["timeout"] == spec.time_limit_s
        assert options["max_containers"] == spec.max_concurrency
        if spec.is_gpu:
            assert options["gpu"] == spec.gpu.value and "/models" in options["volumes"]
        else:
            assert "gpu" not in options
    assert (
        modal_app.function_options(JOB_TYPES[next(t for t in JOB_TYPES if t.value == "video-generation")])["gpu"]
        == "A100-80GB"
    )


@pytest.mark.filterwarnings("ignore:The lip_sync function is executing locally")
def test_a_function_without_its_weights_on_the_volume_answers_model_unavailable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gpu_tasks import modal_app

    monkeypatch.setenv("AUTEUR_MODELS_DIR", str(tmp_path))  # an empty Volume
    payload = {"video_media": {"url": "https://x/v.mp4"}, "audio_media": {"url": "https://x/a.wav"}}
    outcome = modal_app.FUNCTIONS["lip_sync"].local(payload)
    assert outcome["state"] == "failed" and outcome["error"]["code"] == "model_unavailable"
    assert "download_models lip-sync" in outcome["error"]["message"], "checked before any input is fetched"


# ----------------------------------------------------------------------------- announcements

class FakeQueue:
    """A named modal.Queue: put, and get_many as Modal's client has it (block, timeout)."""

    def __init__(self) -> None:
        self.items: list[Any] = []
        self.gets: list[tuple[int, bool, float | None]] = []

    def put(self, value: Any) -> None:
        self.items.append(value)

    def get_many(self, n_values: int, block: bool = True, timeout: float | None = None) -> list[Any]:
        self.gets.append((n_values, block, timeout))
        taken, self.items = self.items[:n_values], self.items[n_values:]
        return taken

    def len(self) -> int:
        return len(self.items)


def with_queue(fake: FakeModal) -> tuple[FakeQueue, list[tuple[str, dict[str, Any]]]]:
    queue, names = FakeQueue(), []

    class Queue:
        @staticmethod
        def from_name(name: str, **kwargs: Any) -> FakeQueue:
            names.append((name, kwargs))
            return queue

    fake.Queue = Queue  # type: ignore[attr-defined]
    return queue, names


def test_announcements_put_by_the_function_are_taken_from_the_apps_queue(fake: FakeModal) -> None:
    from gpu_tasks.announce import Announcement
    from gpu_tasks.modal_runtime import QueueAnnouncer

    queue, names = with_queue(fake)
    backend = ModalBackend("auteur-test", environment_name="staging", modal_module=fake, announcements=True)
    assert backend.announces and backend.holds_announcements
    # What the deployed function does (gpu_tasks/modal_app.py) as its call runs and ends.
    announcer = QueueAnnouncer(queue, "fc-0001")
    announcer.progress(40.0)
    announcer.outcome(record("succeeded"))
    QueueAnnouncer(queue, "fc-0002").outcome(record("failed", error={"code": "gpu_oom", "message": "x"}))
    queue.put("garbage")
    taken = backend.take_announcements(10, 2.0)
    assert taken == [Announcement("fc-0001", "progress", 40.0, taken[0].at), Announcement("fc-0001", "succeeded",
                     None, taken[1].at), Announcement("fc-0002", "failed", None, taken[2].at)]
    assert names == [("auteur-test-events", {"create_if_missing": True, "environment_name": "staging"})]
    assert queue.gets == [(10, True, 2.0)] and queue.items == []


def test_a_backend_without_announcements_takes_nothing(fake: FakeModal, backend: ModalBackend) -> None:
    queue, names = with_queue(fake)
    queue.put("x")
    assert not backend.announces and backend.take_announcements(10, 1.0) == [] and names == []


def test_a_queue_out_of_reach_is_a_transient_error(fake: FakeModal) -> None:
    class Queue:
        @staticmethod
        def from_name(name: str, **kwargs: Any) -> Any:
            raise mx.ConnectionError("unreachable")

    fake.Queue = Queue  # type: ignore[attr-defined]
    backend = ModalBackend("auteur-test", modal_module=fake, announcements=True)
    with pytest.raises(TransientGpuError):
        backend.take_announcements(10, 1.0)


def test_a_routed_call_is_announced_under_the_id_its_job_stored(tmp_path: Path, fake: FakeModal) -> None:
    from gpu_tasks.backends.local import LocalBackend
    from gpu_tasks.backends.routing import RoutingBackend

    with_queue(fake)
    remote = ModalBackend("auteur-test", modal_module=fake, announcements=True)
    router = RoutingBackend({"modal": remote, "local": LocalBackend(tmp_path)}, default="modal",
                            routes={"render": "local"})
    assert router.holds_announcements and not router.announces  # the local side has no announce URL here
    assert router.stored_call_ids("fc-9") == ["modal:fc-9", "local:fc-9"]


def test_check_asks_modal_for_the_apps_queue_and_maps_an_outage_to_a_gpu_error(fake: FakeModal) -> None:
    from gpu_tasks.errors import GpuError

    _, names = with_queue(fake)
    backend = ModalBackend("auteur-test", environment_name="staging", modal_module=fake)
    backend.check()  # answers
    assert names == [("auteur-test-events", {"create_if_missing": True, "environment_name": "staging"})]

    class Down:
        @staticmethod
        def from_name(name: str, **kwargs: Any) -> Any:
            raise mx.ConnectionError("modal unreachable")

    fake.Queue = Down  # type: ignore[attr-defined]
    with pytest.raises(GpuError):
        backend.check()

"""The local backend's lifecycle against real runner processes (each call is a detached process)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import pytest

from gpu_tasks.announce import Announcement
from gpu_tasks.backends.base import CallStatus
from gpu_tasks.backends.local import LocalBackend
from gpu_tasks.errors import PermanentGpuError, TransientGpuError
from tests.gpu_tasks.helpers import heard_most_of

ROOT = Path(__file__).resolve().parents[2]


def wait_for(
    backend: LocalBackend, call_id: str, predicate: Callable[[CallStatus], bool], timeout: float = 60
) -> CallStatus:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = backend.poll(call_id)
        if predicate(status):
            return status
        time.sleep(0.05)
    raise AssertionError(f"{call_id}: condition not reached, last {status}")


def runner_pid(backend: LocalBackend, call_id: str) -> int:
    import json

    return int(json.loads((backend.base_dir / call_id / "pid.json").read_text())["pid"])


def group_gone(pgid: int, timeout: float = 10) -> bool:
    """No live process is left in the runner's process group (engine child and ffmpeg included)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        alive = []
        for proc in psutil.process_iter(["pid", "status"]):
            try:
                if os.getpgid(proc.pid) == pgid and proc.info["status"] != psutil.STATUS_ZOMBIE:
                    alive.append(proc.pid)
            except (ProcessLookupError, PermissionError):
                continue
        if not alive:
            return True
        time.sleep(0.1)
    return False


@pytest.fixture
def backend(tmp_path: Path) -> LocalBackend:
    return LocalBackend(tmp_path / "calls")


def test_spawn_returns_at_once_and_poll_sees_running_then_succeeded(backend: LocalBackend, speech_wav: Path) -> None:
    started = time.monotonic()
    call_id = backend.spawn("transcription", {"media": {"path": str(speech_wav)}})
    spawn_s = time.monotonic() - started
    assert spawn_s < 0.5, "spawn must not wait for the inference"
    assert backend.poll(call_id).state == "running"
    status = wait_for(backend, call_id, lambda s: s.done)
    assert status.state == "succeeded", status.error
    assert status.result is not None and status.result["segments"]
    assert status.gpu_seconds > 0
    assert status.progress == 100.0


def test_outputs_land_in_output_dir_and_release_removes_the_call(backend: LocalBackend, tmp_path: Path) -> None:
    out_dir = tmp_path / "outputs"
    call_id = backend.spawn("tts", {"text": "Stored by the caller.", "output_dir": str(out_dir)})
    status = wait_for(backend, call_id, lambda s: s.done)
    assert status.state == "succeeded", status.error
    audio = Path(status.result["outputs"]["audio"]["path"])  # type: ignore[index]
    assert audio.parent == out_dir and audio.stat().st_size > 1000
    backend.release(call_id)
    assert not (backend.base_dir / call_id).exists()
    assert audio.exists(), "release deletes the call's files, not the caller's output_dir"


def test_poll_works_from_another_process_after_the_spawner_was_killed(backend: LocalBackend, speech_wav: Path) -> None:
    code = (
        "import sys, time\n"
        "from gpu_tasks.backends.local import LocalBackend\n"
        f"b = LocalBackend({str(backend.base_dir)!r})\n"
        f"print(b.spawn('transcription', {{'media': {{'path': {str(speech_wav)!r}}}}}), flush=True)\n"
        "time.sleep(120)\n"
    )
    spawner = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert spawner.stdout is not None
    call_id = spawner.stdout.readline().strip()
    spawner.send_signal(signal.SIGKILL)
    spawner.wait()
    status = wait_for(LocalBackend(backend.base_dir), call_id, lambda s: s.done)
    assert status.state == "succeeded", status.error
    assert status.result is not None and heard_most_of(status.result["text"]), status.result


def test_cancel_stops_the_runner_and_its_ffmpeg(backend: LocalBackend, long_render_payload: dict[str, Any]) -> None:
    call_id = backend.spawn("render", long_render_payload)
    wait_for(backend, call_id, lambda s: s.progress is not None, timeout=30)
    pid = runner_pid(backend, call_id)
    backend.cancel(call_id)
    assert group_gone(pid), "runner, engine child and ffmpeg are all gone"
    status = backend.poll(call_id)
    assert status.state == "failed" and isinstance(status.error, PermanentGpuError)
    assert status.error.code == "canceled"
    backend.cancel(call_id)  # idempotent


def test_cancel_stops_what_left_the_runners_group_too(tmp_path: Path) -> None:
    """An engine that starts a process in a session of its own (daemonised: no group to kill) loses
    it on cancel all the same: the runner kills every process of the call's uid first."""
    import uuid

    import psutil

    backend = LocalBackend(tmp_path / "calls", engines={"tts": "tests.gpu_tasks.probe_engines:escape"})
    if not backend.sandbox.separate_uid:
        pytest.skip("the engines run as this process's uid here: no uid of the call's own to kill")
    marker = f"escapee-{uuid.uuid4().hex}"

    def escapees() -> list[psutil.Process]:
        return [p for p in psutil.process_iter(["cmdline"]) if marker in (p.info["cmdline"] or [])]

    call_id = backend.spawn("tts", {"text": "x", "marker": marker})
    wait_for(backend, call_id, lambda s: s.progress is not None and bool(escapees()), timeout=30)
    (escapee,) = escapees()
    assert os.getpgid(escapee.pid) != runner_pid(backend, call_id), "out of the runner's group"
    started = time.monotonic()
    backend.cancel(call_id)
    psutil.wait_procs([escapee], timeout=5)
    assert not escapees(), "the daemonised process is gone"
    assert time.monotonic() - started < 5
    assert backend.poll(call_id).error.code == "canceled"  # type: ignore[union-attr]


def test_runner_killed_midway_is_a_transient_failure(
    backend: LocalBackend, long_render_payload: dict[str, Any]
) -> None:
    call_id = backend.spawn("render", long_render_payload)
    wait_for(backend, call_id, lambda s: s.progress is not None, timeout=30)
    pid = runner_pid(backend, call_id)
    os.kill(pid, signal.SIGKILL)  # the supervisor only: its engine child must notice and stop too
    status = wait_for(backend, call_id, lambda s: s.done, timeout=10)
    assert status.state == "failed" and isinstance(status.error, TransientGpuError)
    assert status.error.code == "worker_lost" and status.error.retryable
    assert group_gone(pid), "the orphaned engine and its ffmpeg stop by themselves"


def test_time_limit_turns_into_a_timeout_failure(tmp_path: Path, long_render_payload: dict[str, Any]) -> None:
    backend = LocalBackend(tmp_path / "calls", time_limits={"render": 1.5})
    started = time.monotonic()
    call_id = backend.spawn("render", long_render_payload)
    status = wait_for(backend, call_id, lambda s: s.done, timeout=30)
    assert time.monotonic() - started < 10
    assert status.state == "failed" and isinstance(status.error, PermanentGpuError)
    assert status.error.code == "timeout" and not status.error.retryable
    assert status.gpu_seconds >= 1.5
    assert group_gone(runner_pid(backend, call_id))


def test_engine_errors_come_back_classified(backend: LocalBackend, tmp_path: Path) -> None:
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"\x00" * 4096)
    call_id = backend.spawn("compression", {"media": {"path": str(junk)}, "preset": "480p"})
    status = wait_for(backend, call_id, lambda s: s.done)
    assert status.state == "failed" and status.error is not None
    assert (status.error.code, status.error.retryable) == ("invalid_media", False)


def test_types_without_a_local_engine_are_refused_at_spawn(backend: LocalBackend) -> None:
    assert backend.supports("transcription") and backend.supports("render")
    assert not backend.supports("lip-sync") and not backend.supports("nonsense")
    with pytest.raises(PermanentGpuError) as info:
        backend.spawn("video-generation", {"prompt": "a cat"})
    assert info.value.code == "feature_unavailable"
    with pytest.raises(PermanentGpuError) as info:
        backend.spawn("nonsense", {})
    assert info.value.code == "invalid_input"
    assert not backend.base_dir.exists() or not any(backend.base_dir.iterdir()), "nothing was started"


def test_unknown_or_malformed_call_ids_are_lost_calls(backend: LocalBackend) -> None:
    for call_id in ("local-" + "0" * 32, "../../etc", ""):
        status = backend.poll(call_id)
        assert status.state == "failed" and status.error is not None and status.error.code == "worker_lost"
        backend.cancel(call_id)  # a no-op


def test_cleanup_removes_only_old_finished_calls(backend: LocalBackend) -> None:
    call_id = backend.spawn("tts", {"text": "Old call."})
    wait_for(backend, call_id, lambda s: s.done)
    assert backend.cleanup(max_age_s=3600) == 0
    old = time.time() - 7200
    os.utime(backend.base_dir / call_id, (old, old))
    assert backend.cleanup(max_age_s=3600) == 1
    assert not (backend.base_dir / call_id).exists()


def test_a_model_engine_runs_only_where_its_weights_are(tmp_path: Path) -> None:
    backend = LocalBackend(tmp_path / "calls", models_dir=tmp_path / "models")
    reason = backend.unavailable_reason("image-generation")
    assert reason is not None and "manage.py download_models image-generation" in reason
    with pytest.raises(PermanentGpuError) as refused:
        backend.spawn("image-generation", {"prompt": "a fox"})
    assert refused.value.code == "feature_unavailable" and not (tmp_path / "calls").exists()
    folder = tmp_path / "models" / "flux.1-schnell"
    folder.mkdir(parents=True)
    (folder / "model_index.json").write_text("{}")
    assert backend.supports("image-generation") and backend.unavailable_reason("image-generation") is None


# ----------------------------------------------------------------------------- what a runner gets

PROBES = "tests.gpu_tasks.probe_engines"
SECRETS = {
    "DJANGO_SECRET_KEY": "django-secret-for-the-env-test-0123456789",
    "AUTEUR_JWT_SECRET": "jwt-secret-for-the-env-test-0123456789",
    "DATABASE_URL": "postgres://app:db-password@127.0.0.1:5432/auteur",
    "REDIS_URL": "redis://:redis-password@127.0.0.1:6379/0",
    "MONGODB_URI": "mongodb://app:mongo-password@127.0.0.1:27017/auteur",
    "AWS_SECRET_ACCESS_KEY": "aws-secret-for-the-env-test",
    "AWS_ACCESS_KEY_ID": "AKIAENVTEST",
    "MODAL_TOKEN_ID": "ak-env-test",
    "MODAL_TOKEN_SECRET": "as-env-test",
    "HF_TOKEN": "hf_envtest",
    "FLOWER_BASIC_AUTH": "admin:flower-password",
}


def test_a_runner_gets_a_minimal_environment_without_any_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    backend = LocalBackend(tmp_path / "calls", models_dir=tmp_path / "models", engines={"tts": f"{PROBES}:dump_env"})
    status = wait_for(backend, backend.spawn("tts", {"text": "x"}), lambda s: s.done)
    assert status.state == "succeeded" and status.result is not None, status.error
    env = status.result["env"]
    assert not set(SECRETS) & set(env)
    assert not [name for name, value in env.items() if any(secret in value for secret in SECRETS.values())]
    assert not [name for name in env if name.startswith(("DJANGO_", "AUTEUR_JWT", "AWS_", "MODAL_", "CELERY"))]
    assert env["AUTEUR_MODELS_DIR"] == str(tmp_path / "models") and env["HF_HUB_OFFLINE"] == "1"
    assert env["OMP_NUM_THREADS"] == "1" and env["PATH"]


@pytest.fixture
def shared() -> Any:
    """A folder that every engine may write, whatever uid its sandbox runs it as (the test's
    tmp_path is the test's alone)."""
    import shutil
    import tempfile

    path = Path(tempfile.mkdtemp(prefix="auteur-shared-"))
    path.chmod(0o1777)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_no_more_runners_than_slots_run_at_once_and_the_rest_wait_in_line(tmp_path: Path, shared: Path) -> None:
    from gpu_tasks.runner_slots import RunnerSlots

    backend = LocalBackend(tmp_path / "calls", slots=2, engines={"tts": f"{PROBES}:hold"})
    calls = [backend.spawn("tts", {"text": "x", "dir": str(shared)}) for _ in range(5)]
    line = backend.base_dir / "slots" / "tickets"
    # Two engines run; the three other runners have reached the line and wait there.
    deadline = time.monotonic() + 60
    while not (len(list(shared.glob("running-*"))) == 2 and line.is_dir() and len(list(line.iterdir())) == 3):
        assert time.monotonic() < deadline, "runners did not settle"
        time.sleep(0.05)
    statuses = [backend.poll(call_id) for call_id in calls]
    assert sorted(s.waiting for s in statuses) == [False, False, True, True, True]
    assert all(s.state == "running" for s in statuses)
    assert RunnerSlots(backend.base_dir / "slots", 2).held() == 2
    (shared / "go").touch()
    results = [wait_for(backend, call_id, lambda s: s.done) for call_id in calls]
    assert [r.state for r in results] == ["succeeded"] * 5, [r.error for r in results]
    assert max(r.result["running_at_start"] for r in results if r.result) <= 2


def test_a_waiting_runner_that_is_canceled_leaves_the_line(tmp_path: Path, shared: Path) -> None:
    backend = LocalBackend(tmp_path / "calls", slots=1, engines={"tts": f"{PROBES}:hold"})
    calls = [backend.spawn("tts", {"text": "x", "dir": str(shared)}) for _ in range(3)]
    line = backend.base_dir / "slots" / "tickets"
    # The runners start concurrently, so which one takes the slot is not the spawn order: wait
    # until one engine runs and the two others wait, then cancel one of those that wait.
    deadline = time.monotonic() + 60
    while not (len(list(shared.glob("running-*"))) == 1 and line.is_dir() and len(list(line.iterdir())) == 2):
        assert time.monotonic() < deadline, "runners did not settle"
        time.sleep(0.05)
    waiting = [call_id for call_id in calls if backend.poll(call_id).waiting]
    assert len(waiting) == 2
    canceled_id = waiting[0]
    backend.cancel(canceled_id)
    canceled = backend.poll(canceled_id).error
    assert canceled is not None and canceled.code == "canceled"
    (shared / "go").touch()
    for call_id in calls:
        if call_id != canceled_id:
            assert wait_for(backend, call_id, lambda s: s.done).state == "succeeded"


def test_an_engine_allocating_past_the_memory_limit_fails_with_gpu_oom(tmp_path: Path) -> None:
    backend = LocalBackend(tmp_path / "calls", memory_limit_mb=256, engines={"tts": f"{PROBES}:allocate"})
    within = wait_for(backend, backend.spawn("tts", {"text": "x", "mb": 64}), lambda s: s.done)
    assert within.state == "succeeded" and within.result == {"allocated_mb": 64}
    over = wait_for(backend, backend.spawn("tts", {"text": "x", "mb": 1024}), lambda s: s.done)
    assert over.state == "failed" and over.error is not None
    assert over.error.code == "gpu_oom" and not over.error.retryable
    assert "256 MiB" in over.error.message


def test_the_local_engines_run_under_the_smallest_default_memory_limit(
    tmp_path: Path, speech_wav: Path, long_render_payload: dict[str, Any]
) -> None:
    backend = LocalBackend(tmp_path / "calls", memory_limit_mb=2048)
    transcribed = wait_for(backend, backend.spawn("transcription", {"media": {"path": str(speech_wav)}}),
                           lambda s: s.done)
    assert transcribed.state == "succeeded", transcribed.error
    media = long_render_payload["media"]["m"]
    compressed = wait_for(backend, backend.spawn("compression", {"media": media, "preset": "720p"}),
                          lambda s: s.done, timeout=120)
    assert compressed.state == "succeeded", compressed.error


# ----------------------------------------------------------------------------- announcements

@pytest.fixture
def events() -> Any:
    import redis

    from gpu_tasks.announce import EVENTS_KEY

    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    client.delete(EVENTS_KEY)
    yield lambda: [a for a in map(Announcement.loads, client.lrange(EVENTS_KEY, 0, -1)) if a]
    client.delete(EVENTS_KEY)


def test_a_runner_announces_its_start_progress_and_end(tmp_path: Path, events: Any) -> None:
    backend = LocalBackend(tmp_path / "calls", engines={"tts": f"{PROBES}:progress_steps"},
                           announce_url=os.environ["REDIS_URL"])
    assert backend.announces and not LocalBackend(tmp_path / "other").announces
    call_id = backend.spawn("tts", {"text": "x"})
    assert wait_for(backend, call_id, lambda s: s.done).state == "succeeded"
    deadline = time.monotonic() + 10
    while not any(a.outcome != "progress" for a in events()):
        assert time.monotonic() < deadline, events()
        time.sleep(0.05)
    seen = [(a.call_id, a.outcome, a.progress) for a in events()]
    assert seen == [(call_id, "progress", 0.0), (call_id, "progress", 25.0), (call_id, "progress", 60.0),
                    (call_id, "succeeded", None)]


def test_the_engine_holds_none_of_its_runners_sockets(tmp_path: Path, events: Any) -> None:
    """The runner's Redis connection (its announcements) is open when it forks the engine: the engine
    closes every socket it inherited, so a taken-over engine cannot speak to Redis on it."""
    backend = LocalBackend(tmp_path / "calls", engines={"tts": f"{PROBES}:open_sockets"},
                           announce_url=os.environ["REDIS_URL"])
    status = wait_for(backend, backend.spawn("tts", {"text": "x"}), lambda s: s.done)
    assert status.state == "succeeded" and status.result == {"sockets": 0}, status
    assert any(a.outcome == "progress" for a in events()), "the runner announced: its connection was open"


def test_a_failed_call_is_announced_and_the_engine_never_sees_the_announce_url(tmp_path: Path, events: Any) -> None:
    url = os.environ["REDIS_URL"]
    backend = LocalBackend(tmp_path / "calls", engines={"tts": f"{PROBES}:dump_env", "render": f"{PROBES}:nope"},
                           announce_url=url)
    status = wait_for(backend, backend.spawn("tts", {"text": "x"}), lambda s: s.done)
    assert status.result is not None and not [v for v in status.result["env"].values() if url in v]
    assert not [p for p in (tmp_path / "calls").rglob("*") if p.is_file() and url.encode() in p.read_bytes()]
    failed = backend.spawn("render", {})
    assert wait_for(backend, failed, lambda s: s.done).state == "failed"
    deadline = time.monotonic() + 10
    while not any(a.call_id == failed and a.outcome == "failed" for a in events()):
        assert time.monotonic() < deadline, events()
        time.sleep(0.05)

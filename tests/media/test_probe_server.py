"""The probe server behind `probe_isolated`: one per process, reused, replaced when it dies,
never holding a secret, never outliving the process that started it, and never hurt by a child
that fails."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from devstack.process_group import children_running
from gpu_tasks import confined
from media.models import MediaFile
from media.probing import sandbox as probe_sandbox
from media.probing.facts import OVER_LIMITS, ProbeResult
from media.probing.sandbox import ProbeLimits, current_server_pid, probe_isolated
from tests.jobs.conftest import start_worker, wait_for  # noqa: F401 - fixture
from tests.media.conftest import local_put, media_path, request_upload

REPO_ROOT = Path(__file__).resolve().parent.parent.parent
LIMITS = ProbeLimits()


@pytest.fixture(autouse=True)
def fresh_server() -> Iterator[None]:
    """Each test starts without a server, and leaves none running."""
    probe_sandbox.stop_server()
    yield
    probe_sandbox.stop_server()


@pytest.fixture
def fifo(tmp_path: Path) -> Path:
    """A named pipe nobody writes to: opening it blocks, so a probe of it never finishes."""
    path = tmp_path / "never.mp4"
    os.mkfifo(path)
    return path


def server_pid() -> int:
    pid = current_server_pid()
    assert pid is not None
    return pid


def probe_children(pid: int) -> list[psutil.Process]:
    return psutil.Process(pid).children()


def has_exited(pid: int) -> bool:
    """Gone, or a zombie waiting for whoever inherited it to reap it: it runs nothing either way."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_many_probes_reuse_one_server(samples):
    results = [probe_isolated(samples.video, "video", limits=LIMITS) for _ in range(5)]
    pids = {server_pid()}
    results += [probe_isolated(samples.wav, "audio", limits=LIMITS) for _ in range(3)]
    pids.add(server_pid())
    assert all(r.ok for r in results)
    assert results[0].metadata["video_codec"] == "h264" and results[-1].metadata["audio_codec"] == "pcm_s16le"
    assert len(pids) == 1
    assert probe_children(pids.pop()) == []  # every child was reaped


def test_a_server_killed_between_probes_is_replaced_and_the_next_probe_works(samples):
    assert probe_isolated(samples.video, "video", limits=LIMITS).ok
    first = server_pid()
    os.kill(first, signal.SIGKILL)
    wait_for(lambda: has_exited(first), timeout=10, interval=0.01)
    result = probe_isolated(samples.video, "video", limits=LIMITS)
    assert result.ok and result.duration_ms == 2000  # the file is not rejected for the server's death
    assert server_pid() != first and psutil.Process(server_pid()).status() != psutil.STATUS_ZOMBIE


def test_a_child_past_its_timeout_rejects_the_file_and_the_server_serves_the_next(samples, fifo):
    assert probe_isolated(samples.video, "video", limits=LIMITS).ok
    server = server_pid()
    started = time.monotonic()
    result = probe_isolated(fifo, "video", limits=ProbeLimits(timeout_seconds=0.5))
    assert result == ProbeResult(ok=False, rejection_reason=OVER_LIMITS)
    assert time.monotonic() - started < 0.5 + confined.ANSWER_MARGIN_SECONDS  # answered by the server
    assert server_pid() == server and probe_children(server) == []  # the child was killed and reaped
    assert probe_isolated(samples.video, "video", limits=LIMITS).ok
    assert server_pid() == server


def test_a_child_killed_mid_probe_rejects_the_file_and_the_server_serves_the_next(samples, fifo):
    assert probe_isolated(samples.video, "video", limits=LIMITS).ok
    server = server_pid()
    results: list[ProbeResult] = []
    probing = threading.Thread(target=lambda: results.append(probe_isolated(fifo, "video", limits=LIMITS)))
    probing.start()
    [child] = wait_for(lambda: probe_children(server), timeout=10, interval=0.01)
    child.send_signal(signal.SIGKILL)  # what a crash in FFmpeg or the OOM killer does to it
    probing.join(timeout=30)
    assert results == [ProbeResult(ok=False, rejection_reason=OVER_LIMITS)]
    assert server_pid() == server and psutil.Process(server).is_running()
    assert probe_isolated(samples.video, "video", limits=LIMITS).ok
    assert server_pid() == server


def test_a_server_that_hangs_is_killed_and_replaced_and_the_file_rejected(samples, monkeypatch):
    assert probe_isolated(samples.video, "video", limits=LIMITS).ok
    hung = server_pid()
    monkeypatch.setattr(confined, "ANSWER_MARGIN_SECONDS", 0.5)
    os.kill(hung, signal.SIGSTOP)  # alive, its pipe open, answering nothing
    result = probe_isolated(samples.video, "video", limits=ProbeLimits(timeout_seconds=0.5))
    assert result == ProbeResult(ok=False, rejection_reason=OVER_LIMITS)
    assert has_exited(hung) and current_server_pid() is None
    assert probe_isolated(samples.video, "video", limits=LIMITS).ok
    assert server_pid() != hung


class SoftTimeLimit(Exception):
    """What Celery raises in a task past its soft time limit (from a signal handler)."""


def test_a_probe_interrupted_mid_request_leaves_no_answer_for_the_next_file(samples, fifo):
    def interrupt(*_args: object) -> None:
        raise SoftTimeLimit

    assert probe_isolated(samples.video, "video", limits=LIMITS).ok
    interrupted = server_pid()
    previous = signal.signal(signal.SIGALRM, interrupt)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.3)
        with pytest.raises(SoftTimeLimit):
            probe_isolated(fifo, "video", limits=ProbeLimits(timeout_seconds=2))
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert has_exited(interrupted)
    # Had the server been kept, this would read the FIFO's rejection, due two seconds later.
    result = probe_isolated(samples.wav, "audio", limits=LIMITS)
    assert result.ok and result.metadata["audio_codec"] == "pcm_s16le"


def test_the_server_holds_none_of_the_workers_secrets(samples, monkeypatch):
    secrets = {
        "DJANGO_SECRET_KEY": "s3cret-django-key",
        "DATABASE_URL": "postgres://auteur:db-password@db:5432/auteur",
        "REDIS_URL": "redis://:redis-password@redis:6379/0",
        "STRIPE_SECRET_KEY": "sk_test_stripe",
        "MODAL_TOKEN_SECRET": "modal-token-secret",
        "AWS_SECRET_ACCESS_KEY": "aws-secret",
    }
    for name, value in secrets.items():
        monkeypatch.setenv(name, value)
    assert probe_isolated(samples.video, "video", limits=LIMITS).ok
    environ = Path(f"/proc/{server_pid()}/environ").read_bytes()
    names = {entry.split(b"=", 1)[0].decode() for entry in environ.split(b"\0") if entry}
    assert names <= {"PATH", "LANG"}
    assert not any(value.encode() in environ for value in secrets.values())


def test_a_forked_process_starts_its_own_server_and_leaves_its_parents_alone(samples):
    assert probe_isolated(samples.video, "video", limits=LIMITS).ok
    parent_server = server_pid()
    stdin = confined._servers[probe_sandbox.server_key()].proc.stdin
    assert stdin is not None
    parent_pipe = os.readlink(f"/proc/self/fd/{stdin.fileno()}")
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report, and exit without running anything of the parent's
        try:
            inherited = current_server_pid()
            fds = [os.readlink(f"/proc/self/fd/{fd}") for fd in map(int, os.listdir("/proc/self/fd"))
                   if os.path.exists(f"/proc/self/fd/{fd}")]
            result = probe_isolated(samples.video, "video", limits=LIMITS)
            report = {"inherited": inherited, "holds_parent_pipe": parent_pipe in fds, "ok": result.ok,
                      "server": current_server_pid()}
            os.write(write_end, json.dumps(report).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    os.waitpid(pid, 0)
    with os.fdopen(read_end) as fh:
        report = json.loads(fh.read())
    assert report["inherited"] is None and report["holds_parent_pipe"] is False
    assert report["ok"] is True and report["server"] not in (None, parent_server)
    # The child exited, so its server's stdin closed: it exits too, and the parent's serves on.
    wait_for(lambda: has_exited(report["server"]), timeout=10, interval=0.01)
    assert probe_isolated(samples.video, "video", limits=LIMITS).ok
    assert server_pid() == parent_server


PROBING_PROCESS = """
import sys, time
from pathlib import Path
from media.probing.sandbox import ProbeLimits, current_server_pid, probe_isolated
assert probe_isolated(Path(sys.argv[1]), "video", limits=ProbeLimits()).ok
print(current_server_pid(), flush=True)
time.sleep(600)
"""


def test_the_server_exits_when_the_process_that_started_it_is_killed(samples):
    proc = subprocess.Popen([sys.executable, "-c", PROBING_PROCESS, str(samples.video)], cwd=REPO_ROOT,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        server = int(proc.stdout.readline())
        assert psutil.Process(server).ppid() == proc.pid
        proc.kill()  # nothing runs in it to stop the server: only its closed pipe tells the server
        proc.wait()
        wait_for(lambda: has_exited(server), timeout=10, interval=0.01)
    finally:
        proc.kill()
        proc.wait()


def probe_servers(pid: int) -> list[psutil.Process]:
    return children_running(pid, "gpu_tasks.confined_server", recursive=True)


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_a_sigkilled_celery_pool_process_leaves_no_probe_server(start_worker, auth_client, project, samples):  # noqa: F811
    worker = start_worker()
    # An upload, probed by the worker's media task (a job's WAV output is read without the sandbox).
    ticket = request_upload(auth_client, project, samples.video, "video/mp4")
    assert local_put(ticket["upload_url"], samples.video.read_bytes(), "video/mp4").status_code == 200
    response = auth_client.post(media_path(project.pk, ticket["media_id"], "/confirm"), {}, format="json")
    assert response.status_code == 202, response.json()
    media = wait_for(lambda: (m := MediaFile.objects.get(pk=ticket["media_id"])).status != "processing" and m)
    assert media.status == "ready", media.rejection_reason
    servers = probe_servers(worker.proc.pid)  # the upload was probed in a pool process
    assert servers
    pools = {server.ppid() for server in servers}
    assert worker.proc.pid not in pools  # started by the pool processes that probed, not the main one
    for pool in pools:
        os.kill(pool, signal.SIGKILL)
    wait_for(lambda: all(has_exited(server.pid) for server in servers), timeout=10, interval=0.05)

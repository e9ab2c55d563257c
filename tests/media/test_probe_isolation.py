"""The probe's children run sandboxed: a child that a crafted file took over (an attack function
run in its place, tests/media/probe_attacks.py) cannot read the worker's /proc environ, nor open
its file again by path, nor reach loopback; and the real probe still works through the file it
was handed."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from gpu_tasks import confined
from gpu_tasks import sandbox as isolation
from media.probing import sandbox as probe_sandbox
from media.probing.sandbox import ProbeLimits, probe_isolated

HERE = isolation.detect()
pytestmark = pytest.mark.skipif(HERE.mode == "none", reason="no sandbox on this machine")
ESCAPE = "tests.media.probe_attacks:escape"


@pytest.fixture
def attacked() -> Iterator[None]:
    probe_sandbox.stop_server(ESCAPE)
    yield
    probe_sandbox.stop_server(ESCAPE)


def attack(target: Path) -> dict[str, object]:
    target.write_text(f"{os.getpid()}\n")  # the worker's pid, for the child to aim at
    target.chmod(0o600)
    port = urlsplit(os.environ["REDIS_URL"]).port or 6379
    result = probe_isolated(target, str(port), limits=ProbeLimits(), function=ESCAPE)
    assert result.rejection_reason, result
    return json.loads(result.rejection_reason)


def test_a_probe_child_cannot_read_the_workers_environ_nor_reach_loopback(attacked, tmp_path):
    outcome = attack(tmp_path / "upload.mp4")
    assert outcome["worker_environ"] == "PermissionError"
    assert outcome["loopback"] in ("OSError", "ConnectionRefusedError")  # ENETUNREACH: no interface up
    if HERE.separate_uid:
        assert outcome["uid"] == HERE.probe_uid != os.getuid()
        assert outcome["server_environ"] == "PermissionError"
        # The worker's file is the child's only through the descriptor it was handed.
        assert outcome["reopen_by_path"] in ("PermissionError", "FileNotFoundError")


def test_the_servers_start_says_which_sandbox_its_children_get(attacked, tmp_path):
    attack(tmp_path / "upload.mp4")
    assert confined._servers[probe_sandbox.server_key(ESCAPE)].sandbox == isolation.detect().describe()


def test_a_file_only_the_worker_may_read_is_still_probed(samples, tmp_path):
    probe_sandbox.stop_server()
    private = tmp_path / "private.mp4"
    private.write_bytes(Path(samples.video).read_bytes())
    private.chmod(0o600)
    try:
        result = probe_isolated(private, "video", limits=ProbeLimits())
    finally:
        probe_sandbox.stop_server()
    assert result.ok and result.duration_ms == 2000


def test_a_child_blocked_opening_its_file_dies_with_its_server(tmp_path):
    import psutil

    fifo = tmp_path / "never.mp4"
    os.mkfifo(fifo)  # opening it blocks: the child waits there, before it gives up its rights
    limits = ProbeLimits(timeout_seconds=60).confined()
    server = confined.Server(limits, confined.server_key(probe_sandbox.PROBE, limits)[1:])
    request = {"function": probe_sandbox.PROBE, "args": {"path": str(fifo), "declared_type": "video",
               "max_pixels": 1}, "path": str(fifo), "memory_bytes": 2 * 1024**3, "cpu_seconds": 30,
               "timeout_seconds": 60, "max_result_bytes": 1024}
    server.send(json.dumps(request).encode() + b"\n")
    deadline = time.monotonic() + 10
    while not (children := psutil.Process(server.pid).children()):
        assert time.monotonic() < deadline
        time.sleep(0.01)
    [child] = children
    server.stop()  # SIGKILL, as the OOM killer would
    gone, _ = psutil.wait_procs([child], timeout=10)
    assert gone, "the child outlived its server"


def test_a_child_whose_server_was_killed_before_it_first_ran_ends_without_opening_its_file(tmp_path):
    """The race the test above can lose: the server is killed between its fork and the child's
    first step. The child then has another parent already, and must tell that from its server by
    the pid the server had before the fork."""
    from gpu_tasks import confined_server

    fifo = tmp_path / "never.mp4"
    os.mkfifo(fifo)  # opening it would block: a child that went on would never end by itself
    request = confined_server._request(json.dumps({
        "function": probe_sandbox.PROBE, "args": {"declared_type": "video", "max_pixels": 1}, "path": str(fifo),
        "memory_bytes": 2 * 1024**3, "cpu_seconds": 30, "timeout_seconds": 60, "max_result_bytes": 1024}).encode())
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # a child whose parent (this test) is not the server it was forked by
        os.close(read_end)
        confined_server._child(write_end, request, None, server=os.getppid() + 1_000_000)
    os.close(write_end)
    deadline = time.monotonic() + 10
    while (ended := os.waitpid(pid, os.WNOHANG))[0] == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    if ended[0] == 0:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
    answer = os.read(read_end, 1024)
    os.close(read_end)
    assert ended[0] == pid, "the child went on after its server was gone"
    assert os.waitstatus_to_exitcode(ended[1]) == 1 and answer == b""

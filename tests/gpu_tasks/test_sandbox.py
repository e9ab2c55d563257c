"""The local engines run sandboxed: each attack a taken-over engine could make, performed by a real
engine child (tests/gpu_tasks/probe_engines.py) under the real runner, and refused.

`uid` is what this machine gives (root); `userns` is what an unprivileged worker gets where the
kernel allows user namespaces, forced here to check it too.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from gpu_tasks import sandbox as isolation
from gpu_tasks.backends.local import LocalBackend
from gpu_tasks.sandbox import Sandbox
from tests.gpu_tasks.test_local_backend import wait_for

PROBES = "tests.gpu_tasks.probe_engines"
HERE = isolation.detect()
UID = Sandbox("uid", True, mounts=True)
USERNS = Sandbox("userns", True)
NONE = Sandbox("none", False)

needs_uid = pytest.mark.skipif(not HERE.separate_uid or not HERE.mounts,
                               reason=f"needs the uid sandbox with CAP_SYS_ADMIN; here: {HERE.mode}")


def _userns_works() -> bool:
    return isolation._userns_works()


needs_userns = pytest.mark.skipif(not _userns_works(), reason="this kernel refuses user namespaces")


def run(tmp_path: Path, sandbox: Sandbox, engine: str, payload: dict[str, Any]) -> dict[str, Any]:
    backend = LocalBackend(tmp_path / "calls", engines={"tts": f"{PROBES}:{engine}"}, sandbox=sandbox)
    status = wait_for(backend, backend.spawn("tts", {"text": "x", **payload}), lambda s: s.done)
    assert status.state == "succeeded" and status.result is not None, status.error
    return status.result


@pytest.mark.parametrize("sandbox", [pytest.param(UID, marks=needs_uid, id="uid"),
                                     pytest.param(USERNS, marks=needs_userns, id="userns")])
def test_a_sandboxed_engine_cannot_read_the_workers_environ_or_memory(tmp_path: Path, sandbox: Sandbox) -> None:
    # What every worker process does at its start (auteur/celery.py): in the userns sandbox the
    # engine keeps the worker's uid, and only this keeps the worker's /proc to itself.
    assert isolation.make_non_dumpable()
    result = run(tmp_path, sandbox, "read_environs", {"pid": os.getpid()})
    assert result == {"worker": "PermissionError", "runner": "PermissionError", "worker_mem": "PermissionError"}


@pytest.mark.parametrize("sandbox", [pytest.param(UID, marks=needs_uid, id="uid"),
                                     pytest.param(USERNS, marks=needs_userns, id="userns")])
def test_a_sandboxed_engine_cannot_read_the_deployments_secret_files(tmp_path: Path, sandbox: Sandbox,
                                                                     monkeypatch: pytest.MonkeyPatch,
                                                                     request: pytest.FixtureRequest) -> None:
    # As compose mounts them: readable by every uid (0444) in a folder of their own, which the
    # worker finds through AUTEUR_SECRETS_DIR; the engine's process sees an empty folder there.
    # Where every uid could reach it but for the sandbox (pytest's own folders are closed to them).
    folder = Path(tempfile.mkdtemp(prefix="auteur-secrets-", dir="/tmp"))
    request.addfinalizer(lambda: shutil.rmtree(folder, ignore_errors=True))
    folder.chmod(0o755)
    (folder / "DATABASE_URL").write_text("postgres://auteur:hunter2@db/auteur")
    (folder / "DATABASE_URL").chmod(0o444)
    monkeypatch.setenv("AUTEUR_SECRETS_DIR", str(folder))
    assert isolation.secrets_folder() == str(folder.resolve())  # what `detect` gives a worker's sandbox
    sandbox = dataclasses.replace(sandbox, hidden=str(folder.resolve()))
    result = run(tmp_path, sandbox, "read_secret", {"path": str(folder / "DATABASE_URL")})
    assert result["file"] in ("FileNotFoundError", "PermissionError"), result
    assert result["listing"] in ([], "PermissionError"), result
    assert (folder / "DATABASE_URL").read_text().endswith("hunter2@db/auteur")  # the worker still reads it


@pytest.mark.parametrize("sandbox", [pytest.param(UID, marks=needs_uid, id="uid"),
                                     pytest.param(USERNS, marks=needs_userns, id="userns")])
def test_a_sandboxed_engine_cannot_reach_loopback(tmp_path: Path, sandbox: Sandbox) -> None:
    port = urlsplit(os.environ["REDIS_URL"]).port or 6379
    assert run(tmp_path, NONE, "connect", {"port": port}) == {"connect": "done"}  # the control: Redis is there
    result = run(tmp_path, sandbox, "connect", {"port": port})
    assert result["connect"] in ("OSError", "ConnectionRefusedError"), result  # ENETUNREACH: no interface up


@pytest.fixture
def shared() -> Iterator[Path]:
    """A folder every engine may write (the `hold` engine waits in it for `go`)."""
    path = Path(tempfile.mkdtemp(prefix="auteur-shared-"))
    path.chmod(0o1777)
    yield path
    (path / "go").touch()  # a test that failed midway leaves no engine waiting
    time.sleep(0.5)
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def calls() -> Iterator[Path]:
    """A calls folder as in production, where var/ is open to other uids: what keeps a call out of
    another's folder is the folders' own modes and owners, which is what is under test (a
    folder under the test's tmp_path would not even be visible to the engines)."""
    path = Path(tempfile.mkdtemp(prefix="auteur-calls-"))
    path.chmod(0o711)
    yield path / "calls"
    shutil.rmtree(path, ignore_errors=True)


@needs_uid
def test_a_runner_cannot_write_another_calls_folder_nor_its_own_status(calls: Path, shared: Path) -> None:
    backend = LocalBackend(calls, engines={"tts": f"{PROBES}:hold"}, sandbox=UID)
    victim = backend.spawn("tts", {"text": "x", "dir": str(shared)})
    deadline = time.monotonic() + 60
    while not list(shared.glob("running-*")):  # the victim's engine runs: its box is there
        assert time.monotonic() < deadline
        time.sleep(0.05)
    victim_dir = backend.base_dir / victim
    before = {p.relative_to(victim_dir): p.read_bytes() for p in victim_dir.rglob("*") if p.is_file()}

    attacker = LocalBackend(calls, engines={"tts": f"{PROBES}:trespass"}, sandbox=UID)
    status = wait_for(attacker, attacker.spawn("tts", {"text": "x", "victim": str(victim_dir)}), lambda s: s.done)
    assert status.state == "succeeded" and status.result is not None, status.error
    assert status.result == dict.fromkeys(
        ("victim_box_file", "victim_progress", "victim_status", "victim_out", "victim_call", "own_status", "own_call"),
        "PermissionError",
    )
    after = {p.relative_to(victim_dir): p.read_bytes() for p in victim_dir.rglob("*") if p.is_file()}
    assert after == before, "nothing of the victim's call was written"
    (shared / "go").touch()
    done = wait_for(backend, victim, lambda s: s.done)
    assert done.state == "succeeded" and done.result == {"running_at_start": 1}


@needs_uid
def test_each_running_call_has_a_uid_of_its_own_and_its_box_is_closed_to_others(tmp_path: Path,
                                                                                 shared: Path) -> None:
    backend = LocalBackend(tmp_path / "calls", engines={"tts": f"{PROBES}:hold"}, sandbox=UID)
    calls = [backend.spawn("tts", {"text": "x", "dir": str(shared)}) for _ in range(2)]
    deadline = time.monotonic() + 60
    while len(list(shared.glob("running-*"))) < 2:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    boxes = [(backend.base_dir / call / "box").stat() for call in calls]
    assert len({box.st_uid for box in boxes}) == 2
    assert all(box.st_uid > UID.uid_base and box.st_mode & 0o777 == 0o700 for box in boxes)
    assert all((backend.base_dir / call).stat().st_mode & 0o777 == 0o711 for call in calls)
    (shared / "go").touch()
    for call in calls:
        assert wait_for(backend, call, lambda s: s.done).state == "succeeded"
        assert not (backend.base_dir / call / "box").exists(), "the box goes with the call's end"


@needs_uid
def test_an_engine_reads_a_copy_of_its_input_and_none_of_the_workers_files(tmp_path: Path) -> None:
    secret = tmp_path / "input.txt"  # the worker's, in a folder closed to other uids
    secret.write_text("the user's media")
    backend = LocalBackend(tmp_path / "calls", engines={"compression": f"{PROBES}:read_input"}, sandbox=UID)
    call_id = backend.spawn("compression", {"media": {"path": str(secret)}, "original": str(secret)})
    status = wait_for(backend, call_id, lambda s: s.done)
    assert status.state == "succeeded" and status.result is not None, status.error
    assert status.result["given"] == "the user's media"
    assert Path(status.result["given_path"]).parent == backend.base_dir / call_id / "box" / "inputs"
    assert status.result["original"] in ("PermissionError", "FileNotFoundError")
    assert not (backend.base_dir / call_id / "box").exists(), "the copy goes with the box"


def test_the_sandbox_in_use_is_described_and_a_degraded_one_says_so(caplog: pytest.LogCaptureFixture) -> None:
    import logging

    caplog.set_level(logging.INFO)
    isolation.log_once(Sandbox("none", False, uid_base=7), logging.getLogger("test.sandbox"))
    isolation.log_once(Sandbox("none", False, uid_base=7), logging.getLogger("test.sandbox"))
    warned = [r for r in caplog.records if r.name == "test.sandbox"]
    assert len(warned) == 1 and warned[0].levelno == logging.WARNING and "NONE" in warned[0].getMessage()

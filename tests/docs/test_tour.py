"""The README's tour and docs/tour.md, pasted whole into a shell against `make run`.

The tour (one block, the same on both pages) is run as one paste: one bash, the repository as its
working folder, `localhost:8000` replaced by the stack's address and nothing else changed. A paste
does not stop at an error, so what it printed is not enough: the outcome is read over the API. The
transcription completed, with the words the sample says, charged once (the grant, then one usage
entry and nothing else).

The paste runs against the `make run` that `make run`'s own test starts as a newcomer starts it
(tests/auteur/test_devstack.py: `python -m devstack run`, Caddy, gunicorn, uvicorn, worker, beat,
over the embedded servers, in a throwaway folder of its own and on a free port), right after it
is ready: one whole stack started for both, not two.
"""

from __future__ import annotations

import re
import subprocess
from typing import Any

import requests

from devstack import REPO_ROOT

PAGES = ("README.md", "docs/tour.md")
TOUR_TIMEOUT_S = 240
SENTENCE_WORDS = ("small", "team", "painted", "wooden", "boats", "winter")


def tour_block(page: str) -> str:
    """The page's tour: its first shell block after the words `make demo`."""
    text = (REPO_ROOT / page).read_text()
    match = re.search(r"```bash\n(.*?)```", text[text.index("make demo"):], re.S)
    assert match, f"{page} has no shell block after `make demo`"
    return match.group(1)


def api(port: int, token: str, path: str) -> Any:
    response = requests.get(f"http://127.0.0.1:{port}/api/v1{path}", timeout=30,
                            headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.text
    return response.json()


def test_every_page_has_the_same_tour():
    # One tour, pasted from either page: so pasting the README's (`paste_the_tour`) runs docs/tour.md's too.
    assert len({tour_block(page) for page in PAGES}) == 1


def paste_the_tour(port: int, env: dict[str, str]) -> None:
    """Paste the tour into one bash against `make run` on `port` (`env`: another terminal's, no
    URLs), then check what it did over the API: the transcription completed with the sample's
    words, charged once. `make run`'s own test (tests/auteur/test_devstack.py) calls it on the
    stack it starts, as a newcomer would after `make run`."""
    script = tour_block(PAGES[0]).replace("localhost:8000", f"127.0.0.1:{port}")
    done = subprocess.run(["bash", "-c", script + '\necho "TOKEN=$TOKEN"; echo "JOB=$JOB"\n'], cwd=REPO_ROOT,
                          env=env, capture_output=True, text=True, timeout=TOUR_TIMEOUT_S)
    out = done.stdout + done.stderr
    assert "Traceback" not in out, out
    values = dict(line.split("=", 1) for line in done.stdout.splitlines() if line.startswith(("TOKEN=", "JOB=")))
    assert values.get("JOB"), out

    job = api(port, values["TOKEN"], f"/jobs/{values['JOB']}")
    assert job["status"] == "completed", (job, out)
    heard = job["output_data"]["text"].lower()
    assert all(word in heard for word in SENTENCE_WORDS), heard
    history = api(port, values["TOKEN"], "/credits/history")["transactions"]
    kinds = sorted((t["type"], t["amount"]) for t in history)
    assert kinds == sorted([("bonus", 100), ("usage", -job["credits_cost"])]), (kinds, out)

"""The README's "Try it" walk-through, run against a `make run` that is up (`make demo`).

token -> credits -> project -> upload a generated speech file -> confirm -> ready ->
transcription job -> progress -> transcript -> balance and history. Each step prints its result.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
API = os.environ.get("AUTEUR_API", "http://localhost:8000").rstrip("/") + "/api/v1"
SENTENCE = "Welcome to Auteur. This sentence was spoken by a machine and transcribed by another."


def manage(*args: str) -> str:
    result = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"manage.py {' '.join(args)} failed:\n{result.stderr}")
    return result.stdout.strip()


def step(title: str, value: Any) -> None:
    print(f"\n== {title}")
    print(json.dumps(value, indent=2) if not isinstance(value, str) else value)


def call(session: requests.Session, method: str, path: str, **kwargs: Any) -> Any:
    response = session.request(method, f"{API}{path}", timeout=30, **kwargs)
    if response.status_code >= 400:
        raise SystemExit(f"{method} {path} -> {response.status_code}: {response.text}")
    return response.json() if response.content else None


def main() -> None:
    try:
        requests.get(API.rsplit("/api/", 1)[0] + "/healthz", timeout=3)
    except requests.RequestException:
        raise SystemExit("Nothing answers at localhost:8000: start `make run` in another terminal first.") from None

    email = "demo@example.com"
    token = manage("issue_token", email)
    step("1. a token for demo@example.com (manage.py issue_token)", token[:24] + "...")
    step("2. 100 credits (manage.py grant_credits)", manage("grant_credits", email, "100", "--reason", "demo"))
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {token}"

    project = call(session, "POST", "/projects", json={"name": "Demo", "resolution": "1280x720"})
    step("3. a project (POST /projects)", {"id": project["id"], "name": project["name"]})

    from gpu_tasks.engines.tts import synthesize, write_wav

    sample = Path(tempfile.mkdtemp()) / "welcome.wav"
    pcm, rate = synthesize(SENTENCE)
    write_wav(sample, pcm, rate)
    size = sample.stat().st_size
    ticket = call(
        session,
        "POST",
        f"/projects/{project['id']}/media/upload-url",
        json={"filename": sample.name, "content_type": "audio/wav", "size_bytes": size},
    )
    step(
        "4. an upload URL (POST .../media/upload-url)",
        {"media_id": ticket["media_id"], "expires_at": ticket["expires_at"]},
    )
    put = requests.put(
        ticket["upload_url"],
        data=sample.read_bytes(),
        headers=ticket.get("headers") or {"Content-Type": "audio/wav"},
        timeout=30,
    )
    put.raise_for_status()
    step("5. the file PUT to storage", f"{size} bytes, HTTP {put.status_code}")
    call(session, "POST", f"/projects/{project['id']}/media/{ticket['media_id']}/confirm")
    for _ in range(100):
        media = call(session, "GET", f"/projects/{project['id']}/media/{ticket['media_id']}")["media"]
        if media["status"] in ("ready", "rejected"):
            break
        time.sleep(0.2)
    step(
        "6. confirmed and probed (POST .../confirm, then GET until ready)",
        {k: media[k] for k in ("status", "duration_ms", "metadata")},
    )

    job = call(
        session,
        "POST",
        "/jobs/transcription",
        json={"project_id": project["id"], "media_id": ticket["media_id"]},
        headers={"Idempotency-Key": f"demo-{ticket['media_id']}"},
    )
    step("7. a transcription job (POST /jobs/transcription)", job)
    for _ in range(600):
        job = call(session, "GET", f"/jobs/{job['job_id'] if 'job_id' in job else job['id']}")
        if job["status"] in ("completed", "failed", "canceled"):
            break
        print(f"   {job['status']} {job['progress']}%")
        time.sleep(0.5)
    step(
        "8. the result (GET /jobs/{id})",
        {
            "status": job["status"],
            "text": job["output_data"].get("text"),
            "first words": [
                (w["word"], w["start_ms"], w["end_ms"]) for w in job["output_data"]["segments"][0]["words"][:5]
            ]
            if job["status"] == "completed"
            else job.get("error_message"),
        },
    )
    step("9. the balance (GET /credits)", call(session, "GET", "/credits"))
    history = call(session, "GET", "/credits/history")
    step(
        "10. the ledger (GET /credits/history)",
        [{k: t[k] for k in ("type", "amount", "balance_after", "description")} for t in history["transactions"][:5]],
    )


if __name__ == "__main__":
    main()

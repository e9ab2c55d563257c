"""The README's tour (docs/tour.md), run against a `make run` that is up (`make demo`).

token -> credits -> project -> upload a generated speech file -> confirm -> ready -> the file on
the timeline -> transcription job -> progress -> transcript, in the EDL -> three words deleted in
the transcript -> render: shorter by their span -> the render transcribed again, without them ->
balance and history. Each step prints its result.
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
SENTENCE = "Our small team painted seven wooden boats during the cold winter."
DELETE = ["seven", "wooden", "boats"]  # deleted from the transcript, then cut from the render


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

    # The demo asks for its own transcription below: its project does not transcribe uploads by itself.
    project = call(session, "POST", "/projects",
                   json={"name": "Demo", "resolution": "1280x720", "auto_transcribe": False})
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

    edl_path = f"/projects/{project['id']}/edl"
    edl = call(session, "GET", edl_path)
    clip = {"id": "speech", "media_file_id": ticket["media_id"], "start_ms": 0, "duration_ms": media["duration_ms"],
            "in_point_ms": 0, "out_point_ms": media["duration_ms"], "effects": [], "deleted": False}  # fmt: skip
    next(t for t in edl["tracks"] if t["type"] == "audio")["clips"] = [clip]
    edl = put_edl(session, edl_path, edl)
    step("7. the sound on the timeline's audio track (PUT /projects/{id}/edl)", {"clip": clip})

    job = wait_job(session, call(
        session, "POST", "/jobs/transcription",
        json={"project_id": project["id"], "media_id": ticket["media_id"]},
        headers={"Idempotency-Key": f"demo-{ticket['media_id']}"},
    ), "8. a transcription job (POST /jobs/transcription)")  # fmt: skip
    step(
        "9. the result (GET /jobs/{id})",
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
    if job["status"] == "completed":
        cut_demo(session, project["id"], edl_path, clip, job)
    step("16. the balance (GET /credits)", call(session, "GET", "/credits"))
    history = call(session, "GET", "/credits/history")
    step(
        "17. the ledger (GET /credits/history)",
        [{k: t[k] for k in ("type", "amount", "balance_after", "description")} for t in history["transactions"][:5]],
    )


def wait_job(session: requests.Session, job: dict[str, Any], title: str) -> dict[str, Any]:
    step(title, job)
    for _ in range(600):
        job = call(session, "GET", f"/jobs/{job['job_id'] if 'job_id' in job else job['id']}")
        if job["status"] in ("completed", "failed", "canceled", "aborted"):
            break
        print(f"   {job['status']} {job['progress']}%")
        time.sleep(0.5)
    return job


def put_edl(session: requests.Session, path: str, edl: dict[str, Any]) -> dict[str, Any]:
    return call(session, "PUT", path, json=edl, headers={"If-Match": str(edl["version"])})


def segments_of(job: dict[str, Any]) -> list[dict[str, Any]]:
    """A transcription's segments: in `output_data`, or in its `transcript` where it has one."""
    data = job.get("output_data") or {}
    return data.get("segments") or (data.get("transcript") or {}).get("segments") or []


def spoken(words: list[dict[str, Any]]) -> str:
    return " ".join(w["word"].strip() for w in words)


def cut_demo(session: requests.Session, project_id: str, edl_path: str, clip: dict[str, Any],
             job: dict[str, Any]) -> None:
    """Text-based editing: delete three words in the EDL's transcript, render, hear the cut."""
    # A completed transcription is written into the EDL's transcript by the server, just after.
    deadline = time.monotonic() + 30
    edl = call(session, "GET", edl_path)
    while not any(seg.get("media_file_id") == clip["media_file_id"] for seg in edl["transcript"]["segments"]):
        if time.monotonic() > deadline:
            step("10. the transcript never reached the EDL", edl["transcript"])
            return
        time.sleep(0.5)
        edl = call(session, "GET", edl_path)
    words = [w for seg in edl["transcript"]["segments"] for w in seg["words"]]
    names = [w["word"].strip(" .,").lower() for w in words]
    at = next((i for i in range(len(names)) if names[i : i + 3] == DELETE), max(0, len(names) // 2 - 1))
    for word in words[at : at + 3]:
        word["deleted"] = True
    step("10. the transcript in the EDL (GET /projects/{id}/edl)", spoken(words))
    edl = put_edl(session, edl_path, edl)
    step("11. three words deleted (PUT /projects/{id}/edl, words[].deleted = true)",
         [(w["word"], w["start_ms"], w["end_ms"]) for w in words[at : at + 3]])  # fmt: skip

    render = wait_job(session, call(session, "POST", "/jobs/render", json={"project_id": project_id}),
                      "12. a render of the timeline (POST /jobs/render)")  # fmt: skip
    if render["status"] != "completed":
        step("13. the render failed", render.get("error_message") or render["status"])
        return
    out = render["output_data"]
    media = call(session, "GET", f"/projects/{project_id}/media/{out['output_media_ids'][0]}")["media"]
    step("13. the render: shorter by the deleted words' span", {
        "duration before cuts (ms)": out["duration_before_ms"], "duration after cuts (ms)": out["duration_ms"],
        "removed (ms)": out["removed_ms"], "the output file, probed (ms)": media["duration_ms"],
        "credits": render["credits_cost"], "output media": media["id"],
    })  # fmt: skip
    again = wait_job(session, call(
        session, "POST", "/jobs/transcription",
        json={"project_id": project_id, "media_id": out["output_media_ids"][0]},
    ), "14. the render transcribed again (POST /jobs/transcription)")  # fmt: skip
    heard = spoken([w for seg in segments_of(again) for w in seg["words"]])
    step("15. words before and after the cut", {"before": spoken(words), "after": heard})


if __name__ == "__main__":
    main()

"""A long recording's transcription, whole against in pieces, with the noop GPU.

    .venv/bin/python bench/long_file_pieces.py [--minutes 60] [--seconds-per-minute 1] [--capacity 4]

The noop backend holds each call `--seconds-per-minute` for each minute of audio it is given
(AUTEUR_NOOP_HOLD_PER_MEDIA_MINUTE): one call on the whole file takes `minutes` times that, a
piece its share. The file is a real WAV of `--minutes` of speech-like bursts and pauses (8 kHz
mono, a tone for 2-9 s, then 0.4-1.5 s of silence), stored in the local storage, since the
worker reads it for its silences to plan the cuts. Transcription's capacity is `--capacity`
(AUTEUR_TYPE_CAPACITY): the pieces run that many at once.

Each mode runs on a fresh worker (and GPU announcements consumer): `whole` with pieces off
(AUTEUR_PIECES_MIN_MS=0), `pieces` with pieces of 10 minutes. Printed per mode: the wall time
from submission to completed, the pieces, and the time the worker spent planning the cuts
(reading the file for silences). Writes bench/results/long_file_pieces.json.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
import wave
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._stack import REPO_ROOT, RESULTS_DIR, celery_worker_argv, django_stack, load_average, terminate, wait_until

RATE = 8000


def write_speechlike(path: Path, minutes: int, seed: int = 7) -> int:
    """A WAV of bursts of tone and pauses, `minutes` long; its length in ms."""
    import numpy as np

    rng = random.Random(seed)  # noqa: S311 - a benchmark's fixture
    total = minutes * 60 * RATE
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(RATE)
        written = 0
        while written < total:
            talk, pause = round(rng.uniform(2, 9) * RATE), round(rng.uniform(0.4, 1.5) * RATE)
            t = np.arange(talk) / RATE
            burst = (0.3 * np.sin(2 * np.pi * rng.uniform(150, 300) * t) * 32767).astype("<i2")
            chunk = np.concatenate([burst, np.zeros(pause, dtype="<i2")])[: total - written]
            out.writeframes(chunk.tobytes())
            written += len(chunk)
    return round(total / RATE * 1000)


def run_mode(stack: Any, mode: str, media_id: str, token: str, project_id: str, minutes: int) -> dict[str, Any]:
    from django.test import Client

    from jobs.models import Job, JobPiece

    env = {"AUTEUR_PIECES_MIN_MS": "0" if mode == "whole" else str(20 * 60_000),
           "AUTEUR_PIECES_TARGET_MS": str(10 * 60_000)}
    argv = [*celery_worker_argv(concurrency=2, name=mode), "--max-tasks-per-child", "1000000000"]
    procs = [stack.spawn(f"worker-{mode}", argv, **env),
             stack.spawn(f"gpu-events-{mode}", [sys.executable, str(REPO_ROOT / "manage.py"), "gpu_events"], **env)]
    time.sleep(4)  # the worker connects
    client = Client(HTTP_AUTHORIZATION=f"Bearer {token}")
    t0 = time.monotonic()
    response = client.post("/api/v1/jobs/transcription", {"project_id": project_id, "media_id": media_id,
                                                          "cache": False}, content_type="application/json")
    assert response.status_code == 202, response.content
    job_id = response.json()["job_id"]
    wait_until(lambda: Job.objects.get(pk=job_id).status not in ("pending", "queued", "processing"),
               minutes * 60 + 600, f"the {mode} job to end")
    wall = time.monotonic() - t0
    job = Job.objects.get(pk=job_id)
    assert job.status == "completed", (job.error_code, job.error_detail)
    pieces = list(JobPiece.objects.filter(job=job).order_by("index"))
    # From the job's start (its claim) to its first piece's spawn: reading the file for its silences.
    planning = ((pieces[0].started_at - job.started_at).total_seconds()
                if pieces and pieces[0].started_at and job.started_at else 0.0)
    terminate(procs)
    return {"mode": mode, "wall_s": round(wall, 1), "pieces": len(pieces) or 1,
            "piece_minutes": [round((p.end_ms - p.start_ms) / 60_000, 2) for p in pieces],
            "planning_s": round(planning, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=int, default=60)
    parser.add_argument("--seconds-per-minute", type=float, default=1.0)
    parser.add_argument("--capacity", type=int, default=4)
    args = parser.parse_args()

    with django_stack(AUTEUR_GPU_BACKEND="noop", AUTEUR_TYPE_CAPACITY=f"transcription={args.capacity}",
                      AUTEUR_NOOP_HOLD_PER_MEDIA_MINUTE=str(args.seconds_per_minute),
                      AUTEUR_RATE_LIMIT_USER_PER_MINUTE="100000") as stack:
        from auteur.users.models import User
        from auteur.users.services import user_issue_token
        from credits.services.ledger import credit_grant
        from media.models import MediaFile
        from media.storage import get_storage
        from projects.models import Project

        user = User.objects.create_user(email="bench@bench.invalid")
        credit_grant(user=user, amount=10_000, type="bonus", description="bench")
        project = Project.objects.create(user=user, name="bench")
        wav = stack.tmp / "long.wav"
        print(f"writing {args.minutes} minutes of audio...", flush=True)
        duration_ms = write_speechlike(wav, args.minutes)
        key = f"projects/{project.pk}/media/bench/long.wav"
        with wav.open("rb") as fh:
            get_storage().save(key, fh, "audio/wav")
        media = MediaFile.objects.create(project=project, user=user, name="long.wav", type="audio",
                                         mime_type="audio/wav", status="ready", file_size_bytes=wav.stat().st_size,
                                         duration_ms=duration_ms, storage_key=key)
        token = user_issue_token(user=user)
        modes = [run_mode(stack, mode, str(media.pk), token, str(project.pk), args.minutes)
                 for mode in ("whole", "pieces")]
        for m in modes:
            print(json.dumps(m), flush=True)
    whole, pieces = modes
    report = {"minutes": args.minutes, "seconds_per_minute": args.seconds_per_minute, "capacity": args.capacity,
              "whole": whole, "pieces": pieces, "speedup": round(whole["wall_s"] / pieces["wall_s"], 2),
              "load": load_average()}
    print(json.dumps(report, indent=2))
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / "long_file_pieces.json").write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()

"""Peak memory of an idle API process and an idle worker process.

    .venv/bin/python bench/memory.py

Starts gunicorn (one sync worker, as `make run` configures it) and a Celery worker (one prefork
process, every queue) on a throwaway stack, lets each serve a little (API: /readyz and an
authenticated read; worker: a media probe round trip is not needed, it is idle), then reads each
process's peak resident set (VmHWM) from /proc. torch, transformers and the models must not be
imported until a job needs them (the engines import them inside functions).
Targets: <= 150 MB API worker process, <= 200 MB Celery pool process.
Writes bench/results/memory.json.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import psutil
import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._stack import RESULTS_DIR, celery_worker_argv, django_stack, free_port, gunicorn_argv
from devstack.process_group import children_running

TARGETS_MB = {"api": 150, "worker": 200}


def peak_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return psutil.Process(pid).memory_info().rss / 1024**2


def wait_http(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            requests.get(url, timeout=2)
            return
        except requests.RequestException:
            time.sleep(0.2)
    raise SystemExit(f"{url} never answered")


def main() -> None:
    with django_stack() as stack:
        from auteur.users.models import User
        from auteur.users.services import user_issue_token

        token = user_issue_token(user=User.objects.create_user(email="mem@bench.invalid"))
        port = free_port()
        api = stack.spawn("api", gunicorn_argv(port, workers=1))
        worker = stack.spawn("worker", celery_worker_argv(concurrency=1))
        base = f"http://127.0.0.1:{port}"
        wait_http(f"{base}/healthz")
        for _ in range(20):
            requests.get(f"{base}/readyz", timeout=10)
            requests.get(f"{base}/api/v1/users/me", headers={"Authorization": f"Bearer {token}"}, timeout=10)
        time.sleep(8)  # the worker connects, and both sit idle
        api_children = psutil.Process(api.pid).children()
        pool = children_running(worker.pid, "celery")
        modules_heavy = [m for m in ("torch", "transformers", "faster_whisper", "ctranslate2")
                         if m in sys.modules]  # in this (bench) process: a sanity note only
        result = {
            "api_master_mb": round(peak_mb(api.pid), 1),
            "api_worker_mb": round(max(peak_mb(p.pid) for p in api_children), 1),
            "worker_main_mb": round(peak_mb(worker.pid), 1),
            "worker_pool_mb": round(max(peak_mb(p.pid) for p in pool), 1) if pool else None,
            "targets_mb": TARGETS_MB,
            "heavy_modules_in_bench_process": modules_heavy,
        }
    result["api_ok"] = result["api_worker_mb"] <= TARGETS_MB["api"]
    result["worker_ok"] = max(result["worker_main_mb"], result["worker_pool_mb"] or 0) <= TARGETS_MB["worker"]
    print(json.dumps(result, indent=2))
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / "memory.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

"""API reads: `GET /api/v1/jobs/{id}` with its real authentication against a bare Django view.

    .venv/bin/python bench/api_reads.py [--seconds 20] [--clients 32] [--workers 3] [--worker-class sync] [--threads 1]

Both are served by the same gunicorn configuration as `make run` (sync workers, cores + 1), on
a throwaway stack, in the same run: the baseline (bench/bare/urls.py) does the same indexed
SELECT of the job by id and owner and returns the same fields with JsonResponse, with no DRF,
no token check and no rate limit. 32 clients (4 processes x 8 threads, a new connection per
request, as gunicorn's sync workers close them) run for the given seconds against each, in
alternating halves (closed loop: the saturated rate). Then each is sent requests open loop at
half of the bare view's saturated rate, on a fixed schedule with latency counted from when each
request was due, again in alternating halves. Targets: >= 0.9 of the bare view's requests/s
saturated, p99 < 50 ms open loop at half of the bare saturation.
The same read of a team workspace's job (`Auteur-Workspace`: the member's seat and the workspace's
account are read as well) is measured saturated beside them: >= 0.85 of the bare view.
Writes bench/results/api_reads.json.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing as mp
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._stack import RESULTS_DIR, django_stack, free_port, gunicorn_argv, load_average, percentile

PROCESSES = 4


def _get(port: int, path: str, headers: dict[str, str]) -> bool:
    """One GET on a new connection (as gunicorn's sync workers close them); True on a 200."""
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        response.read()
        conn.close()
    except OSError:
        return False
    return response.status == 200


def _client(port: int, path: str, headers: dict[str, str], seconds: float, threads: int, out: mp.Queue) -> None:
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def loop() -> None:
        nonlocal errors
        mine: list[float] = []
        bad = 0
        while time.monotonic() < deadline:
            started = time.perf_counter()
            if not _get(port, path, headers):
                bad += 1
                continue
            mine.append((time.perf_counter() - started) * 1000)
        with lock:
            latencies.extend(mine)
            errors += bad

    pool = [threading.Thread(target=loop) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    out.put((latencies, errors))


def _open_client(port: int, path: str, headers: dict[str, str], seconds: float, rate: float, threads: int,
                 out: mp.Queue) -> None:
    """Open loop: each thread sends on a fixed schedule (`rate` requests/s over the threads), and a
    request's latency counts from when it was due, so a slow answer delays and charges the next
    (no coordinated omission)."""
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()
    interval = threads / rate
    start = time.perf_counter() + 0.05

    def loop(offset: float) -> None:
        nonlocal errors
        mine: list[float] = []
        bad = 0
        due = start + offset
        while due < start + seconds:
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            if not _get(port, path, headers):
                bad += 1
            mine.append((time.perf_counter() - due) * 1000)
            due += interval
        with lock:
            latencies.extend(mine)
            errors += bad

    pool = [threading.Thread(target=loop, args=(interval * i / threads,)) for i in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    out.put((latencies, errors))


def _in_processes(target: Callable[..., None], args: tuple[Any, ...]) -> tuple[list[float], int]:
    """Run `target(*args, queue)` in PROCESSES processes; their latencies and error count together."""
    queue: mp.Queue = mp.Queue()
    procs = [mp.Process(target=target, args=(*args, queue)) for _ in range(PROCESSES)]
    for p in procs:
        p.start()
    latencies: list[float] = []
    errors = 0
    for _ in procs:
        lat, err = queue.get()
        latencies += lat
        errors += err
    for p in procs:
        p.join()
    return latencies, errors


def open_load(port: int, path: str, headers: dict[str, str], seconds: float, rate: float,
              clients: int) -> dict[str, float]:
    """`rate` requests/s for `seconds`, spread evenly over `clients` threads in PROCESSES processes."""
    latencies, errors = _in_processes(_open_client, (port, path, headers, seconds, rate / PROCESSES,
                                                     clients // PROCESSES))
    return {"rate": rate, "requests": len(latencies), "errors": errors, "p50_ms": percentile(latencies, 50),
            "p99_ms": percentile(latencies, 99)}


def load(port: int, path: str, headers: dict[str, str], seconds: float, clients: int) -> dict[str, float]:
    latencies, errors = _in_processes(_client, (port, path, headers, seconds, clients // PROCESSES))
    return {"requests": len(latencies), "errors": errors, "rps": len(latencies) / seconds,
            "p50_ms": percentile(latencies, 50), "p99_ms": percentile(latencies, 99)}


def merge(a: dict[str, float] | None, b: dict[str, float], seconds: float) -> dict[str, float]:
    return b if a is None else {
        "requests": a["requests"] + b["requests"], "errors": a["errors"] + b["errors"],
        "rps": (a["requests"] + b["requests"]) / seconds,
        "p50_ms": (a["p50_ms"] + b["p50_ms"]) / 2, "p99_ms": max(a["p99_ms"], b["p99_ms"]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--workers", type=int, default=min(4, (os.cpu_count() or 1) + 1))
    # To compare server configurations; the defaults are what `make run` and the Dockerfile use.
    parser.add_argument("--worker-class", default="sync", choices=["sync", "gthread"])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    with django_stack(DJANGO_SETTINGS_MODULE="bench.bare.settings",
                      AUTEUR_RATE_LIMIT_USER_PER_MINUTE="100000000") as stack:
        from auteur.users.models import User
        from auteur.users.services import user_issue_token
        from credits.services.ledger import credit_grant
        from jobs.models import Job
        from projects.models import Project

        user = User.objects.create_user(email="reads@bench.invalid")
        credit_grant(user=user, amount=10, type="bonus", description="bench")
        project = Project.objects.create(user=user, name="bench")
        job = Job.objects.create(user=user, project=project, type="tts", credits_cost=2, status="completed",
                                 input_params={"text": "hi"}, output_data={"duration_ms": 1000})
        token = user_issue_token(user=user)
        from auteur.users.workspace_services import workspace_create

        team = workspace_create(user=user, name="bench team").workspace
        team_job = Job.objects.create(user_id=team.pk, type="tts", credits_cost=2, status="completed",
                                      input_params={"text": "hi"}, output_data={"duration_ms": 1000})
        port = free_port()
        stack.spawn("api", gunicorn_argv(port, workers=args.workers, worker_class=args.worker_class,
                                         threads=args.threads))
        deadline = time.monotonic() + 60
        while True:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                conn.request("GET", "/healthz")
                conn.getresponse().read()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit("gunicorn did not start") from None
                time.sleep(0.2)

        api = (f"/api/v1/jobs/{job.pk}", {"Authorization": f"Bearer {token}"})
        in_team = (f"/api/v1/jobs/{team_job.pk}",
                   {"Authorization": f"Bearer {token}", "Auteur-Workspace": str(team.pk)})
        bare: tuple[str, dict[str, str]] = (f"/bare/jobs/{job.pk}?user={user.pk}", {})
        for path, headers in (api, in_team, bare):  # warm them (imports, connections)
            load(port, path, headers, 1, 8)
        half = args.seconds / 2
        results: dict[str, dict[str, float] | None] = {"drf": None, "team": None, "bare": None}
        for _ in range(2):  # alternate halves so that a noisy moment hits each
            results["bare"] = merge(results["bare"], load(port, *bare, half, args.clients), args.seconds)
            results["drf"] = merge(results["drf"], load(port, *api, half, args.clients), args.seconds)
            results["team"] = merge(results["team"], load(port, *in_team, half, args.clients), args.seconds)
        drf, team_read, base = results["drf"], results["team"], results["bare"]
        assert drf is not None and team_read is not None and base is not None
        # Open loop at half of the bare view's saturated rate: the latency a client sees while the
        # API has headroom (alternating halves again).
        rate = base["rps"] / 2
        opened: dict[str, dict[str, float] | None] = {"drf": None, "bare": None}
        for _ in range(2):
            for name, (path, headers) in (("bare", bare), ("drf", api)):
                part = open_load(port, path, headers, half, rate, args.clients)
                before = opened[name]
                opened[name] = part if before is None else {
                    "rate": rate, "requests": before["requests"] + part["requests"],
                    "errors": before["errors"] + part["errors"],
                    "p50_ms": (before["p50_ms"] + part["p50_ms"]) / 2,
                    "p99_ms": max(before["p99_ms"], part["p99_ms"]),
                }
    report = {
        "clients": args.clients, "seconds": args.seconds, "gunicorn_workers": args.workers,
        "worker_class": args.worker_class, "threads": args.threads,
        "drf": {k: round(v, 1) for k, v in drf.items()},
        "bare": {k: round(v, 1) for k, v in base.items()},
        "team": {k: round(v, 1) for k, v in team_read.items()},
        "ratio_rps": round(drf["rps"] / base["rps"], 3),
        "ratio_rps_team": round(team_read["rps"] / base["rps"], 3),
        "open_loop_at_half_of_bare": {name: {k: round(v, 1) for k, v in value.items()}
                                      for name, value in opened.items() if value is not None},
        "load_average_end": load_average(),
        "targets": {"ratio_rps": 0.9, "ratio_rps_team": 0.85, "open_loop_p99_ms": 50},
    }
    print(json.dumps(report, indent=2))
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / "api_reads.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()

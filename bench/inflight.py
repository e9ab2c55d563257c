"""Jobs in flight: what waiting for N long GPU calls costs, announced versus polled.

The noop backend holds every call "running" for T seconds plus a uniform share of a spread S
(S = T by default: calls submitted together end over [T, 2T], about N / T a second, which is
the rate of completions that N jobs of T seconds in flight bring in steady state), and each
status call (a poll) takes 50 ms, as a round trip to Modal would. N TTS jobs are submitted;
then, for each mode:

- `announce` (what runs): the infer step looks once and ends; the call announces its end on the
  Redis list and `manage.py gpu_events` publishes the job's infer step, which stores it;
- `poll` (the baseline, the pipeline before announcements): `AUTEUR_GPU_ANNOUNCE=0`, so the same
  infer step re-publishes itself with a growing countdown (0.2 s doubling to 5 s) until the call
  has ended: the code path that a backend which cannot announce still takes.

Measured, per mode and N, over the window in which every call is running (after the last spawn,
before the first call's end): worker CPU (the Celery worker and its pool, plus the consumer in
`announce` mode) in % of one core, broker messages per second (Redis LPUSH calls, which is how
kombu publishes), and Redis memory above the idle baseline. Over the whole run: broker messages
per job, and the latency from a call's end (the time the noop backend ends it) to the job's
`completed_at`, p50 and p99.

    python bench/inflight.py                       # N = 100 and 1,000, T = 60 s (a few minutes)
    python bench/inflight.py --n 100 1000 5000 --hold 120   # the full matrix (much longer)

The window is only measured while every call is running, so every call must be spawned before
the first one ends: a case's hold is at least N x `--seconds-per-job` (0.04 s: N jobs submitted
through the API in this process and spawned by the worker, on 2 cores, with room to spare), so
N = 5,000 holds 200 s. A case whose window is still under 3 s says so (`valid: false`) instead of
printing figures. `--poll-up-to` leaves the polled baseline out above that N (polling 5,000
calls every few seconds is what announcements replaced; it only makes the run longer).

Writes bench/results/inflight.json.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._stack import REPO_ROOT, RESULTS_DIR, celery_worker_argv, cpu_seconds, django_stack, percentile, wait_until

LATENCY_MS = 50
_UNTIL = re.compile(r"-(\d+)$")



def run_case(stack: Any, mode: str, n: int, hold: float, spread: float, worker_processes: int,
             clients: list[Any]) -> dict[str, Any]:
    import redis
    from django.conf import settings

    from jobs.models import TERMINAL_STATUSES, Job

    env = {"AUTEUR_NOOP_HOLD_SECONDS": str(hold), "AUTEUR_NOOP_HOLD_SPREAD_SECONDS": str(spread),
           "AUTEUR_NOOP_STATUS_LATENCY_MS": str(LATENCY_MS),
           "AUTEUR_GPU_ANNOUNCE": "1" if mode == "announce" else "0"}
    r = redis.Redis.from_url(settings.REDIS_URL)
    # The noop backend stands in for the GPU side with a thread of the pool process that spawned
    # each call; a recycled pool process would take its calls' announcements with it (a real GPU
    # side announces from its own process), so pool processes are not recycled here.
    argv = [*celery_worker_argv(concurrency=worker_processes, name=f"{mode}{n}"), "--max-tasks-per-child", "1000000000"]
    worker = stack.spawn(f"worker-{mode}-{n}", argv, **env)
    procs = [worker]
    if mode == "announce":
        procs.append(stack.spawn(f"gpu-events-{n}", [sys.executable, str(REPO_ROOT / "manage.py"), "gpu_events"],
                                 **env))
    time.sleep(4)  # the worker connects
    r.config_resetstat()
    idle_memory = int(r.info("memory")["used_memory"])

    ids: list[str] = []
    for i in range(n):
        client = clients[i % len(clients)]
        response = client.post("/api/v1/jobs/tts", {"project_id": client.project, "text": "Hello world"},
                               content_type="application/json")
        assert response.status_code == 202, response.content
        ids.append(response.json()["job_id"])
    jobs = Job.objects.filter(pk__in=ids)
    wait_until(lambda: jobs.filter(status="processing").exclude(gpu_call_id="").count() == n
               or jobs.filter(status__in=TERMINAL_STATUSES).exists(), 600, "every call spawned")
    ends = [int(m[1]) / 1000 for c in jobs.values_list("gpu_call_id", flat=True) if (m := _UNTIL.search(c))]
    window_s = min(ends) - time.time() - 1.0
    # Every call running (none ended yet) for long enough to measure what waiting costs.
    window: dict[str, Any] = {"seconds": round(max(window_s, 0.0), 1), "valid": window_s >= 3}
    if window_s >= 3:
        cpu0 = sum(cpu_seconds(p.pid) for p in procs)
        lpush0 = _lpushes(r)
        t0 = time.monotonic()
        time.sleep(window_s / 2)
        memory = int(r.info("memory")["used_memory"]) - idle_memory
        time.sleep(window_s / 2)
        elapsed = time.monotonic() - t0
        window.update(
            cpu_percent_of_core=round((sum(cpu_seconds(p.pid) for p in procs) - cpu0) / elapsed * 100, 2),
            broker_messages_per_s=round((_lpushes(r) - lpush0) / elapsed, 1),
            redis_memory_kib=round(memory / 1024, 1),
        )
    wait_until(lambda: jobs.filter(status__in=TERMINAL_STATUSES).count() == n, 600 + hold + spread, "every job ending")
    lpush_total = _lpushes(r)
    rpush_total = int(r.info("commandstats").get("cmdstat_rpush", {}).get("calls", 0))
    for proc in procs:
        proc.terminate()
    for proc in procs:
        proc.wait(30)
    done = list(jobs.filter(status="completed"))
    lat, seen = [], []
    for j in done:
        if m := _UNTIL.search(j.gpu_call_id):
            lat.append((j.completed_at.timestamp() - int(m[1]) / 1000) * 1000)
            seen.append((j.inference_ended_at.timestamp() - int(m[1]) / 1000) * 1000)
    return {
        "mode": mode, "n": n, "hold_s": hold, "spread_s": spread,
        "ends_per_s": round(len(ends) / max(max(ends) - min(ends), 1e-3), 1) if ends else None,
        "completed": len(done), "failed": n - len(done),
        "waiting": window,
        "broker_messages_per_job": round(lpush_total / n, 2),
        "announcements_per_job": round(rpush_total / n, 2),  # onto the announcement list, not the broker
        "end_to_completed_ms": {"p50": round(percentile(lat, 50), 1), "p99": round(percentile(lat, 99), 1)},
        # Of which: until a step found the call ended (the rest is storing the outputs).
        "end_to_seen_ms": {"p50": round(percentile(seen, 50), 1), "p99": round(percentile(seen, 99), 1)},
    }


def _lpushes(r: Any) -> int:
    stats = r.info("commandstats")
    return int(stats.get("cmdstat_lpush", {}).get("calls", 0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--hold", type=float, default=60.0, help="seconds each call stays running (issue: 120)")
    parser.add_argument("--spread", type=float, default=None,
                        help="each call's end is drawn uniformly over this many seconds after T (default: T)")
    parser.add_argument("--modes", nargs="+", default=["announce", "poll"], choices=["announce", "poll"])
    parser.add_argument("--worker-processes", type=int, default=4)
    parser.add_argument("--seconds-per-job", type=float, default=0.04,
                        help="a case holds its calls at least N x this long, so that all are spawned first")
    parser.add_argument("--poll-up-to", type=int, default=1000, help="the polled baseline runs up to this N")
    args = parser.parse_args()

    # Held calls outlive the type's time limit (120 s for TTS): this bench measures waiting, not
    # time-outs, so its stack alone gives them an hour of grace.
    # N calls in flight at once: TTS's capacity (its containers, 100) would hold the rest back
    # before they spawn, so it is lifted here.
    with django_stack(AUTEUR_GPU_BACKEND="noop", AUTEUR_JOB_CONCURRENCY_FREE="1000000", AUTEUR_TYPE_CAPACITY="tts=0",
                      AUTEUR_RATE_LIMIT_USER_PER_MINUTE="100000000",
                      AUTEUR_GPU_TIME_LIMIT_GRACE_SECONDS="3600") as stack:
        from django.test import Client

        from auteur.users.models import User
        from auteur.users.services import user_issue_token
        from credits.services.ledger import credit_grant
        from projects.models import Project

        clients = []
        for i in range(10):
            user = User.objects.create_user(email=f"inflight{i}@bench.invalid")
            credit_grant(user=user, amount=100 * max(args.n), type="bonus", description="bench")
            client = Client(HTTP_AUTHORIZATION=f"Bearer {user_issue_token(user=user)}")
            client.project = str(Project.objects.create(user=user, name="b").pk)  # type: ignore[attr-defined]
            clients.append(client)
        cases = []
        for n in args.n:
            hold = max(args.hold, n * args.seconds_per_job)
            spread = hold if args.spread is None else args.spread
            for mode in args.modes:
                if mode == "poll" and n > args.poll_up_to:
                    continue
                case = run_case(stack, mode, n, hold, spread, args.worker_processes, clients)
                print(json.dumps(case), flush=True)
                cases.append(case)
    report = {"hold_s": args.hold, "seconds_per_job": args.seconds_per_job, "status_latency_ms": LATENCY_MS,
              "worker_processes": args.worker_processes,
              "cases": cases,
              "targets": {"cpu_percent_of_core_at_5000": 5, "end_to_completed_p99_ms": 1000}}
    print(json.dumps(report, indent=2))
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / "inflight.json").write_text(json.dumps(report, indent=2))
    failed = [f"{c['mode']} N={c['n']}: {c['failed']}" for c in cases if c["failed"]]
    if failed:  # a job that failed never waited its whole hold: that case measured something else
        raise SystemExit(f"jobs failed ({', '.join(failed)}): these figures do not measure waiting")


if __name__ == "__main__":
    main()

"""Fair share: a light user's wait behind a heavy user's backlog, weighted fair share against
plain arrival order, in the same run.

One job type (TTS) runs at most 4 jobs at once (AUTEUR_TYPE_CAPACITY=tts=4), each call held
"running" by the noop backend for `--hold` seconds (a job's duration). For each mode:

1. a heavy user submits `--heavy` jobs at once (250, then 500 in a second case);
2. a light user then submits one job a second, `--light` of them (60);
3. each light job's queue wait (submitted -> started) is measured; once every light job has
   started, the heavy user's jobs still waiting are cancelled (refunded), and the next mode runs
   on a fresh worker.

Printed per mode: the light user's wait p50/p99/max in seconds and in job durations, the first
and last light job's wait (arrival order makes it grow with the backlog ahead), the heavy user's
jobs started per second while the light user was submitting (the type's capacity stays busy),
and the most jobs in inference at once, sampled every 10 ms from the rows the claims count (must
not exceed the capacity).

Goal: with fair share, the light user's p99 wait is at most about two job durations whatever the
heavy user's backlog; in arrival order it grows with the backlog.

    python bench/fair_share.py                    # backlogs of 250 and 500, 60 light, 1 s jobs (~7 min)
    python bench/fair_share.py --heavy 1000 --hold 0.5
    python bench/fair_share.py --workspaces --heavy 250   # between team workspaces (~3 min)

With `--workspaces` the two sides are team workspaces instead of people: the heavy backlog is
submitted by three members of one workspace in turn, the light jobs by a member of another (each
with the Auteur-Workspace header): fair share is between workspaces, whoever submits.

Writes bench/results/fair_share.json (with --workspaces: fair_share_workspaces.json).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._stack import REPO_ROOT, RESULTS_DIR, celery_worker_argv, django_stack, percentile, terminate, wait_until

CAPACITY = 4
MODES = ("weighted", "arrival")



class InferenceSampler(threading.Thread):
    """Counts the type's jobs in inference (the committed rows the claims count) every 10 ms."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.most = 0
        self.stopping = threading.Event()

    def run(self) -> None:
        from django.db import connection

        from jobs.models import Job

        try:
            while not self.stopping.wait(0.01):
                count = Job.objects.filter(type="tts", status="processing", inference_ended_at__isnull=True).count()
                self.most = max(self.most, count)
        finally:
            connection.close()


class InTurn:
    """Several clients as one: each request is sent by the next of them (a workspace's members)."""

    def __init__(self, clients: list[Any], project: str) -> None:
        self.clients, self.project, self.sent = clients, project, 0

    def post(self, *args: Any, **kwargs: Any) -> Any:
        self.sent += 1
        return self.clients[self.sent % len(self.clients)].post(*args, **kwargs)


def run_case(stack: Any, mode: str, heavy_jobs: int, args: argparse.Namespace, heavy: Any, light: Any
             ) -> dict[str, Any]:
    import redis
    from django.conf import settings

    from jobs.errors import JobNotCancelable
    from jobs.life.status import job_cancel
    from jobs.models import ACTIVE_STATUSES, TERMINAL_STATUSES, Job

    env = {"AUTEUR_FAIR_SHARE": mode}
    # The noop backend holds each call in a thread of the pool process that spawned it, which
    # announces its end: pool processes are not recycled here (bench/inflight.py says why).
    name = f"{mode}{heavy_jobs}"
    argv = [*celery_worker_argv(concurrency=args.worker_processes, name=name), "--max-tasks-per-child", "1000000000"]
    procs = [stack.spawn(f"worker-{name}", argv, **env),
             stack.spawn(f"gpu-events-{name}", [sys.executable, str(REPO_ROOT / "manage.py"), "gpu_events"], **env)]
    time.sleep(4)  # the worker connects

    def submit(client: Any) -> str:
        response = client.post("/api/v1/jobs/tts", {"project_id": client.project, "text": "Hello world"},
                               content_type="application/json")
        assert response.status_code == 202, response.content
        return str(response.json()["job_id"])

    r = redis.Redis.from_url(settings.REDIS_URL)
    sampler = InferenceSampler()
    sampler.start()
    pushes0 = _pushes(r)
    heavy_ids = [submit(heavy) for _ in range(heavy_jobs)]
    # The backlog has formed: the type is full and the rest of the heavy user's jobs wait.
    wait_until(lambda: Job.objects.filter(pk__in=heavy_ids, status="processing").count() >= CAPACITY, 60,
               "the type to fill")
    light_ids, t0 = [], time.monotonic()
    for i in range(args.light):
        time.sleep(max(0.0, t0 + i - time.monotonic()))
        light_ids.append(submit(light))
    light_jobs = Job.objects.filter(pk__in=light_ids)
    timeout = 120 + heavy_jobs * args.hold / CAPACITY * 2
    wait_until(lambda: not light_jobs.filter(started_at__isnull=True).exists()
               or light_jobs.filter(status__in=TERMINAL_STATUSES).exclude(status="completed").exists(),
               timeout, "every light job to start")
    submitted_end = time.time()
    for job in Job.objects.filter(pk__in=heavy_ids, status__in=["pending", "queued"]):
        with contextlib.suppress(JobNotCancelable):  # it started meanwhile: it finishes
            job_cancel(job=job, reason="benchmark over")
    wait_until(lambda: not Job.objects.filter(pk__in=heavy_ids + light_ids, status__in=ACTIVE_STATUSES).exists(),
               120 + 10 * args.hold, "the started jobs to end")
    sampler.stopping.set()
    sampler.join()
    pushes = _pushes(r) - pushes0
    time.sleep(2)  # all ended: nothing may be sent any more
    idle_pushes = _pushes(r) - pushes0 - pushes
    terminate(procs)

    lights = list(light_jobs.order_by("created_at"))
    failed = [j for j in lights if j.status != "completed"]
    waits = [(j.started_at - j.created_at).total_seconds() for j in lights if j.started_at]
    ran = list(Job.objects.filter(pk__in=heavy_ids + light_ids, started_at__isnull=False,
                                  inference_ended_at__isnull=False))
    window = (lights[0].created_at.timestamp(), submitted_end)
    heavy_set = set(heavy_ids)
    heavy_started = sum(1 for j in ran if str(j.pk) in heavy_set and window[0] <= j.started_at.timestamp()
                        <= window[1])
    light_started = sum(1 for j in lights if j.started_at)
    return {
        "mode": mode, "heavy_jobs": heavy_jobs,
        "light_jobs": len(lights), "light_failed": len(failed),
        "light_wait_s": {"p50": round(percentile(waits, 50), 3), "p99": round(percentile(waits, 99), 3),
                         "max": round(max(waits), 3), "first": round(waits[0], 3), "last": round(waits[-1], 3)},
        "light_wait_in_job_durations": {"p50": round(percentile(waits, 50) / args.hold, 2),
                                        "p99": round(percentile(waits, 99) / args.hold, 2)},
        "heavy_started_per_s": round(heavy_started / max(window[1] - window[0], 1e-3), 2),
        "all_started_per_s": round((heavy_started + light_started) / max(window[1] - window[0], 1e-3), 2),
        "most_in_inference_at_once": sampler.most,
        # Steps and hand-overs sent per job started (LPUSH: how kombu publishes), and any sent idle.
        "broker_messages_per_started_job": round(pushes / max(len(ran), 1), 2),
        "broker_messages_when_idle": idle_pushes,
    }


def _pushes(r: Any) -> int:
    return int(r.info("commandstats").get("cmdstat_lpush", {}).get("calls", 0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--heavy", type=int, nargs="+", default=[250, 500], help="the heavy user's backlogs")
    parser.add_argument("--light", type=int, default=60, help="the light user's jobs, one a second")
    parser.add_argument("--hold", type=float, default=1.0, help="seconds each call runs (a job's duration)")
    parser.add_argument("--worker-processes", type=int, default=4)
    parser.add_argument("--workspaces", action="store_true",
                        help="the heavy and the light side are team workspaces, their members submitting")
    args = parser.parse_args()

    with django_stack(AUTEUR_GPU_BACKEND="noop", AUTEUR_TYPE_CAPACITY=f"tts={CAPACITY}",
                      AUTEUR_NOOP_HOLD_SECONDS=str(args.hold), AUTEUR_NOOP_HOLD_SPREAD_SECONDS="0",
                      AUTEUR_JOB_CONCURRENCY_FREE="100000", AUTEUR_RATE_LIMIT_USER_PER_MINUTE="100000000",
                      AUTEUR_GPU_TIME_LIMIT_GRACE_SECONDS="3600") as stack:
        from django.test import Client

        from auteur.users.models import User
        from auteur.users.services import user_issue_token
        from credits.services.ledger import credit_grant
        from projects.models import Project

        def client(name: str) -> Any:
            user = User.objects.create_user(email=f"{name}@bench.invalid")
            credit_grant(user=user, amount=10 * (max(args.heavy) + args.light), type="bonus", description="bench")
            c = Client(HTTP_AUTHORIZATION=f"Bearer {user_issue_token(user=user)}")
            c.project = str(Project.objects.create(user=user, name="b").pk)  # type: ignore[attr-defined]
            return c

        def workspace(name: str, members: int = 3) -> Any:
            """A team workspace's members, as one client that submits as each of them in turn."""
            from auteur.users.models import Membership
            from auteur.users.workspace_services import workspace_create

            people = [User.objects.create_user(email=f"{name}-{n}@bench.invalid") for n in range(members)]
            seat = workspace_create(user=people[0], name=name)
            for person in people[1:]:
                Membership.objects.create(workspace=seat.workspace, user=person, role="editor")
            account = User.objects.get(pk=seat.workspace_id)
            credit_grant(user=account, amount=10 * (max(args.heavy) + args.light), type="bonus", description="bench")
            return InTurn([Client(HTTP_AUTHORIZATION=f"Bearer {user_issue_token(user=person)}",
                                  HTTP_AUTEUR_WORKSPACE=str(account.pk)) for person in people],
                          str(Project.objects.create(user=account, name="b").pk))

        side = workspace if args.workspaces else client

        cases = []
        for heavy_jobs in args.heavy:
            for mode in MODES:
                name = f"{mode}{heavy_jobs}"
                case = run_case(stack, mode, heavy_jobs, args, side(f"heavy-{name}"), side(f"light-{name}"))
                print(json.dumps(case), flush=True)
                cases.append(case)
    p99 = {(c["mode"], c["heavy_jobs"]): c["light_wait_s"]["p99"] for c in cases}
    report = {
        "between": "team workspaces, 3 members submitting each side's jobs" if args.workspaces else "users",
        "capacity": CAPACITY, "hold_s": args.hold, "heavy_jobs": args.heavy, "light_jobs": args.light,
        "worker_processes": args.worker_processes,
        "cases": cases,
        # Same backlog, same run: how much longer the light user waits in arrival order.
        "light_p99_wait_arrival_over_weighted": {
            str(n): round(p99[("arrival", n)] / max(p99[("weighted", n)], 1e-3), 1) for n in args.heavy},
        "targets": {"weighted_light_p99_wait_in_job_durations": 2.0},
    }
    print(json.dumps(report, indent=2))
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / ("fair_share_workspaces.json" if args.workspaces else "fair_share.json")).write_text(
        json.dumps(report, indent=2))
    problems = [f"{c['mode']}: {c['light_failed']} light jobs failed" for c in cases if c["light_failed"]]
    problems += [f"{c['mode']}: {c['most_in_inference_at_once']} in inference at once" for c in cases
                 if c["most_in_inference_at_once"] > CAPACITY]
    if problems:
        raise SystemExit("; ".join(problems))


if __name__ == "__main__":
    main()

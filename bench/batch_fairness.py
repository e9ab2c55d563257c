"""Nobody waits for a batch: interactive jobs' queue wait beside a running 5,000-item batch, against
the same interactive jobs without it, in the same run.

One job type (TTS) runs at most 4 jobs at once (AUTEUR_TYPE_CAPACITY=tts=4), each call held
"running" by the noop backend for `--hold` seconds; every account has 4 slots. Two cases, each on a
fresh worker:

without  two users submit interactive TTS jobs (priority `normal`) in turn, one every `--every`
         seconds, `--interactive` of them;
with     the same, while the first of them has a `--items`-item batch running (POST /jobs/batch,
         submitted first, the type filled with its items before the interactive jobs start):
         an interactive job of the batch's own user, and of another user, beside it.

Each case starts with 3 warm-up jobs, not counted. Each interactive job's wait (submitted ->
started) is measured, split into the submission's request after the job's insert and the
worker's pickup and claim, for the batch's own user and the other apart; a wait `queued` for a
slot or a unit is counted apart. Once all have started, the batch's items still waiting are
cancelled by POST /jobs/bulk/cancel (every refund checked exact). Printed: the interactive waits'
p50 / p99 / max in both cases, their ratio, the batch items started while the interactive jobs
ran (the batch does run), the most jobs in inference at once, and how busy the machine's cores
(every process) and the worker were over the interactive jobs' window.

Goal: the interactive p99 wait with the batch within 10 % of the p99 without it.

    python bench/batch_fairness.py                    # 5,000 items, 60 interactive jobs (~4 min)
    python bench/batch_fairness.py --interactive 120 --every 1.0   # RESULTS.md's run (~6 min)

Writes bench/results/batch_fairness.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._stack import (
    REPO_ROOT,
    RESULTS_DIR,
    celery_worker_argv,
    cpu_seconds,
    django_stack,
    percentile,
    terminate,
    wait_until,
)

CAPACITY = 4
SLOTS = 4
GOAL_RATIO = 1.10
WARM_UP = 3


def run_case(stack: Any, name: str, args: argparse.Namespace, users: list[Any], batch_items: int) -> dict[str, Any]:
    from django.utils import timezone

    from credits.selectors import ledger_check
    from jobs.models import ACTIVE_STATUSES, TERMINAL_STATUSES, Job

    argv = [*celery_worker_argv(concurrency=args.worker_processes, name=name), "--max-tasks-per-child", "1000000000"]
    procs = [stack.spawn(f"worker-{name}", argv),
             stack.spawn(f"gpu-events-{name}", [sys.executable, str(REPO_ROOT / "manage.py"), "gpu_events"])]
    time.sleep(4)  # the worker connects
    # Warm-up, in both cases alike: the first jobs after a worker starts pay its imports and
    # connections (bench/pipeline_overhead.py), which neither case's figures should hold.
    warm = [users[1].post("/api/v1/jobs/tts", {"project_id": users[1].project, "text": f"Warm-up {i}"},
                          content_type="application/json").json()["job_id"] for i in range(WARM_UP)]
    wait_until(lambda: not Job.objects.filter(pk__in=warm, status__in=ACTIVE_STATUSES).exists(),
               60, "the warm-up jobs to end")
    batch_id = None
    if batch_items:
        owner = users[0]
        body = {"items": [{"type": "tts", "input": {"project_id": owner.project, "text": f"Batch line {i}."}}
                          for i in range(batch_items)]}
        response = owner.post("/api/v1/jobs/batch", body, content_type="application/json")
        assert response.status_code == 202, response.content[:300]
        batch_id = response.json()["id"]
        items = Job.objects.filter(batch_id=batch_id)
        wait_until(lambda: items.filter(status="processing").count() >= 1, 60, "the batch to start")
        time.sleep(2 * args.hold)  # the batch holds what it may of the type
    interactive, t0, answered = [], time.monotonic(), {}
    busy0, worker0 = _busy_seconds(), cpu_seconds(procs[0].pid)
    for i in range(args.interactive):
        time.sleep(max(0.0, t0 + i * args.every - time.monotonic()))
        client = users[i % len(users)]
        response = client.post("/api/v1/jobs/tts", {"project_id": client.project, "text": f"Line {i}"},
                               content_type="application/json")
        assert response.status_code == 202, response.content[:300]
        interactive.append(response.json()["job_id"])
        answered[interactive[-1]] = timezone.now()
    jobs = Job.objects.filter(pk__in=interactive)
    wait_until(lambda: not jobs.filter(started_at__isnull=True).exists()
               or jobs.filter(status__in=TERMINAL_STATUSES).exclude(status="completed").exists(),
               120 + args.interactive * args.every, "every interactive job to start")
    window_end = time.monotonic()
    # What the machine's cores did meanwhile (every process: servers, workers, this one), and the
    # worker's share: the batch's pipeline shares the cores with the interactive jobs'.
    cores_busy = (_busy_seconds() - busy0) / (window_end - t0)
    worker_busy = (cpu_seconds(procs[0].pid) - worker0) / (window_end - t0)
    batch: dict[str, Any] = {}
    if batch_id is not None:
        items = Job.objects.filter(batch_id=batch_id)
        started = items.filter(started_at__isnull=False).count()
        response = users[0].post("/api/v1/jobs/bulk/cancel", {"batch_id": batch_id, "status": ["pending", "queued"]},
                                 content_type="application/json")
        assert response.status_code == 200, response.content[:300]
        cancelled = response.json()
        batch = {"items": batch_items, "started": started, "cancelled_waiting": cancelled["canceled"],
                 "refunded": cancelled["credits_refund"]}
    wait_until(lambda: not Job.objects.filter(user__in=[u.user for u in users], status__in=ACTIVE_STATUSES).exists(),
               120 + 10 * args.hold, "the started jobs to end")
    terminate(procs)
    waits = sorted((j.started_at - j.created_at).total_seconds() for j in jobs if j.started_at)
    # Where the wait went: the submission's request after the job's insert (its answer), then the
    # worker's pickup and claim (answered -> started).
    api = sorted((answered[str(j.pk)] - j.created_at).total_seconds() for j in jobs)
    worker = sorted((j.started_at - answered[str(j.pk)]).total_seconds() for j in jobs if j.started_at)
    # The batch owner's interactive jobs apart from the other user's: a batch's weight on its own
    # user (their slots' reads) apart from its weight on everyone.
    by_user = {}
    for label, client in (("batch_user", users[0]), ("other_user", users[1])):
        mine = sorted((j.started_at - j.created_at).total_seconds() for j in jobs
                      if j.started_at and j.user_id == client.user.pk)
        by_user[label] = {"p50": round(percentile(mine, 50), 3), "p99": round(percentile(mine, 99), 3)}
    # Jobs that waited `queued` for a slot or a unit (the scheduling's wait, apart from the pipeline's latency).
    queued = jobs.filter(queued_at__isnull=False).count()
    failed = jobs.exclude(status="completed").count()
    in_window = Job.objects.filter(type="tts", started_at__isnull=False, inference_ended_at__isnull=False,
                                   user__in=[u.user for u in users])
    most = _most_at_once(list(in_window.values_list("started_at", "inference_ended_at")))
    assert ledger_check() == [], "the ledger and its accounts disagree"
    return {"case": name, "interactive": len(interactive), "interactive_failed": failed, "interactive_queued": queued,
            "wait_s": {"p50": round(percentile(waits, 50), 3), "p99": round(percentile(waits, 99), 3),
                       "max": round(max(waits), 3)}, "wait_by_user_s": by_user,
            "insert_to_answer_s": {"p50": round(percentile(api, 50), 4), "p99": round(percentile(api, 99), 4)},
            "answer_to_start_s": {"p50": round(percentile(worker, 50), 4), "p99": round(percentile(worker, 99), 4)},
            "window_s": round(window_end - t0, 1), "cores_busy": round(cores_busy, 3),
            "worker_cores_busy": round(worker_busy, 3), "batch": batch, "most_in_inference_at_once": most}


def _busy_seconds() -> float:
    """The machine's CPU seconds spent busy so far, all cores together."""
    import psutil

    times = psutil.cpu_times()  # guest time is counted in user time already
    return float(sum(getattr(times, name, 0.0) for name in ("user", "nice", "system", "irq", "softirq", "steal")))


def _most_at_once(spans: list[tuple[Any, Any]]) -> int:
    edges = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans], key=lambda p: (p[0], p[1]))
    most = now = 0
    for _, step in edges:
        now += step
        most = max(most, now)
    return most


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=5000, help="the batch's items")
    parser.add_argument("--interactive", type=int, default=60, help="interactive jobs, two users in turn")
    parser.add_argument("--every", type=float, default=1.5, help="seconds between interactive submissions")
    parser.add_argument("--hold", type=float, default=1.0, help="seconds each call runs (a job's duration)")
    parser.add_argument("--worker-processes", type=int, default=4)
    args = parser.parse_args()

    with django_stack(AUTEUR_GPU_BACKEND="noop", AUTEUR_TYPE_CAPACITY=f"tts={CAPACITY}",
                      AUTEUR_NOOP_HOLD_SECONDS=str(args.hold), AUTEUR_NOOP_HOLD_SPREAD_SECONDS="0",
                      AUTEUR_JOB_CONCURRENCY_FREE=str(SLOTS), AUTEUR_RATE_LIMIT_USER_PER_MINUTE="100000000",
                      AUTEUR_RATE_LIMIT_CANCELS_PER_MINUTE="100000000",
                      AUTEUR_GPU_TIME_LIMIT_GRACE_SECONDS="3600") as stack:
        from django.test import Client

        from auteur.users.models import User
        from auteur.users.services import user_issue_token
        from credits.services.ledger import credit_grant
        from projects.models import Project

        def client(name: str) -> Any:
            user = User.objects.create_user(email=f"{name}@bench.invalid")
            credit_grant(user=user, amount=10 * (args.items + args.interactive), type="bonus", description="bench")
            c = Client(HTTP_AUTHORIZATION=f"Bearer {user_issue_token(user=user)}")
            c.project = str(Project.objects.create(user=user, name="b").pk)  # type: ignore[attr-defined]
            c.user = user  # type: ignore[attr-defined]
            return c

        cases = []
        for name, items in (("without", 0), ("with", args.items)):
            case = run_case(stack, name, args, [client(f"batch-{name}"), client(f"other-{name}")], items)
            print(json.dumps(case), flush=True)
            cases.append(case)
    without, with_batch = cases
    ratio = with_batch["wait_s"]["p99"] / max(without["wait_s"]["p99"], 1e-3)
    p50_ratio = with_batch["wait_s"]["p50"] / max(without["wait_s"]["p50"], 1e-3)
    report = {"capacity": CAPACITY, "slots": SLOTS, "hold_s": args.hold, "items": args.items,
              "interactive": args.interactive, "every_s": args.every, "worker_processes": args.worker_processes,
              "cases": cases, "p99_ratio_with_over_without": round(ratio, 3),
              "p50_ratio_with_over_without": round(p50_ratio, 3), "goal_ratio": GOAL_RATIO,
              "within_goal": ratio <= GOAL_RATIO}
    print(json.dumps(report, indent=2))
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / "batch_fairness.json").write_text(json.dumps(report, indent=2))
    problems = [f"{c['case']}: {c['interactive_failed']} interactive jobs failed" for c in cases
                if c["interactive_failed"]]
    problems += [f"{c['case']}: {c['most_in_inference_at_once']} in inference at once" for c in cases
                 if c["most_in_inference_at_once"] > CAPACITY]
    if problems:
        raise SystemExit("; ".join(problems))


if __name__ == "__main__":
    main()

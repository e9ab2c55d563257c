"""Orchestration overhead of the job pipeline: what the backend adds around inference.

    .venv/bin/python bench/pipeline_overhead.py [--jobs 300] [--users 10] [--concurrency 2]

Starts its own throwaway stack (embedded Postgres, Redis, MongoDB-protocol server), one real
Celery worker (prefork) consuming every queue, and the `noop` GPU backend, which returns at
once, so the time measured is the pipeline's own: claim, spawn, poll, store the output
(a real 1 s WAV saved to storage, probed, recorded as media), finalize. Jobs (TTS, which has an
output to store and no input media) are submitted through the real submission service (charge,
ledger row, job, event, publish after commit) from this process.

Reports, per job, p50/p99 of
  submit -> inference start   (created_at -> inference_started_at: publish, queue, claim, spawn)
  inference end -> completed  (inference_ended_at -> completed_at: hop to finish, store, finalize)
and the end-to-end rate. The first jobs after the worker starts pay for cold caches (each pool
process's first statements on each table, in Django and in its Postgres backend): about 60 ms
instead of 12 for the very first. They run one at a time before the measured ones
(`--warm-up`, 3), and the first is reported on its own (`cold_first_job`), not hidden.
Writes bench/results/pipeline_overhead.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._stack import RESULTS_DIR, celery_worker_argv, django_stack, load_average
from bench._stack import percentile as pct


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=300)
    parser.add_argument("--users", type=int, default=10)
    parser.add_argument("--concurrency", type=int, default=2, help="worker processes")
    parser.add_argument("--unloaded", type=int, default=30, help="jobs run one at a time first")
    parser.add_argument("--warm-up", type=int, default=3, help="jobs run one at a time before those, not counted")
    args = parser.parse_args()

    with django_stack(
        AUTEUR_GPU_BACKEND="noop",
        AUTEUR_JOB_CONCURRENCY_FREE="1000",  # measure the pipeline, not the per-user slots
    ) as stack:
        stack.spawn("worker", celery_worker_argv(concurrency=args.concurrency))
        load_start = load_average()
        results = run(args)
        results["load_average"] = {"start": load_start, "end": load_average()}
    print(json.dumps(results, indent=2))
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / "pipeline_overhead.json").write_text(json.dumps(results, indent=2))


def run(args: argparse.Namespace) -> dict[str, object]:
    from auteur.celery import warm_up_publisher
    from auteur.users.models import User
    from credits.services.ledger import credit_grant
    from jobs.intake.submission import job_submit
    from jobs.models import TERMINAL_STATUSES, Job
    from jobs.selectors.requests import JobRequest
    from jobs.specs import job_spec
    from projects.models import Project

    warm_up_publisher()  # this process submits as an API process does: warmed up as auteur/wsgi.py does
    users = [User.objects.create_user(email=f"bench{i}@example.com") for i in range(args.users)]
    projects = []
    for user in users:
        credit_grant(user=user, amount=10 * args.jobs, type="bonus", description="bench")
        projects.append(Project.objects.create(user=user, name="bench"))
    time.sleep(3)  # let the worker finish starting

    def submit(i: int) -> object:
        user, project = users[i % len(users)], projects[i % len(projects)]
        params = {"project_id": str(project.pk), "text": "Hello world.", "speed": 1.0,
                  "_quantities": {"characters": 12}}
        request = JobRequest(project=project, input_params=params, quantities=params["_quantities"], media_ids=[])
        job, _ = job_submit(user=user, spec=job_spec("tts"), request=request)
        return job.pk

    def wait(pks: list[object]) -> None:
        deadline = time.monotonic() + 600
        while Job.objects.filter(pk__in=pks).exclude(status__in=TERMINAL_STATUSES).exists():
            if time.monotonic() > deadline:
                raise SystemExit("jobs did not finish within 10 minutes")
            time.sleep(0.005)

    def one_at_a_time(count: int) -> list[object]:
        done = []
        for i in range(count):
            pk = submit(i)
            wait([pk])
            done.append(pk)
        return done

    warm = one_at_a_time(args.warm_up)
    # Unloaded: one job at a time, so the figures are the pipeline's own latency, not queueing.
    alone = one_at_a_time(args.unloaded)

    started = time.monotonic()
    ids = [submit(i) for i in range(args.jobs)]
    submitted = time.monotonic()
    wait(ids)
    finished = time.monotonic()

    jobs = list(Job.objects.filter(pk__in=ids))
    completed = [j for j in jobs if j.status == "completed"]
    return {
        "cold_first_job": overheads(list(Job.objects.filter(pk__in=warm[:1]))) if warm else None,
        "unloaded": {"jobs": args.unloaded, "after_warm_up": args.warm_up,
                     **overheads(list(Job.objects.filter(pk__in=alone)))},
        "saturated": {
            "jobs": args.jobs,
            "completed": len(completed),
            "failed": sum(j.status == "failed" for j in jobs),
            "worker_processes": args.concurrency,
            "submit_seconds": round(submitted - started, 2),
            "first_submit_to_last_completed_s": round(finished - started, 2),
            "jobs_per_second": round(len(completed) / (finished - started), 1),
            **overheads(completed),
        },
    }


def overheads(jobs: list) -> dict[str, object]:  # type: ignore[type-arg]
    to_start = [(j.inference_started_at - j.created_at).total_seconds() * 1000 for j in jobs]
    to_done = [(j.completed_at - j.inference_ended_at).total_seconds() * 1000 for j in jobs]
    return {
        "submit_to_inference_start_ms": {"p50": round(pct(to_start, 50), 1), "p99": round(pct(to_start, 99), 1)},
        "inference_end_to_completed_ms": {"p50": round(pct(to_done, 50), 1), "p99": round(pct(to_done, 99), 1)},
    }


if __name__ == "__main__":
    main()

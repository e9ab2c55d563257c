"""What each feature adds to a job's worker CPU: the prepare step in process, per kind of job.

    .venv/bin/python bench/worker_features.py [--jobs 200] [--chunk 25] [--profile DIR]

On a throwaway stack with the `noop` GPU backend (the prepare step does the whole job: claim,
spawn, one look, store the output, complete), TTS jobs are submitted through the API in this
process (DRF's test client), then `jobs.life.steps.job_step_prepare` runs for each of them here,
timed with `time.process_time`; the statements reaching psycopg and the Celery messages sent are
counted. Kinds of job, each a different account so that each kind's jobs are its own:

- `personal`: a personal workspace, no webhook, no cap, not in a batch (what
  bench/pipeline_throughput.py submits);
- `webhook`: the same with one account webhook taking `completed` (its delivery is queued, not sent);
- `team`: a team workspace's job, submitted by its owner through their seat (`Auteur-Workspace`);
- `team_capped`: the same with a workspace cap and a member budget that the jobs stay under;
- `batch`: items of a POST /jobs/batch of a personal workspace.

The kinds run in turns of `--chunk` jobs each (personal, webhook, team, ..., personal, ...), so the
machine's drift spreads over all of them; the figure is each kind's CPU per job, and its
difference to `personal`. What it leaves out: Celery's own work per task (message decoding,
task events, acks: see bench/pipeline_throughput.py's raw chains) and tracing (its A/B is
`bench/pipeline_throughput.py --tracing-ab`). With `--profile DIR`, each kind's steps also run
under cProfile into DIR/<kind>.prof (a separate pass, not timed).
Prints a JSON report; writes nothing in bench/results/.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._stack import django_stack, load_average

TEXT = "Hello world."
KINDS = ("personal", "webhook", "team", "team_capped", "batch")


@contextmanager
def counted() -> Iterator[Counter[str]]:
    """Statements that reach psycopg and Celery messages published, while the block runs."""
    import kombu
    import psycopg

    counts: Counter[str] = Counter()
    execute, publish = psycopg.Cursor.execute, kombu.Producer.publish

    def counting_execute(self: Any, *args: Any, **kwargs: Any) -> Any:
        counts["statements"] += 1
        return execute(self, *args, **kwargs)

    def counting_publish(self: Any, body: Any, *args: Any, **kwargs: Any) -> Any:
        counts["messages"] += 1
        return publish(self, body, *args, **kwargs)

    psycopg.Cursor.execute = counting_execute  # type: ignore[method-assign]
    kombu.Producer.publish = counting_publish  # type: ignore[method-assign]
    try:
        yield counts
    finally:
        psycopg.Cursor.execute = execute  # type: ignore[method-assign]
        kombu.Producer.publish = publish  # type: ignore[method-assign]


def submitters(jobs: int) -> dict[str, Callable[[], list[str]]]:
    """For each kind, a function that submits `jobs` jobs of that kind and returns their ids."""
    from rest_framework.test import APIClient

    from auteur.users.models import User
    from auteur.users.services import user_issue_token
    from auteur.users.workspace_services import workspace_create
    from credits.services.budgets import member_budget_set, workspace_cap_set
    from credits.services.ledger import credit_grant
    from projects.models import Project
    from webhooks.services import webhook_create

    def personal(name: str) -> tuple[APIClient, str, User]:
        user = User.objects.create_user(email=f"{name}@bench.invalid")
        credit_grant(user=user, amount=1_000_000, type="bonus", description="bench")
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {user_issue_token(user=user)}")
        return client, str(Project.objects.create(user=user, name="b").pk), user

    def team(name: str, capped: bool) -> tuple[APIClient, str, User]:
        owner = User.objects.create_user(email=f"{name}@bench.invalid")
        seat = workspace_create(user=owner, name=name)
        account = User.objects.get(pk=seat.workspace_id)
        credit_grant(user=account, amount=1_000_000, type="bonus", description="bench")
        if capped:  # limits the jobs stay under: every charge is counted against them
            workspace_cap_set(membership=seat, monthly_limit=900_000)
            member_budget_set(membership=seat, user_id=owner.pk, monthly_limit=800_000)
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {user_issue_token(user=owner)}",
                           HTTP_AUTEUR_WORKSPACE=str(account.pk))
        return client, str(Project.objects.create(user=account, name="b").pk), account

    def one_by_one(client: APIClient, project: str) -> Callable[[], list[str]]:
        def submit() -> list[str]:
            ids = []
            for _ in range(jobs):
                answer = client.post("/api/v1/jobs/tts", {"project_id": project, "text": TEXT, "speed": 1.0},
                                     format="json")
                assert answer.status_code == 202, answer.content
                ids.append(answer.json()["job_id"])
            return ids
        return submit

    def batch(client: APIClient) -> Callable[[], list[str]]:
        def submit() -> list[str]:
            answer = client.post("/api/v1/jobs/batch", {"items": [{"type": "tts", "input": {"text": TEXT}}] * jobs},
                                 format="json")
            assert answer.status_code == 202, answer.content
            return list(answer.json()["job_ids"])
        return submit

    hooked_client, hooked_project, hooked = personal("hooked")
    # Nothing listens there: the delivery is queued, and no worker runs it.
    webhook_create(owner=hooked, url="http://127.0.0.1:9/in", event_types=["completed"])
    return {
        "personal": one_by_one(*personal("personal")[:2]),
        "webhook": one_by_one(hooked_client, hooked_project),
        "team": one_by_one(*team("team", capped=False)[:2]),
        "team_capped": one_by_one(*team("capped", capped=True)[:2]),
        "batch": batch(personal("batch")[0]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=200, help="timed jobs of each kind")
    parser.add_argument("--chunk", type=int, default=25, help="jobs of one kind in a turn")
    parser.add_argument("--kinds", default=",".join(KINDS))
    parser.add_argument("--profile", type=Path, default=None, metavar="DIR")
    args = parser.parse_args()
    kinds = args.kinds.split(",")
    warm, profiled = 20, 100 if args.profile else 0

    with django_stack(AUTEUR_GPU_BACKEND="noop", AUTEUR_JOB_CONCURRENCY_FREE="100000",
                      AUTEUR_RATE_LIMIT_USER_PER_MINUTE="1000000", AUTEUR_WEBHOOK_ALLOW_LOOPBACK="1"):
        from jobs.life.steps import job_step_prepare
        from jobs.models import Job

        submit = submitters(warm + args.jobs + profiled)
        ids = {kind: submit[kind]() for kind in kinds}
        load_start = load_average()
        for kind in kinds:  # connections, prepared statements, caches
            for job_id in ids[kind][:warm]:
                job_step_prepare(job_id=job_id)
        cpu = dict.fromkeys(kinds, 0.0)
        counts = {kind: Counter[str]() for kind in kinds}
        for start in range(warm, warm + args.jobs, args.chunk):
            for kind in kinds:
                chunk = ids[kind][start:min(start + args.chunk, warm + args.jobs)]
                with counted() as c:
                    before = time.process_time()
                    for job_id in chunk:
                        job_step_prepare(job_id=job_id)
                    cpu[kind] += time.process_time() - before
                counts[kind].update(c)
        if args.profile:
            args.profile.mkdir(parents=True, exist_ok=True)
            for kind in kinds:
                profile = cProfile.Profile()
                profile.enable()
                for job_id in ids[kind][warm + args.jobs:]:
                    job_step_prepare(job_id=job_id)
                profile.disable()
                profile.dump_stats(args.profile / f"{kind}.prof")
        timed = {kind: ids[kind][warm:warm + args.jobs] for kind in kinds}
        completed = {kind: Job.objects.filter(pk__in=timed[kind], status="completed").count() for kind in kinds}
        ms = {kind: cpu[kind] * 1000 / args.jobs for kind in kinds}
        base = ms.get("personal")
        report = {
            "jobs_per_kind": args.jobs, "completed": completed,
            "cpu_ms_per_job": {kind: round(v, 2) for kind, v in ms.items()},
            "over_personal_ms": {kind: round(v - base, 2) for kind, v in ms.items()} if base is not None else None,
            "statements_per_job": {kind: round(counts[kind]["statements"] / args.jobs, 2) for kind in kinds},
            "messages_per_job": {kind: round(counts[kind]["messages"] / args.jobs, 2) for kind in kinds},
            "load_average": {"start": load_start, "end": load_average()},
        }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()

"""The money's lock order under a race: submissions from members and API keys of one team workspace,
raced with cancels (refunds), cap changes and role changes, through the real API (gunicorn).

    .venv/bin/python bench/charge_race.py [--submissions 200] [--concurrency 48] [--runs 10]

Each run makes a fresh team workspace with a pool that covers every submission, MEMBERS members
(editors, signed in with tokens) and KEYS API keys, a workspace cap, each key's cap and each member's
budget (all roomy: what is raced is the locks, not the limits). Then --submissions TTS submissions
(each its own text, so that none is served from the result cache; one in two names no project and
goes to the workspace's Library, found or made under the account's `users` row) are sent from
--concurrency threads, each from the next credential in turn, while other threads cancel jobs
submitted before the run (a refund each), set the caps again and change a member's role. Then:

- deadlocks: what pg_stat_database.deadlocks counted during the run (PostgreSQL's own count of the
  deadlocks it broke). Must be 0 in every run;
- the answers: 202 accepted, 200 for a cancel, nothing 5xx (a deadlock answers 503);
- the ledger: ledger_check() finds no problem (balances, entries, counters).

Results are printed and written to bench/results/charge_race.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from bench._stack import django_stack, gunicorn_argv, load_average, wait_until  # noqa: E402 - needs the path above

RESULTS = REPO_ROOT / "bench" / "results" / "charge_race.json"
KEYS = 2
MEMBERS = 2
CANCELS = 20
CAP_CHANGES = 20
ROLE_CHANGES = 20


def _deadlocks() -> int:
    """The deadlocks PostgreSQL broke in this database so far (each server reports its count within
    a second of going idle: read after a pause)."""
    from django.db import connection

    time.sleep(1.5)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute("SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()")
        return int(cursor.fetchone()[0])


def _setup(submissions: int) -> dict[str, Any]:
    from auteur.users.key_services import api_key_create
    from auteur.users.models import Membership, User
    from auteur.users.services import user_issue_token
    from auteur.users.workspace_services import workspace_create
    from credits.services.budgets import key_cap_set, member_budget_set, workspace_cap_set
    from credits.services.ledger import credit_grant
    from projects.models import Project

    owner = User.objects.create_user(f"owner-{time.time_ns()}@bench.test")
    seat = workspace_create(user=owner, name="Race")
    account = User.objects.get(pk=seat.workspace_id)
    project = Project.objects.create(user=account, name="race")
    credit_grant(user=account, amount=1000 * (submissions + CANCELS), description="bench pool")
    credentials: list[str] = []
    members = []
    for n in range(MEMBERS):
        member = User.objects.create_user(f"member{n}-{time.time_ns()}@bench.test")
        Membership.objects.create(workspace_id=seat.workspace_id, user=member, role="editor")
        members.append(member)
        credentials.append(user_issue_token(user=member))
    keys = []
    for n in range(KEYS):
        key, text = api_key_create(membership=seat, name=f"farm {n}", scopes=["jobs:write", "projects:read"])
        keys.append(key)
        credentials.append(text)
    shifting = User.objects.create_user(f"shifting-{time.time_ns()}@bench.test")
    Membership.objects.create(workspace_id=seat.workspace_id, user=shifting, role="editor")
    roomy = 1000 * (submissions + CANCELS)
    workspace_cap_set(membership=seat, monthly_limit=roomy)
    for key in keys:
        key_cap_set(membership=seat, key_id=key.pk, monthly_limit=roomy, job_limit=None)
    for member in members:
        member_budget_set(membership=seat, user_id=member.pk, monthly_limit=roomy)
    return {"account": account, "seat": seat, "project": str(project.pk), "credentials": credentials,
            "keys": keys, "members": members, "shifting": shifting, "roomy": roomy}


def _run(port: int, submissions: int, concurrency: int) -> dict[str, Any]:
    import requests
    from django.db import DatabaseError, connection

    from auteur.core.errors import ApplicationError
    from auteur.users.workspace_services import member_set_role
    from credits.selectors import ledger_check
    from credits.services.budgets import key_cap_set, member_budget_set, workspace_cap_set

    setup = _setup(submissions)
    workspace = str(setup["account"].pk)
    local = threading.local()

    def post(n: int, path: str, body: dict[str, Any] | None = None) -> requests.Response:
        session = getattr(local, "session", None)
        if session is None:
            session = local.session = requests.Session()
        bearer = setup["credentials"][n % len(setup["credentials"])]
        headers = {"Authorization": f"Bearer {bearer}"}
        if not bearer.startswith("auteur_sk_"):
            headers["Auteur-Workspace"] = workspace
        return session.post(f"http://127.0.0.1:{port}{path}", json=body, headers=headers, timeout=120)

    def body(n: int) -> dict[str, Any]:
        return {"text": f"The money's locks, {n} {time.time_ns()}."} | ({"project_id": setup["project"]} if n % 2
                                                                      else {})

    to_cancel = []
    for n in range(CANCELS):
        answer = post(n, "/api/v1/jobs/tts", body(n))
        assert answer.status_code == 202, answer.content
        to_cancel.append(answer.json()["job_id"])

    def submit(n: int) -> str:
        return str(post(n, "/api/v1/jobs/tts", body(n)).status_code)

    def cancel(n: int) -> str:
        return str(post(n, f"/api/v1/jobs/{to_cancel[n]}/cancel").status_code)

    def cap(n: int) -> str:
        try:
            limit = setup["roomy"] + n
            if n % 3 == 0:
                workspace_cap_set(membership=setup["seat"], monthly_limit=limit)
            elif n % 3 == 1:
                key_cap_set(membership=setup["seat"], key_id=setup["keys"][n % KEYS].pk, monthly_limit=limit,
                            job_limit=None)
            else:
                member_budget_set(membership=setup["seat"], user_id=setup["members"][n % MEMBERS].pk,
                                  monthly_limit=limit)
            return "cap set"
        except (DatabaseError, ApplicationError) as exc:  # counted: a deadlock is an OperationalError
            return f"cap {type(exc).__name__}: {exc}"[:200]
        finally:
            connection.close()

    def role(n: int) -> str:
        try:
            member_set_role(membership=setup["seat"], user_id=setup["shifting"].pk,
                            role=("admin", "editor", "viewer")[n % 3])
            return "role set"
        except (DatabaseError, ApplicationError) as exc:
            return f"role {type(exc).__name__}: {exc}"[:200]
        finally:
            connection.close()

    works = ([(submit, n) for n in range(submissions)] + [(cancel, n) for n in range(CANCELS)]
             + [(cap, n) for n in range(CAP_CHANGES)] + [(role, n) for n in range(ROLE_CHANGES)])
    random.Random(submissions).shuffle(works)  # noqa: S311 - an order, no secret: the kinds spread out
    before = _deadlocks()
    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        answers = list(pool.map(lambda work: work[0](work[1]), works))
    seconds = time.perf_counter() - started
    deadlocks = _deadlocks() - before
    statuses = Counter(answers)
    problems = ledger_check()
    return {"seconds": round(seconds, 2), "operations": len(works), "answers": dict(statuses),
            "answers_5xx": sum(n for status, n in statuses.items() if status[:1] == "5"),
            "unexpected": sum(n for status, n in statuses.items() if status not in ("202", "200", "cap set",
                                                                                       "role set")),
            "deadlocks": deadlocks, "ledger_problems": [str(p) for p in problems][:5]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--submissions", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=48)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--api-workers", type=int, default=4)
    args = parser.parse_args(argv)

    from devstack.ports import free_port

    limits = {"AUTEUR_RATE_LIMIT_USER_PER_MINUTE": "1000000", "AUTEUR_RATE_LIMIT_KEY_PER_MINUTE": "1000000"}
    os.environ.update(limits)
    with django_stack(AUTEUR_RATE_LIMIT_USER_PER_MINUTE="1000000", AUTEUR_RATE_LIMIT_KEY_PER_MINUTE="1000000") as stack:
        import requests

        port = free_port()
        stack.spawn("api", gunicorn_argv(port, workers=args.api_workers, worker_class="gthread", threads=8))

        def up() -> bool:
            try:
                return requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2).ok
            except requests.ConnectionError:
                return False

        wait_until(up, 60, "the API")
        runs = []
        for n in range(args.runs):
            runs.append(_run(port, args.submissions, args.concurrency))
            print(f"run {n + 1}: {json.dumps(runs[-1])}", file=sys.stderr)

    held = all(run["deadlocks"] == 0 and run["unexpected"] == 0 and not run["ledger_problems"] for run in runs)
    result = {
        "benchmark": "charge_race",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "load_average": load_average()},
        "settings": {"submissions": args.submissions, "concurrency": args.concurrency, "keys": KEYS,
                     "members": MEMBERS, "cancels": CANCELS, "cap_changes": CAP_CHANGES,
                     "role_changes": ROLE_CHANGES, "api_workers": args.api_workers},
        "runs": runs,
        "deadlocks": [run["deadlocks"] for run in runs],
        "answers_5xx": [run["answers_5xx"] for run in runs],
        "verdict": {"no_deadlock_no_5xx_ledger_exact": held},
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(json.dumps(result, indent=2, default=str))
    return 0 if held else 1


if __name__ == "__main__":
    raise SystemExit(main())

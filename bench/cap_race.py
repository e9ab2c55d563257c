"""Spend caps under a race: concurrent submissions from several API keys and members of one team
workspace, against the workspace's monthly cap, each key's cap and each member's budget.

    .venv/bin/python bench/cap_race.py [--submissions 1000] [--concurrency 48] [--runs 2]

Each run makes a fresh team workspace with a pool that covers every submission, KEYS API keys and
MEMBERS members (editors), caps that the submissions overrun (the workspace's 30 % of the demand,
a multiple of a job's price so that its 100 % is reachable; each key's 30 % of its share, not a
multiple of the price, and a per-job limit of one price; the members' budgets 20 % or 80 % of their
share), so that each kind of cap refuses some, and sends --submissions TTS submissions through the real API (gunicorn)
from --concurrency threads, each submission from the next credential in turn. Then:

- overrun: for every cap, what its subject was charged this month (from the ledger, less refunds)
  above its limit. Must be 0 for every cap, in every run;
- the answers: 202 accepted, 402 `spend_cap_reached` by the cap it names, anything else (none);
- thresholds: the `spend_cap.threshold` events a reader of the workspace's stream got (a webhooks
  worker announces them, as in production), against the alerts the charges wrote: each exactly
  once, and its latency from the charge's commit (the alert's created_at, the database's clock on
  this machine) to its arrival at the reader.

The baseline, measured in the same run: the same submissions to a workspace without caps
(submissions per second), so the caps' cost shows as a ratio.

Results are printed and written to bench/results/cap_race.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from bench._stack import (  # noqa: E402 - needs the path above
    celery_worker_argv,
    django_stack,
    gunicorn_argv,
    load_average,
    percentile,
    wait_until,
)

RESULTS = REPO_ROOT / "bench" / "results" / "cap_race.json"
LOGS = REPO_ROOT / "var" / "cap_race_logs"  # kept only when an answer was unexpected
KEYS = 4
MEMBERS = 4
TEXT = "Spend caps hold under a race."


def _setup(capped: bool, submissions: int) -> dict[str, Any]:
    """A team workspace with its credentials, caps and a project; what the run needs to know."""
    from django.test import Client

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
    quoted = Client(HTTP_AUTHORIZATION=f"Bearer {user_issue_token(user=owner)}",
                    HTTP_AUTEUR_WORKSPACE=str(account.pk)).post(
        "/api/v1/jobs/tts/quote", {"project_id": str(project.pk), "text": TEXT}, content_type="application/json")
    assert quoted.status_code == 201, quoted.content
    price = int(quoted.json()["credits_cost"])
    credit_grant(user=account, amount=price * submissions * 2, description="bench pool")
    credentials: list[tuple[str, str]] = []  # (subject id, bearer)
    members = []
    for n in range(MEMBERS):
        member = User.objects.create_user(f"member{n}-{time.time_ns()}@bench.test")
        Membership.objects.create(workspace_id=seat.workspace_id, user=member, role="editor")
        members.append(member)
        credentials.append((str(member.pk), user_issue_token(user=member)))
    keys = []
    for n in range(KEYS):
        key, text = api_key_create(membership=seat, name=f"farm {n}", scopes=["jobs:write", "projects:read"])
        keys.append(key)
        credentials.append((str(key.pk), text))
    caps: dict[str, dict[str, Any]] = {}
    if capped:
        share = submissions // len(credentials)  # what each credential sends
        workspace_limit = price * (submissions * 3 // 10)  # 30 % of the demand
        workspace_cap_set(membership=seat, monthly_limit=workspace_limit)
        caps[str(account.pk)] = {"cap": "workspace", "limit": workspace_limit}
        for key in keys:
            limit = price * (share * 3 // 10) + price // 2  # 30 % of its share, not a multiple of the price
            key_cap_set(membership=seat, key_id=key.pk, monthly_limit=limit, job_limit=price)
            caps[str(key.pk)] = {"cap": "key", "limit": limit}
        for n, member in enumerate(members):
            limit = price * (share * (2 if n % 2 else 8) // 10)  # 20 % or 80 % of their share
            member_budget_set(membership=seat, user_id=member.pk, monthly_limit=limit)
            caps[str(member.pk)] = {"cap": "member", "limit": limit}
    return {"account": account, "project": str(project.pk), "credentials": credentials, "caps": caps,
            "price": price}


def _submit_all(port: int, setup: dict[str, Any], submissions: int, concurrency: int) -> dict[str, Any]:
    import requests

    url = f"http://127.0.0.1:{port}/api/v1/jobs/tts"
    workspace = str(setup["account"].pk)
    local = threading.local()

    def one(n: int) -> tuple[int, str | None]:
        session = getattr(local, "session", None)
        if session is None:
            session = local.session = requests.Session()
        _, bearer = setup["credentials"][n % len(setup["credentials"])]
        headers = {"Authorization": f"Bearer {bearer}"}
        if not bearer.startswith("auteur_sk_"):
            headers["Auteur-Workspace"] = workspace
        answer = session.post(url, json={"project_id": setup["project"], "text": TEXT}, headers=headers, timeout=120)
        if answer.status_code == 402:
            error = answer.json()["error"]
            return 402, error["details"].get("cap", error["code"])
        return answer.status_code, None

    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        answers = list(pool.map(one, range(submissions)))
    seconds = time.perf_counter() - started
    statuses = Counter(str(status) for status, _ in answers)
    refused_by = Counter(cap for status, cap in answers if status == 402)
    return {"seconds": round(seconds, 2), "per_second": round(submissions / seconds, 1),
            "statuses": dict(statuses), "refused_by": dict(refused_by)}


def _spent(account_id: Any) -> dict[str, int]:
    """What the ledger says each subject spent this month: the workspace (all), each member and key."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("""
            SELECT u.member_id, SUM(-u.amount - COALESCE(r.amount, 0))
            FROM credit_transactions u
            LEFT JOIN credit_transactions r ON r.job_id = u.job_id AND r.type = 'refund'
            WHERE u.user_id = %s AND u.type = 'usage'
              AND u.created_at >= date_trunc('month', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'
            GROUP BY u.member_id""", [account_id])
        by_member = {str(member): int(total) for member, total in cursor.fetchall()}
    return {str(account_id): sum(by_member.values()), **by_member}


class StreamReader(threading.Thread):
    """Reads the workspace's event stream from now on and keeps each spend cap event's arrival."""

    def __init__(self, redis_url: str, key: str) -> None:
        super().__init__(daemon=True)
        import redis

        self.redis = redis.Redis.from_url(redis_url)
        self.key = key
        self.position = "$"
        self.arrivals: list[tuple[float, dict[str, Any]]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            for _, entries in self.redis.xread({self.key: self.position}, block=200) or []:
                now = time.time()
                for entry_id, fields in entries:
                    self.position = entry_id
                    for value in fields.values():
                        event = json.loads(value)
                        if str(event.get("type", "")).startswith("spend_cap."):
                            self.arrivals.append((now, event))


def _thresholds(reader: StreamReader, account_id: Any) -> dict[str, Any]:
    from credits.models import CapAlert

    alerts = {alert.pk: alert for alert in CapAlert.objects.filter(user_id=account_id)}
    wait_until(lambda: len({e["alert_id"] for _, e in reader.arrivals}) >= len(alerts), 30, "the threshold events")
    time.sleep(1.0)  # anything that would arrive twice has had time to
    reader.stop.set()
    reader.join()
    seen = Counter(event["alert_id"] for _, event in reader.arrivals)
    latencies = [arrived - alerts[event["alert_id"]].created_at.timestamp() for arrived, event in reader.arrivals
                 if event["alert_id"] in alerts]
    return {
        "alerts": len(alerts),
        "by_cap": dict(Counter(f"{a.scope} {a.threshold}%" for a in alerts.values())),
        "events": len(reader.arrivals),
        "duplicates": sum(n - 1 for n in seen.values() if n > 1),
        "missing": len(set(alerts) - set(seen)),
        "latency_p50_ms": round(percentile(latencies, 50) * 1000, 1) if latencies else None,
        "latency_max_ms": round(max(latencies) * 1000, 1) if latencies else None,
    }


def _run(port: int, redis_url: str, submissions: int, concurrency: int, capped: bool) -> dict[str, Any]:
    from jobs.events.stream import stream_key

    setup = _setup(capped, submissions)
    reader = StreamReader(redis_url, stream_key(setup["account"].pk))
    reader.start()
    time.sleep(0.3)
    sent = _submit_all(port, setup, submissions, concurrency)
    spent = _spent(setup["account"].pk)
    caps = [{**cap, "spent": spent.get(subject, 0), "overrun": max(0, spent.get(subject, 0) - cap["limit"])}
            for subject, cap in setup["caps"].items()]
    result = {"capped": capped, "price": setup["price"], **sent, "charged": spent[str(setup["account"].pk)],
              "caps": caps, "overrun": sum(cap["overrun"] for cap in caps)}
    if capped:
        result["thresholds"] = _thresholds(reader, setup["account"].pk)
    else:
        reader.stop.set()
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--submissions", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=48)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--api-workers", type=int, default=4)
    args = parser.parse_args(argv)

    from devstack.ports import free_port

    limits = {"AUTEUR_RATE_LIMIT_USER_PER_MINUTE": "1000000", "AUTEUR_RATE_LIMIT_KEY_PER_MINUTE": "1000000"}
    os.environ.update(limits)
    with django_stack(**limits) as stack:
        import requests

        port = free_port()
        stack.spawn("api", gunicorn_argv(port, workers=args.api_workers, worker_class="gthread", threads=8))
        stack.spawn("webhooks-worker", celery_worker_argv("webhooks", concurrency=1, name="announcer"))
        def up() -> bool:
            try:
                return requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2).ok
            except requests.ConnectionError:
                return False

        wait_until(up, 60, "the API")
        redis_url = os.environ["REDIS_URL"]
        baseline = _run(port, redis_url, args.submissions, args.concurrency, capped=False)
        runs = [_run(port, redis_url, args.submissions, args.concurrency, capped=True) for _ in range(args.runs)]
        if any(set(run["statuses"]) - {"202", "402"} for run in [baseline, *runs]):
            # Unexpected answers: keep the servers' logs to read.
            shutil.copytree(stack.tmp / "logs", LOGS, dirs_exist_ok=True)
            print(f"unexpected answers: the servers' logs are in {LOGS}", file=sys.stderr)

    held = all(run["overrun"] == 0 for run in runs)
    on_time = all(run["thresholds"]["duplicates"] == 0 and run["thresholds"]["missing"] == 0
                  and (run["thresholds"]["latency_max_ms"] or 0) < 1000 for run in runs)
    result = {
        "benchmark": "cap_race",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "load_average": load_average()},
        "settings": {"submissions": args.submissions, "concurrency": args.concurrency, "keys": KEYS,
                     "members": MEMBERS, "api_workers": args.api_workers},
        "baseline_uncapped": baseline,
        "runs": runs,
        "ratio_capped_vs_uncapped_per_second": round(
            sum(run["per_second"] for run in runs) / len(runs) / baseline["per_second"], 3),
        "overrun_credits": [run["overrun"] for run in runs],
        "verdict": {"no_overrun": held, "thresholds_once_within_1s": on_time},
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(json.dumps(result, indent=2, default=str))
    return 0 if held and on_time else 1


if __name__ == "__main__":
    raise SystemExit(main())

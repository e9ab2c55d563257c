"""Deductions per second on ONE hot credit account, N concurrent worker processes.

    .venv/bin/python bench/ledger_contention.py [--seconds 10] [--workers 8]

Two loops on the same throwaway Postgres, each for the same total time, run in alternating slices
(--rounds) so that changes in the machine's load over the run weigh on both alike:

raw      the baseline, the plainest correct loop: per operation one transaction with a guarded
         `UPDATE credit_accounts SET balance = balance - 1 WHERE id = %s AND balance >= 1
         RETURNING balance` and the INSERT of its ledger row, straight through psycopg.
service  credits.services.ledger.credit_deduct_for_job (a fresh job id each time): the real code path,
         Django's transaction handling and all (its guarded UPDATE and the ledger INSERT are one
         statement there, run by the SECURITY DEFINER function auteur_ledger_charge_uncapped: a
         personal owner's charge without a cap; credits/migrations/0010_ledger_functions.py).
team     the same on a team workspace's account, each worker a member of it: the statement that
         also counts the member's monthly budget (auteur_ledger_charge), every budget large enough
         never to refuse.

Then a drain check for each: an account holding exactly D credits is hammered by all workers
until it refuses; exactly D deductions must succeed and the balance must end at 0 (an overdraft
is any balance or balance_after below 0). The team's drain holds its members to budgets instead
(D / workers each, from a pool that covers them all): each member must be charged exactly their
budget, no more. ledger_check runs on everything at the end.

The embedded stack is throwaway (bench/_stack.py; Postgres with fsync off, like `make test`).
Results are printed and written to bench/results/ledger_contention.json.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from bench._stack import django_stack  # noqa: E402 - needs the path above

RESULTS = REPO_ROOT / "bench" / "results" / "ledger_contention.json"
HOT_BALANCE = 10**9  # never runs out during a throughput phase
WARMUP_SECONDS = 1.0


# ----------------------------------------------------------------------------- workers (forked)


def _raw_worker(url: str, account_id: str, user_id: str, seconds: float, barrier: Any, out: Any) -> None:
    import psycopg

    conn = psycopg.connect(url, autocommit=True)
    latencies: list[float] = []
    refused = 0
    barrier.wait()
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        t0 = time.perf_counter()
        with conn.transaction():
            row = conn.execute(
                "UPDATE credit_accounts SET balance = balance - 1, updated_at = now() "
                "WHERE id = %s AND balance >= 1 RETURNING balance",
                [account_id],
            ).fetchone()
            if row is not None:
                conn.execute(
                    "INSERT INTO credit_transactions (id, account_id, user_id, amount, balance_after, type, "
                    "description, job_id) VALUES (%s, %s, %s, -1, %s, 'usage', 'bench raw', %s)",
                    [uuid.uuid4(), account_id, user_id, row[0], uuid.uuid4()],
                )
        if row is None:
            refused += 1
            if seconds == float("inf"):
                break
            continue
        latencies.append(time.perf_counter() - t0)
    conn.close()
    out.put({"ops": len(latencies), "refused": refused, "latencies": latencies})


def _service_worker(user_id: str, seconds: float, barrier: Any, out: Any) -> None:
    from django.db import connection

    from auteur.users.models import User
    from credits.errors import InsufficientCredits
    from credits.services.ledger import credit_deduct_for_job

    user = User.objects.get(pk=user_id)
    latencies: list[float] = []
    refused = 0
    barrier.wait()
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        t0 = time.perf_counter()
        try:
            credit_deduct_for_job(user=user, job_id=uuid.uuid4(), amount=1, description="bench service")
        except InsufficientCredits:
            refused += 1
            if seconds == float("inf"):
                break
            continue
        latencies.append(time.perf_counter() - t0)
    connection.close()
    out.put({"ops": len(latencies), "refused": refused, "latencies": latencies})


def _team_worker(user_id: str, member_ids: list[str], seconds: float, barrier: Any, out: Any) -> None:
    """Charges by the team's members in turn (from a different one in each worker); in a drain
    (`seconds` infinite), until every member's budget refused."""
    from django.db import connection

    from auteur.users.models import User
    from credits.errors import SpendCapReached
    from credits.services.ledger import credit_deduct_for_job

    user = User.objects.get(pk=user_id)
    members = [uuid.UUID(m) for m in member_ids]
    turn = os.getpid()
    latencies: list[float] = []
    refused = 0
    barrier.wait()
    deadline = time.perf_counter() + seconds
    while members and time.perf_counter() < deadline:
        turn += 1
        member = members[turn % len(members)]
        t0 = time.perf_counter()
        try:
            credit_deduct_for_job(user=user, job_id=uuid.uuid4(), amount=1, description="bench team",
                                  member_id=member)
        except SpendCapReached:
            refused += 1
            if seconds == float("inf"):
                members.remove(member)
            continue
        latencies.append(time.perf_counter() - t0)
    connection.close()
    out.put({"ops": len(latencies), "refused": refused, "latencies": latencies})


def _run_phase(target: Any, args: tuple[Any, ...], workers: int, seconds: float) -> dict[str, Any]:
    """Fork `workers` processes running target(*args, seconds, barrier, queue); collect their results."""
    from django.db import connections

    connections.close_all()  # a forked child must never share the parent's socket
    ctx = mp.get_context("fork")
    barrier, out = ctx.Barrier(workers + 1), ctx.Queue()
    procs = [ctx.Process(target=target, args=(*args, seconds, barrier, out)) for _ in range(workers)]
    for proc in procs:
        proc.start()
    barrier.wait()
    t0 = time.perf_counter()
    results = [out.get(timeout=(seconds if seconds != float("inf") else 0) + 120) for _ in procs]
    elapsed = time.perf_counter() - t0
    for proc in procs:
        proc.join(30)
    return {
        "ops": sum(r["ops"] for r in results),
        "refused": sum(r["refused"] for r in results),
        "elapsed": elapsed,
        "latencies": [x for r in results for x in r["latencies"]],
    }


def _summary(phases: list[dict[str, Any]]) -> dict[str, Any]:
    ops = sum(p["ops"] for p in phases)
    elapsed = sum(p["elapsed"] for p in phases)
    latencies = sorted(x for p in phases for x in p["latencies"])
    return {
        "ops": ops,
        "refused": sum(p["refused"] for p in phases),
        "elapsed_s": round(elapsed, 3),
        "ops_per_s": round(ops / elapsed, 1),
        "p50_ms": round(statistics.median(latencies) * 1000, 3) if latencies else None,
        "p99_ms": round(latencies[int(len(latencies) * 0.99)] * 1000, 3) if latencies else None,
    }


# ----------------------------------------------------------------------------- main


def _fund(email: str, amount: int) -> tuple[str, str]:
    from auteur.users.models import User
    from credits.services.ledger import credit_grant

    user = User.objects.create_user(email=email)
    entry = credit_grant(user=user, amount=amount, description="bench funds")
    return str(user.pk), str(entry.account_id)


def _team(name: str, amount: int, *, members: int, budget: int | None) -> tuple[str, list[str]]:
    """A team workspace's account holding `amount`, and its `members` (editors), each with a
    monthly `budget` (None: none, yet counted)."""
    from auteur.users.models import Membership, User
    from auteur.users.workspace_services import workspace_create
    from credits.services.budgets import member_budget_set
    from credits.services.ledger import credit_grant

    people = [User.objects.create_user(email=f"{name}-{n}@bench.invalid") for n in range(members)]
    seat = workspace_create(user=people[0], name=name)
    for person in people[1:]:
        Membership.objects.create(workspace=seat.workspace, user=person, role="editor")
    for person in people:
        member_budget_set(membership=seat, user_id=person.pk, monthly_limit=budget)
    credit_grant(user=User.objects.get(pk=seat.workspace_id), amount=amount, description="bench pool")
    return str(seat.workspace_id), [str(person.pk) for person in people]


def _measure(args: argparse.Namespace, database_url: str) -> dict[str, Any]:
    from django.db.models import Sum

    from credits.models import CreditAccount, CreditTransaction
    from credits.selectors import ledger_check

    raw_user, raw_account = _fund("raw@bench.invalid", HOT_BALANCE)
    svc_user, _ = _fund("service@bench.invalid", HOT_BALANCE)
    team_user, team_members = _team("team", HOT_BALANCE, members=args.workers, budget=None)
    loops = {
        "raw": (_raw_worker, (database_url, raw_account, raw_user)),
        "service": (_service_worker, (svc_user,)),
        "team": (_team_worker, (team_user, team_members)),
    }

    # Warm every path (connections, plans, caches) before anything is timed.
    for target, worker_args in loops.values():
        _run_phase(target, worker_args, args.workers, WARMUP_SECONDS)

    # The loops take turns in slices (raw, service, team, then team, service, raw, ...) so that
    # drift in the machine's load over the run weighs on all alike; each gets `seconds` in total.
    phases: dict[str, list[dict[str, Any]]] = {name: [] for name in loops}
    slice_s = args.seconds / args.rounds
    for round_no in range(args.rounds):
        order = list(loops) if round_no % 2 == 0 else list(reversed(loops))
        for name in order:
            print(f"round {round_no + 1}/{args.rounds}: {name}, {args.workers} workers x {slice_s:g}s", flush=True)
            target, worker_args = loops[name]
            phases[name].append(_run_phase(target, worker_args, args.workers, slice_s))
    raw, service, team = (_summary(phases[name]) for name in loops)

    # Drain: exactly D successes out of an account holding D, then refusals; never below zero.
    drain: dict[str, Any] = {}
    for name, target in (("raw", _raw_worker), ("service", _service_worker)):
        user_id, account_id = _fund(f"drain-{name}@bench.invalid", args.drain)
        worker_args = (database_url, account_id, user_id) if name == "raw" else (user_id,)
        result = _run_phase(target, worker_args, args.workers, float("inf"))
        balance = CreditAccount.objects.get(pk=account_id).balance
        drain[name] = {"credits": args.drain, "succeeded": result["ops"], "refused": result["refused"],
                       "final_balance": balance}
    # The team's: every member's budget drained by every worker at once; the pool covers them all.
    budget = args.drain // args.workers
    user_id, members = _team("drain-team", budget * args.workers, members=args.workers, budget=budget)
    result = _run_phase(_team_worker, (user_id, members), args.workers, float("inf"))
    charged = {str(m): -total for m, total in CreditTransaction.objects.filter(user_id=user_id, type="usage")
               .values_list("member_id").annotate(total=Sum("amount"))}
    drain["team"] = {"credits": budget * args.workers, "succeeded": result["ops"], "refused": result["refused"],
                     "final_balance": CreditAccount.objects.get(user_id=user_id).balance,
                     "budget_per_member": budget,
                     "members_over_budget": sum(1 for m in members if charged.get(m, 0) > budget),
                     "members_under_budget": sum(1 for m in members if charged.get(m, 0) < budget)}

    overdrafts = (CreditAccount.objects.filter(balance__lt=0).count()
                  + CreditTransaction.objects.filter(balance_after__lt=0).count())
    problems = [str(p) for p in ledger_check()]
    return {
        "workers": args.workers,
        "seconds": args.seconds,
        "rounds": args.rounds,
        "raw": raw,
        "service": service,
        "team": team,
        "ratio_service_to_raw": round(service["ops_per_s"] / raw["ops_per_s"], 3) if raw["ops_per_s"] else None,
        "ratio_team_to_service": round(team["ops_per_s"] / service["ops_per_s"], 3) if service["ops_per_s"] else None,
        "drain": drain,
        "overdrafts": overdrafts,
        "ledger_check": "consistent" if not problems else problems[:20],
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "postgres": "embedded, fsync=off, synchronous_commit=off"},
        "ledger_rows": CreditTransaction.objects.count(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=10.0, help="duration of each measured loop")
    parser.add_argument("--workers", type=int, default=8, help="concurrent worker processes")
    parser.add_argument("--rounds", type=int, default=5, help="alternating slices the duration is split into")
    parser.add_argument("--drain", type=int, default=2000, help="credits in each drain-check account")
    args = parser.parse_args(argv)

    with django_stack():
        report = _measure(args, os.environ["DATABASE_URL"])

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    raw, service = report["raw"], report["service"]
    print(f"\nhot account, {args.workers} workers, {args.seconds:g}s each")
    print(f"  raw guarded UPDATE + INSERT  {raw['ops_per_s']:>9.1f} ops/s  p50 {raw['p50_ms']} ms  "
          f"p99 {raw['p99_ms']} ms")
    print(f"  credit_deduct_for_job        {service['ops_per_s']:>9.1f} ops/s  p50 {service['p50_ms']} ms  "
          f"p99 {service['p99_ms']} ms")
    team = report["team"]
    print(f"  team member's (budget counted) {team['ops_per_s']:>7.1f} ops/s  p50 {team['p50_ms']} ms  "
          f"p99 {team['p99_ms']} ms")
    print(f"  service / raw                {report['ratio_service_to_raw']}")
    print(f"  team / service               {report['ratio_team_to_service']}")
    for name, d in report["drain"].items():
        print(f"  drain {name:<8} {d['succeeded']} of {d['credits']} succeeded, final balance {d['final_balance']}")
    team_drain = report["drain"]["team"]
    print(f"  team budgets                 {team_drain['budget_per_member']} each: "
          f"{team_drain['members_over_budget']} members over, {team_drain['members_under_budget']} under")
    print(f"  overdrafts                   {report['overdrafts']}")
    print(f"  ledger_check                 {report['ledger_check']}")
    print(f"  written to {RESULTS.relative_to(REPO_ROOT)}")
    ok = (report["overdrafts"] == 0 and report["ledger_check"] == "consistent"
          and all(d["succeeded"] == d["credits"] and d["final_balance"] == 0 for d in report["drain"].values())
          and team_drain["members_over_budget"] == team_drain["members_under_budget"] == 0)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())

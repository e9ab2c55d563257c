"""GET /api/v1/usage on a workspace whose ledger holds 1,000,000 entries: each grouping's time, its
plan, and the same queries without the usage index, in the same run.

    .venv/bin/python bench/usage_query.py [--rows 1000000] [--repeat 50] [--naive 3]

On a throwaway stack (bench/_stack.py) one team workspace (10 members and 3 API keys) gets `--rows`
ledger entries, spread evenly over the 365 days before now and written by one INSERT ... SELECT
FROM generate_series: 88% job charges, 10% refunds (of the charge just before), 2% bonus grants
(not usage), and one jobs row (of 11 types) per charge. The month measured is the last whole UTC
calendar month (about 1/12 of the entries).

For each grouping (day, type, member, key, and the FOCUS export's day x type x member), `--repeat`
times, alternating between groupings:
request  GET /api/v1/usage?from=..&to=..&group_by=.. through Django's test client, as the team's
         owner (token, workspace seat, row-level security, the query, the labels, the JSON):
         what one API worker spends, no HTTP server. The target: p99 < 200 ms.
query    credits.usage.usage_report alone, in the owner's row-level security scope.
Then EXPLAIN (ANALYZE, BUFFERS) of each grouping's query. Then the baseline: the usage index
dropped (the ledger's other indexes remain: by account and time, by user and time, by job), the
same loops and plans, and the index built again. And the naive way, `--naive` times: every entry
of the month read into Python and summed there, by day.

Results are printed and written to bench/results/usage_query.json.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import json
import platform
import statistics
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from bench._stack import RESULTS_DIR, django_stack, load_average, percentile  # noqa: E402 - needs the path above

RESULTS = RESULTS_DIR / "usage_query.json"
GROUPINGS = ("day", "type", "member", "key", "focus")
ANSWERS = GROUPINGS[:-1]  # the JSON answers: what the 200 ms target is for
JOB_TYPES = ("transcription", "tts", "lip-sync", "video-generation", "performance-cloning", "gaze-redirection",
             "audio-generation", "video-query", "render", "compression", "image-generation")
INDEX = "credit_tx_usage_range"

# Entry i (1..rows) is made at `start + i * step`. A bonus when i % 50 == 0; a refund of entry i - 1's
# job when i % 10 == 5 (entry i - 1 is a charge: (i - 1) % 10 == 4); a charge of 1 + i % 20 otherwise. The
# job of entry i is md5('job' || i) as a uuid; its member is one of the ids in `members`.
LEDGER_SQL = """
INSERT INTO credit_transactions (id, account_id, user_id, amount, balance_after, type, description, job_id,
                                 job_type, member_id, created_at)
SELECT md5('entry' || i)::uuid, %(account_id)s, %(user_id)s,
       CASE WHEN mod(i, 50) = 0 THEN 100 WHEN mod(i, 10) = 5 THEN 1 + mod(i - 1, 20) ELSE -(1 + mod(i, 20)) END,
       1000000,
       CASE WHEN mod(i, 50) = 0 THEN 'bonus' WHEN mod(i, 10) = 5 THEN 'refund' ELSE 'usage' END,
       'bench',
       CASE WHEN mod(i, 50) <> 0 THEN md5('job' || CASE WHEN mod(i, 10) = 5 THEN i - 1 ELSE i END)::uuid END,
       CASE WHEN mod(i, 50) <> 0 THEN (%(types)s::text[])[1 + mod(CASE WHEN mod(i, 10) = 5 THEN i - 1 ELSE i END,
                                                                  cardinality(%(types)s::text[]))] END,
       CASE WHEN mod(i, 50) = 0 THEN NULL ELSE (%(members)s::uuid[])[1 + mod(i, cardinality(%(members)s::uuid[]))] END,
       %(start)s::timestamptz + i * %(step)s::interval
FROM generate_series(1, %(rows)s) AS i
"""
# The other workspaces' entries, interleaved in time with the measured one's: charges only (their
# jobs rows are left out, which only makes the jobs table smaller than it would be).
OTHERS_SQL = """
INSERT INTO credit_transactions (id, account_id, user_id, amount, balance_after, type, description, job_id,
                                 created_at)
SELECT md5('other' || i)::uuid, a.id, a.user_id, -1, 1000000, 'usage', 'bench', md5('other job' || i)::uuid,
       %(start)s::timestamptz + i * %(step)s::interval
FROM generate_series(1, %(rows)s) AS i
JOIN LATERAL (SELECT id, user_id FROM credit_accounts WHERE id = (%(accounts)s::uuid[])[1 + mod(i, %(count)s)])
     AS a ON true
"""


def _jobs_sql() -> tuple[str, list[Any]]:
    """One jobs row per charge: its id, account, member, type, cost and time; every other column
    that may not be null, its model's default."""
    from django.db import connection
    from django.db.models.fields import NOT_PROVIDED

    from jobs.models import Job

    given = {"id", "user", "member_id", "type", "status", "credits_cost", "created_at", "updated_at"}
    columns, values, params = [], [], []
    for field in Job._meta.concrete_fields:
        if field.name in given or field.null or field.db_default is not NOT_PROVIDED:
            continue
        columns.append(connection.ops.quote_name(field.column))
        values.append("%s")
        params.append(field.get_db_prep_save(field.get_default(), connection))
    extra_columns, extra_values = "".join(", " + c for c in columns), "".join(", " + v for v in values)
    sql = f"""
INSERT INTO jobs (id, user_id, member_id, type, status, credits_cost, created_at, updated_at{extra_columns})
SELECT md5('job' || i)::uuid, %s, (%s::uuid[])[1 + mod(i, cardinality(%s::uuid[]))],
       (%s::text[])[1 + mod(i, cardinality(%s::text[]))], 'completed', 1 + mod(i, 20),
       %s::timestamptz + i * %s::interval, %s::timestamptz + i * %s::interval{extra_values}
FROM generate_series(1, %s) AS i
WHERE mod(i, 50) <> 0 AND mod(i, 10) <> 5
"""  # noqa: S608 - column names from the model, values as parameters
    return sql, params


def summary(samples: list[float]) -> dict[str, float]:
    return {"p50_ms": round(statistics.median(samples), 2), "p99_ms": round(percentile(samples, 99), 2),
            "max_ms": round(max(samples), 2), "n": len(samples)}


def timed(fn: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=50,
                        help="timed runs of each grouping, with and without the index")
    parser.add_argument("--naive", type=int, default=3, help="timed runs of the naive Python sum")
    parser.add_argument("--others", type=int, default=1_000_000,
                        help="entries of 50 other workspaces, interleaved in time with the measured one's")
    args = parser.parse_args()

    with django_stack(AUTEUR_RATE_LIMIT_USER_PER_MINUTE="100000000"):
        from django.db import connection
        from django.test import Client

        from auteur.core import rls
        from auteur.users.models import ApiKey, Membership, User
        from auteur.users.roles import Role
        from auteur.users.services import user_issue_token
        from auteur.users.workspace_services import workspace_create
        from credits.models import CreditAccount, CreditTransaction
        from credits.services.ledger import credit_grant
        from credits.usage import FocusExport, UsageRange, _params, _usage_sql, usage_report

        owner = User.objects.create_user(email="owner@bench.invalid")
        workspace = workspace_create(user=owner, name="Bench studio").workspace
        account = User.objects.get(pk=workspace.pk)
        members = [owner.pk]
        for n in range(9):
            member = User.objects.create_user(email=f"member{n}@bench.invalid")
            Membership.objects.create(workspace=workspace, user=member, role=Role.EDITOR)
            members.append(member.pk)
        for n in range(3):
            key = ApiKey.objects.create(user=account, name=f"key {n}", prefix=f"ak_{n:05d}",
                                        secret_hash=uuid.uuid4().hex * 2, scopes=["jobs:write"], created_by=owner)
            members.append(key.pk)
        credit_grant(user=account, amount=1_000_000, description="bench pool")
        credit_account = CreditAccount.objects.get(user=account)

        now = datetime.now(UTC)
        start = now - timedelta(days=365)
        step = timedelta(days=365) / args.rows
        t0 = time.perf_counter()
        with connection.cursor() as cursor:
            cursor.execute(LEDGER_SQL, {"account_id": credit_account.pk, "user_id": account.pk, "members": members,
                                        "start": start, "step": step, "rows": args.rows,
                                        "types": list(JOB_TYPES)})
            ledger_seconds = time.perf_counter() - t0
            others = []
            for n in range(50):
                other = User.objects.create_user(email=f"other{n}@bench.invalid")
                credit_grant(user=other, amount=1, description="bench")
                others.append(CreditAccount.objects.get(user=other).pk)
            cursor.execute(OTHERS_SQL, {"accounts": others, "count": len(others), "start": start,
                                        "step": timedelta(days=365) / max(args.others, 1), "rows": args.others})
            jobs_sql, defaults = _jobs_sql()
            cursor.execute(jobs_sql, [account.pk, members, members, list(JOB_TYPES), list(JOB_TYPES),
                                      start, step, start, step, *defaults, args.rows])
            cursor.execute("VACUUM ANALYZE credit_transactions")
            cursor.execute("VACUUM ANALYZE jobs")
        build_seconds = time.perf_counter() - t0
        entries = CreditTransaction.objects.filter(user_id=account.pk).count()
        print(f"{entries} ledger entries ({ledger_seconds:.1f} s) and their jobs, {args.others} of other workspaces, "
              f"vacuumed: {build_seconds:.1f} s")

        this_month = now.date().replace(day=1)
        month_start = (this_month - timedelta(days=1)).replace(day=1)
        period = UsageRange(month_start, this_month)
        in_month = CreditTransaction.objects.filter(user_id=account.pk, created_at__gte=period.start_at,
                                                    created_at__lt=period.end_at).count()
        print(f"the month measured: {month_start} to {this_month} (excluded), {in_month} entries")

        client = Client(HTTP_AUTHORIZATION=f"Bearer {user_issue_token(user=owner)}",
                        HTTP_AUTEUR_WORKSPACE=str(workspace.pk))

        def request(group_by: str) -> None:
            params = {"from": month_start.isoformat(), "to": this_month.isoformat()}
            if group_by == "focus":
                response = client.get("/api/v1/usage", {**params, "format": "focus"})
                assert response.status_code == 200, response
                b"".join(response.streaming_content)  # type: ignore[attr-defined]  # a StreamingHttpResponse
            else:
                response = client.get("/api/v1/usage", {**params, "group_by": group_by})
                assert response.status_code == 200, response.content

        def query(group_by: str) -> None:
            with rls.request_scope():
                rls.act_as(account.pk)
                if group_by == "focus":
                    export = FocusExport(user=account, period=period)
                    try:
                        for _ in export:
                            pass
                    finally:
                        export.close()
                else:
                    usage_report(user=account, period=period, group_by=group_by)

        def plans() -> dict[str, list[str]]:
            out = {}
            with rls.request_scope():
                rls.act_as(account.pk)
                with connection.cursor() as cursor:
                    for group_by in GROUPINGS:
                        cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + _usage_sql(group_by), _params(account, period))
                        out[group_by] = [row[0] for row in cursor.fetchall()]
            return out

        def measure() -> dict[str, Any]:
            for group_by in GROUPINGS:  # warm: caches, connections, imports
                request(group_by)
                query(group_by)
            samples: dict[str, dict[str, list[float]]] = {g: {"request": [], "query": []} for g in GROUPINGS}
            for _ in range(args.repeat):
                for group_by in GROUPINGS:
                    samples[group_by]["request"].append(timed(functools.partial(request, group_by)))
                    samples[group_by]["query"].append(timed(functools.partial(query, group_by)))
            return {g: {kind: summary(values) for kind, values in s.items()} for g, s in samples.items()}

        def naive() -> dict[date, int]:
            days: dict[date, int] = defaultdict(int)
            for created_at, amount in CreditTransaction.objects.filter(
                user_id=account.pk, created_at__gte=period.start_at, created_at__lt=period.end_at,
                type__in=["usage", "refund"],
            ).values_list("created_at", "amount").iterator(chunk_size=5000):
                days[created_at.astimezone(UTC).date()] -= amount  # net: a charge adds, a refund takes back
            return days

        report = usage_report(user=account, period=period, group_by="day")
        indexed = measure()
        indexed_plans = plans()

        with connection.cursor() as cursor:
            cursor.execute(f"DROP INDEX {INDEX}")
        baseline = measure()
        baseline_plans = plans()
        naive_ms = [timed(naive) for _ in range(args.naive)]
        with connection.cursor() as cursor:
            t0 = time.perf_counter()
            # Built again by the migration's own statement: the index's one definition.
            cursor.execute(importlib.import_module("credits.migrations.0008_usage_index").CREATE)
            rebuild_seconds = time.perf_counter() - t0

    result = {
        "machine": f"{platform.machine()}, {platform.python_version()}",
        "load_average": load_average(),
        "rows": args.rows,
        "other_workspaces_rows": args.others,
        "month": [month_start.isoformat(), this_month.isoformat()],
        "entries_in_month": in_month,
        "charged_in_month": report.total.charged,
        "build_seconds": round(build_seconds, 1),
        "index_build_seconds": round(rebuild_seconds, 2),
        "indexed": indexed,
        "without_index": baseline,
        "naive_python_sum_ms": summary(naive_ms),
        "ratio_p50_without_over_with": {g: round(baseline[g]["query"]["p50_ms"] / indexed[g]["query"]["p50_ms"], 2)
                                        for g in GROUPINGS},
        # The target is the month's usage (the JSON answer, every grouping); the FOCUS file, a bulk
        # export of one row per day, type and member, is measured and reported beside it.
        "target_met": all(indexed[g]["request"]["p99_ms"] < 200 for g in ANSWERS),
        "focus_export_p99_ms": indexed["focus"]["request"]["p99_ms"],
        "plans": {"indexed": indexed_plans, "without_index": baseline_plans},
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")

    print(f"\n{'grouping':<8} {'request p50/p99 ms':>20} {'query p50/p99 ms':>18} {'no index p50/p99 ms':>21} "
          f"{'ratio':>6}")
    for g in GROUPINGS:
        r, q, b = indexed[g]["request"], indexed[g]["query"], baseline[g]["query"]
        print(f"{g:<8} {r['p50_ms']:>9.1f} / {r['p99_ms']:>7.1f} {q['p50_ms']:>8.1f} / {q['p99_ms']:>7.1f} "
              f"{b['p50_ms']:>10.1f} / {b['p99_ms']:>7.1f} {result['ratio_p50_without_over_with'][g]:>6}")
    print(f"naive Python sum by day: p50 {result['naive_python_sum_ms']['p50_ms']} ms")
    print(f"p99 of the month's usage under 200 ms, every grouping: {result['target_met']} "
          f"(the FOCUS export: p99 {result['focus_export_p99_ms']} ms)")
    for label, found in (("with the usage index", indexed_plans), ("without it", baseline_plans)):
        for g in GROUPINGS:
            print(f"\n-- {g}, {label}")
            print("\n".join(found[g]))
    print(f"\nwritten to {RESULTS.relative_to(REPO_ROOT)}")
    return 0 if result["target_met"] else 1


if __name__ == "__main__":
    sys.exit(main())

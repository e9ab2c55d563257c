"""A claim's reads cost the same however many jobs its user has waiting: a batch's thousands make
neither their own user's claims nor anyone else's slower. Each read takes the first or the last of
a user's waiting jobs in start order by one index (jobs_user_waiting_order), once the planner knows
the table as it is: a batch of more than 50 items has the jobs table analyzed right away
(auteur/core/postgres/statistics.py), without waiting for autovacuum's next round."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.db import connection

from auteur.core.postgres import statistics
from credits.models import SubscriptionStatus
from jobs.life import fairshare
from jobs.life.slots import START_ORDER
from jobs.models import Batch, Job, JobStatus

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 3, 1, tzinfo=UTC)


def waiting(user: Any, n: int) -> None:
    """`n` queued `low` jobs of a batch of `user`'s, inserted at once as a batch's are."""
    batch = Batch.objects.create(user=user, item_count=n, credits_cost=2 * n)
    Job.objects.bulk_create(Job(user=user, type="tts", status=JobStatus.QUEUED, waiting_for="slot", credits_cost=2,
                                priority=0, queued_at=T0, batch=batch, batch_index=i,
                                created_at=T0 + timedelta(microseconds=i)) for i in range(n))


def jobs_rows_read(sql: str, params: Any = None) -> int:
    """The rows of `jobs` the statement read (returned by its scans, or read and filtered out)."""
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + sql, params)
        plan = cursor.fetchone()[0]
    plan = plan[0]["Plan"] if isinstance(plan, list) else plan

    def read(node: dict[str, Any]) -> int:
        here = 0
        if node.get("Relation Name") == "jobs":
            here = (node["Actual Rows"] + node.get("Rows Removed by Filter", 0)) * node["Actual Loops"]
        return int(here) + sum(read(child) for child in node.get("Plans", []))

    return read(plan)


def claim_reads(job: Job) -> dict[str, int]:
    """The rows each of a claim's reads takes from `jobs` for `job`: its user's slots and the type's
    room, the type's turn, and its user's next waiting jobs."""
    slots = {"user_id": job.user_id, "job_id": job.pk, "priority": job.priority, "created_at": job.created_at,
             "type": job.type, "most": 4, "active": SubscriptionStatus.ACTIVE.value}
    turn = {"type": job.type, "most": 2**31 - 1, "active": SubscriptionStatus.ACTIVE.value}
    following = Job.objects.filter(user_id=job.user_id, status=JobStatus.QUEUED).order_by(*START_ORDER)[:5]
    sql, params = following.query.sql_with_params()
    return {"slots_and_room": jobs_rows_read(fairshare._SLOTS_AND_ROOM_SQL, slots),
            "turn": jobs_rows_read(fairshare._TURN_SQL, turn), "next_waiting": jobs_rows_read(sql, params)}


def test_a_claim_reads_as_few_rows_beside_thousands_of_waiting_jobs_as_beside_a_few(make_user):
    heavy, light = make_user(), make_user()
    waiting(heavy, 20)
    mine = Job.objects.create(user=heavy, type="tts", status=JobStatus.PENDING, credits_cost=2)
    theirs = Job.objects.create(user=light, type="tts", status=JobStatus.PENDING, credits_cost=2)
    assert statistics.analyze_after_insert("jobs", rows=statistics.ANALYZE_THRESHOLD_ROWS + 1)
    few = {"mine": claim_reads(mine), "theirs": claim_reads(theirs)}
    waiting(heavy, 3000)
    assert statistics.analyze_after_insert("jobs", rows=3000)  # as a batch's task does
    many = {"mine": claim_reads(mine), "theirs": claim_reads(theirs)}
    for who in many:
        for read, rows in many[who].items():
            assert rows <= few[who][read] + 5, (who, read, few, many)


def test_statistics_are_refreshed_only_when_the_rows_inserted_make_them_due(make_user):
    waiting(make_user(), 400)
    assert statistics.analyze_after_insert("jobs", rows=400)
    with connection.cursor() as cursor:
        cursor.execute("SELECT reltuples FROM pg_class WHERE oid = 'jobs'::regclass")
        table_rows = cursor.fetchone()[0]
    assert table_rows >= 400
    # Autovacuum's rule: more than 50 rows and a tenth of the table's.
    assert not statistics.analyze_after_insert("jobs", rows=statistics.ANALYZE_THRESHOLD_ROWS)
    assert not statistics.analyze_after_insert("jobs", rows=int(50 + table_rows / 10))
    assert statistics.analyze_after_insert("jobs", rows=int(51 + table_rows / 10))


def test_a_refresh_gives_way_at_once_to_an_analyze_or_vacuum_under_way(make_user):
    """It never waits for the table's lock: PostgreSQL would cancel an autovacuum it waited behind."""
    import psycopg

    settings = connection.settings_dict
    other = psycopg.connect(host=settings["HOST"], port=settings["PORT"], user=settings["USER"],
                            password=settings["PASSWORD"], dbname=settings["NAME"], autocommit=False)
    try:
        # ANALYZE's own lock, as another ANALYZE or a VACUUM of the table holds it.
        other.execute("LOCK TABLE jobs IN SHARE UPDATE EXCLUSIVE MODE")
        assert not statistics.analyze_after_insert("jobs", rows=10_000)
    finally:
        other.rollback()
        other.close()
    assert statistics.analyze_after_insert("jobs", rows=10_000)  # the lock is free again

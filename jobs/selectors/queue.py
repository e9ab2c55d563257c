"""Where a waiting job stands: its place among the owner's waiting jobs, in its lane, and when it
should start.

A job waits while it is `pending` (its first step is on its lane's Celery queue) or `queued` (it
holds none of its owner's concurrency slots yet). What decides when it starts is its owner's
slots (jobs.life.slots): at most the plan's limit of the owner's jobs are `processing` at
once, and the owner's waiting jobs start by priority, then in submission order. No limit applies per lane
before a job starts processing: the first step only claims a slot and spawns the GPU call, and a
GPU class's container cap or the local runner's slots make a job wait after it is `processing`,
which the history's processing times already include.

    queue_position  1 + the owner's waiting jobs that start before it (a higher priority, or the
                    same and submitted before): 1 starts next
    lane_position   1 + the waiting jobs of every user on the same Celery queue submitted before
                    it (a count: nothing of other users' jobs is shown but how many)
    eta_seconds     when one of the owner's slots frees for it: the owner's slots are replayed
                    with each running job taking its type's median processing time (less the
                    time it has run) and each job ahead taking its type's median; None when a
                    job that must end first is of a type with no history
"""

from __future__ import annotations

import heapq
import json
import math
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import connection

from auteur.core.queues import TASK_ROUTES
from credits.models import Subscription, SubscriptionStatus
from jobs.models import WAITING_STATUSES, Job
from jobs.specs import JOB_SPECS, JobType, job_spec

# A type's duration is the median processing time (claimed -> completed) of its latest
# completed jobs, of every user: recent enough to follow a model or backend change.
HISTORY_SAMPLE = 50
# The owner's jobs ahead replayed one by one; past this many (a script that queued thousands),
# the rest are counted as their average duration spread over the owner's slots.
REPLAYED_AHEAD = 1000


def plan_concurrency_limit(plan: str | None) -> int:
    """How many jobs a user on this plan (None: no active subscription) may run at once."""
    limits: dict[str | None, int] = settings.AUTEUR_JOB_CONCURRENCY
    return limits.get(plan, limits[None])


def lane_of(job_type: str | JobType) -> str:
    """The Celery queue a type's steps run on (its family's route)."""
    return str(TASK_ROUTES[f"jobs.{job_spec(job_type).family}.*"]["queue"])


def lane_types(lane: str) -> list[str]:
    return sorted(t.value for t in JOB_SPECS if lane_of(t) == lane)


# A user's slots as one of their jobs sees them (job_claim's decision, jobs.life.slots): the user's
# jobs running; whether one of their waiting jobs starts before it (the first of their waiting jobs
# in start order, but it, is ahead); whether one queued starts after it (the last queued is behind).
# Each is one probe of jobs_user_waiting_order or jobs_user_status_created however many jobs the
# user has waiting: a batch's thousands cost a claim of theirs, or of anyone beside them, nothing.
# Parameters: user_id, job_id, priority, created_at. Select-list items, for a planned statement.
USER_SLOTS_SQL = """
    (SELECT count(*) FROM jobs WHERE user_id = %(user_id)s AND status = 'processing'),
    EXISTS (SELECT FROM (SELECT priority, created_at FROM jobs
                         WHERE user_id = %(user_id)s AND status IN ('pending', 'queued') AND id <> %(job_id)s
                         ORDER BY priority DESC, created_at, id LIMIT 1) first_waiting
            WHERE priority > %(priority)s OR (priority = %(priority)s AND created_at < %(created_at)s)),
    EXISTS (SELECT FROM (SELECT priority, created_at FROM jobs
                         WHERE user_id = %(user_id)s AND status = 'queued' AND id <> %(job_id)s
                         ORDER BY priority, created_at DESC, id DESC LIMIT 1) last_queued
            WHERE priority < %(priority)s OR (priority = %(priority)s AND created_at > %(created_at)s))
"""


@dataclass(frozen=True)
class QueueEstimate:
    queue_position: int | None
    lane_position: int | None
    eta_seconds: int | None


NOT_WAITING = QueueEstimate(None, None, None)


def slot_free_after(*, limit: int, running_left: Iterable[float], ahead: Iterable[float]) -> float:
    """Seconds until a job can start, given the owner's running jobs (seconds each has left) and
    the waiting jobs ahead of it in order (seconds each will run): each takes the first slot
    that frees, as the slots do. math.inf when an unknown duration stands in the way."""
    ends = list(running_left)
    heapq.heapify(ends)
    now = 0.0
    for duration in (*ahead, None):
        while len(ends) >= limit:
            now = max(now, heapq.heappop(ends))
        if duration is None:
            return now
        heapq.heappush(ends, now + duration)
    raise AssertionError("unreachable")


# One round trip for everything a waiting job's estimate needs; GET /jobs/{id} is the request
# clients poll (bench/api_reads.py), so a waiting job costs it one query more, and any other
# job none. Indexes: jobs_user_status_created for the owner's jobs, jobs_waiting_type_created
# for the lane, jobs_completed_type_recent for the history (jobs/models.py). The lane and the
# history are every user's jobs, which a request's session may not read (auteur/core/rls.py): two
# functions of jobs/migrations/0005_row_level_security.py give it their count and median only.
_ESTIMATE_SQL = """
WITH ahead AS (
    SELECT type, status, started_at, created_at, priority FROM {jobs}
    WHERE user_id = %(user_id)s AND (
        status = 'processing' OR (status IN ('pending', 'queued') AND (
            priority > %(priority)s OR (priority = %(priority)s AND created_at < %(created_at)s)
        ))
    )
), durations AS (
    SELECT t.type, auteur_median_processing_ms(t.type, %(sample)s) AS median_ms
    FROM (SELECT DISTINCT type FROM ahead) t
)
SELECT
    (SELECT plan FROM {subscriptions} WHERE user_id = %(user_id)s AND status = %(active)s LIMIT 1),
    (SELECT count(*) FROM ahead WHERE status <> 'processing'),
    auteur_waiting_jobs_before(%(lane)s, %(created_at)s),
    (SELECT coalesce(json_agg(json_build_array(
        type, status = 'processing', extract(epoch FROM clock_timestamp() - coalesce(started_at, created_at))
     ) ORDER BY status <> 'processing', priority DESC, created_at), '[]') FROM (
        SELECT * FROM ahead ORDER BY status <> 'processing', priority DESC, created_at LIMIT %(replayed)s
     ) a),
    (SELECT coalesce(json_object_agg(type, median_ms), '{{}}') FROM durations)
"""


def job_queue_estimate(
    *, user_id: uuid.UUID, job_type: str, status: str, created_at: datetime, priority: int
) -> QueueEstimate:
    """The positions and start estimate of one of the user's jobs (all None unless it waits)."""
    if status not in WAITING_STATUSES:
        return NOT_WAITING
    quote = connection.ops.quote_name
    sql = _ESTIMATE_SQL.format(jobs=quote(Job._meta.db_table), subscriptions=quote(Subscription._meta.db_table))
    params: dict[str, Any] = {
        "user_id": user_id, "created_at": created_at, "priority": int(priority), "sample": HISTORY_SAMPLE,
        "replayed": REPLAYED_AHEAD,
        "active": SubscriptionStatus.ACTIVE.value, "lane": lane_types(lane_of(job_type)),
    }
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        plan, user_ahead, lane_ahead, rows, medians = cursor.fetchone()
    rows = json.loads(rows) if isinstance(rows, str) else rows
    medians = json.loads(medians) if isinstance(medians, str) else medians
    seconds = {t: (ms / 1000 if ms is not None else math.inf) for t, ms in medians.items()}
    eta = _eta(plan_concurrency_limit(plan), rows, seconds, int(user_ahead))
    return QueueEstimate(
        queue_position=int(user_ahead) + 1,
        lane_position=int(lane_ahead) + 1,
        eta_seconds=None if math.isinf(eta) else math.ceil(eta),
    )


def _eta(limit: int, rows: Sequence[Sequence[Any]], seconds: dict[str, float], user_ahead: int) -> float:
    running_left = [max(0.0, seconds[t] - float(ran)) for t, processing, ran in rows if processing]
    ahead = [seconds[t] for t, processing, _ in rows if not processing]
    eta = slot_free_after(limit=limit, running_left=running_left, ahead=ahead)
    beyond = user_ahead - len(ahead)
    if beyond > 0 and ahead:
        eta += beyond * (sum(ahead) / len(ahead)) / limit
    return eta

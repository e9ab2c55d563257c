"""Fair share between users on a full job type.

A job type runs at most its capacity of jobs at once (`type_capacity`: its Modal function's
`max_containers`, unless AUTEUR_TYPE_CAPACITY names another number; 0 for no limit). A job holds
one unit of it from its start (`processing`) until its inference ends; a job in pieces
(jobs.life.pieces) holds one per running piece, at least one. While a type is full its
waiting jobs wait `queued`; when a unit frees, the next to start is the head job (by the user's
own order: priority, then age) of one of the users who have a waiting job of the type at the head
and a slot of their own free (jobs.life.slots):

- `weighted` (AUTEUR_FAIR_SHARE, the default): the user with the least virtual time on the type.
  Starting a job adds its price in credits over the user's plan weight (AUTEUR_FAIR_SHARE_WEIGHTS)
  to the user's virtual time, so the users waiting on a type share its capacity in proportion to
  their weights whatever their backlogs: a light user's job starts at the next free unit, however
  many jobs a heavy user queued before it (start-time fair queuing). A user's virtual time counts
  from the type's clock (the virtual time at which its last job started) when it is behind it: a
  pause earns no burst afterwards. Ties go to the older head job.
- `arrival`: the oldest head job (first in, first out): the baseline bench/fair_share.py compares.

job_claim decides under the type's lock, then the user's (always in that order): a job starts if
its user is among the first `free` of the order (units free: capacity less the units in use).
While units are free for every waiting user (`slots_and_room`, read with the user's slots), nobody
waits and the order is not even read; every start moves its user's virtual time all the same.
Two claims never both take the last unit, and virtual times change only there. They are rows in
PostgreSQL (`FairShare`, `TypeClock`), so a worker that restarts carries on where the last left
off.

Wake-ups are bounded: a unit that frees publishes the start of the queued jobs due to take the
free units (`start_due`), and so does a claim turned away; a pending job's own first step is
already on its way, and nothing is read while no job of the type waits for a unit. Each claim
decides again, so a stale choice costs one message, and the reaper's minute-by-minute restart of
queued jobs mends a lost one.
"""

from __future__ import annotations

import functools
import math
import uuid
import zlib
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Case, Count, OuterRef, Subquery, Sum, Value, When
from django.db.models.functions import Coalesce, Greatest

from auteur.core.postgres.plans import Planned
from auteur.core.prepared import PreparedRead
from auteur.core.rls import trusted
from credits.models import SubscriptionStatus
from jobs.life import publish
from jobs.models import PIECES, Job, JobPiece, JobStatus
from jobs.selectors.queue import USER_SLOTS_SQL, plan_concurrency_limit
from jobs.specs import job_spec

# Every start of a queued job on a limited type reads it (jobs.life.slots): built once per process.
# The units a job in inference holds: one, or one per running piece of a job in pieces (at least
# the one it claimed).
_UNITS = Case(
    When(gpu_call_id=PIECES, then=Greatest(Coalesce(Subquery(
        JobPiece.objects.filter(job=OuterRef("pk"), state=JobPiece.State.RUNNING).order_by().values("job")
        .annotate(n=Count("pk")).values("n")), 0), 1)),
    default=Value(1),
)
_IN_INFERENCE = PreparedRead(
    lambda job_type: Job.objects.filter(type=job_type, status=JobStatus.PROCESSING, inference_ended_at__isnull=True)
    .values("type").annotate(n=Sum(_UNITS)),
    job_type="\x00type",
)
_QUEUED_FOR_CAPACITY = PreparedRead(
    lambda job_type: Job.objects.filter(type=job_type, status=JobStatus.QUEUED, waiting_for="capacity")
    .values("id")[:1],
    job_type="\x00type",
)
# The first key of the types' advisory locks (the users' take the one-bigint form: no overlap).
_TYPE_LOCK_CLASS = 0x4A0B


def type_capacity(job_type: str) -> int:
    """How many jobs of the type may be in inference at once (0: no limit)."""
    by_type: dict[str, int] = settings.AUTEUR_TYPE_CAPACITY
    named = by_type.get(str(job_type))
    return job_spec(job_type).engine.max_concurrency if named is None else named


def batch_headroom(n: int) -> int:
    """Of `n` units of a type (or slots of a user), how many a batch's items leave free for other
    work: AUTEUR_BATCH_HEADROOM_PERCENT of them, at least one, and never all (a batch always runs)."""
    if n <= 1:
        return 0
    return min(n - 1, max(1, math.ceil(n * settings.AUTEUR_BATCH_HEADROOM_PERCENT / 100)))


def units_in_use(job_type: str, *, excluding: uuid.UUID | None = None) -> int:
    """The type's units held by jobs in inference (but `excluding`): one each, one per running piece."""
    jobs = Job.objects.filter(type=job_type, status=JobStatus.PROCESSING, inference_ended_at__isnull=True)
    if excluding is not None:
        jobs = jobs.exclude(pk=excluding)
    return int(jobs.aggregate(n=Sum(_UNITS))["n"] or 0)


def others_waiting(job_type: str, user_id: uuid.UUID, *, most: int) -> int:
    """How many users other than `user_id` have a job of the type waiting (counted up to `most`)."""
    with trusted(), connection.cursor() as cursor:
        _OTHERS_WAITING.execute(cursor, {"type": str(job_type), "user_id": user_id, "most": most})
        return int(cursor.fetchone()[0])


def units_free(job_type: str) -> int | None:
    """How many more jobs of the type may start now; None when it has no limit."""
    capacity = type_capacity(job_type)
    if not capacity:
        return None
    row = _IN_INFERENCE.first(job_type=str(job_type))
    return capacity - (0 if row is None else int(row["n"]))


def _type_key(job_type: str) -> int:
    """The second key of a type's advisory lock: serializes the starts of its jobs across processes."""
    return zlib.crc32(str(job_type).encode()) - 2**31  # a signed int4


@dataclass(frozen=True)
class Candidate:
    """A user whose next job is of the type, with a slot of their own free."""

    user_id: uuid.UUID
    job_id: uuid.UUID  # the user's next job (their head)
    created_at: datetime
    tag: float  # the user's virtual time on the type, not below the type's clock
    queued: bool  # the job waits queued (else pending: its first step is on its way)
    batch: bool = False  # a batch's item: it takes no unit of the type's headroom


@dataclass(frozen=True)
class Turn:
    """The type as a claim finds it: how much room is left, and who goes first."""

    free: int  # units free now (capacity less the jobs in inference)
    order: list[Candidate]  # the eligible users, the next to start first
    headroom: int = 0  # units a batch's item leaves free (batch_headroom)

    @property
    def due(self) -> list[Candidate]:
        """The users whose next jobs take the free units: the first `free` of the order, a batch's
        item only while more than the headroom would stay free."""
        due, free = [], self.free
        for candidate in self.order:
            if free <= 0:
                break
            if candidate.batch and free <= self.headroom:
                continue
            due.append(candidate)
            free -= 1
        return due

    def admits(self, job_id: uuid.UUID) -> bool:
        return any(c.job_id == job_id for c in self.due)

    def waiting_due(self) -> list[uuid.UUID]:
        """The due jobs that wait `queued`: no message of theirs is on its way (a pending job's
        first step is), so each needs its start published."""
        return [c.job_id for c in self.due if c.queued]


# The users waiting on a type, found with one probe of jobs_waiting_type_user per user (a loose
# index scan), however many jobs each has waiting; at most `most` of them.
_WAITING_USERS_CTE = """
WITH RECURSIVE waiting_users(user_id, n) AS (
    (SELECT user_id, 1 FROM jobs WHERE type = %(type)s AND status IN ('pending', 'queued')
     ORDER BY user_id LIMIT 1)
    UNION ALL
    SELECT (SELECT j.user_id FROM jobs j WHERE j.type = %(type)s AND j.status IN ('pending', 'queued')
            AND j.user_id > w.user_id ORDER BY j.user_id LIMIT 1), w.n + 1
    FROM waiting_users w WHERE w.user_id IS NOT NULL AND w.n <= %(most)s
)
"""
# The units in use: the type's jobs in inference, a job in pieces counting its running pieces.
_IN_INFERENCE_SQL = f"""(
    SELECT coalesce(sum(CASE WHEN i.gpu_call_id = '{PIECES}' THEN greatest(1, (
        SELECT count(*) FROM job_pieces p WHERE p.job_id = i.id AND p.state = 'running')) ELSE 1 END), 0)::int
    FROM jobs i WHERE i.type = %(type)s AND i.status = 'processing' AND i.inference_ended_at IS NULL
)"""  # noqa: S608 - composed of this module's constant fragments only
_EVERY_USER = 2**31 - 1
_OTHERS_WAITING_SQL = _WAITING_USERS_CTE + """
SELECT count(user_id) FROM waiting_users WHERE user_id <> %(user_id)s
"""
_OTHERS_WAITING = Planned(_OTHERS_WAITING_SQL)

# One round trip for everything a decision needs: the waiting users, then each one's head job,
# running jobs and plan by jobs_user_status_created and the subscription's index.
_TURN_SQL = _WAITING_USERS_CTE + f"""
SELECT
    {_IN_INFERENCE_SQL},
    (SELECT virtual_time FROM job_type_clocks WHERE type = %(type)s),
    h.user_id, h.id, h.created_at, h.status, f.virtual_time, h.batch_id IS NOT NULL,
    (SELECT count(*) FROM jobs r WHERE r.user_id = h.user_id AND r.status = 'processing'),
    (SELECT s.plan FROM subscriptions s WHERE s.user_id = h.user_id AND s.status = %(active)s
     ORDER BY s.id LIMIT 1)
FROM (SELECT 1) one
LEFT JOIN (
    SELECT w.user_id, head.id, head.type, head.created_at, head.status, head.batch_id FROM waiting_users w
    CROSS JOIN LATERAL (
        SELECT id, type, created_at, status, batch_id FROM jobs j
        WHERE j.user_id = w.user_id AND j.status IN ('pending', 'queued')
        ORDER BY priority DESC, created_at, id LIMIT 1
    ) head
    WHERE w.user_id IS NOT NULL
) h ON h.type = %(type)s
LEFT JOIN job_fair_share f ON f.type = %(type)s AND f.user_id = h.user_id
"""  # noqa: S608 - composed of this module's constant fragments only
_TURN = Planned(_TURN_SQL)


# A claim's read on a limited type, in one round trip: the user's slots (as jobs.life.slots reads
# them for any job), their plan, and whether the type has a unit free for every user waiting on
# it (the units in use, and the waiting users, counted up to one past the capacity).
_SLOTS_AND_ROOM_SQL = f"""
SELECT {USER_SLOTS_SQL},
    {_IN_INFERENCE_SQL},
    ({_WAITING_USERS_CTE} SELECT count(user_id) FROM waiting_users),
    (SELECT plan FROM subscriptions WHERE user_id = %(user_id)s AND status = %(active)s ORDER BY id LIMIT 1)
"""  # noqa: S608 - composed of constant fragments only
_SLOTS_AND_ROOM = Planned(_SLOTS_AND_ROOM_SQL)


@dataclass(frozen=True)
class SlotsAndRoom:
    running: int  # the user's slots as `job` sees them (jobs.life.slots.Slots)
    ahead_waiting: bool
    behind_queued: bool
    room: bool  # the type's free units are as many as the users waiting on it
    plan: str | None  # the user's active plan (credits.selectors.user_plan_of)
    in_inference: int = 0  # the type's units in use


def slots_and_room(job: Job, capacity: int) -> SlotsAndRoom:
    """Everything a claim on a limited type reads, in one statement, under the type's and the
    user's locks. With `room`, every waiting user may start: nobody's turn is at stake, and the
    claim starts its job without reading the order."""
    with connection.cursor() as cursor:
        _SLOTS_AND_ROOM.execute(cursor, {
            "user_id": job.user_id, "job_id": job.pk, "priority": job.priority, "created_at": job.created_at,
            "type": job.type, "most": capacity, "active": SubscriptionStatus.ACTIVE.value,
        })
        running, ahead, behind, in_inference, waiting_users, plan = cursor.fetchone()
    return SlotsAndRoom(running=running, ahead_waiting=ahead, behind_queued=behind,
                        room=in_inference + waiting_users <= capacity, plan=plan, in_inference=in_inference)


def locks(job_type: str, user_key: int) -> None:
    """The type's lock, then the user's (its key: jobs.life.slots.user_lock_key), in one round
    trip: the inner query is a fence, evaluated, its lock taken, before the outer one."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_advisory_xact_lock(%s) FROM (SELECT pg_advisory_xact_lock(%s, %s) OFFSET 0) type_lock",
            [user_key, _TYPE_LOCK_CLASS, _type_key(job_type)],
        )


def turn_of(job_type: str) -> Turn:
    """The type's free units and its eligible users, the next to start first."""
    with connection.cursor() as cursor:
        _TURN.execute(cursor, {"type": str(job_type), "most": _EVERY_USER,
                                   "active": SubscriptionStatus.ACTIVE.value})
        rows = cursor.fetchall()
    in_inference, clock = rows[0][0], rows[0][1] or 0.0
    order = [
        Candidate(user_id=user_id, job_id=job_id, created_at=created_at, tag=max(virtual_time or 0.0, clock),
                  queued=status == JobStatus.QUEUED, batch=batch)
        for _, _, user_id, job_id, created_at, status, virtual_time, batch, running, plan in rows
        if user_id is not None and running < plan_concurrency_limit(plan)
    ]
    if settings.AUTEUR_FAIR_SHARE == "arrival":
        order.sort(key=lambda c: (c.created_at, c.job_id))
    else:
        order.sort(key=lambda c: (c.tag, c.created_at, c.job_id))
    capacity = type_capacity(job_type)
    return Turn(free=capacity - in_inference, order=order, headroom=batch_headroom(capacity))


def charge_step(job: Job, plan: str | None) -> float | None:
    """How far `job`'s start moves its user's virtual time on the type: its price over their plan's
    weight; None in arrival order, which keeps no virtual times. The move itself is made with the
    job's start, in one statement (jobs.life.status)."""
    if settings.AUTEUR_FAIR_SHARE != "weighted":
        return None
    weights: dict[str | None, float] = settings.AUTEUR_FAIR_SHARE_WEIGHTS
    return max(job.credits_cost, 1) / weights.get(plan, weights[None])


def start_due_on_commit(job_type: str) -> None:
    """Once the transaction commits, publish the start of the type's queued jobs due now: after a
    job left inference (a unit freed) or the line (canceled, aborted), or was turned away."""
    if type_capacity(job_type):
        transaction.on_commit(functools.partial(start_due, job_type))


def start_due(job_type: str) -> None:
    """Publish the start of the type's queued jobs due now (Turn.waiting_due); their claims decide.

    Nothing to do unless a job of the type waits queued for a unit (one indexed probe, so a type
    that is never short costs no more). Across users: inside a request (a user's cancel) it reads
    as the owner's login."""
    with trusted():
        if _QUEUED_FOR_CAPACITY.first(job_type=str(job_type)) is None:
            return
        turn = turn_of(job_type)
    for job_id in turn.waiting_due():
        publish.start(job_id, job_type)

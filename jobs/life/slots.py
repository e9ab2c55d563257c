"""Each user runs at most a few jobs at once (by plan); the rest wait `queued`, the higher
priority first, then the oldest (a priority orders only the user's own jobs).

This module counts a user's slots and starts waiting jobs when one frees; the moves between
`pending`, `queued` and `processing` themselves are `jobs.life.status.job_claim`'s.
"""

from __future__ import annotations

import functools
import uuid
from typing import TypedDict

from django.db import connection, transaction

from auteur.core.postgres.plans import Planned
from auteur.core.prepared import PreparedRead
from auteur.users.models import User
from credits.selectors import user_plan_of
from jobs.life import publish
from jobs.life.fairshare import batch_headroom, start_due, type_capacity, units_free
from jobs.models import Job, JobStatus
from jobs.selectors.queue import USER_SLOTS_SQL, plan_concurrency_limit

# Jobs of a user started at once when slots free; the reaper starts any left over.
START_BATCH = 5


class Slots(TypedDict):
    running: int  # the user's jobs processing now
    ahead_waiting: bool  # a job of the user's that starts before this one (higher priority, or equal and older) waits
    behind_queued: bool  # a job of the user's that starts after this one is queued


def user_lock_key(user_id: uuid.UUID) -> int:
    return uuid.UUID(str(user_id)).int & 0x7FFF_FFFF_FFFF_FFFF


def user_lock(user_id: uuid.UUID) -> None:
    """Serialize slot accounting for one user across processes (released at commit)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [user_lock_key(user_id)])


def concurrency_limit(user_id: uuid.UUID) -> int:
    return plan_concurrency_limit(user_plan_of(user_id=user_id))


# The order in which a user's waiting jobs start (jobs_user_waiting_order).
START_ORDER = ("-priority", "created_at", "id")

_SLOTS = Planned("SELECT" + USER_SLOTS_SQL)
_WAITING_NEXT = PreparedRead(
    lambda user_id: Job.objects.filter(user_id=user_id, status=JobStatus.QUEUED)
    .order_by(*START_ORDER).values("id", "type", "batch_id", "traceparent")[:START_BATCH],
    user_id=uuid.UUID(int=1),
)


def slots_around(job: Job) -> Slots:
    """The user's slots as `job` sees them; read under `user_lock`.

    A job ahead counts as waiting while it is pending too: two prepares delivered at once to two
    processes must not let the job behind take the slot first."""
    with connection.cursor() as cursor:
        _SLOTS.execute(cursor, {"user_id": job.user_id, "job_id": job.pk, "priority": job.priority,
                                "created_at": job.created_at})
        running, ahead, behind = cursor.fetchone()
    return Slots(running=running, ahead_waiting=ahead, behind_queued=behind)


def job_slot_release(*, user_id: uuid.UUID) -> None:
    """After a job of this user ended: start the oldest waiting ones (once the end is committed).

    The queued jobs are read after the commit, and a claim that queues a job looks for a free slot
    after its own commit: whichever of the two commits last sees the other's, so a job queued at
    the moment another ends is started now, not at the reaper's next run. A start that finds no
    free slot queues the job again (job_claim decides under the user's lock)."""
    transaction.on_commit(functools.partial(start_waiting, user_id))


def start_waiting_if_free(user_id: uuid.UUID) -> None:
    """After a claim queued a job, committed: start waiting jobs if a slot freed meanwhile."""
    transaction.on_commit(functools.partial(start_waiting, user_id, if_free=True))


def start_waiting(user_id: uuid.UUID, *, if_free: bool = False) -> None:
    room: int | None = None  # the user's free slots, read when more than one job waits
    if if_free:
        running = Job.objects.filter(user_id=user_id, status=JobStatus.PROCESSING).count()
        if not User.objects.filter(pk=user_id).exists() or running >= (limit := concurrency_limit(user_id)):
            return
        room = limit - running
    rows = list(_WAITING_NEXT.rows(user_id=user_id))
    if len(rows) > 1 and room is None:
        # No more starts than free slots: each start beyond them is a step that runs only to queue
        # its job again, and every end and every start of a user's backlog (a batch, a burst)
        # sends a round of them. An end or a start publishes after its own commit, so the slot it
        # freed is counted; a job that takes a slot meanwhile ends later and starts the next.
        room = concurrency_limit(user_id) - Job.objects.filter(user_id=user_id, status=JobStatus.PROCESSING).count()
    free: dict[str, int | None] = {}
    full: dict[uuid.UUID, str] = {}
    for row in rows:
        job_type = row["type"]
        units = free[job_type] = free[job_type] if job_type in free else units_free(job_type)
        # Its type is full (for a batch's item: no more free than the headroom it leaves, as its
        # claim would decide): it waits for a unit, which is handed on when it frees.
        if units is not None and units <= (batch_headroom(type_capacity(job_type)) if row["batch_id"] else 0):
            full[row["id"]] = job_type
            continue
        if room is not None:
            if room <= 0:
                continue  # no slot for it: it stays queued for the next end
            room -= 1
        if units is not None:
            free[job_type] = units - 1
        publish.start(row["id"], job_type, row["traceparent"])
    if full:
        Job.objects.filter(pk__in=list(full), status=JobStatus.QUEUED).update(waiting_for="capacity")
        # A unit that freed since the units were counted found none of them waiting for it: their
        # types' turns are read again, now that they wait.
        for job_type in set(full.values()):
            start_due(job_type)

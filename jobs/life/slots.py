"""Each user runs at most a few jobs at once (by plan); the rest wait `queued`, the higher
priority first, then the oldest (a priority orders only the user's own jobs).

This module counts a user's slots and starts waiting jobs when one frees; the moves between
`pending`, `queued` and `processing` themselves are `jobs.life.status.job_claim`'s.
"""

from __future__ import annotations

import functools
import uuid
from datetime import UTC, datetime
from typing import TypedDict

from django.db import connection, transaction
from django.db.models import Count, Q

from auteur.core.prepared import PreparedRead
from auteur.users.models import User
from credits.selectors import user_plan_of
from jobs.life import publish
from jobs.life.fairshare import units_free
from jobs.models import WAITING_STATUSES, Job, JobStatus
from jobs.selectors.queue import plan_concurrency_limit

# Jobs of a user started at once when slots free; the reaper starts any left over.
START_BATCH = 5


class Slots(TypedDict):
    running: int  # the user's jobs processing now
    ahead_waiting: int  # the user's jobs that start before this one (higher priority, or equal and older), waiting
    behind_queued: int  # the user's jobs that start after this one, queued


def user_lock_key(user_id: uuid.UUID) -> int:
    return uuid.UUID(str(user_id)).int & 0x7FFF_FFFF_FFFF_FFFF


def user_lock(user_id: uuid.UUID) -> None:
    """Serialize slot accounting for one user across processes (released at commit)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [user_lock_key(user_id)])


def concurrency_limit(user_id: uuid.UUID) -> int:
    return plan_concurrency_limit(user_plan_of(user_id=user_id))


def _ahead(priority: int, created_at: datetime) -> Q:
    """The jobs of a user that start before one of this priority and submission time."""
    return Q(priority__gt=priority) | Q(priority=priority, created_at__lt=created_at)


def _behind(priority: int, created_at: datetime) -> Q:
    return Q(priority__lt=priority) | Q(priority=priority, created_at__gt=created_at)


# The order in which a user's waiting jobs start.
START_ORDER = ("-priority", "created_at")

# Every claim reads them: built once per process (auteur.core.prepared).
_SLOTS = PreparedRead(
    lambda user_id, priority, created_at: Job.objects.filter(
        user_id=user_id, status__in=(JobStatus.PROCESSING, *WAITING_STATUSES)
    )
    .values("user_id")
    .annotate(
        running=Count("pk", filter=Q(status=JobStatus.PROCESSING)),
        ahead_waiting=Count("pk", filter=Q(status__in=WAITING_STATUSES) & _ahead(priority, created_at)),
        behind_queued=Count("pk", filter=Q(status=JobStatus.QUEUED) & _behind(priority, created_at)),
    ),
    # The placeholder priority lies within the column's range: Django drops a comparison with a
    # value no row can hold.
    user_id=uuid.UUID(int=1), priority=32_123, created_at=datetime(1, 1, 1, 0, 0, 0, 1, tzinfo=UTC),
)
_WAITING_NEXT = PreparedRead(
    lambda user_id: Job.objects.filter(user_id=user_id, status=JobStatus.QUEUED)
    .order_by(*START_ORDER).values("id", "type")[:START_BATCH],
    user_id=uuid.UUID(int=1),
)


def slots_around(job: Job) -> Slots:
    """The user's slots as `job` sees them; read under `user_lock`.

    A job ahead counts as waiting while it is pending too: two prepares delivered at once to two
    processes must not let the job behind take the slot first."""
    counts = _SLOTS.first(user_id=job.user_id, priority=job.priority, created_at=job.created_at)
    if counts is None:  # none of the user's jobs waits or runs (this one has ended meanwhile)
        return Slots(running=0, ahead_waiting=0, behind_queued=0)
    return Slots(running=counts["running"], ahead_waiting=counts["ahead_waiting"],
                 behind_queued=counts["behind_queued"])


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
    if if_free:
        running = Job.objects.filter(user_id=user_id, status=JobStatus.PROCESSING).count()
        if not User.objects.filter(pk=user_id).exists() or running >= concurrency_limit(user_id):
            return
    free: dict[str, int | None] = {}
    full = []
    for row in _WAITING_NEXT.rows(user_id=user_id):
        job_type = row["type"]
        units = free[job_type] = free[job_type] if job_type in free else units_free(job_type)
        if units is not None:
            if units <= 0:  # its type is full: it waits for a unit, which is handed on when it frees
                full.append(row["id"])
                continue
            free[job_type] = units - 1
        publish.start(row["id"], job_type)
    if full:
        Job.objects.filter(pk__in=full, status=JobStatus.QUEUED).update(waiting_for="capacity")

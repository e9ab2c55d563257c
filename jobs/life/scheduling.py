"""Whether a job may start now: the scheduling decision of a claim, and what must follow a start,
a wait or an end. jobs.life.status makes the moves these decide and reaches a user's slots
(jobs.life.slots) and the job types' fair share (jobs.life.fairshare) only through here; a long
file's pieces (jobs.life.pieces) count their own units of fair share.

A claim first takes its locks (`claim_locks`: the job type's when the type has a capacity, then
the user's), under which neither the user's slots nor the type's units can change; then
`start_or_wait` answers `Start` (a slot is free, and a unit of the type if it has a capacity,
due to this job under fair share) or `Wait` with its reason: "slot" (the user runs as many jobs
as their plan allows, or one of theirs is ahead of this one) or "capacity" (the type is full, or
its free units are due to other users first).
"""

from __future__ import annotations

from dataclasses import dataclass

from credits.selectors import user_plan_of
from jobs.events.batches import batch_item_ended
from jobs.life import fairshare
from jobs.life.slots import job_slot_release, slots_around, start_waiting_if_free, user_lock, user_lock_key
from jobs.models import Job
from jobs.selectors.queue import plan_concurrency_limit


@dataclass(frozen=True)
class Start:
    """The job starts: `running` of the user's jobs run (before it) out of `limit`."""

    running: int
    limit: int
    behind_queued: bool  # a job of the user's is queued behind this one
    plan: str | None
    capacity: int  # the type's units (0: no limit)


@dataclass(frozen=True)
class Wait:
    """The job waits, for a "slot" or for "capacity"."""

    reason: str
    running: int
    limit: int


def claim_locks(job: Job) -> int:
    """Take the locks a claim decides under; the job type's capacity (0: no limit)."""
    capacity = fairshare.type_capacity(job.type)
    if capacity:
        fairshare.locks(job.type, user_lock_key(job.user_id))  # the type's, then the user's
    else:
        user_lock(job.user_id)
    return capacity


def start_or_wait(job: Job, capacity: int) -> Start | Wait:
    """Under `claim_locks`: whether `job` starts now, or waits and for what.

    A batch's item leaves headroom for other work (fairshare.batch_headroom): it starts only while
    more of its user's slots, and of its type's units, are free than the headroom, so an
    interactive job beside a running batch finds a slot and a unit at once."""
    in_inference = 0
    if capacity:
        read = fairshare.slots_and_room(job, capacity)
        running, ahead, behind, room, plan = read.running, read.ahead_waiting, read.behind_queued, read.room, read.plan
        in_inference = read.in_inference
    else:
        slots = slots_around(job)
        running, ahead, behind = slots["running"], slots["ahead_waiting"], slots["behind_queued"]
        room, plan = True, user_plan_of(user_id=job.user_id)
    limit = plan_concurrency_limit(plan)
    batch = job.batch_id is not None
    if running >= limit - (fairshare.batch_headroom(limit) if batch else 0) or ahead:
        return Wait("slot", running, limit)
    if batch and capacity and in_inference >= capacity - fairshare.batch_headroom(capacity):
        return Wait("capacity", running, limit)
    if not room and not fairshare.turn_of(job.type).admits(job.pk):
        return Wait("capacity", running, limit)
    return Start(running=running, limit=limit, behind_queued=behind, plan=plan, capacity=capacity)


def charge_step(job: Job, start: Start) -> float | None:
    """What starting `job` adds to its user's virtual time on its type (fair share's charge)."""
    return fairshare.charge_step(job, start.plan)


def after_start(job: Job, start: Start) -> None:
    """Jobs of the user's queued behind this one while it was pending may fit beside it now."""
    if start.behind_queued and start.running + 1 < start.limit:
        job_slot_release(user_id=job.user_id)


def after_queued(job: Job, wait: Wait, *, newly: bool) -> None:
    """Look again once this wait is committed, for what may have freed while it was decided.

    A job that ends while the claim's transaction is open looks for queued jobs before this one
    is committed queued: a job newly queued for want of a slot looks again then (a job of the
    user's ahead of it starts it when it starts itself: its claim waits for this lock). A unit
    of the type may free meanwhile, and units may be free now for other users' jobs due first."""
    if newly and wait.running >= wait.limit:
        start_waiting_if_free(job.user_id)
    if wait.reason == "capacity":
        fairshare.start_due_on_commit(job.type)


def unit_freed(job: Job) -> None:
    """The job's unit of its type is free (its call ended): the next job due may start, after commit."""
    fairshare.start_due_on_commit(job.type)


def ended(job: Job, *, held_unit: bool = True) -> None:
    """The job ended: its slot is free, and its unit of its type or its place in the type's line
    (`held_unit`: not when its unit was freed already, as its call ended); a batch's item moves its
    batch on (its progress announced)."""
    job_slot_release(user_id=job.user_id)
    if job.batch_id is not None:
        batch_item_ended(job.batch_id)
    if held_unit:
        fairshare.start_due_on_commit(job.type)


def many_ended(jobs: list[Job]) -> None:
    """Waiting jobs ended together (a bulk cancel): their users' slots, their types' lines and their
    batches move on, once each."""
    for user_id in {job.user_id for job in jobs}:
        job_slot_release(user_id=user_id)
    for job_type in {job.type for job in jobs}:
        fairshare.start_due_on_commit(job_type)
    for batch_id in {job.batch_id for job in jobs if job.batch_id is not None}:
        batch_item_ended(batch_id)

"""Each user runs at most a few jobs at once (by plan); the rest wait `queued`, oldest first."""

from __future__ import annotations

import functools
import uuid

from django.db import connection, transaction
from django.db.models import Count, Q
from django.utils import timezone

from auteur.users.models import User
from credits.selectors import user_plan
from jobs import pipeline
from jobs.models import Job, JobEventType, JobStatus
from jobs.selectors.queue import plan_concurrency_limit
from jobs.services.events import job_event_record

# Jobs of a user started at once when slots free; the reaper starts any left over.
START_BATCH = 5


def _user_lock(user_id: uuid.UUID) -> None:
    """Serialize slot accounting for one user across processes (released at commit)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [uuid.UUID(str(user_id)).int & 0x7FFF_FFFF_FFFF_FFFF])


def concurrency_limit(user: User) -> int:
    return plan_concurrency_limit(user_plan(user=user))


def job_claim(*, job_id: uuid.UUID | str) -> Job | None:
    """pending/queued -> processing when one of the user's slots is free, else -> queued.

    Returns the job when it is processing (claimed now, or by an earlier delivery of this step
    that died before handing over to the next: the caller carries on, every later step being
    idempotent); None when it waits for a slot or has ended.
    Jobs start in submission order: a job never overtakes an older one of the same user waiting.
    """
    with transaction.atomic():
        job = Job.objects.select_related("user").filter(pk=job_id).first()
        if job is None or job.status == JobStatus.PROCESSING:
            return job
        if job.status != JobStatus.PENDING and job.status != JobStatus.QUEUED:
            return None
        _user_lock(job.user_id)
        # Under the lock the user's slots cannot change; a duplicate delivery that claimed this
        # job meanwhile makes the conditional UPDATE below match nothing. An older job counts as
        # waiting while it is pending too: two prepares delivered at once to two processes must
        # not let the younger job take the slot first.
        waiting = (JobStatus.PENDING, JobStatus.QUEUED)
        slots = Job.objects.filter(user_id=job.user_id, status__in=(JobStatus.PROCESSING, *waiting)).aggregate(
            running=Count("pk", filter=Q(status=JobStatus.PROCESSING)),
            older_waiting=Count("pk", filter=Q(status__in=waiting, created_at__lt=job.created_at)),
            younger_queued=Count("pk", filter=Q(status=JobStatus.QUEUED, created_at__gt=job.created_at)),
        )
        running, limit = slots["running"], concurrency_limit(job.user)
        if running >= limit or slots["older_waiting"]:
            if job.status == JobStatus.PENDING:
                now = timezone.now()
                if Job.objects.filter(pk=job.pk, status=JobStatus.PENDING).update(
                    status=JobStatus.QUEUED, queued_at=now, updated_at=now
                ):
                    job_event_record(job.id, JobEventType.QUEUED, running=running)
                    # A job that ends while this transaction is open looks for queued jobs before
                    # this one is committed queued: look again once it is (job_slot_release).
                    transaction.on_commit(functools.partial(_start_waiting, job.user_id, if_free=True))
            return None
        now = timezone.now()
        claimed = Job.objects.filter(pk=job.pk, status=job.status).update(
            status=JobStatus.PROCESSING, started_at=now, updated_at=now
        )
        if not claimed:  # claimed by a duplicate delivery, or canceled (cancel takes no user lock)
            return None
        if slots["younger_queued"] and running + 1 < limit:
            # Younger jobs queued behind this one while it was pending may fit beside it now.
            job_slot_release(user_id=job.user_id)
        job_event_record(job.id, JobEventType.STARTED)
        job.status, job.started_at, job.updated_at = JobStatus.PROCESSING, now, now
        return job


def job_slot_release(*, user_id: uuid.UUID) -> None:
    """After a job of this user ended: start the oldest waiting ones (once the end is committed).

    The queued jobs are read after the commit, and a claim that queues a job looks for a free slot
    after its own commit: whichever of the two commits last sees the other's, so a job queued at
    the moment another ends is started now, not at the reaper's next run. A start that finds no
    free slot queues the job again (job_claim decides under the user's lock)."""
    transaction.on_commit(functools.partial(_start_waiting, user_id))


def _start_waiting(user_id: uuid.UUID, *, if_free: bool = False) -> None:
    if if_free:
        running = Job.objects.filter(user_id=user_id, status=JobStatus.PROCESSING).count()
        user = User.objects.filter(pk=user_id).first()
        if user is None or running >= concurrency_limit(user):
            return
    queued = Job.objects.filter(user_id=user_id, status=JobStatus.QUEUED).order_by("created_at")
    for job_id, job_type in queued.values_list("id", "type")[:START_BATCH]:
        pipeline.start(job_id, job_type)

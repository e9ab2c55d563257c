"""A job's other ends: failed and canceled, each refunded once (`failure_refund`, `cancel_refund`)."""

from __future__ import annotations

import logging
import math
import uuid
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from credits.services.ledger import credit_refund_job
from jobs import gpu_client
from jobs.errors import JobNotCancelable
from jobs.failures import failure_detail, failure_message
from jobs.models import ACTIVE_STATUSES, Job, JobEventType, JobStatus
from jobs.services.events import job_event_record
from jobs.services.slots import job_slot_release
from jobs.specs import job_spec
from media.services.outputs import media_delete_job_outputs

logger = logging.getLogger(__name__)


def job_fail(*, job_id: uuid.UUID | str, code: str, detail: str, retryable: bool) -> bool:
    """Mark a non-terminal job failed and refund it (failure_refund), in one transaction. True if this call did it.

    The user is shown the fixed sentence for `code` (jobs.failures); `detail`, the error's own
    text, goes scrubbed to the log and to the staff-only `error_detail`.
    Safe to call any number of times (on_failure twice, the reaper beside a late worker): only
    the first conditional UPDATE matches, and only it refunds.
    """
    message, detail = failure_message(code), failure_detail(detail)
    with transaction.atomic():
        # Locked: the progress and start read here are the last a worker wrote (failure_refund).
        job = Job.objects.select_for_update().filter(pk=job_id).first()
        if job is None or job.status not in ACTIVE_STATUSES:
            return False
        refund = failure_refund(job=job, code=code)
        moved = Job.objects.filter(pk=job_id, status__in=ACTIVE_STATUSES).update(
            status=JobStatus.FAILED,
            error_code=code[:40],
            error_message=message,
            error_detail=detail,
            retryable=retryable,
            completed_at=timezone.now(),
            updated_at=timezone.now(),
            credits_refunded=bool(refund),
            credits_refund=refund,
        )
        if not moved:
            return False
        if refund:
            credit_refund_job(job_id=job.pk, reason=f"{job.type} job failed: {code}", amount=refund)
        # A job that failed while storing keeps nothing it is refunded for.
        media_delete_job_outputs(job_id=job.pk)
        job_event_record(job_id, JobEventType.FAILED, code=code, message=message, retryable=retryable,
                         refunded=refund)
        job_slot_release(user_id=job.user_id)
    logger.warning("job failed: %s (%s)", code, detail[:1000], extra={"job_id": str(job_id)})
    if job.gpu_call_id:
        gpu_client.cancel_quietly(job.gpu_call_id)
    return True


def failure_refund(*, job: Job, code: str) -> int:
    """The credits a job that failed with `code` gets back.

    All of its cost, except for a GPU call that ran past its time limit (`timeout` after its
    inference started and before it ended): it keeps the share of its cost that its engine
    reported done, rounded up to whole credits, and gets the rest back:

        refund = cost - ceil(cost * progress / 100)

    So an input that makes an engine grind up to its limit pays for the work it got done, and
    cannot burn GPU time for free again and again, while a call that hung without reporting any
    progress (a stuck container: the platform's fault) is refunded in full.
    """
    timed_out_call = code == "timeout" and job.inference_started_at is not None and job.inference_ended_at is None
    if not timed_out_call:
        return job.credits_cost
    return job.credits_cost - math.ceil(job.credits_cost * min(job.progress, 100) / 100)


def cancel_refund(*, job: Job, at: datetime) -> int:
    """The credits a job canceled at `at` gets back.

    Before its inference started (or while the backend still keeps the call waiting for
    capacity), nothing was spent: the whole cost. After, the part not spent, where the spent
    share is the larger of the time the call has run against its type's time limit and the
    progress its engine reported, rounded up to whole credits:

        refund = cost - ceil(cost * min(1, max(seconds_run / time_limit, progress / 100)))

    So a cancel just before the end refunds little, and a call canceled soon after it started
    keeps at least one credit of its cost.
    """
    if job.inference_started_at is None:
        return job.credits_cost
    seconds_run = max(0.0, (at - job.inference_started_at).total_seconds())
    spent = min(1.0, max(seconds_run / job_spec(job.type).time_limit_seconds, job.progress / 100))
    return job.credits_cost - math.ceil(job.credits_cost * spent)


def job_cancel(*, job: Job, reason: str = "canceled by the user") -> Job:
    """Cancel a non-terminal job: refund it once (cancel_refund) and stop its GPU call. 409 if it ended."""
    with transaction.atomic():
        now = timezone.now()
        # Once inference has produced its result the outputs are being stored: cancelling then
        # would refund work the user is about to receive.
        moved = Job.objects.filter(pk=job.pk, status__in=ACTIVE_STATUSES, inference_ended_at__isnull=True).update(
            status=JobStatus.CANCELED, completed_at=now, error_message=reason, updated_at=now,
        )
        if not moved:
            job.refresh_from_db()
            state = "finishing" if job.status == JobStatus.PROCESSING else job.status
            raise JobNotCancelable(f"The job is already {state}.", details={"status": job.status})
        # The UPDATE holds the row's lock until commit, so the progress and start read now are the
        # last a worker wrote, and no failure of the job can refund it beside us.
        job.refresh_from_db()
        refund = cancel_refund(job=job, at=now)
        if refund:
            credit_refund_job(job_id=job.pk, reason=f"{job.type} job canceled", amount=refund)
            Job.objects.filter(pk=job.pk).update(credits_refunded=True, credits_refund=refund)
        job_event_record(job.pk, JobEventType.CANCELED, reason=reason, refunded=refund)
        job_slot_release(user_id=job.user_id)
        if job.gpu_call_id:
            call_id = job.gpu_call_id
            transaction.on_commit(lambda: gpu_client.cancel_quietly(call_id))
    job.refresh_from_db()
    return job


def jobs_cancel_for_project(*, project_id: uuid.UUID) -> int:
    """The project is being deleted: cancel (and refund) its unfinished jobs."""
    count = 0
    for job in Job.objects.filter(project_id=project_id, status__in=ACTIVE_STATUSES):
        try:
            job_cancel(job=job, reason="its project was deleted")
            count += 1
        except JobNotCancelable:
            pass
    return count

"""A job's other ends: failed (refunded, once) and canceled (refunded, once)."""

from __future__ import annotations

import logging
import uuid

from django.db import transaction
from django.utils import timezone

from credits.services.ledger import credit_refund_job
from jobs import gpu_client
from jobs.errors import JobNotCancelable
from jobs.models import ACTIVE_STATUSES, Job, JobEventType, JobStatus
from jobs.services.events import job_event_record
from jobs.services.slots import job_slot_release
from media.services.outputs import media_delete_job_outputs

logger = logging.getLogger(__name__)


def job_fail(*, job_id: uuid.UUID | str, code: str, message: str, retryable: bool) -> bool:
    """Mark a non-terminal job failed and refund it, in one transaction. True if this call did it.

    Safe to call any number of times (on_failure twice, the reaper beside a late worker): only
    the first conditional UPDATE matches, and only it refunds.
    """
    with transaction.atomic():
        job = Job.objects.filter(pk=job_id).first()
        if job is None:
            return False
        moved = Job.objects.filter(pk=job_id, status__in=ACTIVE_STATUSES).update(
            status=JobStatus.FAILED,
            error_code=code[:40],
            error_message=message[:2000],
            retryable=retryable,
            completed_at=timezone.now(),
            updated_at=timezone.now(),
            credits_refunded=True,
        )
        if not moved:
            return False
        credit_refund_job(job_id=job.pk, reason=f"{job.type} job failed: {code}")
        # A job that failed while storing keeps nothing it is refunded for.
        media_delete_job_outputs(job_id=job.pk)
        job_event_record(job_id, JobEventType.FAILED, code=code, message=message[:500], retryable=retryable)
        job_slot_release(user_id=job.user_id)
    logger.warning("job failed: %s (%s)", code, message[:200], extra={"job_id": str(job_id)})
    if job.gpu_call_id:
        gpu_client.cancel_quietly(job.gpu_call_id)
    return True


def job_cancel(*, job: Job, reason: str = "canceled by the user") -> Job:
    """Cancel a non-terminal job: refund it in full, once, and stop its GPU call. 409 if it ended."""
    with transaction.atomic():
        # Once inference has produced its result the outputs are being stored: cancelling then
        # would refund work the user is about to receive.
        moved = Job.objects.filter(pk=job.pk, status__in=ACTIVE_STATUSES, inference_ended_at__isnull=True).update(
            status=JobStatus.CANCELED, completed_at=timezone.now(), credits_refunded=True, error_message=reason,
            updated_at=timezone.now(),
        )
        if not moved:
            job.refresh_from_db()
            state = "finishing" if job.status == JobStatus.PROCESSING else job.status
            raise JobNotCancelable(f"The job is already {state}.", details={"status": job.status})
        credit_refund_job(job_id=job.pk, reason=f"{job.type} job canceled")
        job_event_record(job.pk, JobEventType.CANCELED, reason=reason)
        job_slot_release(user_id=job.user_id)
        call_id = Job.objects.values_list("gpu_call_id", flat=True).get(pk=job.pk)
        if call_id:
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

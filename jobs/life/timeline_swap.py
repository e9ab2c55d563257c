"""A finished compression put in its source's place in the project's timeline, when asked.

A compression submitted with `replace_in_timeline: true` completes as any job; then the task
``jobs.replace_in_timeline`` makes every clip of the project's timeline that plays the source
play the compressed file instead, and its transcript's segments name it (one undo step:
projects.edl.media_swap). The job's ``output_data["timeline"]`` says what happened:
``{"status": "pending"}`` until the task ran, then ``replaced`` (with the timeline's ``version``
and the number of ``clips``), ``unchanged`` (no clip plays the source), or ``failed`` (with
``code`` and ``message``; the client may do it with POST /projects/{id}/edl/replace-media). The
timeline out of reach or saved at every attempt is retried for about 15 minutes.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from django.db import transaction
from kombu.exceptions import OperationalError as KombuOperationalError

from jobs import task_names
from jobs.life.publish import publish_task
from jobs.life.transcript_edl import RETRYABLE, job_output_record
from jobs.models import Job, JobStatus
from media.models import MediaFile
from projects.edl.media_swap import edl_replace_media
from projects.models import Project

logger = logging.getLogger(__name__)

PENDING = "pending"
TASK = task_names.REPLACE_IN_TIMELINE


def swap_asked(job: Job) -> bool:
    """Whether the job's request asked for the swap (its completion then sends the task on commit)."""
    return bool((job.input_params or {}).get("replace_in_timeline"))


def job_timeline_swap_requested(*, job: Job, output_data: dict[str, Any]) -> None:
    """Inside the transaction that completes `job`: mark the swap pending if its request asked for
    one and it made a file, and send the task once that transaction commits."""
    if not swap_asked(job) or not output_data.get("output_media_ids"):
        return
    output_data["timeline"] = {"status": PENDING}
    job_pk = job.pk
    transaction.on_commit(lambda: _queue(job_pk), robust=True)


def _queue(job_id: uuid.UUID) -> None:
    if not publish_task(TASK, (str(job_id),), job_id=job_id):
        job_timeline_swap_failed(job_id=job_id, exc=KombuOperationalError("the broker could not be reached"))


def _record(job_id: uuid.UUID | str, outcome: dict[str, Any]) -> None:
    job_output_record(job_id, "timeline", outcome)


def job_timeline_swap(*, job_id: uuid.UUID | str) -> dict[str, Any] | None:
    """The task's work: a completed job whose swap is pending. Retryable errors propagate; the
    outcome, or a failure that cannot recover, is recorded."""
    job = Job.objects.filter(pk=job_id, status=JobStatus.COMPLETED).first()
    if job is None or (job.output_data or {}).get("timeline", {}).get("status") != PENDING:
        return None  # done by an earlier delivery, or not asked for
    try:
        outcome = _swap(job)
    except RETRYABLE:
        raise
    except Exception as exc:  # noqa: BLE001 - recorded and logged rather than retried: it cannot recover
        job_timeline_swap_failed(job_id=job.pk, exc=exc)
        return None
    _record(job.pk, outcome)
    return outcome


def _swap(job: Job) -> dict[str, Any]:
    project = Project.objects.filter(pk=job.project_id).first() if job.project_id else None
    output = MediaFile.objects.filter(pk__in=(job.output_data or {}).get("output_media_ids") or []).first()
    if project is None or output is None:
        return {"status": "failed", "code": "not_found", "message": "The project or the compressed file was deleted."}
    saved, clips = edl_replace_media(project=project, media_id=str(job.input_params["media_id"]),
                                     replacement_id=str(output.pk), replacement_duration_ms=output.duration_ms)
    if saved is None:
        return {"status": "unchanged"}
    logger.info("compressed file put in the timeline: %d clips", clips, extra={"job_id": str(job.pk)})
    return {"status": "replaced", "version": saved["version"], "clips": clips}


def job_timeline_swap_failed(*, job_id: uuid.UUID | str, exc: BaseException) -> None:
    """Record for good that the compressed file did not replace its source (the job stays completed)."""
    logger.error("compressed file not put in the timeline", exc_info=exc, extra={"job_id": str(job_id)})
    code = getattr(exc, "code", None)
    _record(job_id, {"status": "failed", "code": code if isinstance(code, str) else "internal",
                     "message": getattr(exc, "message", None) or type(exc).__name__})

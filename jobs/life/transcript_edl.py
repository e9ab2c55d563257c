"""A completed transcription's words written into its project's timeline (EDL).

Tried first in the store step, before the job is marked completed, so that a client who sees
the job completed finds the words in the timeline. It never fails the job: the job is paid for
and done whatever happens to the timeline. A failure that can recover (the EDL store out of
reach, the user saving again and again meanwhile) is retried by its own task
(``jobs.transcript_to_edl``) after the job completed; one that cannot (a result the timeline
refuses, say) is logged. What happened is on the job as ``output_data["edl"]``:
``{"status": "written", "version": n}``, ``"unchanged"`` (the timeline already holds it),
``"off"`` (the project's ``transcript_to_edl``), ``"superseded"`` (a transcription of the file
requested later completed first), ``"pending"`` (being retried), or ``"failed"`` with the
error's ``code`` and ``message``.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from django.db import InterfaceError, OperationalError, transaction
from django.utils import timezone

from jobs.models import Job, JobStatus
from jobs.output_schema import output_data_check
from jobs.specs import OutputKind, job_spec
from projects.edl.transcripts import edl_transcript_write
from projects.errors import EdlConflict, EdlUnavailable
from projects.models import Project

logger = logging.getLogger(__name__)

# What can recover by trying again later: the EDL store out of reach, the user saving the
# timeline at every attempt, the database restarting.
RETRYABLE = (EdlUnavailable, EdlConflict, OperationalError, InterfaceError)
PENDING = "pending"


def _transcript_of(output_data: dict[str, Any]) -> dict[str, Any]:
    """The transcript in a transcription's output_data: at its top level, or under "transcript"."""
    inner = output_data.get("transcript")
    return inner if isinstance(inner, dict) and "segments" in inner else output_data


def _failure(exc: BaseException) -> dict[str, Any]:
    code = getattr(exc, "code", None)
    return {
        "status": "failed",
        "code": code if isinstance(code, str) else "internal",
        "message": getattr(exc, "message", None) or type(exc).__name__,
    }


def _write(job: Job, transcript: dict[str, Any]) -> dict[str, Any] | None:
    """The write itself; None for a job that is not a transcription of a project's file."""
    media_id = (job.input_params or {}).get("media_id")
    project = Project.objects.filter(pk=job.project_id).first() if job.project_id else None
    if project is None or not media_id or job_spec(job.type).output is not OutputKind.TRANSCRIPT:
        return None
    if not project.transcript_to_edl:
        return {"status": "off"}
    later = Job.objects.filter(
        project=project, type=job.type, status=JobStatus.COMPLETED, input_params__media_id=media_id,
        created_at__gt=job.created_at,
    )
    if later.exists():
        return {"status": "superseded"}
    saved = edl_transcript_write(
        project=project, media_file_id=str(media_id), transcript=transcript,
        generated_at=job.completed_at or timezone.now(),
    )
    return {"status": "written", "version": saved["version"]} if saved else {"status": "unchanged"}


def job_transcript_to_edl_first(*, job: Job, output_data: dict[str, Any]) -> dict[str, Any] | None:
    """The first try, in the store step: never raises. ``"pending"`` asks for the retry task."""
    try:
        return _write(job, _transcript_of(output_data))
    except RETRYABLE as exc:
        logger.warning("transcript not yet written into the EDL: %s; retried", type(exc).__name__,
                       extra={"job_id": str(job.pk)})
        return {"status": PENDING}
    except Exception as exc:  # an invalid document, a bug: the job completes all the same
        logger.error("transcript not written into the EDL", exc_info=exc, extra={"job_id": str(job.pk)})
        return _failure(exc)


def job_output_record(job_id: uuid.UUID | str, name: str, outcome: dict[str, Any]) -> None:
    """Set `output_data[name]` of a completed job to what a follow-up task did (under the row's
    lock: two follow-ups of one job never overwrite each other's record)."""
    with transaction.atomic():
        job = Job.objects.select_for_update().filter(pk=job_id).only("type", "output_data").first()
        if job is not None:
            output_data = {**(job.output_data or {}), name: outcome}
            output_data_check(job_type=job.type, output_data=output_data)
            Job.objects.filter(pk=job_id).update(output_data=output_data)


def _record(job_id: uuid.UUID | str, outcome: dict[str, Any]) -> None:
    job_output_record(job_id, "edl", outcome)


def job_transcript_to_edl(*, job_id: uuid.UUID | str) -> dict[str, Any] | None:
    """The retry task's work: a completed job whose first try is pending. Records the outcome.

    Retryable errors propagate (the task retries them); others are recorded as failed here.
    """
    job = Job.objects.filter(pk=job_id, status=JobStatus.COMPLETED).first()
    if job is None or (job.output_data or {}).get("edl", {}).get("status") != PENDING:
        return None  # already written by an earlier delivery, or not ours to write
    try:
        outcome = _write(job, _transcript_of(job.output_data or {}))
    except RETRYABLE:
        raise
    except Exception as exc:  # noqa: BLE001 - recorded and logged rather than retried: it cannot recover
        job_transcript_to_edl_failed(job_id=job.pk, exc=exc)
        return _failure(exc)
    if outcome is None:  # its project was deleted meanwhile
        outcome = {"status": "failed", "code": "project_not_found", "message": "The project was deleted."}
    _record(job.pk, outcome)
    return outcome


def job_transcript_to_edl_failed(*, job_id: uuid.UUID | str, exc: BaseException) -> None:
    """Record for good that the transcript did not reach the timeline (the job stays completed)."""
    logger.error("transcript not written into the EDL", exc_info=exc, extra={"job_id": str(job_id)})
    _record(job_id, _failure(exc))

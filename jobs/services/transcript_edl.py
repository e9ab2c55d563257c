"""A completed transcription's words written into its project's timeline (EDL).

Its own task, queued when the job completes: the job is paid for and done whatever happens to
the timeline, so a failure here never fails it. What happened is recorded on the job as
``output_data["edl"]``: ``{"status": "written", "version": n}``, ``"unchanged"`` (the timeline
already holds it), ``"off"`` (the project's ``transcript_to_edl``), ``"superseded"`` (a newer
transcription of the file completed first), or ``"failed"`` with the error's ``code`` and
``message`` once retries are spent or on an error retrying cannot cure (logged too).
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from django.db import transaction

from jobs.models import Job, JobStatus
from jobs.specs import OutputKind, job_spec
from projects.edl.transcripts import edl_transcript_write

logger = logging.getLogger(__name__)


def _transcript_of(output_data: dict[str, Any]) -> dict[str, Any]:
    """The transcript in a transcription's output_data: at its top level, or under "transcript"."""
    inner = output_data.get("transcript")
    return inner if isinstance(inner, dict) and "segments" in inner else output_data


def _record(job_id: uuid.UUID | str, outcome: dict[str, Any]) -> None:
    with transaction.atomic():
        job = Job.objects.select_for_update().filter(pk=job_id).only("output_data").first()
        if job is not None:
            Job.objects.filter(pk=job_id).update(output_data={**(job.output_data or {}), "edl": outcome})


def job_transcript_to_edl(*, job_id: uuid.UUID | str) -> dict[str, Any] | None:
    """Write the job's transcript into its project's EDL; idempotent. Returns the outcome recorded.

    None (nothing recorded) for a job that is not a completed transcription of a project's file.
    EDL errors propagate: the task retries those that can recover and records the others.
    """
    job = Job.objects.select_related("project").filter(pk=job_id, status=JobStatus.COMPLETED).first()
    media_id = (job.input_params or {}).get("media_id") if job is not None else None
    if job is None or job.project is None or not media_id or job_spec(job.type).output is not OutputKind.TRANSCRIPT:
        return None
    newer = Job.objects.filter(
        project=job.project, type=job.type, status=JobStatus.COMPLETED, input_params__media_id=media_id,
        completed_at__gt=job.completed_at,
    )
    if not job.project.transcript_to_edl:
        outcome: dict[str, Any] = {"status": "off"}
    elif newer.exists():
        outcome = {"status": "superseded"}
    else:
        assert job.completed_at is not None  # a completed job has its time
        saved = edl_transcript_write(
            project=job.project, media_file_id=str(media_id), transcript=_transcript_of(job.output_data or {}),
            generated_at=job.completed_at,
        )
        outcome = {"status": "written", "version": saved["version"]} if saved else {"status": "unchanged"}
    _record(job.pk, outcome)
    return outcome


def job_transcript_to_edl_failed(*, job_id: uuid.UUID | str, exc: BaseException) -> None:
    """Record for good that the transcript did not reach the timeline (the job stays completed)."""
    code = getattr(exc, "code", None) or "internal"
    message = getattr(exc, "message", None) or type(exc).__name__
    logger.error(
        "transcript not written into the EDL: %s", code, exc_info=exc, extra={"job_id": str(job_id)},
    )
    _record(job_id, {"status": "failed", "code": code, "message": message})

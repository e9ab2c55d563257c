"""A job's life: submission (charge), claim, inference, storing outputs, and the terminal states.

Every step is idempotent because delivery is at-least-once: each re-reads the job and moves it
with a conditional UPDATE (`filter(pk=..., status=X).update(...)`), so a redelivered or duplicate
step finds the work done and does nothing twice. Money moves only through credits/services.py:
the charge is in the submission's transaction, and the refund in the same transaction as the
move to `failed`/`canceled`, which only one caller can win; the ledger's unique constraint on
(job, refund) backs that up.
"""

from __future__ import annotations

import contextvars
import functools
import hashlib
import json
import logging
import tempfile
import uuid
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import Count, F, Q, Value
from django.db.models.functions import Coalesce
from django.utils import timezone
from rest_framework import status as http

from auteur.errors import ApplicationError
from auteur.logging import job_id_var
from auteur.users.models import User
from credits.selectors import user_plan
from credits.services import credit_deduct_for_job, credit_refund_job, require_plan
from gpu_tasks.backends.base import CallStatus
from gpu_tasks.contract import save_output
from gpu_tasks.errors import GpuError, PermanentGpuError
from jobs import gpu_client
from jobs.models import ACTIVE_STATUSES, IdempotencyRecord, Job, JobEvent, JobStatus
from jobs.pricing import job_cost
from media.models import MediaFile
from media.services.captions import media_attach_caption
from media.services.outputs import media_create_output, media_delete_job_outputs
from media.storage import get_local_storage, get_storage
from projects.models import Project

logger = logging.getLogger(__name__)

MAX_GPU_ATTEMPTS = 3  # spawns per job: a call that fails transiently is re-spawned, within reason
TIME_LIMIT_GRACE_SECONDS = 30
PROGRESS_EVENT_STEP = 10  # record a progress event every 10 points, not on every poll


class FeatureUnavailable(ApplicationError):
    status_code = http.HTTP_503_SERVICE_UNAVAILABLE
    code = "feature_unavailable"


class IdempotencyKeyReused(ApplicationError):
    status_code = http.HTTP_422_UNPROCESSABLE_ENTITY
    code = "idempotency_key_reused"


class JobNotCancelable(ApplicationError):
    status_code = http.HTTP_409_CONFLICT
    code = "job_not_cancelable"


class JobNotRetryable(ApplicationError):
    status_code = http.HTTP_409_CONFLICT
    code = "job_not_retryable"


def event(job_id: uuid.UUID | str, type: str, **data: Any) -> None:
    JobEvent.objects.create(job_id=job_id, type=type, data=data)


def request_hash(job_type: str, body: dict[str, Any]) -> str:
    canonical = json.dumps({"type": job_type, "body": body}, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


# ----------------------------------------------------------------------------- submission


def job_submit(
    *,
    user: User,
    job_type: str,
    project: Project,
    input_params: dict[str, Any],
    quantities: dict[str, Any],
    media_ids: list[uuid.UUID],
    idempotency_key: str = "",
    body_hash: str = "",
    retry_of: Job | None = None,
) -> tuple[Job, bool]:
    """Charge and create a job, publishing its pipeline after commit. Returns (job, created).

    The same Idempotency-Key with the same body within the window returns the original job and
    charges nothing; with another body it is refused (422).
    """
    if not gpu_client.supports(job_type):
        raise FeatureUnavailable(
            f"{job_type} is not available on this server's GPU backend ({settings.AUTEUR_GPU_BACKEND}).",
            details={"type": job_type, "backend": settings.AUTEUR_GPU_BACKEND},
        )
    require_plan(user=user, feature=job_type)
    cost = job_cost(job_type, quantities)
    try:
        return _submit(user, job_type, project, input_params, cost, media_ids, idempotency_key, body_hash, retry_of)
    except IntegrityError:
        # Two requests with the same key raced: the loser's whole transaction (job, charge) was
        # rolled back; it answers with the winner's job.
        if not idempotency_key:
            raise
        replay = _idempotent_replay(user, idempotency_key, body_hash)
        if replay is None:
            raise
        return replay, False


def _idempotent_replay(user: User, key: str, body_hash: str) -> Job | None:
    record = IdempotencyRecord.objects.filter(user=user, key=key).select_related("job").first()
    window = timedelta(seconds=settings.AUTEUR_IDEMPOTENCY_WINDOW_SECONDS)
    if record is None or record.created_at < timezone.now() - window:
        return None
    if record.request_hash != body_hash:
        raise IdempotencyKeyReused(
            "This Idempotency-Key was used with a different request.", details={"job_id": str(record.job_id)}
        )
    return record.job


def _submit(
    user: User,
    job_type: str,
    project: Project,
    input_params: dict[str, Any],
    cost: int,
    media_ids: list[uuid.UUID],
    idempotency_key: str,
    body_hash: str,
    retry_of: Job | None,
) -> tuple[Job, bool]:
    with transaction.atomic():
        if idempotency_key:
            replay = _idempotent_replay(user, idempotency_key, body_hash)
            if replay is not None:
                return replay, False
        if media_ids:
            # media_delete checks "in use" holding the same row locks: a file cannot be deleted
            # between this check of its jobs and the job's insert.
            list(MediaFile.objects.select_for_update().filter(pk__in=media_ids).values_list("pk", flat=True))
        job = Job.objects.create(
            user=user,
            project=project,
            type=job_type,
            credits_cost=cost,
            input_params=input_params,
            idempotency_key=idempotency_key,
            gpu_backend=settings.AUTEUR_GPU_BACKEND,
            retry_of=retry_of,
        )
        if idempotency_key:
            # Inserted before the charge: a racing duplicate blocks here on the unique key and
            # then fails, rather than charging first.
            IdempotencyRecord.objects.filter(user=user, key=idempotency_key).delete()  # an expired one
            IdempotencyRecord.objects.create(user=user, key=idempotency_key, request_hash=body_hash, job=job)
        credit_deduct_for_job(user=user, job_id=job.id, amount=cost, description=f"{job_type} job")
        event(job.id, "submitted", credits_cost=cost)
        from jobs import pipeline  # the wiring of tasks imports this module

        transaction.on_commit(lambda: pipeline.start(job.id, job_type))
    logger.info("job submitted: %s for %d credits", job_type, cost, extra={"job_id": str(job.id)})
    return job, True


# ----------------------------------------------------------------------------- claim (prepare)


def _user_lock(user_id: uuid.UUID) -> None:
    """Serialize slot accounting for one user across processes (released at commit)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [uuid.UUID(str(user_id)).int & 0x7FFF_FFFF_FFFF_FFFF])


def concurrency_limit(user: User) -> int:
    limits: dict[str | None, int] = settings.AUTEUR_JOB_CONCURRENCY
    return limits.get(user_plan(user=user), limits[None])


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
        # job meanwhile makes the conditional UPDATE below match nothing.
        slots = Job.objects.filter(user_id=job.user_id, status__in=(JobStatus.PROCESSING, JobStatus.QUEUED)).aggregate(
            running=Count("pk", filter=Q(status=JobStatus.PROCESSING)),
            older_waiting=Count("pk", filter=Q(status=JobStatus.QUEUED, created_at__lt=job.created_at)),
        )
        running = slots["running"]
        if running >= concurrency_limit(job.user) or slots["older_waiting"]:
            if job.status == JobStatus.PENDING:
                now = timezone.now()
                if Job.objects.filter(pk=job.pk, status=JobStatus.PENDING).update(
                    status=JobStatus.QUEUED, queued_at=now, updated_at=now
                ):
                    event(job.id, "queued", running=running)
            return None
        now = timezone.now()
        claimed = Job.objects.filter(pk=job.pk, status=job.status).update(
            status=JobStatus.PROCESSING, started_at=now, updated_at=now
        )
        if not claimed:  # claimed by a duplicate delivery, or canceled (cancel takes no user lock)
            return None
        event(job.id, "started")
        job.status, job.started_at, job.updated_at = JobStatus.PROCESSING, now, now
        return job


def _release_slot(user_id: uuid.UUID) -> None:
    """After a job of this user ended: start the oldest waiting ones that now fit (after commit)."""
    from jobs import pipeline

    queued = Job.objects.filter(user_id=user_id, status=JobStatus.QUEUED).order_by("created_at")
    waiting: list[tuple[uuid.UUID, str]] = list(queued.values_list("id", "type")[:5])
    for job_id, job_type in waiting:
        transaction.on_commit(functools.partial(pipeline.start, job_id, job_type))


# ----------------------------------------------------------------------------- inference


def _input_ref(media: MediaFile, ttl_seconds: int) -> dict[str, Any]:
    """A local path when the worker shares the local storage, else a signed URL outliving the job."""
    local = get_local_storage()
    if local is not None and settings.AUTEUR_GPU_BACKEND in ("local", "noop"):
        return {"path": str(local.path(media.storage_key))}
    download = get_storage().presign_get(media.storage_key, expires_in=ttl_seconds)
    return {"url": download.url}


def build_payload(job: Job) -> dict[str, Any]:
    params = dict(job.input_params)
    ttl = gpu_client.spec(job.type).time_limit_s + 3600
    media_ids = [v for k, v in params.items() if k.endswith("media_id") and v]
    media = {str(m.pk): m for m in MediaFile.objects.filter(pk__in=media_ids)}
    payload: dict[str, Any] = {"job_id": str(job.id), **params}
    if job.type in ("transcription", "compression"):
        payload["media"] = _input_ref(media[params["media_id"]], ttl)
    elif job.type == "tts" and params.get("voice_sample_key"):
        payload["voice_sample"] = _voice_ref(params["voice_sample_key"], ttl)
    elif job.type == "render":
        ids = {clip["media_file_id"] for t in params["edl"]["tracks"] for clip in t["clips"] if not clip.get("deleted")}
        files = MediaFile.objects.filter(pk__in=ids, project=job.project)
        payload["media"] = {str(m.pk): {"kind": m.type, **_input_ref(m, ttl)} for m in files}
    else:
        for key, value in params.items():
            if key.endswith("media_id") and value in media:
                payload[key.removesuffix("_id")] = _input_ref(media[value], ttl)
    return payload


def _voice_ref(key: str, ttl: int) -> dict[str, Any]:
    local = get_local_storage()
    if local is not None and settings.AUTEUR_GPU_BACKEND in ("local", "noop"):
        return {"path": str(local.path(key))}
    return {"url": get_storage().presign_get(key, expires_in=ttl).url}


def job_spawn(*, job_id: uuid.UUID | str, job: Job | None = None) -> Job | None:
    """Start the GPU call of a processing job that has none; a redelivery finds it started.

    `job`: the row as the caller just read or claimed it (saves reading it again)."""
    if job is None:
        job = Job.objects.filter(pk=job_id, status=JobStatus.PROCESSING).first()
    if job is None or job.gpu_call_id:
        return job
    if job.attempts >= MAX_GPU_ATTEMPTS:
        raise PermanentGpuError("internal", f"gave up after {job.attempts} GPU attempts")
    call_id = gpu_client.spawn(job.type, build_payload(job))
    now = timezone.now()
    won = Job.objects.filter(pk=job.pk, status=JobStatus.PROCESSING, gpu_call_id="").update(
        gpu_call_id=call_id, attempts=F("attempts") + 1, inference_started_at=now, updated_at=now
    )
    if not won:
        # Another delivery of this step spawned first (or the job was canceled): ours is surplus.
        _quietly(gpu_client.cancel, call_id)
        return Job.objects.filter(pk=job_id).first()
    event(job.id, "inference_started", call_id=call_id, attempt=job.attempts + 1)
    job.gpu_call_id, job.attempts, job.inference_started_at, job.updated_at = call_id, job.attempts + 1, now, now
    return job


def job_poll(*, job_id: uuid.UUID | str, job: Job | None = None) -> CallStatus | None:
    """One non-blocking look at the job's GPU call. None when the job is no longer processing.

    A running call past the type's time limit is cancelled and fails the job (`timeout`). A call
    that ended with a transient error is forgotten so that the next step re-spawns it. A call
    that succeeded stamps `inference_ended_at`, from which on the job can no longer be canceled.
    """
    if job is None:
        job = Job.objects.filter(pk=job_id, status=JobStatus.PROCESSING).first()
    if job is None or not job.gpu_call_id:
        return None
    status = gpu_client.poll(job.gpu_call_id)  # TransientGpuError: could not read; poll later
    if status.state == "running":
        limit = gpu_client.spec(job.type).time_limit_s + TIME_LIMIT_GRACE_SECONDS
        if job.inference_started_at and timezone.now() - job.inference_started_at > timedelta(seconds=limit):
            gpu_client.cancel(job.gpu_call_id)
            raise PermanentGpuError("timeout", f"{job.type} ran past its {limit - TIME_LIMIT_GRACE_SECONDS} s limit")
        _record_progress(job, status.progress)
        # A sign of life for the reaper: a few writes per repoll period, not one per poll.
        now = timezone.now()
        Job.objects.filter(pk=job.pk, updated_at__lt=now - _repoll_after() / 4).update(updated_at=now)
    elif status.state == "succeeded":
        # Conditional on `processing`: a cancel that won the row first leaves this job alone
        # (job_cancel refuses once this is set; exactly one of the two UPDATEs matches).
        now = timezone.now()
        if not Job.objects.filter(pk=job.pk, status=JobStatus.PROCESSING).update(
            inference_ended_at=Coalesce(F("inference_ended_at"), Value(now)), updated_at=now
        ):
            return None
        job.inference_ended_at = job.inference_ended_at or now
    elif status.state == "failed":
        error = status.error or PermanentGpuError("internal", "the GPU call failed without an error")
        if error.retryable and job.attempts < MAX_GPU_ATTEMPTS:
            Job.objects.filter(pk=job.pk, gpu_call_id=job.gpu_call_id).update(gpu_call_id="")
            event(job.id, "inference_retry", code=error.code, attempt=job.attempts)
            return status
        raise error
    return status


def _record_progress(job: Job, progress: float | None) -> None:
    if progress is None:
        return
    value = max(0, min(99, int(progress)))
    if value // PROGRESS_EVENT_STEP > job.progress // PROGRESS_EVENT_STEP:
        if Job.objects.filter(pk=job.pk, progress__lt=value).update(progress=value):
            event(job.id, "progress", progress=value)
    elif value > job.progress:
        Job.objects.filter(pk=job.pk, progress__lt=value).update(progress=value)


# ----------------------------------------------------------------------------- store + finalize

# The kind of media each type's outputs are stored as (every other type makes video).
OUTPUT_MEDIA_TYPES = {"tts": "audio", "audio-generation": "audio", "image-generation": "image"}


def job_complete(
    *, job_id: uuid.UUID | str, result: dict[str, Any], gpu_seconds: float = 0.0, job: Job | None = None
) -> Job | None:
    """Store the outputs (idempotently) and move the job to completed. None if it is not processing.

    A job that ends otherwise while its outputs are being stored (failed by the reaper, say) was
    refunded, so it keeps none of them.
    """
    if job is None:
        job = Job.objects.filter(pk=job_id, status=JobStatus.PROCESSING).first()
    if job is None:
        return None
    now = timezone.now()
    # Conditional on `processing` (see job_poll); updated_at tells the reaper the store is at work.
    if not Job.objects.filter(pk=job.pk, status=JobStatus.PROCESSING).update(
        inference_ended_at=Coalesce(F("inference_ended_at"), Value(now)), updated_at=now
    ):
        return None
    output_data = {k: v for k, v in result.items() if k != "outputs"}
    output_media: list[str] = []
    outputs: dict[str, dict[str, Any]] = result.get("outputs") or {}
    for name, ref in outputs.items():
        if job.project_id is None:
            break  # the project was deleted meanwhile; its job is being canceled
        media_type = OUTPUT_MEDIA_TYPES.get(job.type, "video")
        with tempfile.TemporaryDirectory(prefix="auteur-out-") as tmp:
            filename = ref.get("filename") or f"{name}.bin"
            local = save_output(ref, Path(tmp) / filename)
            if local is None:
                continue
            media = media_create_output(
                project_id=job.project_id,
                user_id=job.user_id,
                job_id=job.id,
                name=f"{job.type}-{str(job.id)[:8]}-{filename}",
                type=media_type,
                mime_type=ref.get("content_type") or "application/octet-stream",
                local_path=local,
            )
        output_media.append(str(media.pk))
    if job.type == "transcription":
        output_data["caption_key"] = media_attach_caption(media_id=job.input_params["media_id"], transcript=output_data)
    if output_media:
        output_data["output_media_ids"] = output_media
    with transaction.atomic():
        completed_at = timezone.now()
        processing_ms = int((completed_at - (job.started_at or job.created_at)).total_seconds() * 1000)
        done = Job.objects.filter(pk=job.pk, status=JobStatus.PROCESSING).update(
            status=JobStatus.COMPLETED, output_data=output_data, progress=100, completed_at=completed_at,
            updated_at=completed_at, gpu_seconds=gpu_seconds, processing_time_ms=processing_ms,
        )
        if not done:
            # Completed by a duplicate delivery of this step (the outputs are its too), or ended
            # otherwise meanwhile (failed by the reaper): refunded, so it keeps nothing.
            if not Job.objects.filter(pk=job.pk, status=JobStatus.COMPLETED).exists():
                media_delete_job_outputs(job_id=job.pk)
            return None
        event(job.id, "completed", output_media_ids=output_media)
        _release_slot(job.user_id)
    if job.gpu_call_id:
        _quietly(gpu_client.release, job.gpu_call_id)
    job.status, job.output_data, job.progress, job.completed_at = JobStatus.COMPLETED, output_data, 100, completed_at
    job.gpu_seconds, job.processing_time_ms, job.updated_at = gpu_seconds, processing_ms, completed_at
    return job


# ----------------------------------------------------------------------------- terminal states


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
        event(job_id, "failed", code=code, message=message[:500], retryable=retryable)
        _release_slot(job.user_id)
    logger.warning("job failed: %s (%s)", code, message[:200], extra={"job_id": str(job_id)})
    if job.gpu_call_id:
        _quietly(gpu_client.cancel, job.gpu_call_id)
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
        event(job.pk, "canceled", reason=reason)
        _release_slot(job.user_id)
        call_id = Job.objects.values_list("gpu_call_id", flat=True).get(pk=job.pk)
        if call_id:
            transaction.on_commit(lambda: _quietly(gpu_client.cancel, call_id))
        from jobs import pipeline

        transaction.on_commit(lambda: pipeline.revoke(job.pk))
    job.refresh_from_db()
    return job


def job_retry(*, job: Job) -> Job:
    """A failed, retryable job submitted again with the same input (charged as new)."""
    if job.status != JobStatus.FAILED or not job.retryable:
        raise JobNotRetryable("Only a failed job whose error is retryable can be retried.",
                              details={"status": job.status, "retryable": job.retryable})
    if job.project is None:
        raise JobNotRetryable("The job's project was deleted.")
    media_ids = [uuid.UUID(str(v)) for k, v in job.input_params.items() if k.endswith("media_id") and v]
    quantities = job.input_params.get("_quantities", {})
    with transaction.atomic():
        # One retry per failed job: a double click gets the same new job, charged once.
        Job.objects.select_for_update().filter(pk=job.pk).first()
        existing = Job.objects.filter(retry_of=job).first()
        if existing is not None:
            return existing
        new, _ = job_submit(
            user=job.user, job_type=job.type, project=job.project, input_params=job.input_params,
            quantities=quantities, media_ids=media_ids, retry_of=job,
        )
    return new


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


def media_has_active_jobs(media: MediaFile) -> str | None:
    """In-use check for media deletion: a reason if an unfinished job reads this file."""
    key = str(media.pk)
    active = Job.objects.filter(project_id=media.project_id, status__in=ACTIVE_STATUSES).only("input_params", "type")
    for job in active:
        params = job.input_params
        if key in {str(v) for k, v in params.items() if k.endswith("media_id")}:
            return f"used by {job.type} job {job.pk}"
        edl = params.get("edl")
        if edl and any(c.get("media_file_id") == key for t in edl.get("tracks", []) for c in t.get("clips", [])):
            return f"used by render job {job.pk}"
    return None


def _quietly(fn: Callable[[str], None], call_id: str) -> None:
    try:
        fn(call_id)
    except GpuError as exc:
        logger.warning("GPU call %s: %s failed: %s", call_id, fn.__name__, exc)


def bind_job_to_logs(job_id: uuid.UUID | str) -> contextvars.Token[str | None]:
    return job_id_var.set(str(job_id))


# ----------------------------------------------------------------------------- automatic transcription


def job_auto_transcribe(*, media_id: uuid.UUID | str) -> Job | None:
    """Start the transcription of a newly ready file when its project asks for it; idempotent.

    One automatic transcription per file (a second signal, or a sweep calling again, finds it).
    Insufficient credits skip it, recording why on the file, and charge nothing.
    """
    from credits.services import InsufficientCredits

    media = MediaFile.objects.select_related("project", "user").filter(pk=media_id).first()
    if media is None or media.type not in ("audio", "video") or not media.project.auto_transcribe:
        return None
    key = f"auto-transcribe:{media.pk}"
    existing = IdempotencyRecord.objects.filter(user=media.user, key=key).select_related("job").first()
    if existing is not None:
        return existing.job
    quantities: dict[str, Any] = {"duration_ms": media.duration_ms or 0}
    params: dict[str, Any] = {"project_id": str(media.project_id), "media_id": str(media.pk), "language": "en",
                              "speaker_diarization": True, "_quantities": quantities}
    try:
        with transaction.atomic():
            job, _ = job_submit(
                user=media.user, job_type="transcription", project=media.project, input_params=params,
                quantities=quantities, media_ids=[media.pk], idempotency_key=key,
                body_hash=request_hash("transcription", params),
            )
    except (InsufficientCredits, FeatureUnavailable) as exc:
        metadata = {**media.metadata, "auto_transcribe": {"skipped": exc.code, "reason": exc.message}}
        MediaFile.objects.filter(pk=media.pk).update(metadata=metadata)
        logger.info("automatic transcription of media %s skipped: %s", media.pk, exc.code)
        return None
    return job


# ----------------------------------------------------------------------------- the reaper

STORE_LIMIT_SECONDS = 960  # the finish step's hard time limit (jobs/tasks.py STEP_LIMITS)


def _repoll_after() -> timedelta:
    return timedelta(seconds=settings.AUTEUR_REAPER_REPOLL_AFTER_SECONDS)


def jobs_reap(*, now: Any = None) -> dict[str, int]:
    """No job stays non-terminal forever (beat, every minute).

    - pending for a minute: its publish was lost (broker down at submission): publish again;
    - queued while a slot is free: start it (a missed release);
    - processing with no sign of life for two minutes: its poll message was lost: poll again;
    (the two thresholds are settings: AUTEUR_REAPER_PENDING_AFTER_SECONDS, ..._REPOLL_AFTER_SECONDS)
    - processing past its type's time limit (plus grace): fail and refund it (retryable).
    Every action is idempotent: a duplicate message finds the job moved and does nothing.
    """
    from jobs import pipeline

    now = now or timezone.now()
    counts = {"republished": 0, "started": 0, "repolled": 0, "timed_out": 0}
    pending_after = timedelta(seconds=settings.AUTEUR_REAPER_PENDING_AFTER_SECONDS)
    for job in Job.objects.filter(status=JobStatus.PENDING, updated_at__lt=now - pending_after):
        if pipeline.start(job.pk, job.type):
            Job.objects.filter(pk=job.pk).update(updated_at=now)
            event(job.pk, "republished")
            counts["republished"] += 1
    for user_id in Job.objects.filter(status=JobStatus.QUEUED).values_list("user_id", flat=True).distinct():
        oldest = Job.objects.filter(user_id=user_id, status=JobStatus.QUEUED).order_by("created_at").first()
        if oldest is not None and pipeline.start(oldest.pk, oldest.type):
            counts["started"] += 1
    for job in Job.objects.filter(status=JobStatus.PROCESSING):
        try:
            _reap_processing(job, now, counts)
        except Exception:
            # One job that cannot be reaped must not stop the others being reaped.
            logger.exception("reaper: job %s", job.pk, extra={"job_id": str(job.pk)})
    return counts


def _reap_processing(job: Job, now: Any, counts: dict[str, int]) -> None:
    from jobs import pipeline

    if job.inference_ended_at is not None:
        # Storing outputs: bounded by the finish step's own hard limit, not the inference's.
        limit, began, step = STORE_LIMIT_SECONDS, job.inference_ended_at, "finish"
    else:
        limit = gpu_client.spec(job.type).time_limit_s + TIME_LIMIT_GRACE_SECONDS
        began, step = job.inference_started_at or job.started_at or job.created_at, "infer"
    if now - began > timedelta(seconds=limit + 60):
        if job_fail(job_id=job.pk, code="timeout", message=f"no result within {limit} s", retryable=True):
            counts["timed_out"] += 1
    elif now - job.updated_at > _repoll_after() and pipeline.publish(job.pk, job.type, step):
        Job.objects.filter(pk=job.pk).update(updated_at=now)
        counts["repolled"] += 1

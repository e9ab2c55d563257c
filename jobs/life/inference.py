"""A processing job's GPU call: spawn it once, look at it without blocking, record progress."""

from __future__ import annotations

import math
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import InterfaceError, OperationalError, connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from auteur.core import tracing
from auteur.core.prepared import PreparedUpdate
from jobs import gpu_client
from jobs.events.record import job_event_record
from jobs.events.stream import JobState
from jobs.gpu_client import CallStatus, PermanentGpuError
from jobs.life import pieces
from jobs.life.publish import call_stop
from jobs.life.status import job_inference_ended
from jobs.models import Job, JobEventType, JobStatus
from jobs.specs import job_spec
from media.services.gpu_outputs import media_output_targets

MAX_GPU_ATTEMPTS = 3  # spawns per job: a call that fails transiently is re-spawned, within reason
# (besides one per class of the type's GPU ladder climbed: a call out of GPU memory is spawned again there)
PROGRESS_EVENT_STEP = 10  # record a progress event every 10 points, not on every poll

# Every job makes these writes: built once per process (auteur.core.prepared).
_SOME_JOB, _SOME_TIME = uuid.UUID(int=1), datetime(1, 1, 1, 0, 0, 0, 1, tzinfo=UTC)
_CLAIMED_BEFORE = datetime(1, 1, 1, 0, 0, 0, 2, tzinfo=UTC)
# The right to spawn the job's call: one step at a time holds it, until the call's id is recorded
# or, for a step that died holding it, until it is as old as the reaper's repoll threshold. Each
# claim is an attempt, whether or not its call was ever started.
_SPAWN_CLAIMED = PreparedUpdate(
    lambda pk, stale, **_: Job.objects.filter(
        Q(spawn_claimed_at__isnull=True) | Q(spawn_claimed_at__lt=stale),
        pk=pk, status=JobStatus.PROCESSING, gpu_call_id="",
    ),
    lambda now, **_: {"spawn_claimed_at": now, "attempts": F("attempts") + 1, "updated_at": now},
    pk=_SOME_JOB, stale=_CLAIMED_BEFORE, now=_SOME_TIME,
)
_SPAWNED = PreparedUpdate(
    lambda pk, claimed, **_: Job.objects.filter(
        pk=pk, status=JobStatus.PROCESSING, gpu_call_id="", spawn_claimed_at=claimed
    ),
    lambda call_id, now, **_: {"gpu_call_id": call_id, "spawn_claimed_at": None, "inference_started_at": now,
                                "updated_at": now},
    pk=_SOME_JOB, claimed=_CLAIMED_BEFORE, call_id="\x00call id", now=_SOME_TIME,
)
_SPAWN_RELEASED = PreparedUpdate(
    lambda pk, claimed, **_: Job.objects.filter(pk=pk, gpu_call_id="", spawn_claimed_at=claimed),
    lambda **_: {"spawn_claimed_at": None},
    pk=_SOME_JOB, claimed=_CLAIMED_BEFORE,
)
# How long the step that started a call keeps trying to record its id while the database is out
# of reach, before it cancels the call: well within the claim's life, so that no other step
# starts a call while this one may still record its own.
RECORD_RETRY_SHARE = 0.5


def inference_limit_seconds(job: Job) -> float:
    """How long the job's call may run before it is a `timeout`: its type's limit and a grace (for
    a job in pieces, as many limits as rounds of its pieces: each piece has its own limit too)."""
    limit = job_spec(job.type).time_limit_seconds * pieces.time_limit_factor(job)
    return limit + settings.AUTEUR_GPU_TIME_LIMIT_GRACE_SECONDS


def repoll_after() -> timedelta:
    """Silence for this long means a processing job's poll message was lost (the reaper's threshold)."""
    return timedelta(seconds=settings.AUTEUR_REAPER_REPOLL_AFTER_SECONDS)


def job_spawn(*, job_id: uuid.UUID | str, job: Job | None = None) -> Job | None:
    """Start the GPU call of a processing job that has none; a redelivery finds it started.

    `job`: the row as the caller just read or claimed it (saves reading it again)."""
    if job is None:
        job = Job.objects.filter(pk=job_id, status=JobStatus.PROCESSING).first()
    if job is None or job.gpu_call_id:
        return job
    if pieces.pieces_wanted(job):
        return pieces.pieces_start(job)
    if job.attempts >= max_attempts(job):
        raise PermanentGpuError("internal", f"gave up after {job.attempts} GPU attempts")
    claimed = timezone.now()
    if not _SPAWN_CLAIMED.run(pk=job.pk, stale=claimed - repoll_after(), now=claimed):
        # Another delivery of this step is starting the call (or the job moved on): it carries on.
        return Job.objects.filter(pk=job_id).first()
    try:
        payload = _payload(job)
        with tracing.call_span(job, payload, gpu_backend=job.gpu_backend, gpu_class=job.gpu_class or None) as span:
            call_id = gpu_client.spawn(job.type, payload, gpu=job.gpu_class or None)
            span.set_attribute("auteur.gpu.call_id", call_id)
    except gpu_client.TransientGpuError as exc:
        if exc.code == "capacity":
            # The backend refused the call (no capacity): nothing was started, so the claim goes
            # now and the step's retry may spawn at once, rather than once the claim has lapsed.
            # Any other failure may have started a call whose id was lost: the claim stays.
            _SPAWN_RELEASED.run(pk=job.pk, claimed=claimed)
        raise
    now = timezone.now()
    if not _record_call(job, call_id, claimed=claimed, now=now):
        # The job was canceled or failed while the call started: the call is surplus.
        call_stop(job.pk, call_id)
        return Job.objects.filter(pk=job_id).first()
    job.gpu_call_id, job.attempts, job.inference_started_at, job.updated_at = call_id, job.attempts + 1, now, now
    return job


def climbs(job: Job) -> int:
    """How many classes of its ladder the job's calls have climbed (each climb is an attempt)."""
    ladder = gpu_client.gpu_ladder(job.type)
    return ladder.index(job.gpu_class) + 1 if job.gpu_class in ladder else 0


def max_attempts(job: Job) -> int:
    """Spawns the job may claim: MAX_GPU_ATTEMPTS for transient failures, and one per climb."""
    return MAX_GPU_ATTEMPTS + climbs(job)


def _payload(job: Job) -> dict[str, Any]:
    """What the job's call is given: its spec's payload, and a target for each output the call
    uploads (media.services.gpu_outputs), whose URL lasts as long as the call may: until it may
    start (the window of every signed URL of the payload) and run its limit after that."""
    payload = job_spec(job.type).build_payload(job)
    wanted = gpu_client.output_targets(job.type)
    if wanted:
        payload["output_targets"] = media_output_targets(
            job_id=job.pk, user_id=job.user_id, outputs=wanted, max_bytes=output_target_max_bytes(),
            ttl_seconds=settings.AUTEUR_SIGNED_URL_TTL_SECONDS + math.ceil(inference_limit_seconds(job)),
        )
    return payload


def output_target_max_bytes() -> int:
    """The largest output a target takes: the largest output file accepted (in parts, past what
    one PUT takes: media.services.gpu_outputs)."""
    return int(settings.AUTEUR_GPU_OUTPUT_MAX_BYTES)


def _record_call(job: Job, call_id: str, *, claimed: datetime, now: datetime) -> bool:
    """Record the started call's id under the step's claim, with its event. While the database is
    out of reach the id is only in this process: it keeps trying (outside a transaction) for a
    share of the claim's life, then cancels the call and lets the error go, so the call is never
    left running unrecorded while another step starts one."""
    deadline = time.monotonic() + repoll_after().total_seconds() * RECORD_RETRY_SHARE
    pause = 0.2
    move = _SPAWNED.statement(pk=job.pk, claimed=claimed, call_id=call_id, now=now)
    while True:
        try:  # the call's id and its `started` event: one statement
            return job_event_record(job.id, JobEventType.INFERENCE_STARTED, call_id=call_id, attempt=job.attempts + 1,
                                    state=JobState(job.user_id, JobStatus.PROCESSING, job.progress), move=move)
        except (OperationalError, InterfaceError):
            if connection.in_atomic_block or time.monotonic() + pause > deadline:
                call_stop(job.id, call_id)
                raise
            connection.close()  # a broken connection is opened anew on the next try
            time.sleep(pause)
            pause = min(pause * 2, 5.0)


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
    if job.gpu_call_id == pieces.PIECES:
        status = pieces.pieces_poll(job)
        if status.state == "running":
            _record_progress(job, status.progress)
        elif not job_inference_ended(job=job):
            return None
        return status
    status = gpu_client.poll(job.gpu_call_id)  # TransientGpuError: could not read; poll later
    if status.state == "running":
        _record_start(job, waiting=status.waiting)
        limit = inference_limit_seconds(job)
        if job.inference_started_at and timezone.now() - job.inference_started_at > timedelta(seconds=limit):
            gpu_client.cancel(job.gpu_call_id)
            type_limit = job_spec(job.type).time_limit_seconds
            raise PermanentGpuError("timeout", f"{job.type} ran past its {type_limit:g} s limit")
        _record_progress(job, status.progress)
        # A sign of life for the reaper: a few writes per repoll period, not one per poll.
        now = timezone.now()
        Job.objects.filter(pk=job.pk, updated_at__lt=now - repoll_after() / 4).update(updated_at=now)
    elif status.state == "succeeded":
        if not job_inference_ended(job=job):
            return None
        tracing.record_call(job, status.trace)  # once: only the look that stamped the end of inference gets here
    elif status.state == "failed":
        error = status.error or PermanentGpuError("internal", "the GPU call failed without an error")
        if error.code == "gpu_oom" and _climb(job):
            return status
        if error.retryable and job.attempts < max_attempts(job):
            # Only while the job still runs this call: a stale look may poll a call already
            # released after the job's result was stored, and that reads as a failure.
            if Job.objects.filter(pk=job.pk, status=JobStatus.PROCESSING, gpu_call_id=job.gpu_call_id).update(
                gpu_call_id=""
            ):
                tracing.record_call(job, status.trace)  # once: by the look that let the call go
                job_event_record(job.id, JobEventType.INFERENCE_RETRY, code=error.code, attempt=job.attempts)
            return status
        tracing.record_call(job, status.trace)  # the job fails now: no later look finds it processing
        raise error
    return status


def _climb(job: Job) -> bool:
    """A call out of GPU memory: the job's next call runs on the next class of its type's ladder,
    for the price it was charged (nothing more is charged, whatever the class). False at the top:
    the failure is final, refunded once as a timed-out call is (jobs.life.refunds.failure_refund).
    Only while the job still runs this call."""
    bigger = gpu_client.gpu_ladder_next(job.type, job.gpu_class)
    if bigger is None:
        return False
    # The climb and its event commit together: the class a job runs on is the one its events say, even
    # where the database goes away between them (the next look finds the call out of memory again).
    with transaction.atomic():
        if Job.objects.filter(pk=job.pk, status=JobStatus.PROCESSING, gpu_call_id=job.gpu_call_id).update(
            gpu_call_id="", gpu_class=bigger
        ):
            job_event_record(job.id, JobEventType.INFERENCE_RETRY, code="gpu_oom", attempt=job.attempts, gpu=bigger)
    return True


def _record_start(job: Job, *, waiting: bool) -> None:
    """Keep `inference_started_at` to when the call really started running.

    A call the backend keeps waiting for capacity (a local runner in line for a slot) has spent
    nothing: its start is cleared, so a cancel refunds it in full and neither its time limit nor
    the reaper's runs; the first look that finds it running stamps the start.
    """
    if waiting and job.inference_started_at is not None:
        Job.objects.filter(pk=job.pk, gpu_call_id=job.gpu_call_id).update(inference_started_at=None)
        job.inference_started_at = None
    elif not waiting and job.inference_started_at is None:
        now = timezone.now()
        Job.objects.filter(pk=job.pk, gpu_call_id=job.gpu_call_id, inference_started_at__isnull=True).update(
            inference_started_at=now
        )
        job.inference_started_at = now


def _record_progress(job: Job, progress: float | None) -> None:
    # Reported by the call (its runner, its container): a figure that is no number is no progress.
    if progress is None or isinstance(progress, bool) or not isinstance(progress, int | float) \
            or not math.isfinite(progress):
        return
    value = max(0, min(99, int(progress)))
    if value // PROGRESS_EVENT_STEP > job.progress // PROGRESS_EVENT_STEP:
        if Job.objects.filter(pk=job.pk, progress__lt=value).update(progress=value):
            job_event_record(job.id, JobEventType.PROGRESS, progress=value)
    elif value > job.progress:
        Job.objects.filter(pk=job.pk, progress__lt=value).update(progress=value)


def job_progress_announce(*, job: Job, progress: float | None) -> None:
    """A running call announced its progress: it has started, it is alive, it got this far."""
    _record_start(job, waiting=False)
    _record_progress(job, progress)
    now = timezone.now()
    Job.objects.filter(pk=job.pk, updated_at__lt=now - repoll_after() / 4).update(updated_at=now)

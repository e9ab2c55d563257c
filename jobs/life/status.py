"""Every change of a job's status, and nothing else: the one module that writes `Job.status`.

    pending ──claim──> processing ──finishing──> (processing, finishing) ──complete──> completed
       │  └─claim─> queued ─claim─┘  │                   └── fail ──┐
       └──────────┴──── fail, cancel ┴──────────────────────────────┴──> failed / canceled (refunded once)
       └──────────┴──── abort (its start deadline passed) ──> aborted (refunded in full)

`finishing` is the stamp `inference_ended_at` on a processing job, made when its call's result is
being stored (job_inference_ended): from it on, a cancel is refused (409), so a cancel and a
completion racing for one job are decided by which of their two conditional UPDATEs matched first.

Each move is one conditional UPDATE (`filter(pk=..., status=<from>).update(status=<to>, ...)`):
delivery is at-least-once, so a redelivered or duplicate step finds its move made by someone
else and does nothing twice, and of two callers racing to end a job (a worker's failure beside
the reaper's time-out, a cancel beside the completion) exactly one wins. A refund is written in
the same transaction as the move to `failed`, `canceled` or `aborted`, after it and after the row
records the refund's amount (the ledger refunds an API session's job only by what its ended row
records), so only the winner refunds; the ledger's unique constraint on (job, refund) backs that
up. Every move records its event and, when it frees a slot, starts the user's next waiting job
(`jobs.life.slots`).
(tests/jobs/test_status_writes.py fails if another module writes a job's status.)
"""

from __future__ import annotations

import json
import logging
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import transaction
from django.db.models import F, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from auteur.core import tracing
from auteur.core.prepared import PreparedRead, PreparedUpdate, insert_many
from auteur.users.models import User
from credits.services.ledger import JobCharge, credit_refund_job, credit_refund_jobs
from jobs.errors import JobNotCancelable
from jobs.events.record import job_event_record, job_events_record_many
from jobs.events.stream import JobState
from jobs.events.usage import USAGE_COLUMNS, usage_row
from jobs.failures import failure_detail, failure_message
from jobs.life import pieces, scheduling
from jobs.life.publish import call_stop
from jobs.life.refunds import cancel_refund, failure_refund
from jobs.life.windows import abort_code
from jobs.models import ACTIVE_STATUSES, WAITING_STATUSES, Job, JobEventType, JobStatus, UsageEvent
from jobs.output_schema import output_data_check
from media.services.outputs import media_delete_job_outputs

logger = logging.getLogger(__name__)


# Every job makes these moves: built once per process (auteur.core.prepared).
_SOME_JOB, _SOME_TIME = uuid.UUID(int=1), datetime(1, 1, 1, 0, 0, 0, 1, tzinfo=UTC)
_CLAIMED = PreparedRead(lambda pk: Job.objects.filter(pk=pk), pk=_SOME_JOB)
_CLAIM = PreparedUpdate(
    lambda pk, status, **_: Job.objects.filter(pk=pk, status=status),
    lambda now, run_deadline, **_: {"status": JobStatus.PROCESSING, "started_at": now, "updated_at": now,
                                     "run_deadline": run_deadline, "waiting_for": ""},
    pk=_SOME_JOB, status="\x00status", now=_SOME_TIME, run_deadline=_SOME_TIME.replace(microsecond=3),
)
# The finishing stamp: `Coalesce` keeps the first time when a store is redone.
_ENDED = PreparedUpdate(
    lambda pk, **_: Job.objects.filter(pk=pk, status=JobStatus.PROCESSING),
    lambda now, **_: {"inference_ended_at": Coalesce(F("inference_ended_at"), Value(now)), "updated_at": now},
    pk=_SOME_JOB, now=_SOME_TIME,
)
_COMPLETE = PreparedUpdate(
    lambda pk, **_: Job.objects.filter(pk=pk, status=JobStatus.PROCESSING),
    lambda pk, output_data, now, gpu_seconds, processing_ms: {
        "status": JobStatus.COMPLETED, "output_data": output_data, "progress": 100, "completed_at": now,
        "updated_at": now, "gpu_seconds": gpu_seconds, "processing_time_ms": processing_ms,
    },
    pk=_SOME_JOB, output_data={"\x00": "output data"}, now=_SOME_TIME, gpu_seconds=-1.0e-300,
    processing_ms=-987_654_321,
)


# A start on a limited type, in the statement that records its `started` event: the claim's move
# (as _CLAIM) and, if it moved and a step is given, the user's charge on the type
# (jobs.life.fairshare): their start tag (their virtual time, not below the type's clock), the
# clock moved up to it, their virtual time past it.
_START_CHARGED_MOVE = """
UPDATE jobs SET status = 'processing', started_at = %s, updated_at = %s, run_deadline = %s, waiting_for = ''
WHERE id = %s AND status = %s
"""
_START_CHARGED_THEN = """
mine AS (
    SELECT greatest(
        coalesce((SELECT virtual_time FROM job_fair_share WHERE type = %s AND user_id = %s), 0),
        coalesce((SELECT virtual_time FROM job_type_clocks WHERE type = %s), 0)
    ) AS tag
    FROM moved WHERE %s::float8 IS NOT NULL
), clock AS (
    INSERT INTO job_type_clocks (type, virtual_time) SELECT %s, tag FROM mine
    ON CONFLICT (type) DO UPDATE SET virtual_time = greatest(job_type_clocks.virtual_time, excluded.virtual_time)
), share AS (
    INSERT INTO job_fair_share (type, user_id, virtual_time)
    SELECT %s, %s, tag + %s::float8 FROM mine
    ON CONFLICT (type, user_id) DO UPDATE SET virtual_time = excluded.virtual_time
)"""


def _start_charged(job: Job, *, now: datetime, run_deadline: datetime | None,
                   step: float | None) -> tuple[str, list[Any]]:
    """The charged start's move and its parameters, those of _START_CHARGED_THEN after them."""
    return _START_CHARGED_MOVE, [now, now, run_deadline, job.pk, job.status,
                                 job.type, job.user_id, job.type, step, job.type, job.type, job.user_id, step]


def _charge(job: Job, refund: int) -> dict[str, int]:
    """A terminal event's `charge`: the figures of the ledger entries written with it."""
    return {"charged": job.credits_cost, "refunded": refund, "net": job.credits_cost - refund}


def job_inference_ended(*, job: Job) -> bool:
    """Stamp `inference_ended_at` on a processing job (its result is being stored); False if it ended.

    Conditional on `processing`: a cancel that won the row first leaves this job alone, and
    job_cancel refuses once this is set, so exactly one of the two UPDATEs matches. Stamping
    again keeps the first time and refreshes `updated_at`, which tells the reaper a store is at work.
    """
    now = timezone.now()
    if not _ENDED.run(pk=job.pk, now=now):
        return False
    if job.inference_ended_at is None:
        job.inference_ended_at = now
        scheduling.unit_freed(job)  # its unit of the type's capacity is free for the next job
    return True


def job_claim(*, job_id: uuid.UUID | str) -> Job | None:
    """The job when it is processing (claimed now or before), None otherwise: job_claim_now's job."""
    return job_claim_now(job_id=job_id)[0]


def job_claim_now(*, job_id: uuid.UUID | str) -> tuple[Job | None, bool]:
    """pending/queued -> processing when one of the user's slots is free, else pending -> queued.

    Returns (the job, True) when this call claimed it; (the job, False) when an earlier delivery of
    this step claimed it and died before handing over to the next (the caller carries on, every
    later step being idempotent); (None, False) when it waits for a slot or has ended.
    A user's jobs start by priority, then in submission order: a job never overtakes one of the
    same user ahead of it (jobs.life.slots). One whose start deadline has passed is aborted
    instead (job_abort): it never starts late.
    """
    with transaction.atomic():
        job = _CLAIMED.object(pk=job_id)
        if job is None or job.status == JobStatus.PROCESSING:
            return job, False
        if job.status != JobStatus.PENDING and job.status != JobStatus.QUEUED:
            return None, False
        capacity = scheduling.claim_locks(job)
        now = timezone.now()  # after the locks' wait: the start is now or never
        if job.start_deadline is not None and now >= job.start_deadline:
            job_abort(job_id=job.pk, now=now)  # its start deadline passed while it waited: never starts
            return None, False
        # Under the locks the user's slots and the type's units cannot change; a duplicate
        # delivery that claimed this job meanwhile makes the conditional UPDATE below match nothing.
        decision = scheduling.start_or_wait(job, capacity)
        if isinstance(decision, scheduling.Wait):
            newly = False
            if job.status == JobStatus.PENDING:
                newly = bool(Job.objects.filter(pk=job.pk, status=JobStatus.PENDING).update(
                    status=JobStatus.QUEUED, queued_at=now, updated_at=now, waiting_for=decision.reason))
                if newly:
                    job_event_record(job.id, JobEventType.QUEUED, running=decision.running,
                                     waiting_for=decision.reason)
            elif job.waiting_for != decision.reason:
                Job.objects.filter(pk=job.pk, status=JobStatus.QUEUED).update(waiting_for=decision.reason)
            scheduling.after_queued(job, decision, newly=newly)
            return None, False
        if capacity:
            # Started once the type's units were counted: a unit freed just before is stamped
            # ended before this start, as it was.
            now = timezone.now()
        run_deadline = None if job.run_within_seconds is None else now + timedelta(seconds=job.run_within_seconds)
        # The move and its `started` event in one statement; on a limited type, with its charge to
        # the user's virtual time on the type.
        if capacity:
            move, then = _start_charged(job, now=now, run_deadline=run_deadline,
                                        step=scheduling.charge_step(job, decision)), _START_CHARGED_THEN
        else:
            move, then = _CLAIM.statement(pk=job.pk, status=job.status, now=now, run_deadline=run_deadline), ""
        if not job_event_record(job.id, JobEventType.STARTED, move=move, move_then=then,
                                state=JobState(job.user_id, JobStatus.PROCESSING, job.progress)):
            return None, False  # claimed by a duplicate delivery, or canceled (cancel takes no user lock)
        scheduling.after_start(job, decision)
        job.status, job.started_at, job.updated_at, job.run_deadline = JobStatus.PROCESSING, now, now, run_deadline
        return job, True


def job_complete(
    *, job: Job, output_data: dict[str, Any], output_media: list[str], gpu_seconds: float
) -> bool:
    """processing -> completed, with the record of its stored outputs. False if it is not processing.

    One statement, so it commits by itself where no transaction is open (jobs.life.outputs). On
    False, a job that ended otherwise meanwhile (failed by the reaper, say) was refunded and must
    keep none of its outputs: the caller deletes them (media_delete_job_outputs).
    """
    output_data_check(job_type=job.type, output_data=output_data)
    began = tracing.now_ns()
    completed_at = timezone.now()
    processing_ms = int((completed_at - (job.started_at or job.created_at)).total_seconds() * 1000)
    # The move, its event and the usage event: one statement.
    move = _COMPLETE.statement(pk=job.pk, output_data=output_data, now=completed_at, gpu_seconds=gpu_seconds,
                               processing_ms=processing_ms)
    if not job_event_record(job.id, JobEventType.COMPLETED, output_media_ids=output_media, charge=_charge(job, 0),
                            state=JobState(job.user_id, JobStatus.COMPLETED, 100), move=move,
                            usage=usage_row(job=job, outcome="completed", refunded=0, ended_at=completed_at,
                                            gpu_seconds=gpu_seconds)):
        return False
    scheduling.ended(job, held_unit=False)  # its unit was freed when its call ended (finishing)
    tracing.record_job_span("job.complete", job, began, gpu_seconds=gpu_seconds, outputs=len(output_media))
    job.status, job.output_data, job.progress, job.completed_at = JobStatus.COMPLETED, output_data, 100, completed_at
    job.gpu_seconds, job.processing_time_ms, job.updated_at = gpu_seconds, processing_ms, completed_at
    return True


def job_complete_from_cache(*, job: Job, output_data: dict[str, Any], output_media: list[str]) -> None:
    """pending -> completed for a job served from the result cache (jobs.intake.result_cache),
    in the transaction that creates and charges it: it never waits, starts or holds a slot, and
    no GPU call is made."""
    output_data_check(job_type=job.type, output_data=output_data)
    began = tracing.now_ns()
    now = timezone.now()
    processing_ms = int((now - job.created_at).total_seconds() * 1000)
    Job.objects.filter(pk=job.pk, status=JobStatus.PENDING).update(
        status=JobStatus.COMPLETED, output_data=output_data, progress=100, started_at=job.created_at,
        completed_at=now, updated_at=now, gpu_seconds=0.0, processing_time_ms=processing_ms,
    )
    job.status, job.output_data, job.progress, job.completed_at = JobStatus.COMPLETED, output_data, 100, now
    job.started_at, job.gpu_seconds, job.processing_time_ms, job.updated_at = job.created_at, 0.0, processing_ms, now
    job_event_record(job.id, JobEventType.COMPLETED, output_media_ids=output_media, charge=_charge(job, 0),
                     cache={"hit": True, "source_job_id": str(job.cache_source_id)},
                     state=JobState(job.user_id, JobStatus.COMPLETED, 100),
                     usage=usage_row(job=job, outcome="completed", refunded=0, ended_at=now))
    tracing.record_job_span("job.complete", job, began, cache_hit=True, outputs=len(output_media))


def job_fail(*, job_id: uuid.UUID | str, code: str, detail: str, retryable: bool) -> bool:
    """Mark a non-terminal job failed and refund it (failure_refund), in one transaction. True if this call did it.

    The user is shown the fixed sentence for `code` (jobs.failures); `detail`, the error's own
    text, goes scrubbed to the log and to the staff-only `error_detail`.
    Safe to call any number of times (on_failure twice, the reaper beside a late worker): only
    the first conditional UPDATE matches, and only it refunds.
    """
    message, detail = failure_message(code), failure_detail(detail)
    began = tracing.now_ns()
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
                         refunded=refund, charge=_charge(job, refund),
                         usage=usage_row(job=job, outcome="failed", refunded=refund, code=code))
        # It held a unit of its type, or a place in its line, unless its call had ended.
        scheduling.ended(job, held_unit=job.inference_ended_at is None)
    tracing.record_job_span("job.fail", job, began, error_code=code, credits_refunded=refund, retryable=retryable)
    logger.warning("job failed: %s (%s)", code, detail[:1000], extra={"job_id": str(job_id)})
    if job.gpu_call_id:
        _stop_calls(job.pk, job.gpu_call_id)
    return True


def job_cancel(*, job: Job, reason: str = "canceled by the user", code: str = "") -> Job:
    """Cancel a non-terminal job: refund it once (cancel_refund) and stop its GPU call. 409 if it ended.

    `code`: why, for machines (`run_deadline` when its run deadline passed; empty when a person
    canceled it)."""
    began = tracing.now_ns()
    with transaction.atomic():
        now = timezone.now()
        # Locked until commit: the progress and start read now are the last a worker wrote, and no
        # failure of the job can refund it beside us.
        job.refresh_from_db(from_queryset=Job.objects.select_for_update())
        # Once inference has produced its result the outputs are being stored: cancelling then
        # would refund work the user is about to receive.
        if job.status not in ACTIVE_STATUSES or job.inference_ended_at is not None:
            state = "finishing" if job.status == JobStatus.PROCESSING else job.status
            raise JobNotCancelable(f"The job is already {state}.", details={"status": job.status})
        refund = cancel_refund(job=job, at=now)
        # The end and its refund in one move, before the refund is written: the ledger refunds an API
        # session's job only by what its ended row records (credits/migrations/0010_ledger_functions.py),
        # and an API session changes an ended job's row no more (jobs/migrations/0027_ended_jobs_stay_ended.py).
        moved = Job.objects.filter(pk=job.pk, status__in=ACTIVE_STATUSES, inference_ended_at__isnull=True).update(
            status=JobStatus.CANCELED, completed_at=now, error_message=reason, error_code=code, updated_at=now,
            credits_refunded=bool(refund), credits_refund=refund,
        )
        assert moved, "the row is locked"
        job.refresh_from_db()
        if refund:
            credit_refund_job(job_id=job.pk, reason=f"{job.type} job canceled", amount=refund)
        job_event_record(job.pk, JobEventType.CANCELED, reason=reason, refunded=refund, charge=_charge(job, refund),
                         usage=usage_row(job=job, outcome="canceled", refunded=refund, code=code, ended_at=now))
        scheduling.ended(job)  # it held a unit of its type, or a place in its line
        if job.gpu_call_id:
            job_pk, call_id = job.pk, job.gpu_call_id
            transaction.on_commit(lambda: _stop_calls(job_pk, call_id))
    job.refresh_from_db()
    tracing.record_job_span("job.cancel", job, began, credits_refunded=job.credits_refund, reason_code=code or "user")
    return job


def jobs_cancel_waiting(*, user: User, jobs: list[Job], now: datetime, reason: str, code: str = "") -> int:
    """Cancel many waiting jobs of one account at once (a bulk cancel: jobs.life.bulk), which the
    caller's transaction has locked and read as pending or queued: each refunded in full, as its own
    cancel would be (nothing was spent), with its `canceled` event and usage row, in a few statements
    whatever their number; their slots, places in line and batches moved on once committed. Their
    events are pushed by the caller (the webhooks worker: there are many). `code`: why, for machines
    (`consent_revoked`; none for a cancel the user asked for). Returns what was refunded."""
    Job.objects.filter(pk__in=[job.pk for job in jobs]).update(
        status=JobStatus.CANCELED, completed_at=now, updated_at=now, error_message=reason, error_code=code,
        credits_refunded=True, credits_refund=F("credits_cost"))
    refunded = credit_refund_jobs(user=user, refunds=[
        JobCharge(job_id=job.pk, amount=job.credits_cost, job_type=job.type, description=f"{job.type} job canceled")
        for job in jobs
    ])
    job_events_record_many([
        (job.pk, JobEventType.CANCELED, {"reason": reason, "refunded": job.credits_cost,
                                         "charge": _charge(job, job.credits_cost)})
        for job in jobs
    ])
    rows = [usage_row(job=job, outcome="canceled", refunded=job.credits_cost, ended_at=now) for job in jobs]
    usage = {name: [row[i] for row in rows] for i, name in enumerate(USAGE_COLUMNS)}
    usage["quantities"] = [json.loads(text) for text in usage["quantities"]]  # (JSON text, for USAGE_INSERT)
    insert_many(UsageEvent, len(rows), varying=usage, same={})
    scheduling.many_ended(jobs)
    return refunded


def _stop_calls(job_id: uuid.UUID, call_id: str) -> None:
    """Cancel an ended job's GPU call, or each of its pieces' (jobs.life.pieces)."""
    if call_id == pieces.PIECES:
        pieces.pieces_cancel(job_id)
    else:
        call_stop(job_id, call_id)


# Why a job never started, for machines (`error_code`) and for people (`error_message`).
ABORT_REASONS = {
    "start_deadline": "The job did not start within the time its request allowed; it was refunded in full.",
    "queue_ttl": "The job waited longer than this server keeps a job waiting; it was refunded in full.",
}


def job_abort(*, job_id: uuid.UUID | str, now: datetime | None = None) -> bool:
    """pending/queued -> aborted once its start deadline passed, refunded in full. True if this call did it.

    Only a job that never started: one that started meanwhile is left alone (its run deadline,
    if any, is what bounds it now). Safe to call any number of times: one conditional UPDATE wins.
    """
    began = tracing.now_ns()
    with transaction.atomic():
        job = Job.objects.select_for_update().filter(pk=job_id).first()
        if job is None or job.status not in WAITING_STATUSES or job.start_deadline is None:
            return False
        now = now or timezone.now()
        if now < job.start_deadline:
            return False
        code = abort_code(job)
        if not Job.objects.filter(pk=job.pk, status__in=WAITING_STATUSES).update(
            status=JobStatus.ABORTED, error_code=code, error_message=ABORT_REASONS[code], retryable=True,
            completed_at=now, updated_at=now, credits_refunded=True, credits_refund=job.credits_cost,
        ):
            return False
        credit_refund_job(job_id=job.pk, reason=f"{job.type} job aborted: {code}", amount=job.credits_cost)
        job_event_record(job.pk, JobEventType.ABORTED, code=code, refunded=job.credits_cost,
                         charge=_charge(job, job.credits_cost),
                         usage=usage_row(job=job, outcome="aborted", refunded=job.credits_cost, code=code,
                                         ended_at=now))
        # It may have held the user's jobs behind it back (none overtakes one ahead of it), and
        # other users' jobs in its type's line.
        scheduling.ended(job)
    tracing.record_job_span("job.abort", job, began, error_code=code, credits_refunded=job.credits_cost)
    logger.info("job aborted: %s", code, extra={"job_id": str(job_id)})
    return True


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

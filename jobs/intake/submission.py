"""Charge and create a job in one transaction, publishing its pipeline only after commit."""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from dataclasses import dataclass, replace
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from auteur.core import tracing
from auteur.core.prepared import PreparedInsert
from auteur.users.models import User
from credits.services.ledger import credit_deduct_for_job
from jobs.errors import IdempotencyKeyReused, JobNotRetryable
from jobs.events.record import job_event_record
from jobs.events.stream import JobState
from jobs.inputs import Scheduling, WebhookRequest
from jobs.intake.admission import can_pay, job_submit_checks, require_runnable
from jobs.intake.quotes import quote_take
from jobs.intake.result_cache import CachedResult, cache_complete, cache_key, cache_lookup, cache_prepare, cache_price
from jobs.intake.screening import request_screen
from jobs.life import publish
from jobs.life.standing import standing_check
from jobs.life.windows import start_deadline_of
from jobs.models import IdempotencyRecord, Job, JobEventType, JobStatus, Quote, idempotency_window_start
from jobs.payloads import LIKENESS_PARAM, PHRASE_PARAM
from jobs.selectors.requests import JobRequest, job_likeness_params, job_voice_uses
from jobs.specs import JobSpec, job_spec
from media.errors import ChallengeUsed, ConsentRequired
from media.models import MediaFile
from media.services.consents import consent_challenge_claim, voice_use_check
from media.services.likeness import likeness_consents_revoked_locked
from projects.selectors import project_library_get
from projects.services import project_library_get_or_create
from webhooks.selectors import job_webhook_of
from webhooks.services import job_webhook_create

logger = logging.getLogger(__name__)
# Every submission inserts a job: compiled once per process (auteur.core.prepared).
_INSERT_JOB = PreparedInsert(Job)


def request_hash(job_type: str, body: dict[str, Any]) -> str:
    canonical = json.dumps({"type": job_type, "body": body}, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def quoted_body_hash(job_type: str, body: dict[str, Any]) -> str:
    """The body as a quote compares it: without the `quote_id` that names the quote."""
    return request_hash(job_type, {k: v for k, v in body.items() if k != "quote_id"})


DEFAULT_SCHEDULING = Scheduling()


@dataclass(frozen=True)
class QuoteRequest:
    """The quote a submission names, and its body as the quote compares it (less `quote_id`)."""

    quote_id: uuid.UUID
    body_hash: str


@dataclass(frozen=True)
class Submission:
    """One submission as `job_submit` was given it, with its list price and cache key."""

    user: User
    spec: JobSpec
    request: JobRequest
    cost: int  # the list price of its quantities: a quote or the result cache may charge less
    cache_key: str
    webhook: WebhookRequest | None = None
    idempotency_key: str = ""
    body_hash: str = ""
    retry_of: Job | None = None
    scheduling: Scheduling = DEFAULT_SCHEDULING
    quote: QuoteRequest | None = None
    cached: CachedResult | None = None  # the earlier job's outputs, copied for this one
    member_id: uuid.UUID | None = None  # who submits it (Job.member_id)


def job_submit(
    *,
    user: User,
    spec: JobSpec,
    request: JobRequest,
    webhook: WebhookRequest | None = None,
    idempotency_key: str = "",
    body_hash: str = "",
    retry_of: Job | None = None,
    scheduling: Scheduling = DEFAULT_SCHEDULING,
    quote: QuoteRequest | None = None,
    use_cache: bool = True,
    member_id: uuid.UUID | None = None,
) -> tuple[Job, bool]:
    """Charge and create a job, publishing its pipeline after commit. Returns (job, created).

    `member_id`: the person who submits it, recorded on the job and its charge (None: the
    workspace started it itself).

    The result cache (jobs.intake.result_cache): a request whose work the user already had done
    completes here, charged the cache price, with no pipeline; `use_cache=False` runs it anyway.

    `quote`: the quote the body names: the job is charged its price (jobs.intake.quotes).

    `scheduling`: its priority among the user's own jobs and its start and run deadlines; the
    start deadline is the earlier of the client's and the type's queue TTL (jobs.life.windows).

    The same Idempotency-Key with the same body within the window returns the original job and
    charges nothing; with another body it is refused (422).
    """
    job_submit_checks(user=user, spec=spec, request=request)
    submission = Submission(
        user=user, spec=spec, request=request, cost=spec.price.cost(request.quantities),
        cache_key=cache_key(spec=spec, request=request), webhook=webhook, idempotency_key=idempotency_key,
        body_hash=body_hash, retry_of=retry_of, scheduling=scheduling, quote=quote, member_id=member_id,
    )
    if use_cache:
        submission = replace(submission, cached=_cached(submission))
    with tracing.submission_span(spec.type):
        try:
            job, created = _submit(submission)
        except (IntegrityError, ChallengeUsed):
            # Two requests with the same key raced: the loser's whole transaction (job, charge) was
            # rolled back (on the key's unique row, or on the challenge the winner claimed first); it
            # answers with the winner's job.
            if not idempotency_key:
                raise
            replay = _idempotent_replay(user, idempotency_key, body_hash)
            if replay is None:
                raise
            job, created = replay, False
        tracing.note_job(job, replayed=not created)
        return job, created


def job_submit_precheck(*, user: User, spec: JobSpec, idempotency_key: str = "", body_hash: str = "",
                        member_id: uuid.UUID | None = None) -> Job | None:
    """The checks that cost a query or two, made before the request is resolved (for a render:
    its timeline read, cut and captioned, which costs far more): the plan, this server's backend,
    a replay of the same Idempotency-Key (returned: there is nothing else to do), and a balance
    (and the member's budget, in a team workspace) that covers the type's least price, then the
    account's review hold for a generative type. So an account that cannot pay, or is held, makes
    the server do nothing else (no screening). `job_submit` then checks the exact
    cost under the account's row lock.
    """
    require_runnable(user, spec)
    if idempotency_key:
        replay = _idempotent_replay(user, idempotency_key, body_hash)
        if replay is not None:
            return replay
    least = spec.price.minimum
    can_pay(user, member_id, least, specs=[spec])  # and 403 while the account is held for review
    return None


def job_voices_consented(job: Job) -> None:
    """403 `consent_required` when a voice the job speaks in, or puts in a face's mouth, is not usable now."""
    for name, use in job_voice_uses(job).items():
        voice_use_check(use, field=name)


def _cached(s: Submission) -> CachedResult | None:
    """The outputs of the user's earlier job of this work, copied for a new job (before the
    transaction that charges it: a copy is no work for the database, and holds no lock).

    A copy costs storage, so nothing is copied for a request that will be refused: everything
    that would refuse it is checked first (the replay of its Idempotency-Key, its quote, a
    balance and the member's budget that cover the cache price, then, as the copies are leased,
    the storage quota).
    The transaction that charges the job checks them again under its locks; a request that fails
    there all the same (a concurrent spend) leaves leased copies, which count against the quota
    until the sweep deletes them."""
    hit = cache_lookup(user_id=s.user.pk, key=s.cache_key)
    if hit is None:
        return None
    project = s.request.project or project_library_get(user=s.user)
    if project is None:
        return None
    if s.idempotency_key and _idempotent_replay(s.user, s.idempotency_key, s.body_hash) is not None:
        return None  # answered with the earlier job: nothing to copy
    price = s.cost
    if s.quote is not None:
        with transaction.atomic():  # (the quote's row is locked for this check only)
            price = quote_take(user=s.user, spec=s.spec, quote_id=s.quote.quote_id, body_hash=s.quote.body_hash,
                               quantities=s.request.quantities).credits_cost
    price = cache_price(price)
    can_pay(s.user, s.member_id, price)
    derived_from = s.request.input_params.get(s.spec.version_of) if s.spec.version_of else None
    return cache_prepare(hit=hit, job_id=uuid.uuid4(), project_id=project.pk, derived_from=derived_from)


def _idempotent_replay(user: User, key: str, body_hash: str) -> Job | None:
    record = IdempotencyRecord.objects.filter(user=user, key=key).select_related("job").first()
    if record is None or record.created_at < idempotency_window_start():
        return None
    if record.request_hash != body_hash:
        raise IdempotencyKeyReused(
            "This Idempotency-Key was used with a different request.", details={"job_id": str(record.job_id)}
        )
    return record.job


def _submit(s: Submission) -> tuple[Job, bool]:
    user, spec, request, idempotency_key, body_hash, quote = (
        s.user, s.spec, s.request, s.idempotency_key, s.body_hash, s.quote)
    cost, cached, scheduling = s.cost, s.cached, s.scheduling
    with transaction.atomic():
        if idempotency_key:
            replay = _idempotent_replay(user, idempotency_key, body_hash)
            if replay is not None:
                return replay, False
        taken = None
        if quote is not None:
            taken = quote_take(user=user, spec=spec, quote_id=quote.quote_id, body_hash=quote.body_hash,
                               quantities=request.quantities)
            cost = taken.credits_cost
        if request.media_ids:
            # Media deletion checks "in use" holding the same row locks: a file cannot be deleted
            # between this check of its jobs and the job's insert. In primary-key order, as every path
            # locks several (credits/lock_objects.py).
            list(MediaFile.objects.select_for_update().filter(pk__in=request.media_ids).order_by("pk")
                 .values_list("pk", flat=True))
        if likeness_consents_revoked_locked([request.input_params.get(LIKENESS_PARAM)]):
            # Revoked since it was checked: the revocation's scan of the waiting jobs has committed and
            # would never see this one. Read under a share lock, before the account's row is locked
            # (credits/lock_objects.py), so a revocation either waits for this commit (and cancels the
            # job) or committed first (and the job is refused here, nothing charged).
            raise ConsentRequired("The likeness consent of the face this job uses was revoked.",
                                  details={"field": spec.likeness_of[0] if spec.likeness_of else "",
                                           "reason": "revoked"})
        # A job naming no project nor media goes to the Library, made here on first use: rolled
        # back with the job if the charge fails.
        project = request.project or project_library_get_or_create(user=user)
        if cached is not None and cached.project_id != project.pk:
            cached = None  # its Library was deleted since the copies were made: run it
        if cached is not None:
            cost = cache_price(cost)
        job = Job(
            **({"id": cached.job_id, "cache_source_id": cached.source_id} if cached else {}),
            cache_key=s.cache_key,
            user=user,
            member_id=s.member_id,
            project=project,
            type=spec.type,
            credits_cost=cost,
            input_params=request.input_params,
            idempotency_key=idempotency_key,
            gpu_backend=settings.AUTEUR_GPU_BACKEND,
            retry_of=s.retry_of,
            priority=scheduling.priority,
            start_within_seconds=scheduling.start_within_seconds,
            start_deadline=start_deadline_of(job_type=spec.type, submitted_at=timezone.now(),
                                             start_within_seconds=scheduling.start_within_seconds),
            run_within_seconds=scheduling.run_within_seconds,
            traceparent=tracing.current_traceparent(),  # the job.submit span's: the job's trace
        )
        if spec.claims_challenge:
            # Read by this job alone: a refusal (used, expired, not this member's) rolls back the charge.
            challenge = consent_challenge_claim(user_id=user.pk, member_id=s.member_id, job_id=job.id,
                                                challenge_id=request.input_params[spec.claims_challenge],
                                                kind=spec.challenge_kind)
            job.input_params = {**job.input_params,
                                PHRASE_PARAM: {"words": list(challenge.words), "statement": challenge.statement}}
        _INSERT_JOB.run(job)
        if idempotency_key:
            # Inserted before the charge: a racing duplicate blocks here on the unique key and
            # then fails, rather than charging first. Only an expired record makes way: a live one
            # committed since this request looked for a replay is the race's winner, to answer with.
            IdempotencyRecord.objects.filter(user=user, key=idempotency_key,
                                             created_at__lt=idempotency_window_start()).delete()
            IdempotencyRecord.objects.create(user=user, key=idempotency_key, request_hash=body_hash, job=job)
        if taken is not None:
            Quote.objects.filter(pk=taken.pk).update(job=job)
        description = f"{spec.type} job" if taken is None else f"{spec.type} job at quote {taken.pk}"
        if cached is not None:
            description += f", from the result cache of job {cached.source_id}"
        credit_deduct_for_job(user=user, job_id=job.id, amount=cost, description=description, new_job=True,
                              member_id=s.member_id, job_type=spec.type.value)
        if s.webhook is not None:
            job_webhook_create(job_id=job.id, owner=user, url=s.webhook.url, event_types=s.webhook.events)
        hit: dict[str, Any] = {"cache": {"hit": True, "source_job_id": str(cached.source_id)}} if cached else {}
        job_event_record(job.id, JobEventType.SUBMITTED, credits_cost=cost, **hit,
                         state=JobState(user.pk, job.status, job.progress))
        if cached is not None:
            cache_complete(job=job, spec=spec, cached=cached)
        else:
            transaction.on_commit(lambda: publish.start(job.id, spec.type, job.traceparent))
    served = " (served from the result cache)" if cached else ""
    logger.info("job submitted: %s for %d credits%s", spec.type, cost, served, extra={"job_id": str(job.id)})
    return job, True


def job_retry(*, job: Job, member_id: uuid.UUID | None = None) -> Job:
    """A failed, retryable job (or one aborted before it started) submitted again with the same
    input, priority and deadlines (charged as new), by `member_id` (who asks: Job.member_id)."""
    if job.status not in (JobStatus.FAILED, JobStatus.ABORTED) or not job.retryable:
        raise JobNotRetryable("Only a failed job whose error is retryable, or an aborted one, can be retried.",
                              details={"status": job.status, "retryable": job.retryable})
    if job.project is None:
        raise JobNotRetryable("The job's project was deleted.")
    if job_spec(job.type).claims_challenge:
        raise JobNotRetryable("A verification reads a fresh challenge: ask for a new one and submit again.")
    # An account held for review retries no generative job. Then screened again: the policy, or its
    # screener, may have changed since the job was accepted; and its voices' consents checked again
    # (a grace may have ended).
    standing_check(user=job.user, specs=[job_spec(job.type)], member_id=member_id)
    request_screen(spec=job_spec(job.type), params=job.input_params, media=True, account_id=job.user_id)
    job_voices_consented(job)
    params = job_likeness_params(job)  # and the face it uses covered by a consent usable now
    media_ids = [uuid.UUID(str(v)) for k, v in job.input_params.items() if k.endswith("media_id") and v]
    request = JobRequest(
        project=job.project,
        input_params=params,
        quantities=job.input_params.get("_quantities", {}),
        media_ids=media_ids,
    )
    with transaction.atomic():
        # One retry per failed job: a double click gets the same new job, charged once.
        Job.objects.select_for_update().filter(pk=job.pk).first()
        existing = Job.objects.filter(retry_of=job).first()
        if existing is not None:
            return existing
        # The retry reports to the same webhook as the job it retries.
        own = job_webhook_of(job_id=job.pk)
        webhook = None if own is None else WebhookRequest(url=own[0], events=tuple(own[1]))
        scheduling = Scheduling(priority=job.priority, start_within_seconds=job.start_within_seconds,
                                run_within_seconds=job.run_within_seconds)
        new, _ = job_submit(user=job.user, spec=job_spec(job.type), request=request, webhook=webhook, retry_of=job,
                            scheduling=scheduling, member_id=member_id)
    return new

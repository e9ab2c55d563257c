"""Batches: many jobs of one or several types in one request (POST /jobs/batch), priced as the sum
of their items, charged together or not at all.

A batch is checked as its items would be one by one, in a submission's order: the owner checks of
every item first (404 for an object that is not the caller's, whatever else is wrong), then the
plan and this server's backend for each type, a replay of its Idempotency-Key, then a balance and
caps that cover the sum of its items' least prices (402, before any item is resolved: a batch of
renders that cannot be paid for reads none of their timelines), the account's review hold when any
item is of a generative type (403, jobs.life.standing), then each item resolved (its media
ready, its timeline cut) and priced. Identical items of a timeline's type are resolved once: one
read and one cut of the timeline for all of them. An item refused is named (`details.item`, its
index), and nothing of the batch is made.

Its price is the sum of its items' prices, each as a submission of it alone would be charged now:
its list price, or the cache price when the result cache serves it (the quote of a batch says the
same sum). The charge is one ledger statement for all of them (credits.services.ledger
`credit_deduct_for_jobs`): a balance, a spend cap or a per-job limit that does not cover the whole
batch refuses all of it (402), naming the shortfall and the first item that does not fit.

Its items are inserted `queued`, behind the user's other work (priority `low` unless the batch asks
for another): nothing is published for them but the start of the first few, by the user's slots
(jobs.life.slots), which then start each next item as one ends. So a batch of thousands puts no
more messages on the broker than the user's concurrency, and takes turns under fair share like
any other work. An item's start deadline is the client's `start_within_seconds`, else
AUTEUR_BATCH_QUEUE_TTL_SECONDS (not its type's queue TTL: a batch's items wait by design).
A batch of more than 50 items also asks for the jobs table's statistics to be refreshed
(auteur/core/postgres/statistics.py): until they are, the planner takes its user for one of few
jobs, and reads meant to take the first of their waiting jobs by an index could sort them all.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Exists, OuterRef, QuerySet

from auteur.core.errors import ApplicationError
from auteur.core.postgres import statistics
from auteur.core.prepared import insert_many
from auteur.core.publishing import send
from auteur.users.models import User
from auteur.users.workspace_context import balances_shown
from credits.errors import InsufficientCredits, SpendCapReached
from credits.selectors import credit_balance_state, may_be_capped, spend_cap_refusal
from credits.services.ledger import JobCharge, credit_deduct_for_jobs
from jobs import task_names
from jobs.errors import IdempotencyKeyReused
from jobs.events.batches import batch_item_ended
from jobs.events.record import job_events_record_many
from jobs.inputs import Scheduling
from jobs.intake.admission import languages_check, require_runnable
from jobs.intake.result_cache import CachedResult, cache_complete, cache_key, cache_lookup, cache_prepare, cache_price
from jobs.intake.screening import requests_screen, resolved_requests_screen
from jobs.intake.submission import job_voices_consented
from jobs.life.bulk import JobFilter
from jobs.life.slots import start_waiting
from jobs.life.standing import standing_check
from jobs.life.windows import start_deadline_of
from jobs.models import Batch, Job, JobEventType, JobPriority, JobStatus, idempotency_window_start
from jobs.payloads import LIKENESS_PARAM
from jobs.selectors.requests import (
    Finder,
    JobRequest,
    RequestObjects,
    job_likeness_params,
    job_request_objects,
    job_request_resolve,
)
from jobs.specs import JOB_SPECS, JobSpec, job_spec
from media.errors import ConsentRequired
from media.models import MediaFile
from media.services.likeness import likeness_consents_revoked_locked
from projects.selectors import project_library_get
from projects.services import project_library_get_or_create
from webhooks.models import JobWebhook

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BatchItem:
    """One item as the API validated it: its type and its input (`spec.input`'s validated_data,
    less the submission options, which are the batch's)."""

    spec: JobSpec
    fields: dict[str, Any]


@dataclass(frozen=True)
class BatchOptions:
    scheduling: Scheduling
    use_cache: bool = True


@dataclass
class Priced:
    """An item resolved and priced: what a submission of it alone would be charged now."""

    index: int
    spec: JobSpec
    request: JobRequest
    list_price: int
    cache_key: str
    cached_from: uuid.UUID | None = None  # the earlier job the result cache would serve it from
    cached: CachedResult | None = None  # its copies, made just before the charge
    retry_of: uuid.UUID | None = None  # the job it retries (a bulk retry's item)

    @property
    def price(self) -> int:
        return self.list_price if self.cached_from is None else cache_price(self.list_price)


def _item_error(index: int, error: ApplicationError) -> ApplicationError:
    """The item's refusal, naming the item."""
    error.message = f"Item {index}: {error.message}"
    error.details = {**error.details, "item": index}
    return error


def _each(items: Iterable[tuple[int, Any]], check: Any) -> list[Any]:
    out = []
    for index, item in items:
        try:
            out.append(check(item))
        except ApplicationError as error:
            raise _item_error(index, error) from None
    return out


def batch_resolve(*, user: User, items: list[BatchItem], use_cache: bool = True,
                  member_id: uuid.UUID | None = None) -> list[Priced]:
    """Check and price every item, in a submission's order (the module's notes): the owner checks
    of all, then each type's plan and backend, then a balance and caps that cover the items' least
    prices, then each item resolved and priced."""
    finder = Finder(user, memo=True)
    objects = _each(enumerate(items), lambda item: job_request_objects(user=user, spec=item.spec, data=item.fields,
                                                                       finder=finder))
    runnable: set[str] = set()
    for index, item in enumerate(items):
        if item.spec.type not in runnable:
            _each([(index, item)], lambda it: require_runnable(user, it.spec))
            runnable.add(item.spec.type)
    batch_can_pay(user=user, member_id=member_id, priced=[_Least(index, item.spec.price.minimum)
                                                          for index, item in enumerate(items)], least=True)
    # A held account's batch with any generative item is refused whole, before any screening.
    standing_check(user=user, specs=[item.spec for item in items], member_id=member_id)
    # Every item's texts at once: the refusal names each flagged field of each item.
    requests_screen([(f"items[{index}].", item.spec, item.fields) for index, item in enumerate(items)],
                    account_id=user.pk)
    resolved: dict[str, JobRequest] = {}
    requests = _each(enumerate(zip(items, objects, strict=True)),
                     lambda pair: _resolve(user, pair[0].spec, pair[1], resolved))
    # What resolving added for the models to read (a video's transcript, a render's burned captions)
    # and the pictures of the items' screened media, every item's at once.
    resolved_requests_screen([(f"items[{index}].", item.spec, request.input_params)
                              for index, (item, request) in enumerate(zip(items, requests, strict=True))],
                             account_id=user.pk)
    priced = []
    for index, (item, request) in enumerate(zip(items, requests, strict=True)):
        # Its languages (the plan and backend were checked once per type above).
        _each([(index, item)], lambda it, request=request: languages_check(it.spec, request.input_params))
        priced.append(Priced(index=index, spec=item.spec, request=request,
                             list_price=item.spec.price.cost(request.quantities),
                             cache_key=cache_key(spec=item.spec, request=request)))
    if use_cache:
        _find_cached(user, priced)
    return priced


def _resolve(user: User, spec: JobSpec, objects: RequestObjects, resolved: dict[str, JobRequest]) -> JobRequest:
    """An item's request. A timeline's item identical to an earlier one (the same type, project and
    options) shares its request: its timeline is read, cut and captioned once per batch. (Its
    input_params are shared too, read-only: the jobs' rows are written from them.)"""
    if not spec.timeline or objects.project is None:
        return job_request_resolve(user=user, spec=spec, objects=objects)
    key = json.dumps([spec.type.value, str(objects.project.pk), objects.params], sort_keys=True, default=str)
    if key not in resolved:
        resolved[key] = job_request_resolve(user=user, spec=spec, objects=objects)
    return resolved[key]


@dataclass(frozen=True)
class _Least:
    """An item at its type's least price, before it is resolved."""

    index: int
    price: int


def _find_cached(user: User, priced: list[Priced]) -> None:
    """Which items the result cache serves: one read for the keys that have a completed job, then
    a look at each of those (few) for one whose outputs remain."""
    keys = {p.cache_key for p in priced if p.cache_key}
    if not keys:
        return
    known = set(Job.objects.filter(user_id=user.pk, status=JobStatus.COMPLETED, cache_key__in=keys)
                .values_list("cache_key", flat=True).distinct())
    hits = {key: cache_lookup(user_id=user.pk, key=key) for key in known}
    for p in priced:
        hit = hits.get(p.cache_key)
        if hit is not None:
            p.cached_from = hit.source.pk


# ----------------------------------------------------------------------------- paying


class _Item(Protocol):
    """An item as a refusal names it: its index and its price (as priced, or its least)."""

    @property
    def index(self) -> int: ...

    @property
    def price(self) -> int: ...


def _first_beyond(priced: Sequence[_Item], available: int) -> int:
    """The index of the first item whose running sum passes `available`."""
    running = 0
    for p in priced:
        running += p.price
        if running > available:
            return p.index
    return priced[-1].index


def _shortfall(error: ApplicationError, priced: Sequence[_Item], *, least: bool = False) -> ApplicationError:
    """A refusal of the whole batch, naming its shortfall and the first item that does not fit
    (both null for a caller who may not see the balance they would reveal). `least`: the prices
    are the items' least, the batch unresolved: it costs at least that much."""
    total = sum(p.price for p in priced)
    at_least = "at least " if least else ""
    details = {**error.details, "least": least}
    if isinstance(error, SpendCapReached) and details.get("cap") == "key_per_job":
        first = next((p.index for p in priced if p.price > details["job_limit"]), None)
        error.details = {**details, "cost": total, "item": first, "shortfall": None}
        error.message = (f"Item {first} costs {at_least}more than this API key's limit of {details['job_limit']} "
                         "per job.")
        return error
    if isinstance(error, SpendCapReached):
        available = details["monthly_limit"] - details["spent"]
    elif isinstance(error, InsufficientCredits) and balances_shown():
        available = error.balance
    else:
        error.details = {**details, "cost": total, "item": None, "shortfall": None}
        return error
    first = _first_beyond(priced, available)
    error.details = {**details, "cost": total, "item": first, "shortfall": total - available}
    error.message += (f" The batch is {at_least}{total - available} credits short; item {first} is the first that "
                      "does not fit.")
    return error


def batch_can_pay(*, user: User, member_id: uuid.UUID | None, priced: Sequence[_Item], least: bool = False) -> None:
    """402 unless the balance and the caps cover the batch now (the charge checks them again,
    exactly, under the account's lock). `least`: the items at their least prices, checked before
    any is resolved."""
    total, largest = sum(p.price for p in priced), max(p.price for p in priced)
    balance, capped = credit_balance_state(user=user)
    refused: ApplicationError | None = None
    if may_be_capped(user=user, member_id=member_id, capped=capped):
        refused = spend_cap_refusal(user=user, member_id=member_id, cost=total, largest=largest)
    if refused is None and balance < total:
        refused = InsufficientCredits(balance=balance, cost=total)
    if refused is not None:
        raise _shortfall(refused, priced, least=least)


def batch_replay(*, user: User, idempotency_key: str, body_hash: str) -> Batch | None:
    """The batch submitted with this key within the window: the same body is answered with it, another
    is refused (422)."""
    batch = Batch.objects.filter(user=user, idempotency_key=idempotency_key).first()
    if batch is None or batch.created_at < idempotency_window_start():
        return None
    if batch.request_hash != body_hash:
        raise IdempotencyKeyReused("This Idempotency-Key was used with a different request.",
                                   details={"batch_id": str(batch.pk)})
    return batch


# ----------------------------------------------------------------------------- submitting


def batch_submit(*, user: User, priced: list[Priced], options: BatchOptions, idempotency_key: str = "",
                 body_hash: str = "", member_id: uuid.UUID | None = None) -> tuple[Batch, bool]:
    """Charge and create the batch's jobs in one transaction, all or none. Returns (batch, created):
    the same Idempotency-Key and body within the window answer the first batch, charging nothing."""
    batch_can_pay(user=user, member_id=member_id, priced=priced)
    _prepare_cached(user, priced)
    try:
        return _submit(user, priced, options, idempotency_key, body_hash, member_id), True
    except _Replayed as replayed:
        return replayed.batch, False
    except IntegrityError:
        # The same key raced: the loser's transaction (batch, jobs, charge) was rolled back.
        replay = batch_replay(user=user, idempotency_key=idempotency_key, body_hash=body_hash) if idempotency_key \
            else None
        if replay is None:
            raise
        return replay, False


def _prepare_cached(user: User, priced: list[Priced]) -> None:
    """Copy the outputs of each item the cache serves (before the transaction, as a submission does)."""
    library: Any = None
    for p in priced:
        if p.cached_from is None:
            continue
        hit = cache_lookup(user_id=user.pk, key=p.cache_key)
        project = p.request.project or library or (library := project_library_get(user=user))
        if hit is None or project is None:
            p.cached_from = None  # gone meanwhile, or no Library yet: it runs (at its list price, checked below)
            continue
        derived_from = p.request.input_params.get(p.spec.version_of) if p.spec.version_of else None
        p.cached = cache_prepare(hit=hit, job_id=uuid.uuid4(), project_id=project.pk, derived_from=derived_from)
        if p.cached is None:
            p.cached_from = None


class _Replayed(Exception):
    """The key's batch was found inside the transaction: it is the answer (and the transaction ends)."""

    def __init__(self, batch: Batch) -> None:
        super().__init__(str(batch.pk))
        self.batch = batch


def _submit(user: User, priced: list[Priced], options: BatchOptions, idempotency_key: str, body_hash: str,
            member_id: uuid.UUID | None) -> Batch:
    with transaction.atomic():
        if idempotency_key:
            replay = batch_replay(user=user, idempotency_key=idempotency_key, body_hash=body_hash)
            if replay is not None:
                raise _Replayed(replay)
            Batch.objects.filter(user=user, idempotency_key=idempotency_key).update(idempotency_key="")  # expired
        media_ids = sorted({m for p in priced for m in p.request.media_ids})
        if media_ids:
            # Media deletion checks "in use" under the same row locks (as a submission does).
            list(MediaFile.objects.select_for_update().filter(pk__in=media_ids).order_by("pk").values_list("pk"))
        # The likeness consents its items were accepted under, read again under a share lock before the
        # account's row is locked, as a submission of one does (jobs.intake.submission).
        if likeness_consents_revoked_locked(p.request.input_params.get(LIKENESS_PARAM) for p in priced):
            raise ConsentRequired("The likeness consent of a face this batch uses was revoked.",
                                  details={"reason": "revoked"})
        library = (project_library_get_or_create(user=user) if any(p.request.project is None for p in priced)
                   else None)
        for p in priced:
            project = p.request.project or library
            if p.cached is not None and project is not None and p.cached.project_id != project.pk:
                p.cached, p.cached_from = None, None  # its Library was deleted since the copies were made: it runs
        batch = Batch.objects.create(
            user=user, member_id=member_id, item_count=len(priced), credits_cost=sum(p.price for p in priced),
            priority=options.scheduling.priority, idempotency_key=idempotency_key, request_hash=body_hash,
        )
        job_ids = [p.cached.job_id if p.cached else uuid.uuid4() for p in priced]
        _insert_jobs(user, priced, job_ids, batch, library, options.scheduling, member_id)
        job_events_record_many([
            (job_id, JobEventType.SUBMITTED, {
                "credits_cost": p.price, "batch_id": str(batch.pk),
                **({"cache": {"hit": True, "source_job_id": str(p.cached.source_id)}} if p.cached else {}),
            }) for job_id, p in zip(job_ids, priced, strict=True)
        ])
        hits = {p.cached.job_id: p for p in priced if p.cached is not None}
        for job in Job.objects.filter(pk__in=hits):
            cached = hits[job.pk].cached
            assert cached is not None
            cache_complete(job=job, spec=hits[job.pk].spec, cached=cached)
        # The charge last: it locks the account, which every charge and refund of the workspace waits for.
        try:
            credit_deduct_for_jobs(user=user, member_id=member_id, charges=[
                JobCharge(job_id=job_id, amount=p.price, job_type=p.spec.type.value,
                          description=f"{p.spec.type} job in batch {batch.pk}" + (
                              f", from the result cache of job {p.cached.source_id}" if p.cached else ""))
                for job_id, p in zip(job_ids, priced, strict=True)
            ])
        except (InsufficientCredits, SpendCapReached) as refused:
            raise _shortfall(refused, priced) from None
        transaction.on_commit(functools.partial(start_waiting, user.pk))
        if len(priced) > statistics.ANALYZE_THRESHOLD_ROWS:  # the task weighs them against the table's rows
            transaction.on_commit(functools.partial(send, task_names.ANALYZE_AFTER_INSERT, (len(priced),),
                                                    what="the jobs table's statistics", resend=False))
        if hits:  # items completed already: the batch may even have ended
            batch_item_ended(batch.pk)
    logger.info("batch submitted: %d jobs for %d credits", batch.item_count, batch.credits_cost,
                extra={"batch_id": str(batch.pk)})
    return batch


def _insert_jobs(user: User, priced: list[Priced], job_ids: list[uuid.UUID], batch: Batch, library: Any,
                 scheduling: Scheduling, member_id: uuid.UUID | None) -> None:
    """The batch's jobs, in one statement. An item the cache serves is inserted `pending` and
    completes in this transaction; the others wait `queued` (the module's notes)."""
    now = batch.created_at
    deadlines: dict[str, datetime | None] = {}
    for p in priced:
        if p.spec.type not in deadlines:
            deadlines[p.spec.type] = start_deadline_of(job_type=p.spec.type, submitted_at=now, batch=True,
                                                       start_within_seconds=scheduling.start_within_seconds)
    insert_many(Job, len(priced), varying={
        "id": job_ids,
        "cache_source_id": [p.cached.source_id if p.cached else None for p in priced],
        "cache_key": [p.cache_key for p in priced],
        "project_id": [(p.request.project or library).pk for p in priced],
        "type": [p.spec.type.value for p in priced],
        "credits_cost": [p.price for p in priced],
        "input_params": [p.request.input_params for p in priced],
        "batch_index": [p.index for p in priced],
        "retry_of_id": [p.retry_of for p in priced],
        "status": [JobStatus.PENDING if p.cached else JobStatus.QUEUED for p in priced],
        "queued_at": [None if p.cached else now for p in priced],
        "waiting_for": ["" if p.cached else "slot" for p in priced],
        "start_deadline": [deadlines[p.spec.type] for p in priced],
        # A microsecond apart, in the items' order: the order a user's waiting jobs start in.
        "created_at": [now + timedelta(microseconds=p.index) for p in priced],
    }, same={
        "user_id": user.pk, "member_id": member_id, "gpu_backend": settings.AUTEUR_GPU_BACKEND, "batch_id": batch.pk,
        "priority": scheduling.priority, "start_within_seconds": scheduling.start_within_seconds,
        "run_within_seconds": scheduling.run_within_seconds, "updated_at": now,
    })


# ----------------------------------------------------------------------------- retrying by filter


# Types whose job claims a challenge: never submitted again (a retry would read a used challenge).
CHALLENGE_TYPES = tuple(spec.type.value for spec in JOB_SPECS.values() if spec.claims_challenge)


def _retryable(user: User, where: JobFilter) -> QuerySet[Job]:
    """The user's ended jobs `where` takes that a retry would run again: failed with a retryable
    error or aborted before they started, of a project that still exists, not retried yet (one
    retry per job), oldest first."""
    retried = Job.objects.filter(retry_of_id=OuterRef("pk"))
    return (where.of(user, (JobStatus.FAILED, JobStatus.ABORTED)).filter(retryable=True, project__isnull=False)
            .exclude(Exists(retried)).exclude(type__in=CHALLENGE_TYPES).order_by("created_at", "pk"))


def jobs_retry_bulk(*, user: User, where: JobFilter, member_id: uuid.UUID | None = None,
                    dry_run: bool = False) -> dict[str, Any]:
    """Submit again, as one new batch charged at today's prices all or none (402 as a batch's), the
    oldest AUTEUR_BATCH_MAX_ITEMS jobs `where` takes that a retry would run (`_retryable`), each with
    the same input and pointing at the job it retries; their own webhooks go with them. What was
    done (with `dry_run`, what would be): the jobs retried, the new batch, its cost, and how many
    more remain for another call."""
    most = settings.AUTEUR_BATCH_MAX_ITEMS
    with transaction.atomic():
        # Locked (in one order) until the retries are committed: a second bulk retry, or a job's own
        # retry, waits and then finds them retried.
        jobs = list(_retryable(user, where).select_for_update(of=("self",))[:most])
        # How many more another call would take: one COUNT over the account's ended jobs that the filter
        # takes (no rows read, none locked), made only when this call is full.
        remaining = _retryable(user, where).count() - len(jobs) if len(jobs) == most else 0
        priced = [_priced_again(index, job) for index, job in enumerate(jobs)]
        for spec in {p.spec.type: p.spec for p in priced}.values():
            require_runnable(user, spec)  # the plan and this server's backend, as a retry of one checks
        standing_check(user=user, specs=[p.spec for p in priced], member_id=member_id)  # and the review holds
        # Screened again, as a retry of one is: the refusal names each job's fields by its id.
        requests_screen([(f"jobs[{job.pk}].", p.spec, job.input_params) for job, p in zip(jobs, priced, strict=True)],
                        media=True, account_id=user.pk)
        for index, job in enumerate(jobs):
            job_voices_consented(job)  # a voice whose grace ended since is refused, as a retry of one is
            # The face it uses covered by a consent usable now, recorded for a revocation to find.
            priced[index] = dataclasses.replace(priced[index], request=dataclasses.replace(
                priced[index].request, input_params=job_likeness_params(job)))
        cost = sum(p.price for p in priced)
        if dry_run or not priced:
            return {"matched": len(priced), "retried": 0 if dry_run else len(priced), "credits_cost": cost,
                    "batch_id": None, "remaining": remaining}
        batch, _ = batch_submit(user=user, priced=priced, member_id=member_id,
                                options=BatchOptions(scheduling=Scheduling(priority=JobPriority.LOW)))
        new = dict(Job.objects.filter(batch=batch).values_list("retry_of_id", "pk"))
        hooks = JobWebhook.objects.filter(job_id__in=new, enabled=True)
        JobWebhook.objects.bulk_create([JobWebhook(job_id=new[h.job_id], owner_id=h.owner_id, url=h.url,
                                                   event_types=h.event_types) for h in hooks])
    return {"matched": len(priced), "retried": len(priced), "credits_cost": cost, "batch_id": batch.pk,
            "remaining": remaining}


def _priced_again(index: int, job: Job) -> Priced:
    """A retry of `job` as a batch's item: its input and quantities as stored, priced now, never from
    the cache (a retry runs the work again)."""
    spec = job_spec(job.type)
    quantities = job.input_params.get("_quantities", {})
    media_ids = [uuid.UUID(str(v)) for k, v in job.input_params.items() if k.endswith("media_id") and v]
    request = JobRequest(project=job.project, input_params=job.input_params, quantities=quantities,
                         media_ids=media_ids)
    return Priced(index=index, spec=spec, request=request, list_price=spec.price.cost(quantities), cache_key="",
                  retry_of=job.pk)

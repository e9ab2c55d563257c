"""Reads of jobs, always scoped to their owner, and the catalogue of job types.

Another user's job is indistinguishable from none: 404 `job_not_found`, never 403, and a
malformed id is the same 404 (never a 500 from a failed UUID cast).
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from django.conf import settings
from django.contrib.postgres.expressions import ArraySubquery
from django.db.models import (
    BooleanField,
    Count,
    ExpressionWrapper,
    F,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Sum,
    Value,
)
from django.db.models.functions import Coalesce, JSONObject

from auteur.core.prepared import PreparedRead
from auteur.core.tracing import trace_id_of
from auteur.users.models import User
from credits.models import CreditAccount, CreditTransaction, Plan, TransactionType
from jobs import gpu_client
from jobs.errors import FeatureUnavailable, JobNotFound
from jobs.models import (
    ACTIVE_STATUSES,
    IdempotencyRecord,
    Job,
    JobEvent,
    JobPriority,
    JobStatus,
    idempotency_window_start,
)
from jobs.selectors.queue import job_queue_estimate
from jobs.specs import JOB_SPECS, JobSpec, OutputKind, job_spec
from media.models import MediaFile


def _parse_uuid(value: uuid.UUID | str) -> uuid.UUID | None:
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(str(value))
    except (ValueError, TypeError, AttributeError):
        return None


def job_get(*, user: User, job_id: uuid.UUID | str) -> Job:
    """The user's job, or 404."""
    pk = _parse_uuid(job_id)
    job = None if pk is None else Job.objects.filter(pk=pk, user=user).select_related("project").first()
    if job is None:
        raise JobNotFound("No such job.")
    return job


# What GET /jobs/{id} shows, in its order (jobs.serializers.JobSerializer): not input_params, which holds
# a render's whole timeline and is never sent back.
JOB_DETAIL_FIELDS = (
    "id", "type", "status", "project_id", "credits_cost", "credits_refunded", "credits_refund", "progress",
    "error_code", "error_message", "retryable", "attempts", "retry_of_id", "created_at", "queued_at", "started_at",
    "completed_at", "processing_time_ms", "gpu_seconds", "gpu", "priority", "start_deadline", "run_within_seconds",
    "run_deadline", "waiting_for", "trace_id", "output_data",
)
# The columns they are read from (`gpu` is its call's class: the type's own, or one of its ladder's;
# `trace_id` is its traceparent's).
_DETAIL_COLUMNS = (*(f for f in JOB_DETAIL_FIELDS if f not in ("gpu", "trace_id")), "gpu_class", "traceparent")


def job_cache(*, cache_source_id: uuid.UUID | None) -> dict[str, Any]:
    """A job's `cache`: whether the result cache served it, and from which of the user's jobs."""
    return {"hit": cache_source_id is not None, "source_job_id": cache_source_id}


# The transcript proper in a transcription's output_data (not how it was stored, nor its follow-ups).
_TRANSCRIPT_KEYS = ("language", "duration_ms", "text", "segments", "model", "diarization", "alignment")


def job_output_data(*, job_type: str, output_data: dict[str, Any]) -> dict[str, Any]:
    """A job's `output_data` as clients see it (jobs.output_schema). A transcript is shown under
    `transcript` and, as it always was, at the top level too (`language`, `text`, `segments`, ...)."""
    if not output_data or job_spec(job_type).output is not OutputKind.TRANSCRIPT:
        return output_data
    return {**output_data, "transcript": {k: output_data[k] for k in _TRANSCRIPT_KEYS if k in output_data}}


# A job's ledger entries, oldest first, read in the job's own statement (one JSON object each).
LEDGER_ENTRIES = ArraySubquery(
    CreditTransaction.objects.filter(job_id=OuterRef("pk")).order_by("created_at", "id").values(
        entry=JSONObject(id="id", type="type", amount="amount", balance_after="balance_after",
                         description="description", created_at="created_at"),
    )
)


def job_ledger_entries(*, job_id: uuid.UUID) -> list[dict[str, Any]]:
    """The job's ledger entries, oldest first, as LEDGER_ENTRIES reads them."""
    entries = CreditTransaction.objects.filter(job_id=job_id).order_by("created_at", "id").values(
        "id", "type", "amount", "balance_after", "description", "created_at")
    return [dict(entry) for entry in entries]


def job_charge(*, status: str, error_code: str, entries: list[dict[str, Any]], balances: bool) -> dict[str, Any]:
    """What the job cost, from its ledger entries alone: what was charged (its usage entry), what
    was given back (its refund) and why, and the net (every entry of the job, staff corrections
    included). `balances`: whether its reader may see the workspace's balance, which each entry's
    `balance_after` is (else null)."""
    entries = [_entry(e, balances) for e in entries]
    refunded = sum(e["amount"] for e in entries if e["type"] == "refund")
    return {
        "charged": -sum(e["amount"] for e in entries if e["type"] == "usage"),
        "refunded": refunded,
        "refund_reason": (f"{status}:{error_code}" if error_code else status) if refunded else None,
        "net": -sum(e["amount"] for e in entries),
        "entries": entries,
    }


def _entry(entry: dict[str, Any], balances: bool) -> dict[str, Any]:
    """An entry as the API shows it; one read as JSON has its id and time as text."""
    created_at = entry["created_at"]
    if isinstance(created_at, str):
        created_at = datetime.fromisoformat(created_at)
    return {"id": uuid.UUID(str(entry["id"])), "type": entry["type"], "amount": entry["amount"],
            "balance_after": entry["balance_after"] if balances else None,
            "description": entry["description"], "created_at": created_at}


def job_detail_get(*, user_id: uuid.UUID, job_id: uuid.UUID | str, balances: bool) -> dict[str, Any]:
    """The fields of the job GET /jobs/{id} shows, with its output media and, while it waits, its
    place in line (jobs.selectors.queue), or 404. `balances`: whether its reader may see the
    workspace's balance (job_charge).

    One indexed SELECT of just those columns. It matches only while the owner's account is
    active, so a found job also proves what authentication would otherwise read the account for
    (auteur.users.authentication.TokenSubject; in a team workspace, the member's seat was read and
    proves that of the member); not found says nothing about the account.
    """
    pk = _parse_uuid(job_id)
    if pk is None:
        raise JobNotFound("No such job.")
    row = _DETAIL.first(user_id=user_id, pk=pk)
    if row is None:
        raise JobNotFound("No such job.")
    row["output_data"] = job_output_data(job_type=row["type"], output_data=row["output_data"])
    row["gpu"] = row.pop("gpu_class") or job_spec(row["type"]).engine.gpu.value
    row["trace_id"] = trace_id_of(row.pop("traceparent")) or None
    row["output_media"] = [
        {"id": m.pk, "name": m.name, "type": m.type}
        for m in job_output_media(user_id=user_id, output_data=row["output_data"])
    ]
    estimate = job_queue_estimate(
        user_id=user_id, job_type=row["type"], status=row["status"], created_at=row["created_at"],
        priority=row["priority"],
    )
    row["priority"] = JobPriority(row["priority"]).label
    row.update(asdict(estimate))
    charge = job_charge(status=row["status"], error_code=row["error_code"], entries=row.pop("ledger") or [],
                        balances=balances)
    cache = job_cache(cache_source_id=row.pop("cache_source_id"))
    # In JobSerializer's order: the charge and the cache come after the job's own fields, before its results.
    return {**{k: row.pop(k) for k in JOB_DETAIL_FIELDS if k != "output_data"}, "charge": charge, "cache": cache,
            **row}


def job_detail_without_balances(detail: dict[str, Any]) -> dict[str, Any]:
    """A job_detail_get answer read with `balances`, as one who may not see them reads it."""
    charge = detail["charge"]
    entries = [{**entry, "balance_after": None} for entry in charge["entries"]]
    return {**detail, "charge": {**charge, "entries": entries}}


def job_traceparent(*, job_id: uuid.UUID | str) -> str:
    """The job's traceparent (Job.traceparent), "" for none or no such job."""
    return Job.objects.filter(pk=job_id).values_list("traceparent", flat=True).first() or ""


# Clients poll GET /jobs/{id}: its read is built once per process (auteur.core.prepared).
_DETAIL = PreparedRead(
    lambda user_id, pk: Job.objects.filter(user_id=user_id, user__is_active=True, pk=pk).values(
        *_DETAIL_COLUMNS, "cache_source_id", ledger=LEDGER_ENTRIES),
    user_id=uuid.UUID(int=1), pk=uuid.UUID(int=2),
)


def job_list(
    *,
    user: User,
    status: str | None = None,
    type: str | None = None,
    project_id: uuid.UUID | None = None,
    idempotency_key: str | None = None,
) -> QuerySet[Job]:
    """The user's jobs, newest first; with `idempotency_key`, the one job that key made while it would
    replay it (within the window), so a client that died after sending finds it without resending."""
    qs = Job.objects.filter(user=user)
    if idempotency_key is not None:
        records = IdempotencyRecord.objects.filter(user=user, key=idempotency_key,
                                                   created_at__gte=idempotency_window_start())
        qs = qs.filter(pk__in=records.values("job_id"))
    if status:
        qs = qs.filter(status=status)
    if type:
        qs = qs.filter(type=type)
    if project_id:
        qs = qs.filter(project_id=project_id)
    return qs.annotate(ledger_entries=LEDGER_ENTRIES).order_by("-created_at", "-id")


def job_event_list(*, job: Job) -> QuerySet[JobEvent]:
    """What happened to the job, oldest first (ids are assigned in commit-independent order)."""
    return JobEvent.objects.filter(job=job).order_by("id")


def job_output_media(*, user_id: uuid.UUID, output_data: dict[str, Any] | None) -> list[MediaFile]:
    """The media files a completed job (its output_data) produced that still exist, in the order
    it listed them."""
    ids = [i for i in (_parse_uuid(v) for v in (output_data or {}).get("output_media_ids") or []) if i]
    if not ids:
        return []
    found = {m.pk: m for m in MediaFile.objects.filter(pk__in=ids, user_id=user_id).only("id", "name", "type")}
    return [found[i] for i in ids if i in found]


@dataclass(frozen=True)
class JobTypeInfo:
    type: str
    description: str
    price_rule: str
    price_credits: int
    price_unit: str
    gpu: str
    gpu_ladder: list[str]
    model: str
    time_limit_s: int
    plan: str | None
    pro_only: bool
    available: bool
    reason: str | None
    languages: list[dict[str, str]] | None
    cached: str  # when the result cache serves it: Determinism's value
    engine_version: int
    limits: list[dict[str, Any]]  # its engine's limits on its media inputs, checked at submission


def job_type_list() -> list[JobTypeInfo]:
    """Every job type with its price, model, GPU class and whether this server's backend can run it
    (and if not, the sentence a client is told: the backend's own reason names paths and commands
    for operators, who find it in `manage.py doctor` and the log of a refused submission)."""
    on_local = settings.AUTEUR_GPU_BACKEND == "local"
    out = []
    for spec in JOB_SPECS.values():
        reason = None
        if gpu_client.unavailable_reason(spec.type) is not None:
            reason, _details = FeatureUnavailable("").public()
        out.append(JobTypeInfo(
            type=spec.type.value,
            description=spec.description,
            price_rule=spec.price.describe(),
            price_credits=spec.price.credits,
            price_unit=spec.price.unit,
            gpu=spec.engine.gpu.value,
            gpu_ladder=list(gpu_client.gpu_ladder(spec.type)),
            model=(on_local and spec.engine.local_model) or spec.engine.model,
            time_limit_s=spec.engine.time_limit_s,
            plan=spec.plan,
            pro_only=spec.plan == Plan.PRO,
            available=reason is None,
            reason=reason,
            languages=gpu_client.describe_languages(spec.type) if spec.languages else None,
            cached=spec.engine.determinism.value,
            engine_version=spec.engine.version,
            limits=media_limits_of(spec),
        ))
    return out


def media_limits_of(spec: JobSpec) -> list[dict[str, Any]]:
    """The engine's limits on the type's media inputs, one row per field and limit: what a
    submission past them is refused (422 `input_limit_exceeded`) with."""
    rows: list[dict[str, Any]] = []
    for field, limit in spec.media_limits.items():
        if limit.max_seconds is not None:
            most = int(limit.max_seconds) if float(limit.max_seconds).is_integer() else limit.max_seconds
            rows.append({"field": field, "limit": "max_seconds", "max": most})
        if limit.max_frames is not None:
            rows.append({"field": field, "limit": "max_frames", "max": limit.max_frames})
    return rows


def job_media_in_use(*, media: MediaFile) -> str | None:
    """Why the file cannot be deleted, if an unfinished job of its project reads it."""
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


def job_summary(*, since: datetime) -> dict[str, Any]:
    """Jobs created since `since`, counted per type and status (the admin's 24-hour table)."""
    counts: Counter[tuple[str, str]] = Counter()
    for row in Job.objects.filter(created_at__gte=since).values("type", "status").annotate(n=Count("id")):
        counts[(row["type"], row["status"])] = row["n"]
    statuses = [s.value for s in JobStatus]
    types = sorted({t for t, _ in counts})
    rows = []
    for job_type in types:
        cells = [counts[(job_type, s)] for s in statuses]
        rows.append({"type": job_type, "counts": cells, "total": sum(cells)})
    totals = [sum(counts[(t, s)] for t in types) for s in statuses]
    return {"statuses": statuses, "rows": rows, "totals": totals, "total": sum(totals)}


def job_ledger_problems() -> Iterator[tuple[uuid.UUID, str]]:
    """Every job's figures agree with its ledger entries: `credits_cost` with its usage entry,
    `credits_refund` with its refund, and `credits_refunded` with having one, so the `charge` each
    job shows (read from the entries) is what its fields say. Registered with credits'
    ledger_check; one pass over the jobs, each looking up its entries by the job id index."""
    entries = CreditTransaction.objects.filter(job_id=OuterRef("pk")).values("job_id")
    usage = entries.filter(type=TransactionType.USAGE).annotate(total=Sum("amount")).values("total")
    refund = entries.filter(type=TransactionType.REFUND).annotate(total=Sum("amount")).values("total")
    disagreeing = (
        Job.objects.annotate(charged=-Coalesce(Subquery(usage), Value(0)),
                             refunded=Coalesce(Subquery(refund), Value(0)))
        .annotate(has_refund=ExpressionWrapper(Q(refunded__gt=0), output_field=BooleanField()))
        .exclude(credits_cost=F("charged"), credits_refund=F("refunded"), credits_refunded=F("has_refund"))
        .values_list("pk", "user_id", "credits_cost", "charged", "credits_refund", "refunded", "credits_refunded")
    )
    rows = list(disagreeing)
    accounts = dict(CreditAccount.objects.filter(user_id__in={r[1] for r in rows}).values_list("user_id", "pk"))
    for job_id, user_id, cost, charged, given_back, refunded, flagged in rows:
        if user_id in accounts:
            yield accounts[user_id], (f"job {job_id} says cost {cost}, refund {given_back} (refunded: {flagged}); "
                                      f"its entries charged {charged} and refunded {refunded}")
    # Each usage and refund names the member who submitted its job, so a workspace's spend adds up
    # by member to its account's (entries of jobs deleted since are not checked).
    job_member = Job.objects.filter(pk=OuterRef("job_id")).values("member_id")[:1]
    misattributed = (
        CreditTransaction.objects.filter(type__in=(TransactionType.USAGE, TransactionType.REFUND),
                                         job_id__in=Job.objects.values("pk"))
        .annotate(job_member=Subquery(job_member))
        # IS DISTINCT FROM: one side null and not the other, or both set and different.
        .filter(Q(member_id__isnull=False, job_member__isnull=True)
                | Q(member_id__isnull=True, job_member__isnull=False)
                | (Q(member_id__isnull=False, job_member__isnull=False) & ~Q(member_id=F("job_member"))))
        .values_list("account_id", "pk", "type", "job_id", "member_id", "job_member")
    )
    for account_id, entry_id, type_, of_job, member, submitter in misattributed:
        yield account_id, (f"{type_} entry {entry_id} names member {member}, but job {of_job} was submitted by "
                           f"{submitter}")

"""Batch endpoints: submit many jobs in one request, quote them, follow the batch, read its manifest;
cancel many jobs by filter.

Every read is scoped to the caller: another user's batch is a 404 `batch_not_found`, exactly like
one that does not exist (jobs/intake/batches.py submits; jobs/selectors/batches.py reads).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.conf import settings
from django.http import StreamingHttpResponse
from django.utils.cache import patch_vary_headers
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.renderers import BaseRenderer
from rest_framework.request import Request
from rest_framework.response import Response

from auteur.core.api import (
    ApiView,
    KeyedPagination,
    PageQuerySerializer,
    StrictSerializer,
    request_member_id,
    request_user,
)
from auteur.core.errors import ApplicationError
from auteur.core.schema import raises
from auteur.core.throttling import SlidingWindowThrottle
from auteur.users.workspace_context import balances_shown
from credits.selectors import credit_balance_get
from jobs.apis import (
    IDEMPOTENCY_HEADER,
    MAX_IDEMPOTENCY_KEY_LENGTH,
    REPLAYED_HEADER,
    JobCancelThrottle,
    idempotency_key_of,
)
from jobs.inputs import SUBMISSION_OPTIONS, Scheduling
from jobs.intake.batches import (
    BatchItem,
    BatchOptions,
    Priced,
    batch_can_pay,
    batch_replay,
    batch_resolve,
    batch_submit,
    jobs_retry_bulk,
)
from jobs.intake.screening import refusals_recorded
from jobs.intake.submission import request_hash
from jobs.life.bulk import JobFilter, jobs_cancel_bulk, jobs_cancel_preview
from jobs.models import ACTIVE_STATUSES, Batch, JobPriority, JobStatus
from jobs.selectors.batches import BatchManifest, batch_counts, batch_get, batch_items, batch_list, batches_counts
from jobs.specs import JOB_SPECS, JOB_TYPE_CHOICES, job_spec
from projects.selectors import project_get

# Item errors shown in one answer: the first ones, by index.
MAX_ITEM_ERRORS = 20
MAX_DEADLINE_SECONDS = 30 * 24 * 3600
_TIMELINE_TYPES = frozenset(spec.type.value for spec in JOB_SPECS.values() if spec.timeline)


class BatchItemSerializer(StrictSerializer):
    type = serializers.ChoiceField(choices=JOB_TYPE_CHOICES, help_text="The job type (GET /jobs/types).")
    input = serializers.DictField(help_text=(
        "The body its type's submission takes (POST /jobs/{type}), without `webhook`, `priority`, the deadlines, "
        "`cache` and `quote_id`, which are the batch's."))


class BatchInputSerializer(StrictSerializer):
    """Up to 5,000 jobs (this server's limit), each `{type, input}`, and how to run them all."""

    items = serializers.ListField(child=serializers.DictField(), min_length=1, help_text=(
        "The jobs, each `{\"type\": ..., \"input\": {...}}`; at most the server's limit (5,000 by default)."))
    priority = serializers.ChoiceField(
        choices=[label for _, label in JobPriority.choices], default="low",
        help_text="Its items' order among your own waiting jobs: `low` by default, so your interactive jobs "
                  "start first.")
    start_within_seconds = serializers.IntegerField(
        min_value=1, max_value=MAX_DEADLINE_SECONDS, required=False,
        help_text="An item not started this many seconds after the batch was accepted ends `aborted`, refunded in "
                  "full. Default: the server's batch queue TTL (7 days).")
    run_within_seconds = serializers.IntegerField(
        min_value=1, max_value=MAX_DEADLINE_SECONDS, required=False,
        help_text="An item still running this many seconds after it started is canceled and refunded the part "
                  "not spent.")
    cache = serializers.BooleanField(default=True, help_text=(
        "Whether the result cache may serve an item identical to an earlier job of yours (at the cache price)."))

    def validate_items(self, value: list[Any]) -> list[Any]:
        most = settings.AUTEUR_BATCH_MAX_ITEMS
        if len(value) > most:
            raise serializers.ValidationError(f"A batch has at most {most} items; this one has {len(value)}.")
        # A timeline's item (a render) reads, cuts and captions its timeline to be priced: few per batch.
        timelines = settings.AUTEUR_BATCH_MAX_TIMELINE_ITEMS
        if sum(1 for item in value if isinstance(item, dict) and item.get("type") in _TIMELINE_TYPES) > timelines:
            raise serializers.ValidationError(f"A batch has at most {timelines} items of a timeline's type "
                                              f"({', '.join(sorted(_TIMELINE_TYPES))}).")
        return value


def _items(raw: list[dict[str, Any]]) -> list[BatchItem]:
    """Each item checked by its type's input serializer; every error (the first MAX_ITEM_ERRORS)
    named by its path (`items.<index>.input.<field>`), in one 400. One serializer per type checks
    all its items (`run_validation`, as a list's child is run): building one per item would cost
    more than checking it."""
    items: list[BatchItem] = []
    errors: dict[str, Any] = {}
    checkers: dict[str, serializers.Serializer] = {}
    for index, entry in enumerate(raw):
        try:
            if not _well_shaped(entry):
                _ITEM_SHAPE.run_validation(entry)  # raises the shape's own errors
                raise serializers.ValidationError("Each item is {\"type\": ..., \"input\": {...}}.")
            job_type, body = entry["type"], entry["input"]
            options = sorted(SUBMISSION_OPTIONS & set(body))
            if options:
                raise serializers.ValidationError(
                    {"input": {name: ["Set for the whole batch, not per item."] for name in options}})
            spec = job_spec(job_type)
            if spec.claims_challenge:
                alone = f"A {job_type} job reads a challenge of its own: submit it alone (POST /jobs/{job_type})."
                raise serializers.ValidationError({"type": [alone]})
            checker = checkers.get(job_type) or checkers.setdefault(job_type, spec.input())
            try:
                fields = dict(checker.run_validation(body))
            except serializers.ValidationError as invalid:
                raise serializers.ValidationError({"input": invalid.detail}) from None
        except serializers.ValidationError as invalid:
            errors[str(index)] = invalid.detail
            if len(errors) >= MAX_ITEM_ERRORS:
                break
            continue
        for name in SUBMISSION_OPTIONS:
            fields.pop(name, None)  # (their defaults)
        items.append(BatchItem(spec=spec, fields=fields))
    if errors:
        raise serializers.ValidationError({"items": errors})
    return items


_ITEM_SHAPE = BatchItemSerializer()
_JOB_TYPES = frozenset(choice for choice, _ in JOB_TYPE_CHOICES)


def _well_shaped(entry: Any) -> bool:
    """Whether an item is `{type, input}` with a known type and an object input (else the item's
    serializer says what is wrong)."""
    return (isinstance(entry, dict) and len(entry) == 2 and entry.get("type") in _JOB_TYPES
            and isinstance(entry.get("input"), dict))


def _options(data: dict[str, Any]) -> BatchOptions:
    return BatchOptions(
        scheduling=Scheduling(priority=JobPriority[data["priority"].upper()],
                              start_within_seconds=data.get("start_within_seconds"),
                              run_within_seconds=data.get("run_within_seconds")),
        use_cache=data["cache"],
    )


class BatchSerializer(serializers.Serializer):
    """A batch: its items counted by status (read from the items themselves)."""

    id = serializers.UUIDField()
    item_count = serializers.IntegerField()
    credits_cost = serializers.IntegerField(help_text="What its items were charged, together")
    credits_refunded = serializers.IntegerField(help_text="What its ended items were given back, together")
    priority = serializers.ChoiceField(choices=[label for _, label in JobPriority.choices])
    counts = serializers.DictField(child=serializers.IntegerField(), help_text=(
        "Its items in each status: " + ", ".join(f"`{s}`" for s in JobStatus.values)))
    ended = serializers.IntegerField(help_text="Its items that have ended (completed, failed, canceled, aborted)")
    done = serializers.BooleanField(help_text="Whether every item has ended")
    created_at = serializers.DateTimeField()


def batch_data(batch: Batch, counts: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"id": batch.pk, "item_count": batch.item_count, "credits_cost": batch.credits_cost,
            "priority": JobPriority(batch.priority).label, "created_at": batch.created_at,
            **(counts or batch_counts(batch=batch))}


class BatchAcceptedSerializer(BatchSerializer):
    job_ids = serializers.ListField(child=serializers.UUIDField(), help_text="Its items' jobs, in the items' order")


class BatchQuoteSerializer(serializers.Serializer):
    class ItemSerializer(serializers.Serializer):
        index = serializers.IntegerField()
        type = serializers.CharField()
        credits_cost = serializers.IntegerField(help_text="What it would be charged now")
        cache = serializers.BooleanField(help_text="Whether the result cache would serve it (at the cache price)")

    item_count = serializers.IntegerField()
    credits_cost = serializers.IntegerField(help_text="The sum of its items' prices: what the batch would cost now")
    balance = serializers.IntegerField(allow_null=True, help_text="Null for an API key without credits:read")
    balance_after = serializers.IntegerField(allow_null=True)
    refusal = serializers.DictField(allow_null=True, help_text=(
        "The 402 a submission would get now (`code`, `message`, `details` with `shortfall` and `item`, the first "
        "item that does not fit), or null"))
    items = ItemSerializer(many=True)


# What a batch refuses, as a submission of its items would (an item's names `details.item`).
_ITEM_ERRORS = ("project_not_found", "media_not_found", "voice_not_found", "media_not_ready", "wrong_media_type",
                "media_duration_unknown", "media_projects_differ", "input_limit_exceeded", "language_unsupported",
                "empty_timeline", "edl_invalid", "edl_limit_exceeded", "edl_unavailable", "no_captions",
                "plan_required", "payment_required", "feature_unavailable", "content_policy_violation",
                "input_too_complex", "media_unscreenable", "consent_required")


def _resolved(request: Request) -> tuple[dict[str, Any], list[Priced]]:
    body = BatchInputSerializer(data=request.data)
    body.is_valid(raise_exception=True)
    items = _items(body.validated_data["items"])
    with refusals_recorded(user=request_user(request), member_id=request_member_id(request)):
        return body.validated_data, batch_resolve(user=request_user(request), items=items,
                                                  use_cache=body.validated_data["cache"],
                                                  member_id=request_member_id(request))


@raises("invalid_idempotency_key", "idempotency_key_reused", "insufficient_credits", "spend_cap_reached",
        "quota_exceeded", *_ITEM_ERRORS)
@raises("account_under_review")  # a held account's batch with any generative item
class BatchSubmitApi(ApiView):
    """Submit up to 5,000 jobs (this server's limit) of one or several types in one request,
    charged together or not at all.

    202: the batch, with its items' `job_ids` in order. Each item is checked as its own submission
    would be (the same 4xx, with `details.item` naming the item); a 400 names each invalid item
    (the first 20) under `details.items`. Its price is the sum of its items' (a cache price for an
    item the result cache serves); a balance, spend cap or per-job limit that does not cover it all
    is a 402 (`insufficient_credits`, `spend_cap_reached`) whose details name the `shortfall` and
    the first `item` that does not fit, and nothing is charged or made; one that does not cover even
    the items' least prices is refused so before any item is resolved (`details.least: true`). Its items wait `queued`
    behind your other work (priority `low` by default) and start as your slots free, taking turns
    with other users' work under fair share. With an `Idempotency-Key`, the same key and body
    within 24 hours answer 200 with the same batch (`Idempotent-Replayed: true`) and charge
    nothing; another body is a 422 `idempotency_key_reused`.
    """

    workspace_actions = {"POST": "jobs.run"}

    @extend_schema(
        request=BatchInputSerializer,
        responses={202: BatchAcceptedSerializer, 200: BatchAcceptedSerializer},
        parameters=[OpenApiParameter(
            IDEMPOTENCY_HEADER, OpenApiTypes.STR, OpenApiParameter.HEADER,
            pattern=f"^[ -~]{{1,{MAX_IDEMPOTENCY_KEY_LENGTH}}}$",
            description="Optional, 1-255 printable characters: a retry with the same key and body returns the "
                        "original batch instead of charging again.")],
        summary="Submit a batch of jobs",
        tags=["batches"],
    )
    def post(self, request: Request) -> Response:
        user = request_user(request)
        key = idempotency_key_of(request)
        body_hash = request_hash("batch", request.data) if key else ""
        if key:
            replay = batch_replay(user=user, idempotency_key=key, body_hash=body_hash)
            if replay is not None:
                return _accepted(replay, created=False)
        data, priced = _resolved(request)
        batch, created = batch_submit(user=user, priced=priced, options=_options(data), idempotency_key=key,
                                      body_hash=body_hash, member_id=request_member_id(request))
        return _accepted(batch, created=created)


def _accepted(batch: Batch, *, created: bool) -> Response:
    job_ids = list(batch_items(batch=batch).values_list("id", flat=True))
    response = Response(BatchAcceptedSerializer({**batch_data(batch), "job_ids": job_ids}).data,
                        status=status.HTTP_202_ACCEPTED if created else status.HTTP_200_OK)
    if not created:
        response[REPLAYED_HEADER] = "true"
    return response


@raises("quota_exceeded", "insufficient_credits", "spend_cap_reached", *_ITEM_ERRORS)
@raises("account_under_review")  # as the batch's submission
class BatchQuoteApi(ApiView):
    """What a batch would cost if submitted now: the sum of its items' prices, each as its own
    quote would say (the cache price for an item the result cache would serve), the balance after
    it, and the 402 a submission would get now (`refusal`, with the `shortfall` and the first item
    that does not fit), if any (a balance's refusal only to whom may see the balance). The body is
    checked as a submission's (the same 4xx); nothing is charged, made or held. A balance or cap
    that does not cover even the sum of the items' least prices is a 402 (`details.least: true`),
    as the submission's: no item is resolved (no timeline read) for a batch nobody can pay."""

    workspace_actions = {"POST": "jobs.run"}

    @extend_schema(request=BatchInputSerializer, responses={200: BatchQuoteSerializer}, summary="Quote a batch",
                   tags=["batches"])
    def post(self, request: Request) -> Response:
        user = request_user(request)
        _, priced = _resolved(request)
        total = sum(p.price for p in priced)
        refusal = None
        try:
            batch_can_pay(user=user, member_id=request_member_id(request), priced=priced)
        except ApplicationError as error:
            # A caller who may not see the balance is not told whether it covers the batch either.
            if error.code != "insufficient_credits" or balances_shown():
                message, details = error.public()  # a spend cap's figures only to whom sees the credits
                refusal = {"code": error.code, "message": message, "details": details}
        balance = credit_balance_get(user=user) if balances_shown() else None
        return Response(BatchQuoteSerializer({
            "item_count": len(priced), "credits_cost": total, "balance": balance,
            "balance_after": None if balance is None else balance - total, "refusal": refusal,
            "items": [{"index": p.index, "type": p.spec.type.value, "credits_cost": p.price,
                       "cache": p.cached_from is not None} for p in priced],
        }).data)


class BatchListApi(ApiView):
    """Your batches, newest first, each with its counts (`?page=`, `?page_size=`, max 100)."""

    workspace_actions = {"GET": "jobs.view"}
    pagination_class = KeyedPagination.of("batches")

    @extend_schema(parameters=[PageQuerySerializer], responses=BatchSerializer(many=True), summary="List batches",
                   tags=["batches"])
    def get(self, request: Request) -> Response:
        paginator = self.pagination_class()
        page = list(paginator.paginate_queryset(batch_list(user=request_user(request)), request, view=self) or [])
        counts = batches_counts(batches=page)  # one query for the page
        return paginator.get_paginated_response([BatchSerializer(batch_data(b, counts[b.pk])).data for b in page])


@raises("batch_not_found")
class BatchDetailApi(ApiView):
    """A batch: its items counted by status, what was charged and refunded, and whether all ended."""

    workspace_actions = {"GET": "jobs.view"}

    @extend_schema(responses=BatchSerializer, summary="Get a batch", tags=["batches"])
    def get(self, request: Request, batch_id: str) -> Response:
        batch = batch_get(user=request_user(request), batch_id=batch_id)
        return Response(BatchSerializer(batch_data(batch)).data)


class BatchManifestItemSerializer(serializers.Serializer):
    index = serializers.IntegerField(help_text="The item's place in the batch, from 0")
    job_id = serializers.UUIDField()
    type = serializers.ChoiceField(choices=JOB_TYPE_CHOICES)
    status = serializers.ChoiceField(choices=JobStatus.choices)
    credits_cost = serializers.IntegerField()
    credits_refund = serializers.IntegerField()
    error_code = serializers.CharField(allow_blank=True)
    error_message = serializers.CharField(allow_blank=True, help_text="A fixed sentence for error_code")
    retryable = serializers.BooleanField()
    completed_at = serializers.DateTimeField(allow_null=True)
    output_data = serializers.DictField(help_text="As GET /jobs/{id} shows it: `output_media_ids` name the files")


class BatchManifestSerializer(serializers.Serializer):
    items = BatchManifestItemSerializer(many=True, help_text="In the items' order")


NDJSON, JSON = "application/x-ndjson", "application/json"


class _ErrorsAsJson(DefaultContentNegotiation):
    """DRF's own answers (the errors) are JSON whatever the request accepts; the view picks its
    manifest's form itself, so `Accept: application/x-ndjson` is no 406."""

    def select_renderer(
        self, request: Request, renderers: Iterable[BaseRenderer], format_suffix: str | None = None
    ) -> tuple[BaseRenderer, str]:
        renderer = next(iter(renderers))
        return renderer, str(renderer.media_type)


@raises("batch_not_found")
class BatchManifestApi(ApiView):
    """The batch's manifest: one entry per item, in the items' order: `index`, `job_id`, `type`,
    `status`, `credits_cost`, `credits_refund`, `error_code`, `error_message`, `retryable`,
    `completed_at` and `output_data` (as GET /jobs/{id} shows it; `output_media_ids` name the
    files). As JSON lines (`application/x-ndjson`, one item a line) by default; as one JSON
    document, `{"items": [...]}`, to a request whose `Accept` prefers `application/json`. Streamed
    either way, however large the results; a client that reads slowly (a request is bounded in
    time) reads it in parts: `?after=<index>&limit=<n>`."""

    workspace_actions = {"GET": "jobs.view"}
    content_negotiation_class = _ErrorsAsJson

    class QuerySerializer(StrictSerializer):
        after = serializers.IntegerField(min_value=-1, default=-1, help_text="Only the items after this index")
        limit = serializers.IntegerField(min_value=1, required=False, help_text="At most this many items")

    # JSON lines first: what a request that states no preference gets.
    @extend_schema(parameters=[QuerySerializer],
                   responses={(200, NDJSON): OpenApiResponse(OpenApiTypes.STR, description="One item a line"),
                              (200, JSON): BatchManifestSerializer},
                   summary="Get a batch's manifest", tags=["batches"])
    def get(self, request: Request, batch_id: str) -> StreamingHttpResponse:
        batch = batch_get(user=request_user(request), batch_id=batch_id)
        query = self.QuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        # The form the request's Accept prefers (its q-values weighed); JSON lines when it names neither.
        form = request._request.get_preferred_type([NDJSON, JSON]) or NDJSON
        manifest = BatchManifest(batch=batch, after=query.validated_data["after"],
                                 limit=query.validated_data.get("limit"), as_json=form == JSON)
        # Its iterator's close() (called by the response when it ends) closes the cursor.
        response = StreamingHttpResponse(manifest, content_type=form)
        extension = "json" if form == JSON else "jsonl"
        response["Content-Disposition"] = f'attachment; filename="batch-{batch.pk}.{extension}"'
        patch_vary_headers(response, ("Accept",))
        return response


class BulkFilterSerializer(StrictSerializer):
    """Which of your jobs: every criterion given must hold, and at least one is given."""

    STATUSES: tuple[str, ...] = tuple(s.value for s in ACTIVE_STATUSES)

    batch_id = serializers.UUIDField(required=False, help_text="The jobs of this batch")
    type = serializers.ChoiceField(choices=JOB_TYPE_CHOICES, required=False)
    project_id = serializers.UUIDField(required=False)
    created_after = serializers.DateTimeField(required=False, help_text="Submitted at or after this time")
    created_before = serializers.DateTimeField(required=False, help_text="Submitted before this time")
    dry_run = serializers.BooleanField(default=False, help_text="Say what would be done; do nothing")

    def get_fields(self) -> dict[str, serializers.Field]:
        fields = super().get_fields()
        fields["status"] = serializers.ListField(
            child=serializers.ChoiceField(choices=list(self.STATUSES)), min_length=1, max_length=len(self.STATUSES),
            required=False, help_text=f"Among {', '.join(f'`{s}`' for s in self.STATUSES)} (default: all)")
        return fields

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if not set(attrs) - {"dry_run"}:
            raise serializers.ValidationError("Name at least one filter (a batch, a type, a status, a project or a "
                                              "time): a bulk action never takes every job by default.")
        return attrs

    def job_filter(self, user: Any) -> JobFilter:
        """The filter, once another user's batch or project is a 404 (as one that does not exist)."""
        data = self.validated_data
        if data.get("batch_id") is not None:
            batch_get(user=user, batch_id=data["batch_id"])
        if data.get("project_id") is not None:
            project_get(user=user, project_id=data["project_id"])
        return JobFilter(batch_id=data.get("batch_id"), type=data.get("type"), statuses=tuple(data.get("status", ())),
                         project_id=data.get("project_id"), created_after=data.get("created_after"),
                         created_before=data.get("created_before"))


class BulkRetryFilterSerializer(BulkFilterSerializer):
    STATUSES = (JobStatus.FAILED.value, JobStatus.ABORTED.value)


class BulkCancelSerializer(serializers.Serializer):
    dry_run = serializers.BooleanField()
    matched = serializers.IntegerField(help_text="The unfinished jobs the filter takes, oldest first, at most the "
                                                 "batch limit a call")
    canceled = serializers.IntegerField(help_text="Those canceled (with dry_run: that would be)")
    by_status = serializers.DictField(child=serializers.IntegerField(), help_text="Those canceled, by the status "
                                      "they had")
    credits_refund = serializers.IntegerField(help_text="Credits given back, together (with dry_run: that would be)")
    not_cancelable = serializers.IntegerField(help_text="Running jobs whose outputs are being stored: left to finish")
    remaining = serializers.IntegerField(help_text="Unfinished jobs the filter takes beyond the batch limit (with "
                                                   "dry_run: would): another call cancels them")


@raises("batch_not_found", "project_not_found")
class BulkCancelApi(ApiView):
    """Cancel your unfinished jobs by filter: a batch, a type, statuses, a project, a span of
    submission times (every criterion given must hold; at least one). Each job is refunded exactly
    as its own cancel would be: in full before its inference started (every waiting job), else the
    part not yet spent; one whose outputs are being stored is left to finish (`not_cancelable`).
    At most 5,000 a call, oldest first, waiting jobs before running ones (`remaining` says how many
    more another call would take). With `dry_run`, nothing is done and the answer says what would
    be. Their `canceled` events reach the streams and webhooks shortly after the answer. Counted as
    one cancel against the cancel rate limit."""

    workspace_actions = {"POST": "jobs.run"}
    throttle_classes = [SlidingWindowThrottle, JobCancelThrottle]

    @extend_schema(request=BulkFilterSerializer, responses={200: BulkCancelSerializer},
                   summary="Cancel jobs by filter", tags=["batches"])
    def post(self, request: Request) -> Response:
        user = request_user(request)
        body = BulkFilterSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        where, dry_run = body.job_filter(user), body.validated_data["dry_run"]
        done = jobs_cancel_preview(user=user, where=where) if dry_run else jobs_cancel_bulk(user=user, where=where)
        return Response(BulkCancelSerializer({"dry_run": dry_run, **done}).data)


class BulkRetrySerializer(serializers.Serializer):
    dry_run = serializers.BooleanField()
    matched = serializers.IntegerField(help_text="The jobs a retry would run again (at most the batch limit)")
    retried = serializers.IntegerField(help_text="Those submitted again (0 with dry_run)")
    credits_cost = serializers.IntegerField(help_text="What their retries cost, together (with dry_run: would)")
    batch_id = serializers.UUIDField(allow_null=True, help_text="The batch of the retries (null with dry_run)")
    remaining = serializers.IntegerField(help_text="Jobs the filter takes beyond the batch limit: another call "
                                                   "retries them")


@raises("batch_not_found", "project_not_found", "insufficient_credits", "spend_cap_reached", "plan_required",
        "payment_required", "feature_unavailable", "content_policy_violation", "input_too_complex",
        "media_unscreenable", "consent_required")
@raises("account_under_review")  # a held account retries no generative job
class BulkRetryApi(ApiView):
    """Submit again, by filter, your jobs that failed with a retryable error or were aborted before
    they started (a batch, a type, `failed`/`aborted`, a project, a span of submission times; at
    least one): each with the same input, charged again at today's price, together as one new
    batch (priority `low`) or not at all (402 naming the shortfall and the first item that does
    not fit). A job is retried once, by this or by POST /jobs/{id}/retry; its retry points at it
    (`retry_of_id`) and keeps its own webhook. At most 5,000 a call, oldest first (`remaining`
    says how many more). With `dry_run`, nothing is done and the answer says what would be."""

    workspace_actions = {"POST": "jobs.run"}

    @extend_schema(request=BulkRetryFilterSerializer, responses={200: BulkRetrySerializer},
                   summary="Retry jobs by filter", tags=["batches"])
    def post(self, request: Request) -> Response:
        user = request_user(request)
        body = BulkRetryFilterSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        dry_run = body.validated_data["dry_run"]
        with refusals_recorded(user=user, member_id=request_member_id(request)):
            done = jobs_retry_bulk(user=user, where=body.job_filter(user), member_id=request_member_id(request),
                                   dry_run=dry_run)
        return Response(BulkRetrySerializer({"dry_run": dry_run, **done}).data)

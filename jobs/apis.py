"""Job endpoints: submit one of the AI features, follow it, cancel, retry.

Submission answers at once: the job is charged and created in one transaction and its pipeline
is published after commit (jobs/intake/submission.py). Every read and action is scoped to the caller:
another user's job is a 404 `job_not_found`, exactly like a job that does not exist.
"""

from __future__ import annotations

import difflib
from typing import Any

from django.conf import settings
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from auteur.core.api import (
    ApiView,
    KeyedPagination,
    PageQuerySerializer,
    StrictSerializer,
    paginated_response,
    request_member_id,
    request_subject,
    request_user,
)
from auteur.core.schema import raises
from auteur.core.throttling import SlidingWindowThrottle, person_of
from auteur.users.authentication import DeferredAccountJWTAuthentication, TokenSubject
from auteur.users.workspace_context import balances_shown
from jobs.errors import InvalidIdempotencyKey, JobNotFound, UnknownJobType
from jobs.inputs import SubmissionOptions, VoiceRef
from jobs.intake.quotes import quote_create, quote_precheck
from jobs.intake.screening import refusals_recorded, request_screen, resolved_screen
from jobs.intake.submission import (
    QuoteRequest,
    job_retry,
    job_submit,
    job_submit_precheck,
    quoted_body_hash,
    request_hash,
)
from jobs.intake.transcribe import transcription_already_asked
from jobs.life.status import job_cancel
from jobs.models import Job, JobStatus
from jobs.prefer_header import event_stream_location, prefer_wait
from jobs.selectors.jobs import job_detail_get, job_event_list, job_get, job_list, job_type_list
from jobs.selectors.requests import job_request_objects, job_request_resolve
from jobs.serializers import (
    JobAcceptedSerializer,
    JobEventSerializer,
    JobSerializer,
    JobSummarySerializer,
    LanguageSerializer,
    QuoteSerializer,
)
from jobs.specs import JOB_SPECS, JOB_TYPE_CHOICES, JobSpec

IDEMPOTENCY_HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
MAX_IDEMPOTENCY_KEY_LENGTH = 255


def idempotency_key_of(request: Request) -> str:
    """The request's Idempotency-Key ("" when absent): 1 to 255 printable ASCII characters."""
    raw = request.META.get("HTTP_IDEMPOTENCY_KEY")
    if raw is None:
        return ""
    if not 1 <= len(raw) <= MAX_IDEMPOTENCY_KEY_LENGTH or not all(" " <= ch <= "~" for ch in raw):
        raise InvalidIdempotencyKey(
            f"{IDEMPOTENCY_HEADER} must be 1 to {MAX_IDEMPOTENCY_KEY_LENGTH} printable ASCII characters."
        )
    return str(raw)


# ----------------------------------------------------------------------------- shapes: jobs/serializers.py


def _accepted(job: Job, *, created: bool) -> Response:
    code = status.HTTP_202_ACCEPTED if created else status.HTTP_200_OK
    response = Response(JobAcceptedSerializer(job).data, status=code)
    if not created:
        response[REPLAYED_HEADER] = "true"
    return response


# ----------------------------------------------------------------------------- submission


QUOTE_ERRORS = ("quote_not_found", "quote_expired", "quote_mismatch", "quote_used")


@raises("invalid_idempotency_key", "project_not_found", "plan_required", "payment_required",
        "insufficient_credits", "spend_cap_reached", "idempotency_key_reused", "feature_unavailable",
        "invalid_webhook_url", *QUOTE_ERRORS)
class JobSubmitApi(ApiView):
    """Base of the `POST /jobs/<type>` views; `_submit_api` makes one per job type.

    202 `{job_id, status: "pending", credits_cost}`: the job was charged and its work queued.
    200 with `deduplicated: true`: a transcription of a file whose automatic transcription (the
    same options) is pending, running or done is answered with that job, charged nothing more.
    With an `Idempotency-Key` header, the same key and body within 24 hours answer 200 with
    the original job, in its current status (header `Idempotent-Replayed: true`), and charge
    nothing; the same key with another body is a 422 `idempotency_key_reused`. 404
    `project_not_found` / `media_not_found` / `voice_not_found` for an object that is not the
    caller's, checked before anything else (whatever the plan or balance). 402
    `insufficient_credits` (nothing created; a balance short of the type's least price is refused
    before the request is resolved, a render's timeline read); 402 `spend_cap_reached` when the job
    would take the member past their monthly budget in a team workspace (nothing created, details
    name the cap, its limit, what was spent, the cost and when it resets), 403 `plan_required`
    (`payment_required` while the plan's renewal is unpaid), 503 `feature_unavailable` when this
    server's GPU backend cannot run the type (nothing charged), 403 `account_under_review` for a
    generative type while the account is held for staff review after repeated content policy
    refusals (details: `held_since`, `reason`; nothing charged). 422 `content_policy_violation` when
    the content policy refuses a text the request asks a model to act on, a render's captions to burn
    in (`captions`), or the pictures of an input file a generative model works from (an image, frames
    of a video): `details.flagged` names each such field and its categories; no job is made and
    nothing is charged. 422 `media_unscreenable` for such a file that cannot be decoded to be screened.
    """

    workspace_actions = {"POST": "jobs.run"}

    spec: JobSpec

    def submit(self, request: Request) -> Response:
        user = request_user(request)
        key = idempotency_key_of(request)
        data = self.spec.input(data=request.data)
        data.is_valid(raise_exception=True)
        fields = dict(data.validated_data)
        options = SubmissionOptions.pop(fields)
        body_hash = request_hash(self.spec.type, request.data) if key else ""
        quote = None if options.quote_id is None else QuoteRequest(options.quote_id,
                                                                   quoted_body_hash(self.spec.type, request.data))
        # The owner checks first: another user's (or no) project or media is a 404 whatever else
        # is wrong. Then plan, backend, replay and credits before the request is resolved: a
        # render's timeline is read, cut and captioned there, which an account that cannot pay
        # must not cost.
        objects = job_request_objects(user=user, spec=self.spec, data=fields)
        if options.use_cache:
            # The same work already asked for (a file's automatic transcription): that job, charged nothing more.
            doing = transcription_already_asked(user=user, spec=self.spec, objects=objects,
                                                member_id=request_member_id(request), webhook=options.webhook)
            if doing is not None:
                return Response(JobAcceptedSerializer(doing, context={"deduplicated": True}).data,
                                status=status.HTTP_200_OK)
        replay = job_submit_precheck(user=user, spec=self.spec, idempotency_key=key, body_hash=body_hash,
                                     member_id=request_member_id(request))
        if replay is not None:
            return _accepted(replay, created=False)
        with refusals_recorded(user=user, member_id=request_member_id(request)):
            request_screen(spec=self.spec, params=fields, account_id=user.pk)
            resolved = job_request_resolve(user=user, spec=self.spec, objects=objects)
            resolved_screen(spec=self.spec, params=resolved.input_params, account_id=user.pk)
        job, created = job_submit(
            user=user,
            spec=self.spec,
            request=resolved,
            webhook=options.webhook,
            idempotency_key=key,
            body_hash=body_hash,
            scheduling=options.scheduling,
            quote=quote,
            use_cache=options.use_cache,
            member_id=request_member_id(request),
        )
        response = _accepted(job, created=created)
        if created and prefer_wait(request.META.get("HTTP_PREFER")) is not None:
            # Waiting is the ASGI server's (realtime/prefer_wait.py); here the client is told where to follow.
            response["Location"] = event_stream_location(job.pk)
        return response


def _submit_api(spec: JobSpec) -> type[JobSubmitApi]:
    class Api(JobSubmitApi):
        @extend_schema(
            request=spec.input,
            responses={202: JobAcceptedSerializer, 200: JobAcceptedSerializer},
            parameters=[
                OpenApiParameter(
                    IDEMPOTENCY_HEADER, OpenApiTypes.STR, OpenApiParameter.HEADER,
                    pattern=f"^[ -~]{{1,{MAX_IDEMPOTENCY_KEY_LENGTH}}}$",
                    description="Optional, 1-255 printable characters: a retry with the same key and body "
                                "returns the original job instead of charging again.",
                ),
            ],
            summary=f"Submit a {spec.type} job",
            description=(spec.input.__doc__ or "").strip(),
            tags=["jobs"],
        )
        def post(self, request: Request) -> Response:
            return self.submit(request)

    Api.spec = spec
    if spec.references:
        raises("media_not_found", "voice_not_found", "media_not_ready", "wrong_media_type",
               "media_duration_unknown", "media_projects_differ")(Api)
    if spec.languages:
        raises("language_unsupported")(Api)
    if spec.screened or spec.timeline:  # a render's burned-in captions are screened text
        raises("content_policy_violation", "input_too_complex")(Api)
    if spec.screened_media:
        raises("content_policy_violation", "media_unscreenable")(Api)
    if spec.claims_challenge:
        raises("challenge_not_found", "challenge_expired", "challenge_used")(Api)
    if spec.generative:
        raises("account_under_review")(Api)
    if spec.recordings:
        raises("recording_required")(Api)
    if any(isinstance(f, VoiceRef) for f in spec.references.values()) or spec.voice_of or spec.likeness_of:
        raises("consent_required")(Api)
    if spec.media_limits:
        raises("input_limit_exceeded")(Api)
    if spec.timeline:
        raises("empty_timeline", "edl_invalid", "edl_limit_exceeded", "media_not_ready", "edl_unavailable",
               "no_captions")(Api)
    Api.__name__ = Api.__qualname__ = "Job" + "".join(part.capitalize() for part in spec.type.split("-")) + "SubmitApi"
    return Api


JOB_SUBMIT_APIS: dict[str, type[JobSubmitApi]] = {spec.type.value: _submit_api(spec) for spec in JOB_SPECS.values()}


class JobQuoteApi(ApiView):
    """Base of the `POST /jobs/<type>/quote` views; `_quote_api` makes one per job type.

    201: what the body would cost if submitted now, the balance after it, where the job would
    stand, and a `quote_id` that holds the price until `expires_at` (AUTEUR_QUOTE_TTL_SECONDS):
    a submission of the same body with `quote_id` added is charged `credits_cost`, or the cache
    price when the result cache serves it (`cache`). Nothing is charged and no job is made; the
    request is checked as a submission would be (the same 4xx). A balance or spend cap that does
    not cover even the type's least price is a 402 (`insufficient_credits`, `spend_cap_reached`),
    before the request is resolved; one that covers the least but not this request's price is told
    (`balance_after` below zero, `spend_cap`).
    """

    workspace_actions = {"POST": "jobs.run"}

    spec: JobSpec

    def quote(self, request: Request) -> Response:
        user = request_user(request)
        data = self.spec.input(data=request.data)
        data.is_valid(raise_exception=True)
        fields = dict(data.validated_data)
        if "quote_id" in fields:
            raise serializers.ValidationError({"quote_id": ["A quote request does not name a quote."]})
        options = SubmissionOptions.pop(fields)  # its webhook checked as a submission's; a quote sends nothing
        # In a submission's order: the owner checks, the plan, backend and least price, then the rest.
        objects = job_request_objects(user=user, spec=self.spec, data=fields)
        quote_precheck(user=user, spec=self.spec, member_id=request_member_id(request))
        with refusals_recorded(user=user, member_id=request_member_id(request)):
            request_screen(spec=self.spec, params=fields, account_id=user.pk)
            job_request = job_request_resolve(user=user, spec=self.spec, objects=objects)
            resolved_screen(spec=self.spec, params=job_request.input_params, account_id=user.pk)
        quoted = quote_create(user=user, spec=self.spec, request=job_request,
                              body_hash=quoted_body_hash(self.spec.type, request.data),
                              scheduling=options.scheduling, use_cache=options.use_cache,
                              member_id=request_member_id(request))
        return Response(QuoteSerializer(quoted).data, status=status.HTTP_201_CREATED)


def _quote_api(spec: JobSpec) -> type[JobQuoteApi]:
    class Api(JobQuoteApi):
        @extend_schema(request=spec.input, responses={201: QuoteSerializer}, summary=f"Quote a {spec.type} job",
                       description="The same body as the submission; `quote_id` may not be in it.", tags=["jobs"])
        def post(self, request: Request) -> Response:
            return self.quote(request)

    Api.spec = spec
    # What its submission answers, but what only a submission does: replay, take a quote. (A balance
    # short of the type's least price is refused as a submission's.)
    submission_only = ("invalid_idempotency_key", "idempotency_key_reused", *QUOTE_ERRORS)
    codes = getattr(JOB_SUBMIT_APIS[spec.type.value], "api_error_codes", ())
    raises(*(c for c in codes if c not in submission_only))(Api)
    Api.__name__ = Api.__qualname__ = "Job" + "".join(part.capitalize() for part in spec.type.split("-")) + "QuoteApi"
    return Api


JOB_QUOTE_APIS: dict[str, type[JobQuoteApi]] = {spec.type.value: _quote_api(spec) for spec in JOB_SPECS.values()}


# ----------------------------------------------------------------------------- reads


class JobTypeListApi(ApiView):
    """Every job type: its price rule, GPU class, time limit, and whether this server can run it."""

    workspace_actions = {"GET": "job_types.view"}

    class OutputSerializer(serializers.Serializer):
        class PriceSerializer(serializers.Serializer):
            rule = serializers.CharField(source="price_rule")
            credits = serializers.IntegerField(source="price_credits")
            unit = serializers.CharField(source="price_unit")

        type = serializers.CharField()
        description = serializers.CharField()
        price = PriceSerializer(source="*")
        gpu = serializers.CharField(help_text="The GPU class (A10G, L4, A100-80GB) or cpu")
        gpu_ladder = serializers.ListField(child=serializers.CharField(), help_text=(
            "Larger GPU classes, in order, that a call out of GPU memory is run again on by this server, once "
            "each, for the price the job was charged; empty where there is none (the failure is final and "
            "refunded), as on a backend with one kind of machine"))
        model = serializers.CharField(help_text="The model this server's GPU backend runs for it")
        time_limit_s = serializers.IntegerField()
        plan = serializers.CharField(allow_null=True, help_text="The plan it needs (null: any account)")
        pro_only = serializers.BooleanField()
        available = serializers.BooleanField(help_text="Whether the configured GPU backend can run it")
        reason = serializers.CharField(allow_null=True, help_text="Why it is not available (null when it is)")
        languages = LanguageSerializer(many=True, allow_null=True, help_text=(
            "The spoken languages this server takes for it (`auto`: detect), for the types whose input "
            "names one; null for the others"))
        cached = serializers.ChoiceField(choices=["input", "seed", "none"], help_text=(
            "When the result cache serves an identical request of yours: `input` always, `seed` only when the "
            "request names a seed, `none` never (each run samples anew)"))
        engine_version = serializers.IntegerField(help_text=(
            "The engine's version: raised when the same input would give another output, so no cached result "
            "of an older one is served"))

        class LimitSerializer(serializers.Serializer):
            field = serializers.CharField(help_text="The input field naming the media file")
            limit = serializers.ChoiceField(choices=["max_seconds", "max_frames"], help_text=(
                "`max_seconds`: its length; `max_frames`: its frames (duration times frame rate)"))
            max = serializers.FloatField()

        limits = LimitSerializer(many=True, help_text=(
            "The engine's limits on the media files the input names, as their probe measured them: a submission "
            "past one is a 422 `input_limit_exceeded` naming it, before anything is charged"))

    @extend_schema(
        responses=inline_serializer("JobTypeList", {
            "backend": serializers.CharField(),
            "types": OutputSerializer(many=True),
        }),
        summary="List job types and prices",
        tags=["jobs"],
    )
    def get(self, request: Request) -> Response:
        types = self.OutputSerializer(job_type_list(), many=True).data
        return Response({"backend": settings.AUTEUR_GPU_BACKEND, "types": types})


class JobListApi(ApiView):
    """The caller's jobs, newest first; `?status=`, `?type=`, `?project_id=` filter, `?page=` /
    `?page_size=` (max 100). Results are in GET /jobs/{id}.

    `?idempotency_key=` lists the job a submission with that `Idempotency-Key` made (none when
    no submission of the caller's used it, or the key's window has passed): a client that died
    after sending finds its job instead of sending again."""

    workspace_actions = {"GET": "jobs.view"}

    pagination_class = KeyedPagination.of("jobs")

    class FilterSerializer(PageQuerySerializer):
        status = serializers.ChoiceField(choices=JobStatus.choices, required=False)
        type = serializers.ChoiceField(choices=JOB_TYPE_CHOICES, required=False)
        project_id = serializers.UUIDField(required=False)
        # What an Idempotency-Key header may hold (idempotency_key_of); an empty one filters nothing.
        idempotency_key = serializers.RegexField(r"^[ -~]+\Z", required=False, max_length=MAX_IDEMPOTENCY_KEY_LENGTH,
                                                 trim_whitespace=False)

    @extend_schema(
        parameters=[FilterSerializer],
        responses=JobSummarySerializer(many=True),
        summary="List jobs",
        operation_id="jobs_list",
        tags=["jobs"],
    )
    def get(self, request: Request) -> Response:
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        jobs = job_list(
            user=request_user(request),
            status=filters.validated_data.get("status"),
            type=filters.validated_data.get("type"),
            project_id=filters.validated_data.get("project_id"),
            idempotency_key=filters.validated_data.get("idempotency_key"),
        )
        return paginated_response(request, self, jobs, JobSummarySerializer)


class JobDetailApi(ApiView):
    """A job: its status and progress, its results (`output_data`, `output_media`) once
    completed, and `error_code` / `error_message` / `retryable` once failed."""

    workspace_actions = {"GET": "jobs.view"}

    # A performance shortcut, measured by bench/api_reads.py against a bare Django view: the most
    # frequent request of all (clients poll it) is one indexed query of the shown fields, built
    # into the response without a serializer. The token is verified as everywhere, but the
    # caller's account is not read on its own, as the job's row is found only by its active
    # owner, which proves the same. Without a row, the account is read after all (a first token
    # creates it, a disabled one is a 401), then the 404.
    authentication_classes = [DeferredAccountJWTAuthentication]

    def perform_authentication(self, request: Request) -> None:
        super().perform_authentication(request)
        # A POST here (no such job type) and the 405s: the account is read at once, so that a
        # disabled one is a 401 before anything is said about the path.
        if request.method not in ("GET", "HEAD") and isinstance(request.user, TokenSubject):
            request.user.account()

    @extend_schema(responses=JobSerializer, summary="Get a job", operation_id="jobs_retrieve", tags=["jobs"])
    def get(self, request: Request, job_id: str) -> Response:
        subject = request_subject(request)
        try:
            # The same representation as JobSerializer gives (the renderer writes UUIDs and UTC
            # datetimes as its fields do; tests/jobs/test_api_reads.py compares the two).
            job = job_detail_get(user_id=subject.id, job_id=job_id, balances=balances_shown())
        except JobNotFound:
            subject.account()
            raise
        return Response(job)

    def http_method_not_allowed(self, request: Request, *args: Any, **kwargs: Any) -> Response:  # type: ignore[override]
        # POST /jobs/<x> where x is no job type lands here (its path has the detail's shape).
        if request.method == "POST":
            # (The method check runs before the view's arguments are passed: the path's are on the view.)
            asked = str(kwargs.get("job_id") or self.kwargs.get("job_id") or "")[:100]
            types = sorted(t.value for t in JOB_SPECS)
            close = difflib.get_close_matches(asked.lower(), types, n=1, cutoff=0.6)
            hint = f" Did you mean {close[0]!r}?" if close else f" The job types: {', '.join(types)}."
            raise UnknownJobType(f"There is no job type {asked!r}.{hint}", details={"types": types})
        return super().http_method_not_allowed(request, *args, **kwargs)


class JobEventListApi(ApiView):
    """What happened to a job, oldest first: submitted, queued, started, progress, retries, the end."""

    workspace_actions = {"GET": "jobs.view"}

    FilterSerializer = PageQuerySerializer
    pagination_class = KeyedPagination.of("events")

    @extend_schema(
        parameters=[FilterSerializer],
        responses=JobEventSerializer(many=True),
        summary="List a job's events",
        tags=["jobs"],
    )
    def get(self, request: Request, job_id: str) -> Response:
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        job = job_get(user=request_user(request), job_id=job_id)
        return paginated_response(request, self, job_event_list(job=job), JobEventSerializer)


# ----------------------------------------------------------------------------- actions


class EmptyInputSerializer(StrictSerializer):
    """No fields; a body, if any, must be `{}`."""


class JobCancelThrottle(SlidingWindowThrottle):
    """Cancels per person, counted apart from (and as well as) the general per-user limit."""

    def allow_request(self, request: Request, view: APIView) -> bool:
        return self._allow(f"rl:cancel:u:{person_of(request)}",
                           limit=settings.AUTEUR_RATE_LIMIT_CANCELS_PER_MINUTE)


@raises("job_not_cancelable")
class JobCancelApi(ApiView):
    """Cancel a job that has not ended: it becomes `canceled` and is refunded once: in full
    before its inference started, else the part not yet spent (`credits_refund`). 409
    `job_not_cancelable` when it already ended or its outputs are being stored; 429
    `rate_limited` past this server's limit of cancels a minute (with `Retry-After`)."""

    workspace_actions = {"POST": "jobs.run"}

    throttle_classes = [SlidingWindowThrottle, JobCancelThrottle]

    @extend_schema(request=EmptyInputSerializer, responses=JobSerializer, summary="Cancel a job", tags=["jobs"])
    def post(self, request: Request, job_id: str) -> Response:
        user = request_user(request)
        EmptyInputSerializer(data=request.data or {}).is_valid(raise_exception=True)
        job = job_cancel(job=job_get(user=user, job_id=job_id))
        return Response(JobSerializer(job).data)


@raises("job_not_retryable", "plan_required", "payment_required", "insufficient_credits", "spend_cap_reached",
        "feature_unavailable", "content_policy_violation", "input_too_complex", "media_unscreenable",
        "consent_required")
@raises("account_under_review")
class JobRetryApi(ApiView):
    """Submit a failed job again with the same input, as a new job charged again (202).
    409 `job_not_retryable` unless the job failed with a retryable error; 422
    `content_policy_violation` when today's content policy refuses its texts or the pictures of its
    input files (nothing charged)."""

    workspace_actions = {"POST": "jobs.run"}

    @extend_schema(
        request=EmptyInputSerializer,
        responses={202: JobAcceptedSerializer},
        summary="Retry a failed job",
        tags=["jobs"],
    )
    def post(self, request: Request, job_id: str) -> Response:
        user = request_user(request)
        EmptyInputSerializer(data=request.data or {}).is_valid(raise_exception=True)
        job = job_get(user=user, job_id=job_id)
        with refusals_recorded(user=user, member_id=request_member_id(request)):
            new = job_retry(job=job, member_id=request_member_id(request))
        return _accepted(new, created=True)

"""The shapes the job endpoints answer with (jobs/apis.py): an accepted submission, a job, its
events, and a type's languages."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from auteur.core.tracing import trace_id_of
from auteur.users.workspace_context import balances_shown
from credits.models import TransactionType
from jobs.models import Job, JobPriority, JobStatus
from jobs.selectors.jobs import job_cache, job_charge, job_ledger_entries, job_output_data, job_output_media
from jobs.selectors.queue import QueueEstimate, job_queue_estimate
from jobs.specs import JOB_TYPE_CHOICES, job_spec


class CacheSerializer(serializers.Serializer):
    """Whether the result cache served a job."""

    hit = serializers.BooleanField(help_text=(
        "The job was served from the result cache: it completed when it was accepted, with no GPU call, "
        "charged the cache price"))
    source_job_id = serializers.UUIDField(allow_null=True, help_text=(
        "Your earlier job of the same work whose outputs it got (null without a hit, or once that job is deleted)"))


class JobAcceptedSerializer(serializers.Serializer):
    """The answer to a submission."""

    job_id = serializers.UUIDField(source="id")
    status = serializers.ChoiceField(choices=JobStatus.choices, help_text=(
        "`pending` (its work is queued), or `completed` when the result cache served it"))
    credits_cost = serializers.IntegerField()
    cache = serializers.SerializerMethodField()
    deduplicated = serializers.SerializerMethodField()

    @extend_schema_field(CacheSerializer)
    def get_cache(self, obj: Job) -> dict[str, Any]:
        return CacheSerializer(job_cache(cache_source_id=obj.cache_source_id)).data

    @extend_schema_field(serializers.BooleanField(help_text=(
        "The job was already doing this work (a file's automatic transcription): it is the answer, in its "
        "status, and nothing more was charged (200)")))
    def get_deduplicated(self, obj: Job) -> bool:
        return bool(self.context.get("deduplicated", False))

    def to_representation(self, instance: Job) -> dict[str, Any]:
        # Every submission is answered with it, so it is written out rather than walked field by
        # field: DRF deep-copies a serializer's declared fields for each instance (this one's and
        # CacheSerializer's), which cost more than the rest of the answer. The fields above stay
        # its schema; tests/jobs/test_api_submit.py holds that both give the same answer.
        source = instance.cache_source_id
        return {"job_id": str(instance.pk), "status": instance.status, "credits_cost": int(instance.credits_cost),
                "cache": {"hit": source is not None, "source_job_id": None if source is None else str(source)},
                "deduplicated": bool(self.context.get("deduplicated", False))}


class PriorityField(serializers.ChoiceField):
    """A job's priority as the API names it (`low`, `normal`, `high`); stored as its rank."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(choices=[label for _, label in JobPriority.choices], **kwargs)

    def to_representation(self, value: Any) -> str:
        return str(JobPriority(value).label)


class LedgerEntrySerializer(serializers.Serializer):
    id = serializers.UUIDField()
    type = serializers.ChoiceField(choices=TransactionType.choices, help_text=(
        "`usage`: the charge when the job was accepted; `refund`: credits given back when it failed, was "
        "canceled or aborted; another type: a correction by staff"))
    amount = serializers.IntegerField(help_text="Signed: negative takes credits, positive gives them back")
    balance_after = serializers.IntegerField(allow_null=True, help_text=(
        "The balance once this entry was written; null for a team workspace's member whose role does not see "
        "its credits"))
    description = serializers.CharField(allow_blank=True)
    created_at = serializers.DateTimeField()


class ChargeSerializer(serializers.Serializer):
    """What a job cost, from the credit ledger alone."""

    charged = serializers.IntegerField(help_text="Credits taken when the job was accepted")
    refunded = serializers.IntegerField(help_text="Credits given back (0 if none)")
    refund_reason = serializers.CharField(allow_null=True, help_text=(
        "Why credits were given back: the job's status, then `:` and its `error_code` where it has one "
        "(`failed:timeout`, `canceled`, `canceled:run_deadline`, `aborted:start_deadline`); null without a refund"))
    net = serializers.IntegerField(help_text="What the job cost you: the sum of its ledger entries, negated")
    entries = LedgerEntrySerializer(many=True, help_text="The ledger entries behind these figures, oldest first")


class JobSummarySerializer(serializers.Serializer):
    """A job without its results (list items); GET /jobs/{id} adds output_data and output_media."""

    id = serializers.UUIDField()
    type = serializers.ChoiceField(choices=JOB_TYPE_CHOICES)
    status = serializers.ChoiceField(choices=JobStatus.choices)
    project_id = serializers.UUIDField(allow_null=True)
    credits_cost = serializers.IntegerField()
    credits_refunded = serializers.BooleanField()
    credits_refund = serializers.IntegerField(
        help_text="Credits given back: the whole cost when the job failed or was canceled before its inference "
                  "started, the part not yet spent when it was canceled after")
    progress = serializers.IntegerField(help_text="0 to 100")
    error_code = serializers.CharField(allow_blank=True)
    error_message = serializers.CharField(allow_blank=True, help_text="A fixed sentence for error_code")
    retryable = serializers.BooleanField()
    attempts = serializers.IntegerField()
    retry_of_id = serializers.UUIDField(allow_null=True)
    created_at = serializers.DateTimeField()
    queued_at = serializers.DateTimeField(allow_null=True)
    started_at = serializers.DateTimeField(allow_null=True)
    completed_at = serializers.DateTimeField(allow_null=True)
    processing_time_ms = serializers.IntegerField(allow_null=True)
    gpu_seconds = serializers.FloatField(allow_null=True)
    gpu = serializers.SerializerMethodField(help_text=(
        "The GPU class its call runs on (or ran on): its type's own (`GET /jobs/types`), or a larger one of the "
        "type's `gpu_ladder` after a call ran out of GPU memory; `cpu` for render and compression"))
    priority = PriorityField(help_text="Its order among your own waiting jobs: `high`, `normal` or `low`.")
    start_deadline = serializers.DateTimeField(allow_null=True, help_text=(
        "A job still waiting then ends `aborted`, refunded in full: submission + the earlier of its "
        "`start_within_seconds` and the server's queue TTL for its type. Null when neither applies."))
    run_within_seconds = serializers.IntegerField(allow_null=True, help_text=(
        "The run deadline the request set, in seconds after the job starts."))
    run_deadline = serializers.DateTimeField(allow_null=True, help_text=(
        "Once started: its start + `run_within_seconds`; a job still running then is `canceled` "
        "(`error_code` `run_deadline`), refunded the part not spent."))
    waiting_for = serializers.ChoiceField(choices=["", "slot", "capacity"], help_text=(
        "Why a `queued` job waits: `slot` (your plan's concurrent jobs are running, or a job of yours ahead of "
        "it waits) or `capacity` (its type is running all it can at once, and other users' turns come first: "
        "fair share); empty once it started, or if it never waited"))
    trace_id = serializers.SerializerMethodField(help_text=(
        "The id of the job's trace (32 hex digits) where the server exports traces (OpenTelemetry): its "
        "submission, steps, GPU call, storing and webhook attempts are that trace's spans. A `traceparent` "
        "header sent with the submission is linked from its trace, not continued. Null where traces were off "
        "when it was submitted."))

    charge = serializers.SerializerMethodField()

    def get_trace_id(self, obj: Job) -> str | None:
        return trace_id_of(obj.traceparent) or None

    def get_gpu(self, obj: Job) -> str:
        return obj.gpu_class or job_spec(obj.type).engine.gpu.value

    @extend_schema_field(ChargeSerializer)
    def get_charge(self, obj: Job) -> dict[str, Any]:
        entries = getattr(obj, "ledger_entries", None)  # read with the job by the list (jobs.selectors.jobs)
        if entries is None:
            entries = job_ledger_entries(job_id=obj.pk)
        # The request's reader: its seat decided whether it sees the balance (auteur/users/authentication.py).
        return ChargeSerializer(job_charge(status=obj.status, error_code=obj.error_code, entries=entries,
                                           balances=balances_shown())).data

    cache = serializers.SerializerMethodField()

    @extend_schema_field(CacheSerializer)
    def get_cache(self, obj: Job) -> dict[str, Any]:
        return CacheSerializer(job_cache(cache_source_id=obj.cache_source_id)).data


class OutputMediaSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    name = serializers.CharField()
    type = serializers.CharField()


class JobSerializer(JobSummarySerializer):
    output_data = serializers.SerializerMethodField()
    output_media = serializers.SerializerMethodField()
    # Where a waiting (pending or queued) job stands; all three are null once it is processing
    # or has ended (jobs/selectors/queue.py defines them).
    queue_position = serializers.SerializerMethodField()
    lane_position = serializers.SerializerMethodField()
    eta_seconds = serializers.SerializerMethodField()

    @extend_schema_field(serializers.DictField(help_text=(
        "The results of a completed job; their shape per `type` is the JSON Schema at /api/schema/outputs/ "
        "(`$defs/<type>`). A transcription's transcript (`language`: the one transcribed, the detected one for "
        "`auto`; `duration_ms`, `text`, `segments` with their `words`) is under `transcript`, and also at the "
        "top level, where it has always been. A transcription's `edl` says whether its words reached the "
        "project's timeline: {status: written (with version) | unchanged | off | superseded | pending | failed "
        "(with code, message)}.")))
    def get_output_data(self, obj: Job) -> dict[str, Any]:
        return job_output_data(job_type=obj.type, output_data=obj.output_data)

    @extend_schema_field(OutputMediaSerializer(many=True))
    def get_output_media(self, obj: Job) -> list[dict[str, Any]]:
        media = job_output_media(user_id=obj.user_id, output_data=obj.output_data)
        return [{"id": m.pk, "name": m.name, "type": m.type} for m in media]

    def _estimate(self, obj: Job) -> QueueEstimate:
        cached: dict[Any, QueueEstimate] = self.context.setdefault("queue_estimates", {})
        if obj.pk not in cached:
            cached[obj.pk] = job_queue_estimate(
                user_id=obj.user_id, job_type=obj.type, status=obj.status, created_at=obj.created_at,
                priority=obj.priority,
            )
        return cached[obj.pk]

    @extend_schema_field(serializers.IntegerField(allow_null=True, min_value=1, help_text=(
        "While the job waits (pending or queued): its place among your waiting jobs, 1 being the next "
        "to start; your jobs start by priority, then in submission order, as your plan's concurrent "
        "slots free. Null once it is processing or has ended.")))
    def get_queue_position(self, obj: Job) -> int | None:
        return self._estimate(obj).queue_position

    @extend_schema_field(serializers.IntegerField(allow_null=True, min_value=1, help_text=(
        "While the job waits: 1 + the number of waiting jobs of all users on the same queue (the "
        "job types that share its workers) submitted before it. A measure of load: each user's "
        "jobs still start as that user's slots free. Null once it is processing or has ended.")))
    def get_lane_position(self, obj: Job) -> int | None:
        return self._estimate(obj).lane_position

    @extend_schema_field(serializers.IntegerField(allow_null=True, min_value=0, help_text=(
        "While the job waits: estimated seconds until it starts processing, from the median "
        "processing time of the latest 50 completed jobs of each type involved: your running jobs "
        "(less the time they have run) and your waiting jobs ahead of it, spread over your plan's "
        "concurrent slots. 0 when a slot is free for it now. Null when a job that must end first is "
        "of a type with no completed jobs yet, and once it is processing or has ended.")))
    def get_eta_seconds(self, obj: Job) -> int | None:
        return self._estimate(obj).eta_seconds


class JobEventSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    type = serializers.CharField()
    data = serializers.DictField()  # type: ignore[assignment]  # a declared field, not Serializer.data
    created_at = serializers.DateTimeField()


class LanguageSerializer(serializers.Serializer):
    code = serializers.CharField(help_text="A Whisper language code, or auto")
    name = serializers.CharField()


class QuoteCacheSerializer(serializers.Serializer):
    hit = serializers.BooleanField(help_text="An identical earlier job of yours would serve it")
    source_job_id = serializers.UUIDField(allow_null=True, help_text="That job; null without a hit")
    credits_cost = serializers.IntegerField(allow_null=True, help_text=(
        "The cache price, what it would be charged; null without a hit"))


class QuoteSpendCapSerializer(serializers.Serializer):
    cap = serializers.ChoiceField(choices=["workspace", "key", "key_per_job", "member"], help_text=(
        "The workspace's monthly cap, the API key's monthly or per-job limit, or the member's monthly budget"))
    key_id = serializers.UUIDField(required=False, help_text="The API key's (a key's cap)")
    member_id = serializers.UUIDField(required=False, help_text="The member's (a member's budget)")
    limit = serializers.IntegerField(allow_null=True, help_text=(
        "Its limit, in credits (null for an API key without credits:read)"))
    spent = serializers.IntegerField(required=False, allow_null=True, help_text=(
        "What it counted this month (a monthly cap's; null for an API key without credits:read)"))
    cost = serializers.IntegerField()
    resets_at = serializers.DateTimeField(allow_null=True, help_text="When its month ends (null: a per-job limit)")
    message = serializers.CharField()


class QuoteSerializer(serializers.Serializer):
    """What a job would cost if submitted now, promised until `expires_at`."""

    quote_id = serializers.UUIDField(help_text="Name it in the submission's body (`quote_id`) to be charged this price")
    type = serializers.ChoiceField(choices=JOB_TYPE_CHOICES)
    credits_cost = serializers.IntegerField(help_text="The price the quote holds")
    balance = serializers.IntegerField(allow_null=True, help_text=(
        "Your balance now (null for an API key without credits:read)"))
    balance_after = serializers.IntegerField(allow_null=True, help_text=(
        "Your balance once charged (negative: the submission would be refused with 402 `insufficient_credits`; "
        "null for an API key without credits:read)"))
    queue_position = serializers.IntegerField(allow_null=True, min_value=1, help_text=(
        "Its place among your waiting jobs if submitted now (as a job's `queue_position`)"))
    lane_position = serializers.IntegerField(allow_null=True, min_value=1, help_text=(
        "1 + the waiting jobs of all users on its queue now (as a job's `lane_position`)"))
    eta_seconds = serializers.IntegerField(allow_null=True, min_value=0, help_text=(
        "Estimated seconds until it would start (as a job's `eta_seconds`); null without history"))
    expires_at = serializers.DateTimeField(help_text="After this, a submission naming it is refused (410)")
    cache = QuoteCacheSerializer(help_text=(
        "Whether the result cache would serve it if submitted now: then it completes at once, charged "
        "`cache.credits_cost` instead"))
    spend_cap = QuoteSpendCapSerializer(allow_null=True, help_text=(
        "The spend cap that would refuse it if submitted now (402 `spend_cap_reached`), null for none"))

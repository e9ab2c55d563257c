from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from django.conf import settings
from django.db import models
from django.utils import timezone

# The Idempotency-Key of a file's automatic transcription (jobs/intake/transcribe.py); retention
# keeps these records, and an index leaves them out.
AUTO_TRANSCRIBE_KEY_PREFIX = "auto-transcribe:"


class JobStatus(models.TextChoices):
    PENDING = "pending"  # accepted and charged; its chain is published (or about to be)
    QUEUED = "queued"  # waiting for one of the user's concurrency slots
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELED = "canceled"
    # Never started: its start deadline (the client's, or its type's queue TTL) passed while it
    # waited. Refunded in full; distinct from `canceled`, which a client or a run deadline asks for.
    ABORTED = "aborted"


class JobPriority(models.IntegerChoices):
    """Which of a user's own waiting jobs starts first: higher first, then the older. It orders
    only the user's own jobs, never one user's job before another's."""

    LOW = 0, "low"
    NORMAL = 1, "normal"
    HIGH = 2, "high"


class JobEventType(models.TextChoices):
    """What a job's event records (`JobEvent.type`): the API's `/jobs/{id}/events` lists them."""

    SUBMITTED = "submitted"  # accepted and charged
    REPUBLISHED = "republished"  # the reaper published a job whose publish was lost
    REPOLLED = "repolled"  # the reaper looked again at a call that showed no sign of life
    QUEUED = "queued"  # waiting for one of the user's slots
    STARTED = "started"  # claimed a slot: processing
    INFERENCE_STARTED = "inference_started"  # a GPU call was spawned
    INFERENCE_RETRY = "inference_retry"  # the call failed transiently; another is spawned
    PROGRESS = "progress"  # every 10 points of the engine's progress
    STEP_RETRY = "step_retry"  # a step backs off and runs again (the GPU backend unreachable)
    STEP_REDELIVERED = "step_redelivered"  # a step's message came back (its worker died)
    COMPLETED = "completed"
    FAILED = "failed"  # refunded
    CANCELED = "canceled"  # refunded
    ABORTED = "aborted"  # not started by its start deadline; refunded in full
    # After its end: staff released an output that moderation withheld (charged then); the job stays failed.
    OUTPUT_RELEASED = "output_released"


ACTIVE_STATUSES = (JobStatus.PENDING, JobStatus.QUEUED, JobStatus.PROCESSING)
WAITING_STATUSES = (JobStatus.PENDING, JobStatus.QUEUED)
TERMINAL_STATUSES = (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELED, JobStatus.ABORTED)


class Batch(models.Model):
    """Many jobs submitted in one request (POST /jobs/batch), charged together or not at all.

    Its items are its jobs (`Job.batch`); what it counts per status is read from them, so it is
    never out of step with them. `ended_at`: when every item had ended and that was announced (its
    `batch.completed` event and webhook, once)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+", db_index=False)
    member_id = models.UUIDField(null=True, blank=True, editable=False)  # who submitted it (Job.member_id)
    item_count = models.PositiveIntegerField()
    credits_cost = models.PositiveIntegerField()  # what its items were charged, together
    priority = models.PositiveSmallIntegerField(choices=JobPriority.choices, default=JobPriority.LOW)
    # The Idempotency-Key it was submitted with ("" for none) and its body's hash: the same key and
    # body within the window answer this batch. One batch per (user, key); an expired one's key is
    # cleared when the key is used again.
    idempotency_key = models.CharField(max_length=255, blank=True, default="")
    request_hash = models.CharField(max_length=64, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    ended_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "job_batches"
        ordering = ("-created_at",)
        indexes = [
            models.Index(fields=["user", "-created_at"], name="job_batches_user_created"),
            # The batches not announced ended yet: what the end sweep reads.
            models.Index(fields=["created_at"], name="job_batches_running", condition=models.Q(ended_at__isnull=True)),
        ]
        constraints = [
            models.UniqueConstraint(fields=["user", "idempotency_key"], name="job_batches_user_key",
                                    condition=~models.Q(idempotency_key="")),
        ]

    def __str__(self) -> str:
        return f"batch {self.id} ({self.item_count} items)"


class Job(models.Model):
    """One AI feature run, paid for when accepted and refunded once if it does not complete."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="jobs")
    # The person who submitted it: a team workspace's member, or a personal workspace's owner (for a
    # transcription started on upload, whoever uploaded the file); none from before workspaces.
    member_id = models.UUIDField(null=True, blank=True, editable=False)
    project = models.ForeignKey(
        "projects.Project", on_delete=models.SET_NULL, null=True, blank=True, related_name="jobs"
    )
    # A job type's name (jobs/specs.py), without choices: the types are declared in the specs, and
    # adding one must not change this field (nor need a migration). A request names a type by its
    # route (one per spec), so no other value is ever stored.
    type = models.CharField(max_length=32)
    status = models.CharField(max_length=12, choices=JobStatus.choices, default=JobStatus.PENDING)
    credits_cost = models.PositiveIntegerField()
    credits_refunded = models.BooleanField(default=False)
    # Credits given back: the whole cost when the job failed or was canceled before its inference
    # started, the unspent part when it was canceled after (jobs.life.status.cancel_refund).
    credits_refund = models.PositiveIntegerField(default=0)
    input_params = models.JSONField(default=dict)
    output_data = models.JSONField(default=dict, blank=True)
    error_code = models.CharField(max_length=40, blank=True, default="")
    error_message = models.TextField(blank=True, default="")  # shown to the user: a fixed sentence per code
    # What actually went wrong (exception text, an engine's stderr), for staff only: the admin
    # shows it, the API never does. Signed URLs and secrets are masked before it is stored.
    error_detail = models.TextField(blank=True, default="")
    retryable = models.BooleanField(default=False)
    progress = models.PositiveSmallIntegerField(default=0)
    attempts = models.PositiveSmallIntegerField(default=0)  # GPU calls this job claimed the right to spawn
    gpu_backend = models.CharField(max_length=16, blank=True, default="")
    gpu_call_id = models.CharField(max_length=255, blank=True, default="")  # the seed's modal_task_id
    # The GPU class of its ladder its call runs on after one ran out of memory ("": its type's own).
    gpu_class = models.CharField(max_length=16, blank=True, default="", db_default="")
    # Set by the step that is about to spawn the job's call, cleared when the call's id is recorded:
    # another delivery of that step starts no call of its own meanwhile (jobs.life.inference).
    spawn_claimed_at = models.DateTimeField(null=True, blank=True)
    gpu_seconds = models.FloatField(null=True, blank=True)
    processing_time_ms = models.PositiveIntegerField(null=True, blank=True)
    idempotency_key = models.CharField(max_length=255, blank=True, default="")
    retry_of = models.ForeignKey("self", on_delete=models.SET_NULL, null=True, blank=True, related_name="retries")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)
    queued_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)  # claimed: pending/queued -> processing
    inference_started_at = models.DateTimeField(null=True, blank=True)
    inference_ended_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)  # any terminal state
    # A default in the database too: a job inserted by code that predates the column (a server
    # of the previous release during a rolling deploy, a raw INSERT) is `normal`.
    priority = models.PositiveSmallIntegerField(
        choices=JobPriority.choices, default=JobPriority.NORMAL, db_default=JobPriority.NORMAL
    )
    # Deadlines (jobs.life.deadlines): not started by `start_deadline` (the client's
    # `start_within_seconds` or the type's queue TTL, the earlier) -> aborted; still running
    # `run_within_seconds` after its start -> canceled, refunded pro rata (`run_deadline`, set
    # when it starts).
    # Why a queued job waits: `slot` (its owner's concurrency limit, or their job ahead of it) or
    # `capacity` (its type is full: jobs.life.fairshare); empty once it starts or if it never waited.
    waiting_for = models.CharField(max_length=8, blank=True, default="", db_default="")
    start_within_seconds = models.PositiveIntegerField(null=True, blank=True)
    start_deadline = models.DateTimeField(null=True, blank=True)
    run_within_seconds = models.PositiveIntegerField(null=True, blank=True)
    run_deadline = models.DateTimeField(null=True, blank=True)
    # The result cache (jobs/intake/result_cache.py): what identifies the job's work (empty for a
    # type or request whose output is not a function of its input), and, for a job served from
    # the cache, the earlier job of the same user whose outputs it got.
    cache_key = models.CharField(max_length=64, blank=True, default="", db_default="")
    cache_source = models.ForeignKey(
        "self", on_delete=models.SET_NULL, null=True, blank=True, related_name="+", db_index=False
    )
    # The batch it was submitted in (POST /jobs/batch); none for a job submitted on its own.
    batch = models.ForeignKey(Batch, on_delete=models.SET_NULL, null=True, blank=True, related_name="jobs",
                              db_index=False)
    batch_index = models.PositiveSmallIntegerField(null=True, blank=True)  # its place in the batch's items, from 0
    # The W3C traceparent of its `job.submit` span (auteur/core/tracing.py): every later span of
    # the job continues it. Empty when tracing was off at its submission.
    traceparent = models.CharField(max_length=55, blank=True, default="", db_default="")

    class Meta:
        db_table = "jobs"
        ordering = ("-created_at",)
        indexes = [
            models.Index(fields=["user", "-created_at"], name="jobs_user_created"),
            models.Index(fields=["user", "status", "created_at"], name="jobs_user_status_created"),
            models.Index(fields=["status", "updated_at"], name="jobs_status_updated"),
            # A waiting job's place in its lane, and its types' recent durations (jobs/selectors/queue.py).
            models.Index(
                fields=["type", "created_at"], name="jobs_waiting_type_created",
                condition=models.Q(status__in=["pending", "queued"]),
            ),
            models.Index(
                fields=["type", "-completed_at"], name="jobs_completed_type_recent",
                condition=models.Q(status="completed"), include=["processing_time_ms"],
            ),
            # A user's waiting jobs in start order (jobs.life.slots): their next, the first ahead of
            # or the last behind one of theirs, one probe each however many they have waiting.
            models.Index(
                fields=["user", "-priority", "created_at", "id"], name="jobs_user_waiting_order",
                condition=models.Q(status__in=["pending", "queued"]),
            ),
            # The deadline sweep's two reads (jobs.life.deadlines), every few seconds.
            models.Index(
                fields=["start_deadline"], name="jobs_waiting_start_deadline",
                condition=models.Q(status__in=["pending", "queued"], start_deadline__isnull=False),
            ),
            models.Index(
                fields=["run_deadline"], name="jobs_processing_run_deadline",
                condition=models.Q(status="processing", run_deadline__isnull=False),
            ),
            # Fair share (jobs.life.fairshare): the users waiting on a type, one index probe per
            # user, and the type's containers in use.
            models.Index(
                fields=["type", "user"], name="jobs_waiting_type_user",
                condition=models.Q(status__in=["pending", "queued"]),
            ),
            models.Index(
                fields=["type"], name="jobs_type_in_inference",
                condition=models.Q(status="processing", inference_ended_at__isnull=True),
            ),
            models.Index(
                fields=["type"], name="jobs_queued_for_capacity",
                condition=models.Q(status="queued", waiting_for="capacity"),
            ),
            # The result cache's lookup: a user's completed jobs by the work they did, newest first.
            models.Index(
                fields=["user", "cache_key", "-completed_at"], name="jobs_completed_cache_key",
                condition=models.Q(status="completed") & ~models.Q(cache_key=""),
            ),
            # The jobs that ended since a time, in the order they ended: the metrics exporter's
            # poll reads only the rows new since its last one, however many jobs ever ended.
            models.Index(
                fields=["completed_at"], name="jobs_ended_at", condition=models.Q(completed_at__isnull=False),
            ),
            # The jobs served from a job's outputs, found when it is deleted (few jobs have a source).
            models.Index(
                fields=["cache_source"], name="jobs_cache_source",
                condition=models.Q(cache_source__isnull=False),
            ),
            # A batch's items: its counts per status, its manifest, a bulk action on it.
            models.Index(fields=["batch", "status"], name="jobs_batch_status", condition=models.Q(batch__isnull=False)),
        ]
        constraints = [
            models.CheckConstraint(condition=models.Q(progress__lte=100), name="jobs_progress_le_100"),
            models.CheckConstraint(
                condition=models.Q(status__in=[s.value for s in JobStatus]), name="jobs_status_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.type} {self.id}"

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES


PIECES = "pieces"  # the gpu_call_id of a job whose calls are its pieces'


class JobPiece(models.Model):
    """A piece of a long file's job (jobs.life.pieces): a span of the file, run as a GPU call of its
    own, retried on its own; the job completes when every piece has, with the results stitched."""

    class State(models.TextChoices):
        PENDING = "pending"  # not spawned yet, or to be spawned again after a transient failure
        RUNNING = "running"
        SUCCEEDED = "succeeded"

    class Kind(models.TextChoices):
        SPAN = "span"  # its call runs the job on its span of the file
        SPEAKERS = "speakers"  # its call diarizes the whole file, for the spans' words (the last index)

    id = models.BigAutoField(primary_key=True)
    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="pieces")
    index = models.PositiveSmallIntegerField()
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.SPAN)
    start_ms = models.PositiveIntegerField()  # its own span, on the file's time
    end_ms = models.PositiveIntegerField()
    audio_start_ms = models.PositiveIntegerField()  # what its call hears
    audio_end_ms = models.PositiveIntegerField()
    state = models.CharField(max_length=12, choices=State.choices, default=State.PENDING)
    call_id = models.CharField(max_length=255, blank=True, default="")
    attempts = models.PositiveSmallIntegerField(default=0)
    started_at = models.DateTimeField(null=True, blank=True)
    progress = models.FloatField(default=0.0)
    result = models.JSONField(null=True, blank=True)
    gpu_seconds = models.FloatField(default=0.0)

    class Meta:
        db_table = "job_pieces"
        constraints = [models.UniqueConstraint(fields=["job", "index"], name="job_pieces_job_index")]
        indexes = [
            models.Index(fields=["call_id"], name="job_pieces_running_call", condition=models.Q(state="running")),
        ]

    def __str__(self) -> str:
        return f"piece {self.index} of {self.job_id}"


class Quote(models.Model):
    """A price promised for a stated time (POST /jobs/{type}/quote): one submission of the same
    type, body and work that names it before it expires is charged this price."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    type = models.CharField(max_length=32)
    request_hash = models.CharField(max_length=64)  # the body as quoted, less `quote_id`
    quantities = models.JSONField(default=dict)  # what the price was computed from (the work)
    credits_cost = models.PositiveIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    job = models.OneToOneField(Job, on_delete=models.SET_NULL, null=True, blank=True, related_name="quote")

    class Meta:
        db_table = "job_quotes"
        # Retention removes the expired ones (jobs/retention.py).
        indexes = [models.Index(fields=["expires_at"], name="job_quotes_expires")]

    def __str__(self) -> str:
        return f"{self.type} quote {self.id}: {self.credits_cost}"


class FairShare(models.Model):
    """A user's virtual time on one job type (jobs.life.fairshare): the credits of the work started
    for them there, over their plan's weight. While the type's capacity is full, the waiting user
    with the least goes next."""

    id = models.BigAutoField(primary_key=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    type = models.CharField(max_length=32)
    virtual_time = models.FloatField(default=0.0)

    class Meta:
        db_table = "job_fair_share"
        constraints = [models.UniqueConstraint(fields=["type", "user"], name="job_fair_share_type_user")]

    def __str__(self) -> str:
        return f"{self.type} {self.user_id}: {self.virtual_time:g}"


class TypeClock(models.Model):
    """A job type's virtual clock: the virtual time of the last job started on it. A user who comes
    back after a pause starts from it, not from where they left off, so a pause earns no burst."""

    type = models.CharField(max_length=32, primary_key=True)
    virtual_time = models.FloatField(default=0.0)

    class Meta:
        db_table = "job_type_clocks"

    def __str__(self) -> str:
        return f"{self.type}: {self.virtual_time:g}"


class JobEvent(models.Model):
    """What happened to a job, in order: submission, state changes, progress, retries."""

    id = models.BigAutoField(primary_key=True)
    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="events")
    type = models.CharField(max_length=32)
    data = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "job_events"
        ordering = ("id",)
        indexes = [
            models.Index(fields=["job", "id"], name="job_events_job_id"),
            # Retention finds the events past the window by their time (jobs/retention.py).
            models.Index(fields=["created_at"], name="job_events_created"),
        ]

    def __str__(self) -> str:
        return f"{self.type} {self.job_id}"


class IdempotencyRecord(models.Model):
    """An `Idempotency-Key` a user sent with a submission: the same key and body return the job.

    One row per (user, key); a key older than the window is replaced, not reused.
    """

    id = models.BigAutoField(primary_key=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=255)
    request_hash = models.CharField(max_length=64)
    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "job_idempotency_keys"
        constraints = [models.UniqueConstraint(fields=["user", "key"], name="job_idempotency_user_key")]
        indexes = [
            # Retention's query (jobs/retention.py): records past the window, leaving out
            # the automatic transcription's, which are kept for ever.
            models.Index(
                fields=["created_at"], name="job_idempotency_created",
                condition=~models.Q(key__startswith=AUTO_TRANSCRIBE_KEY_PREFIX),
            ),
        ]

    def __str__(self) -> str:
        return self.key



def idempotency_window_start(now: datetime | None = None) -> datetime:
    """The oldest record of an Idempotency-Key that still answers for it (replays its job, finds it):
    AUTEUR_IDEMPOTENCY_WINDOW_SECONDS before `now`. An older one is as good as gone."""
    return (now or timezone.now()) - timedelta(seconds=settings.AUTEUR_IDEMPOTENCY_WINDOW_SECONDS)

class UsageEvent(models.Model):
    """One ended job as usage analytics keep it (jobs.events.usage): who used which feature, for
    how long, at what charge. Written in the transaction that ends the job, kept
    AUTEUR_USAGE_RETENTION_DAYS (90) whatever becomes of the job, read by staff (the admin, its CSV
    export, `manage.py usage_export`)."""

    class Outcome(models.TextChoices):
        COMPLETED = "completed"
        FAILED = "failed"
        CANCELED = "canceled"
        ABORTED = "aborted"

    id = models.BigAutoField(primary_key=True)
    created_at = models.DateTimeField()  # when the job ended
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="usage_events")
    member_id = models.UUIDField(null=True, blank=True)  # the job's (Job.member_id)
    job_id = models.UUIDField()  # not a foreign key: the event outlives what becomes of the job
    project_id = models.UUIDField(null=True, blank=True)
    type = models.CharField(max_length=32)
    outcome = models.CharField(max_length=12, choices=Outcome.choices)
    error_code = models.CharField(max_length=40, blank=True, default="")
    credits_charged = models.IntegerField()
    credits_refunded = models.IntegerField(default=0)
    credits_net = models.IntegerField()
    # What the price counted (the job's `_quantities`: duration_ms, characters, images...).
    quantities = models.JSONField(default=dict, blank=True)
    waited_ms = models.BigIntegerField(null=True, blank=True)  # submission to start
    processing_ms = models.BigIntegerField(null=True, blank=True)  # start to end
    gpu_seconds = models.FloatField(default=0.0)
    cached = models.BooleanField(default=False)  # served from the result cache

    class Meta:
        db_table = "usage_events"
        indexes = [
            models.Index(fields=["created_at"], name="usage_events_created"),
            models.Index(fields=["user", "created_at"], name="usage_events_user_created"),
            models.Index(fields=["type", "created_at"], name="usage_events_type_created"),
        ]
        constraints = [models.UniqueConstraint(fields=["job_id"], name="usage_events_one_per_job")]

    def __str__(self) -> str:
        return f"{self.type} {self.outcome} ({self.credits_net} credits)"


class ScreeningRefusal(models.Model):
    """A request the content policy refused (jobs.intake.screening): who sent it, for which type,
    and which fields were flagged in which categories. Never the text: what was refused is known
    by its categories only. Counted per account; read by staff (the admin)."""

    id = models.BigAutoField(primary_key=True)
    created_at = models.DateTimeField(auto_now_add=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    member_id = models.UUIDField(null=True, blank=True)  # who asked, in a team workspace
    type = models.CharField(max_length=32)  # the job type (a batch's refused item's)
    # [{"field": "prompt", "categories": ["hate"]}, ...]: each flagged field (a batch's: "items[3].prompt").
    flagged = models.JSONField()
    model_version = models.CharField(max_length=64)  # the screener that decided
    policy_version = models.CharField(max_length=16)

    class Meta:
        db_table = "screening_refusals"
        indexes = [models.Index(fields=["user", "created_at"], name="screening_refusals_user")]

    def __str__(self) -> str:
        return f"{self.type} refused ({', '.join(sorted({c for f in self.flagged for c in f['categories']}))})"


class MediaVerdict(models.Model):
    """The image screener's verdict on the pictures of an input file (jobs.intake.media_screening),
    kept per owner, content and screener: a file is decoded and scored once, whichever job, quote,
    batch or retry names it next. Holds no content: the file's SHA-256, the categories refused and
    the highest score. `screener` names the model and how frames were sampled; another screener
    decides again."""

    id = models.BigAutoField(primary_key=True)
    created_at = models.DateTimeField(auto_now_add=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    content_sha256 = models.CharField(max_length=64)
    screener = models.CharField(max_length=64)
    categories = models.JSONField(default=list)  # [] when it passed
    top_score = models.FloatField()
    frames = models.PositiveSmallIntegerField()  # the pictures scored (frames and their windows)

    class Meta:
        db_table = "media_verdicts"
        constraints = [models.UniqueConstraint(fields=["user", "content_sha256", "screener"],
                                               name="media_verdicts_once")]

    def __str__(self) -> str:
        return f"{self.content_sha256[:12]}: {', '.join(self.categories) or 'passed'}"


class ModerationSource(models.TextChoices):
    EMBEDDED = "embedded"  # this worker's own screener decided
    INJECTED = "injected"  # the test seam AUTEUR_SCREENING_INJECT forced it (never in production)


class ModerationState(models.TextChoices):
    HELD = "held"  # withheld, waiting for staff
    RELEASED = "released"  # staff let the user have it (and charged the job then)
    CONFIRMED = "confirmed"  # staff agreed it is refused; kept until the quarantine lapses


class JobModeration(models.Model):
    """A job whose outputs output screening withheld (jobs.life.moderation): the job failed
    `output_moderated` and was refunded; its files wait in the quarantine folder for staff, who
    confirm the verdict or release them. Read and decided by staff only (the admin)."""

    job = models.OneToOneField(Job, on_delete=models.CASCADE, primary_key=True, related_name="+")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    categories = models.JSONField()  # the taxonomy's categories it was flagged for, e.g. ["sexual"]
    source = models.CharField(max_length=16, choices=ModerationSource.choices)
    # [{"name", "key", "content_type", "filename"}]: each withheld output where it waits.
    quarantine = models.JSONField(default=list)
    model_version = models.CharField(max_length=64)  # the screener that decided
    state = models.CharField(max_length=16, choices=ModerationState.choices, default=ModerationState.HELD)
    decided_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True,
                                   related_name="+")
    decided_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "job_moderations"
        indexes = [models.Index(fields=["state", "created_at"], name="job_moderations_state")]

    def __str__(self) -> str:
        return f"output of job {self.job_id} {self.state} ({', '.join(self.categories)})"


class HoldReason(models.TextChoices):
    """Why an account's generative requests are held for staff review (jobs.life.standing)."""

    REFUSALS = "refusals"  # too many content policy refusals in a day or a month
    ZERO_TOLERANCE = "zero_tolerance"  # one refusal in a category that is never a mistake (sexual_minors)
    OUTPUTS = "outputs"  # outputs that staff confirmed the output screener was right to withhold


class AccountStanding(models.Model):
    """An account's review hold: while `held_since` is set, its generative requests are refused
    (403 `account_under_review`) until staff lift the hold. A row exists once the account has
    been refused once; no row, or `held_since` null, is good standing. Counting restarts at
    `lifted_at`: what was refused before a lift never counts towards the next hold."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, primary_key=True,
                                related_name="+")
    held_since = models.DateTimeField(null=True, blank=True)
    held_reason = models.CharField(max_length=16, choices=HoldReason.choices, blank=True)
    lifted_at = models.DateTimeField(null=True, blank=True)
    lifted_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True,
                                  related_name="+")

    class Meta:
        db_table = "account_standings"
        constraints = [
            # A hold always says why; a lifted or never-held account has no reason.
            models.CheckConstraint(
                condition=(models.Q(held_since__isnull=True, held_reason="")
                           | (models.Q(held_since__isnull=False) & ~models.Q(held_reason=""))),
                name="account_standings_reason_with_hold",
            ),
        ]

    def __str__(self) -> str:
        if self.held_since is None:
            return "in good standing"
        return f"held since {self.held_since:%Y-%m-%d %H:%M} ({self.held_reason})"

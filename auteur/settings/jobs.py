"""Jobs: concurrency per plan, the reaper and deadlines, fair share, pieces, quotes, the cache."""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured

from auteur.settings.environment import env

# ---- Jobs (jobs/)
# At most this many jobs `processing` at once per user, by plan (None: no active subscription);
# the rest wait `queued` and start in submission order as slots free.
AUTEUR_JOB_CONCURRENCY = {
    None: env.int("AUTEUR_JOB_CONCURRENCY_FREE", default=1),
    "starter": env.int("AUTEUR_JOB_CONCURRENCY_STARTER", default=2),
    "pro": env.int("AUTEUR_JOB_CONCURRENCY_PRO", default=5),
}
AUTEUR_IDEMPOTENCY_WINDOW_SECONDS = env.int("AUTEUR_IDEMPOTENCY_WINDOW_SECONDS", default=24 * 3600)
# The reaper (jobs.reap, run by beat every AUTEUR_REAPER_INTERVAL_SECONDS, celeryconfig.py):
# re-publish a job still `pending` after this long (its publish was lost), and poll again a
# `processing` job with no sign of life for this long (its poll message was lost). Lower them
# for drills (bench/chaos.py); a repoll threshold below a few poll intervals only adds polls.
AUTEUR_REAPER_INTERVAL_SECONDS = env.float("AUTEUR_REAPER_INTERVAL_SECONDS", default=60.0)
AUTEUR_REAPER_PENDING_AFTER_SECONDS = env.int("AUTEUR_REAPER_PENDING_AFTER_SECONDS", default=60)
# A GPU call still running this long past its type's time limit is cancelled and its job fails
# (`timeout`); the grace covers a container's start and the result's upload.
AUTEUR_GPU_TIME_LIMIT_GRACE_SECONDS = env.int("AUTEUR_GPU_TIME_LIMIT_GRACE_SECONDS", default=30)
# A job step whose message keeps coming back without finishing (its worker process killed each
# time: out of memory, a crash) runs at most this many times; its next delivery fails the job
# `crash_loop`, refunded once, instead of taking another worker down (jobs/life/deliveries.py).
AUTEUR_STEP_MAX_DELIVERIES = env.int("AUTEUR_STEP_MAX_DELIVERIES", default=3)
if AUTEUR_STEP_MAX_DELIVERIES < 1:
    raise ImproperlyConfigured("AUTEUR_STEP_MAX_DELIVERIES must be at least 1.")
# Check every job event's data against the published event schema as it is recorded (the tests
# turn it on; a mismatch raises): jobs/events/schema.py.
AUTEUR_CHECK_EVENT_SCHEMA = env.bool("AUTEUR_CHECK_EVENT_SCHEMA", default=False)
# AI features switched off by the operator, by job type ("video-generation,lip-sync"), whatever
# the backend and its weights: submissions and quotes are 503 `feature_unavailable`, GET
# /jobs/types shows them unavailable, and jobs already accepted run to their end.
AUTEUR_FEATURES_OFF = frozenset(name.strip() for name in env.list("AUTEUR_FEATURES_OFF", default=[]) if name.strip())
AUTEUR_REAPER_REPOLL_AFTER_SECONDS = env.int("AUTEUR_REAPER_REPOLL_AFTER_SECONDS", default=120)
# Deadlines (jobs.life.deadlines): a job not started this long after its submission is aborted
# and refunded in full, whatever the client asked (0: no limit); per type in
# AUTEUR_QUEUE_TTL_BY_TYPE, e.g. "render=7200,tts=600" (a type not named takes the default).
AUTEUR_QUEUE_TTL_SECONDS = env.int("AUTEUR_QUEUE_TTL_SECONDS", default=24 * 3600)
# Batches (POST /jobs/batch): the most items in one, and how long an item may wait to start (its
# type's queue TTL does not apply: a batch's items wait behind each other by design).
AUTEUR_BATCH_MAX_ITEMS = env.int("AUTEUR_BATCH_MAX_ITEMS", default=5000)
# The content policy's screening (jobs.intake.screening): the most characters of distinct text one
# request may have screened (a batch's items together; about 1.5 s of one core at the default), and
# how many times its length a text may grow when Unicode-normalised (one character can become 18).
AUTEUR_SCREENING_MAX_CHARS_PER_REQUEST = env.int("AUTEUR_SCREENING_MAX_CHARS_PER_REQUEST", default=1_000_000)
AUTEUR_SCREENING_MAX_EXPANSION = env.float("AUTEUR_SCREENING_MAX_EXPANSION", default=2.0)
# Output screening (jobs.life.moderation): how long a withheld output is kept for staff before it is
# deleted, and the test seam that flags outputs at random ("image-generation:output=1.0;tts:output=0.05":
# per job type, the share of its jobs whose outputs are flagged, recorded as injected; "lip-sync:input=1.0":
# the share of the input files it names that are refused at submission; "" in production).
AUTEUR_MODERATION_QUARANTINE_DAYS = env.int("AUTEUR_MODERATION_QUARANTINE_DAYS", default=30)
AUTEUR_SCREENING_INJECT = env.str("AUTEUR_SCREENING_INJECT", default="")
# Review holds (jobs.life.standing): an account's generative requests are held for staff review
# after this many content policy refusals in 24 hours, or in 30 days, or this many of its outputs
# confirmed withheld by staff in 30 days (a refusal for sexual_minors holds it at once). Counting
# starts again when staff lift a hold.
AUTEUR_REVIEW_HOLD_REFUSALS_PER_DAY = env.int("AUTEUR_REVIEW_HOLD_REFUSALS_PER_DAY", default=5)
AUTEUR_REVIEW_HOLD_REFUSALS_PER_MONTH = env.int("AUTEUR_REVIEW_HOLD_REFUSALS_PER_MONTH", default=15)
AUTEUR_REVIEW_HOLD_CONFIRMED_OUTPUTS = env.int("AUTEUR_REVIEW_HOLD_CONFIRMED_OUTPUTS", default=2)
if min(AUTEUR_REVIEW_HOLD_REFUSALS_PER_DAY, AUTEUR_REVIEW_HOLD_REFUSALS_PER_MONTH,
       AUTEUR_REVIEW_HOLD_CONFIRMED_OUTPUTS) < 1:
    raise ImproperlyConfigured("AUTEUR_REVIEW_HOLD_* must each be at least 1.")
# How many frames of a video the image screener sees, spread evenly over its length (the first one
# included): of an input video of a generative type, at submission (jobs.intake.media_screening; its
# verdict kept per file), and of a generated video, at the store step (jobs.life.moderation).
AUTEUR_SCREENING_INPUT_VIDEO_FRAMES = env.int("AUTEUR_SCREENING_INPUT_VIDEO_FRAMES", default=4)
AUTEUR_SCREENING_OUTPUT_VIDEO_FRAMES = env.int("AUTEUR_SCREENING_OUTPUT_VIDEO_FRAMES", default=8)
if not 1 <= AUTEUR_BATCH_MAX_ITEMS <= 32767:  # an item's index is a smallint (Job.batch_index)
    raise ImproperlyConfigured("AUTEUR_BATCH_MAX_ITEMS must be 1 to 32767.")
# Items of a type that renders a timeline in one batch: each is priced by reading and cutting its timeline.
AUTEUR_BATCH_MAX_TIMELINE_ITEMS = env.int("AUTEUR_BATCH_MAX_TIMELINE_ITEMS", default=50)
# What a batch's items leave free for other work: this share of a user's slots and of a full type's
# units (at least one of each, never all), so an interactive job beside a batch starts at once.
AUTEUR_BATCH_HEADROOM_PERCENT = env.int("AUTEUR_BATCH_HEADROOM_PERCENT", default=10)
AUTEUR_BATCH_QUEUE_TTL_SECONDS = env.int("AUTEUR_BATCH_QUEUE_TTL_SECONDS", default=7 * 24 * 3600)
AUTEUR_QUEUE_TTL_BY_TYPE = {
    name: int(value) for name, value in env.dict("AUTEUR_QUEUE_TTL_BY_TYPE", default={}).items()
}
# Fair share (jobs.life.fairshare): at most a type's capacity of its jobs are in inference at once:
# by default its Modal function's max_containers (gpu_tasks/types.py), or as named here, e.g.
# "lip-sync=4,tts=50" (0: no limit). While a type is full, its next job to start is the head job of
# the user with the least virtual time there (the credits started for them, over their plan's
# weight below): "weighted". "arrival" starts the oldest waiting job instead (first in, first out).
AUTEUR_TYPE_CAPACITY = {
    name: int(value) for name, value in env.dict("AUTEUR_TYPE_CAPACITY", default={}).items()
}
AUTEUR_FAIR_SHARE = env.str("AUTEUR_FAIR_SHARE", default="weighted")
if AUTEUR_FAIR_SHARE not in ("weighted", "arrival"):
    raise ImproperlyConfigured("AUTEUR_FAIR_SHARE must be weighted or arrival.")
if any(value < 0 for value in AUTEUR_TYPE_CAPACITY.values()):
    raise ImproperlyConfigured("AUTEUR_TYPE_CAPACITY: a capacity is a number of jobs, 0 for no limit.")
AUTEUR_FAIR_SHARE_WEIGHTS = {
    None: env.float("AUTEUR_FAIR_SHARE_WEIGHT_FREE", default=1.0),
    "starter": env.float("AUTEUR_FAIR_SHARE_WEIGHT_STARTER", default=2.0),
    "pro": env.float("AUTEUR_FAIR_SHARE_WEIGHT_PRO", default=4.0),
}
if not all(weight > 0 for weight in AUTEUR_FAIR_SHARE_WEIGHTS.values()):
    raise ImproperlyConfigured("AUTEUR_FAIR_SHARE_WEIGHT_*: a plan's weight must be above 0.")
# Long files in pieces (jobs/life/pieces.py): a transcription of a file longer than this runs as
# pieces of about AUTEUR_PIECES_TARGET_MS, cut at silences, at once (0: never).
AUTEUR_PIECES_MIN_MS = env.int("AUTEUR_PIECES_MIN_MS", default=20 * 60_000)
AUTEUR_PIECES_TARGET_MS = env.int("AUTEUR_PIECES_TARGET_MS", default=10 * 60_000)
# Quotes (jobs/intake/quotes.py): how long a quoted price holds for a submission that names it.
AUTEUR_QUOTE_TTL_SECONDS = env.int("AUTEUR_QUOTE_TTL_SECONDS", default=600)
if AUTEUR_QUOTE_TTL_SECONDS < 1:
    raise ImproperlyConfigured("AUTEUR_QUOTE_TTL_SECONDS must be at least 1.")
# The result cache (jobs/intake/result_cache.py): a job served from it costs this percentage of
# its price, rounded up, at least 1 credit.
AUTEUR_RESULT_CACHE_PRICE_PERCENT = env.int("AUTEUR_RESULT_CACHE_PRICE_PERCENT", default=10)
if not 1 <= AUTEUR_RESULT_CACHE_PRICE_PERCENT <= 100:
    raise ImproperlyConfigured("AUTEUR_RESULT_CACHE_PRICE_PERCENT must be 1 to 100.")
# How often beat sends the deadline sweep: a deadline is enforced at most this late (a job's start
# checks its own deadline exactly).
AUTEUR_DEADLINE_INTERVAL_SECONDS = env.float("AUTEUR_DEADLINE_INTERVAL_SECONDS", default=5.0)

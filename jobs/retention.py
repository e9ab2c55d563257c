"""What the jobs app prunes (auteur/core/retention.py runs it): old events, spent idempotency keys,
and entries of the per-user event streams past their age.

A job itself is never deleted by retention: its row, with `input_params` and `output_data`,
stays for its owner and for the ledger rows that name it. Only its event log goes, once the job
has been over for AUTEUR_RETENTION_JOB_EVENTS_DAYS.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import QuerySet

from auteur.core.retention import Sweep, SweepContext, SweepResult, delete_in_batches
from jobs.events.stream import KEY_PREFIX, stream_redis
from jobs.models import (
    AUTO_TRANSCRIBE_KEY_PREFIX,
    TERMINAL_STATUSES,
    IdempotencyRecord,
    JobEvent,
    Quote,
    ScreeningRefusal,
    UsageEvent,
    idempotency_window_start,
)

# KEYS[1] a user's stream; ARGV[1] the oldest id kept, ARGV[2] the window in seconds. Trims
# exactly (XADD's own trim is approximate), deletes the stream once empty, and gives a stream
# without a TTL one (an append whose EXPIRE was lost); a script, so an append that races the
# emptiness check is never lost with the key. Returns the entries removed.
_TRIM_STREAM = """
local removed = redis.call('XTRIM', KEYS[1], 'MINID', ARGV[1])
if redis.call('XLEN', KEYS[1]) == 0 then
  redis.call('DEL', KEYS[1])
elseif redis.call('TTL', KEYS[1]) == -1 then
  redis.call('EXPIRE', KEYS[1], ARGV[2])
end
return removed
"""


def job_events_due(cutoff: datetime) -> QuerySet[JobEvent]:
    """Events of jobs that ended (completed, failed, canceled) before ``cutoff``, themselves
    recorded before it.

    An event is recorded before its job ends, so the second condition removes nothing the first
    would keep, except an event recorded after the end (a late redelivery), which goes once it too
    is past the window. It is what makes the query cheap: the index on the event's time
    (``job_events_created``) finds the few events older than the cutoff, where the job's end
    alone made the last batch of every run, the one that finds too few, walk the whole events
    table (bench/retention_sweep.py).
    """
    return JobEvent.objects.filter(
        created_at__lt=cutoff, job__status__in=TERMINAL_STATUSES, job__completed_at__lt=cutoff
    )


def job_events_sweep(ctx: SweepContext) -> SweepResult:
    """Events of jobs that ended more than the window ago."""
    cutoff = ctx.now - timedelta(days=settings.AUTEUR_RETENTION_JOB_EVENTS_DAYS)
    return delete_in_batches("job_events", job_events_due(cutoff), ctx)


def idempotency_keys_sweep(ctx: SweepContext) -> SweepResult:
    """Idempotency-Key records past the replay window: submission ignores (and replaces) them
    already, so removing them changes no answer. The automatic transcription's records are
    kept: they are what makes it one per file, however late a signal comes again."""
    return delete_in_batches("idempotency_keys", idempotency_records_due(idempotency_window_start(ctx.now)), ctx)


def idempotency_records_due(cutoff: datetime) -> QuerySet[IdempotencyRecord]:
    """Served by the partial index ``job_idempotency_created``, which leaves out the records kept
    for ever: they would otherwise be read again at every run."""
    return IdempotencyRecord.objects.filter(created_at__lt=cutoff).exclude(key__startswith=AUTO_TRANSCRIBE_KEY_PREFIX)


def event_streams_sweep(ctx: SweepContext) -> SweepResult:
    """Trim every user's stream to AUTEUR_EVENT_STREAM_MAX_AGE_SECONDS and drop empty ones.

    An append trims its own stream, approximately; a user with no new event is never trimmed
    by it, and keeps entries past the window until the key's TTL ends. Walked with SCAN,
    ``batch_size`` keys at a time, so Redis is never blocked by one long command.
    """
    client = stream_redis()
    max_age = settings.AUTEUR_EVENT_STREAM_MAX_AGE_SECONDS
    min_id = f"{int(ctx.now.timestamp() * 1000) - max_age * 1000}-0"
    trim = client.register_script(_TRIM_STREAM)
    removed = keys_seen = keys_deleted = batches = 0
    cursor: int | str = 0
    while True:
        cursor, keys = client.scan(cursor=int(cursor), match=f"{KEY_PREFIX}*", count=ctx.batch_size, _type="stream")
        if keys:
            batches += 1
            keys_seen += len(keys)
        for key in keys:
            if ctx.dry_run:
                old = len(client.xrange(key, "-", f"({min_id}") or [])
                removed += old
                keys_deleted += int(old == client.xlen(key))
            else:
                existed = bool(client.exists(key))
                removed += int(trim(keys=[key], args=[min_id, max_age]))
                keys_deleted += int(existed and not client.exists(key))
        if int(cursor) == 0 or ctx.out_of_time():
            break
    return SweepResult("event_streams", removed, batches, ctx.dry_run,
                       details={"streams": keys_seen, "streams_deleted": keys_deleted})


def quotes_sweep(ctx: SweepContext) -> SweepResult:
    """Quotes past their time by the idempotency window: none can pay for a job any more, and a
    job that one paid for keeps the quote's id in its ledger entry."""
    cutoff = ctx.now - timedelta(seconds=settings.AUTEUR_IDEMPOTENCY_WINDOW_SECONDS)
    return delete_in_batches("quotes", Quote.objects.filter(expires_at__lt=cutoff), ctx)


def usage_events_sweep(ctx: SweepContext) -> SweepResult:
    """Usage analytics older than AUTEUR_USAGE_RETENTION_DAYS."""
    cutoff = ctx.now - timedelta(days=settings.AUTEUR_USAGE_RETENTION_DAYS)
    return delete_in_batches("usage_events", UsageEvent.objects.filter(created_at__lt=cutoff), ctx)


def screening_refusals_sweep(ctx: SweepContext) -> SweepResult:
    """Content policy refusals older than AUTEUR_SCREENING_REFUSAL_RETENTION_DAYS."""
    cutoff = ctx.now - timedelta(days=settings.AUTEUR_SCREENING_REFUSAL_RETENTION_DAYS)
    return delete_in_batches("screening_refusals", ScreeningRefusal.objects.filter(created_at__lt=cutoff), ctx)


SWEEPS = [
    Sweep("job_events", "jobs.retention.job_events",
          "events of jobs ended more than AUTEUR_RETENTION_JOB_EVENTS_DAYS ago", job_events_sweep),
    Sweep("idempotency_keys", "jobs.retention.idempotency_keys",
          "Idempotency-Key records older than AUTEUR_IDEMPOTENCY_WINDOW_SECONDS", idempotency_keys_sweep),
    Sweep("event_streams", "jobs.retention.event_streams",
          "event stream entries older than AUTEUR_EVENT_STREAM_MAX_AGE_SECONDS; empty streams",
          event_streams_sweep),
    Sweep("quotes", "jobs.retention.quotes", "quotes expired more than AUTEUR_IDEMPOTENCY_WINDOW_SECONDS ago",
          quotes_sweep),
    Sweep("usage_events", "jobs.retention.usage_events", "usage analytics older than AUTEUR_USAGE_RETENTION_DAYS",
          usage_events_sweep),
    Sweep("screening_refusals", "jobs.retention.screening_refusals",
          "content policy refusals older than AUTEUR_SCREENING_REFUSAL_RETENTION_DAYS", screening_refusals_sweep),
]


"""Retention of the jobs app's data: job events, idempotency records, the per-user event streams;
and the ledger, which no sweep ever touches."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
import redis
from django.conf import settings
from django.core.management import CommandError, call_command
from django.utils import timezone

from auteur.core.retention import registered_sweeps, run_sweep
from auteur.core.throttling import hit
from auteur.users.models import User
from credits.models import CreditTransaction
from credits.services.ledger import credit_deduct_for_job, credit_grant, credit_refund_job
from jobs.events.stream import stream_key
from jobs.intake.transcribe import AUTO_TRANSCRIBE_KEY_PREFIX
from jobs.models import IdempotencyRecord, Job, JobEvent, JobStatus
from jobs.tasks import retention_job_events
from media.models import MediaFile
from tests.factories import MediaFileFactory, ProjectFactory

pytestmark = pytest.mark.django_db

WINDOW = timedelta(days=30)
MINUTE = timedelta(minutes=1)


def ended_job(user: User, *, ended_ago: timedelta | None, status: str = JobStatus.COMPLETED, events: int = 2) -> Job:
    """A job with `events` events; terminal since `ended_ago`, or still processing when None."""
    ended = None if ended_ago is None else timezone.now() - ended_ago
    job = Job.objects.create(
        user=user, type="tts", credits_cost=1, input_params={"text": "hello"}, output_data={"media_ids": ["x"]},
        status=JobStatus.PROCESSING if ended is None else status, completed_at=ended,
    )
    JobEvent.objects.bulk_create(JobEvent(job=job, type="progress", data={"n": i}) for i in range(events))
    if ended is not None:  # recorded while the job ran, as every event of a job is
        JobEvent.objects.filter(job=job).update(created_at=ended - MINUTE)
    return job


def events_of(job: Job) -> int:
    return JobEvent.objects.filter(job=job).count()


# ---------------------------------------------------------------------------------------- job events


def test_job_events_go_only_once_the_job_has_been_over_for_the_window(make_user):
    owner, other = make_user(), make_user()
    past = ended_job(owner, ended_ago=WINDOW + MINUTE)
    failed = ended_job(owner, ended_ago=WINDOW + MINUTE, status=JobStatus.FAILED)
    inside = ended_job(owner, ended_ago=WINDOW - MINUTE)
    running = ended_job(owner, ended_ago=None)
    JobEvent.objects.filter(job=running).update(created_at=timezone.now() - 2 * WINDOW)
    others = ended_job(other, ended_ago=WINDOW - MINUTE)

    result = run_sweep("job_events")

    assert result.count == 4 and not result.dry_run
    assert events_of(past) == 0 and events_of(failed) == 0
    assert events_of(inside) == 2 and events_of(running) == 2 and events_of(others) == 2
    # The job itself stays, with what it was asked and what it produced.
    kept = Job.objects.get(pk=past.pk)
    assert kept.input_params == {"text": "hello"} and kept.output_data == {"media_ids": ["x"]}


def test_an_event_recorded_after_its_job_ended_goes_once_it_too_is_past_the_window(user):
    job = ended_job(user, ended_ago=WINDOW + MINUTE)
    late = JobEvent.objects.create(job=job, type="step_redelivered")  # a redelivery after the end
    JobEvent.objects.filter(pk=late.pk).update(created_at=timezone.now() - WINDOW + MINUTE)

    assert run_sweep("job_events").count == 2
    assert list(JobEvent.objects.filter(job=job).values_list("pk", flat=True)) == [late.pk]
    assert run_sweep("job_events", now=timezone.now() + 2 * MINUTE).count == 1
    assert events_of(job) == 0


def test_job_events_are_deleted_in_batches(user):
    job = ended_job(user, ended_ago=WINDOW + MINUTE, events=5)

    result = run_sweep("job_events", batch_size=2)

    assert (result.count, result.batches) == (5, 3)
    assert events_of(job) == 0


def test_a_sweep_out_of_time_stops_between_batches_and_the_next_run_goes_on(user):
    job = ended_job(user, ended_ago=WINDOW + MINUTE, events=5)

    first = run_sweep("job_events", batch_size=2, time_budget=0)
    assert (first.count, first.batches, events_of(job)) == (2, 1, 3)

    assert retention_job_events() == "job_events: deleted 3 in 1 batch(es)"  # beat's task
    assert events_of(job) == 0


def test_a_dry_run_counts_job_events_and_deletes_none(user):
    job = ended_job(user, ended_ago=WINDOW + MINUTE, events=5)

    result = run_sweep("job_events", dry_run=True, batch_size=2)

    assert (result.count, result.batches, result.dry_run) == (5, 3, True)
    assert events_of(job) == 5


# ---------------------------------------------------------------------------------- idempotency keys


def idempotency_record(user: User, key: str, age: timedelta) -> IdempotencyRecord:
    job = ended_job(user, ended_ago=MINUTE, events=0)
    record = IdempotencyRecord.objects.create(user=user, key=key, request_hash="h", job=job)
    IdempotencyRecord.objects.filter(pk=record.pk).update(created_at=timezone.now() - age)
    return record


def test_idempotency_records_go_after_the_replay_window_but_automatic_transcriptions_stay(make_user):
    owner, other = make_user(), make_user()
    window = timedelta(seconds=settings.AUTEUR_IDEMPOTENCY_WINDOW_SECONDS)
    expired = idempotency_record(owner, "expired", window + MINUTE)
    live = idempotency_record(owner, "live", window - MINUTE)
    automatic = idempotency_record(owner, f"{AUTO_TRANSCRIBE_KEY_PREFIX}{uuid.uuid4()}", 10 * window)
    others = idempotency_record(other, "expired", window - MINUTE)

    assert run_sweep("idempotency_keys", dry_run=True).count == 1
    assert IdempotencyRecord.objects.filter(pk=expired.pk).exists()

    assert run_sweep("idempotency_keys").count == 1
    remaining = set(IdempotencyRecord.objects.filter(user__in=[owner, other]).values_list("pk", flat=True))
    assert remaining == {live.pk, automatic.pk, others.pk}


def test_idempotency_records_are_deleted_in_batches(user):
    window = timedelta(seconds=settings.AUTEUR_IDEMPOTENCY_WINDOW_SECONDS)
    for i in range(5):
        idempotency_record(user, f"k{i}", window + MINUTE)

    result = run_sweep("idempotency_keys", batch_size=2)

    assert (result.count, result.batches) == (5, 3)
    assert not IdempotencyRecord.objects.filter(user=user).exists()


# ------------------------------------------------------------------------------------- event streams


@pytest.fixture
def streams() -> Any:
    client = redis.Redis.from_url(settings.REDIS_URL)
    made: list[str] = []

    def make(*ages: timedelta) -> str:
        """A user's stream with one entry per age (oldest first), as appends would leave it."""
        key = stream_key(uuid.uuid4())
        made.append(key)
        now_ms = int(timezone.now().timestamp() * 1000)
        for age in ages:
            client.xadd(key, {"e": "{}"}, id=f"{now_ms - int(age.total_seconds() * 1000)}-0")
        return key

    yield client, make
    if made:
        client.delete(*made)
    client.close()


def test_event_streams_are_trimmed_to_their_age_and_empty_ones_deleted(streams):
    client, make = streams
    day = timedelta(seconds=settings.AUTEUR_EVENT_STREAM_MAX_AGE_SECONDS)
    mixed = make(day + MINUTE, day + MINUTE / 2, day - MINUTE)
    idle = make(day + 2 * MINUTE, day + MINUTE)
    recent = make(day - MINUTE, MINUTE)

    dry = run_sweep("event_streams", dry_run=True)
    assert (dry.count, dry.details["streams_deleted"]) == (4, 1)
    assert (client.xlen(mixed), client.xlen(idle)) == (3, 2)

    result = run_sweep("event_streams")

    assert (result.count, result.details["streams_deleted"]) == (4, 1)
    assert client.xlen(mixed) == 1 and client.xlen(recent) == 2
    assert not client.exists(idle)
    # A stream whose append lost its EXPIRE gets one: it still goes once its user is quiet.
    assert 0 < client.ttl(mixed) <= settings.AUTEUR_EVENT_STREAM_MAX_AGE_SECONDS


def test_event_streams_are_walked_in_batches_of_keys(streams):
    client, make = streams
    day = timedelta(seconds=settings.AUTEUR_EVENT_STREAM_MAX_AGE_SECONDS)
    idle = [make(day + MINUTE) for _ in range(5)]

    result = run_sweep("event_streams", batch_size=2)

    # SCAN's COUNT is a hint, so how many keys each batch holds is Redis's choice; every key is
    # visited and every idle stream goes.
    assert (result.count, result.details["streams_deleted"]) == (5, 5)
    assert result.batches >= 1 and not any(client.exists(key) for key in idle)


# ---------------------------------------------------------------------------- rate limits, schedule


def test_rate_limit_keys_expire_by_themselves(settings):
    client = redis.Redis.from_url(settings.REDIS_URL)
    key = f"rl:test:{uuid.uuid4().hex}"
    assert hit(key, limit=1, window_seconds=60) == 0
    assert 0 < client.pttl(key) <= 60_000
    assert hit(key, limit=1, window_seconds=60) > 0  # refused: still a key that expires
    assert 0 < client.pttl(key) <= 60_000
    client.close()


def test_beat_runs_every_sweep_through_its_own_task():
    from auteur.celery import app
    from celeryconfig import beat_schedule

    app.loader.import_default_modules()  # what a worker does at start: every app's tasks module
    scheduled = {entry["task"] for entry in beat_schedule.values()}
    names = {sweep.name for sweep in registered_sweeps()}
    assert names == {"job_events", "idempotency_keys", "event_streams", "quotes", "usage_events", "job_outputs",
                     "deleted_project_objects", "deleted_project_edls", "screening_refusals"}
    for sweep in registered_sweeps():
        assert sweep.task in scheduled, sweep.name
        assert sweep.task in app.tasks, sweep.name
        assert app.amqp.router.route({}, sweep.task)["queue"].name == "default"


# ------------------------------------------------------------------------------------------- ledger


def test_no_sweep_deletes_a_ledger_row(user, settings, capsys):
    settings.AUTEUR_RETENTION_JOB_OUTPUTS_DAYS = 1
    credit_grant(user=user, amount=100, type="bonus", description="test")
    jobs = [ended_job(user, ended_ago=10 * WINDOW, status=status) for status in (JobStatus.COMPLETED, JobStatus.FAILED)]
    for job in jobs:
        credit_deduct_for_job(user=user, job_id=job.pk, amount=1, description="tts job")
    credit_refund_job(job_id=jobs[1].pk, reason="failed")
    output = MediaFileFactory.create(project=ProjectFactory.create(user=user), source_job_id=jobs[0].pk)
    MediaFile.objects.filter(pk=output.pk).update(created_at=timezone.now() - 10 * WINDOW)
    before = list(CreditTransaction.objects.filter(user=user).order_by("pk").values_list("pk", "amount"))
    assert len(before) == 4

    call_command("retention")

    out = capsys.readouterr().out
    assert "job_events: deleted 4" in out and "job_outputs: deleted 1" in out
    after = list(CreditTransaction.objects.filter(user=user).order_by("pk").values_list("pk", "amount"))
    assert after == before
    assert Job.objects.filter(pk__in=[j.pk for j in jobs]).count() == 2


# ------------------------------------------------------------------------------------------ command


def test_the_command_dry_run_prints_what_would_go_and_deletes_nothing(user, capsys):
    job = ended_job(user, ended_ago=WINDOW + MINUTE, events=3)

    call_command("retention", "--dry-run", "--only", "job_events", "--batch-size", "2")

    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("job_events: would delete 3 in 2 batch(es)")
    assert events_of(job) == 3


def test_the_command_refuses_an_unknown_sweep_and_runs_none(user):
    job = ended_job(user, ended_ago=WINDOW + MINUTE)
    with pytest.raises(CommandError, match="unknown sweep"):
        call_command("retention", "--only", "job_events", "--only", "ledger")
    assert events_of(job) == 2

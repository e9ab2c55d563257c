"""Start and run deadlines, queue TTLs and priority: `aborted` jobs refunded in full, run deadlines
cancelled pro rata, and a user's priorities ordering only that user's jobs."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from django.test import TestCase
from django.utils import timezone

from credits.models import CreditTransaction
from credits.selectors import credit_balance_get
from credits.services.ledger import credit_grant
from jobs.inputs import Scheduling
from jobs.intake import submission
from jobs.life import publish as pipeline
from jobs.life import slots
from jobs.life import status as lifecycle
from jobs.life.deadlines import RUN_DEADLINE_REASON, jobs_deadlines_enforce
from jobs.life.refunds import cancel_refund
from jobs.models import Job, JobEvent, JobPriority, JobStatus
from jobs.selectors.requests import JobRequest
from jobs.specs import job_spec
from tests.factories import MediaFileFactory, ProjectFactory
from tests.jobs.support import jobs_url

pytestmark = pytest.mark.django_db

HIGH, NORMAL, LOW = JobPriority.HIGH, JobPriority.NORMAL, JobPriority.LOW


@pytest.fixture
def audio(project, make_media):
    """A 30 s audio file of the funded user's project (tests/jobs/support.py): 5 credits to transcribe."""
    return make_media(project, "audio", duration_ms=30_000)


def submit(user, project, audio, **scheduling: Any) -> Job:
    params: dict[str, Any] = {
        "project_id": str(project.pk), "media_id": str(audio.pk), "_quantities": {"duration_ms": audio.duration_ms},
    }
    with TestCase.captureOnCommitCallbacks(execute=False):  # no broker publish: states are set by hand
        request = JobRequest(project=project, input_params=params, quantities=params["_quantities"],
                             media_ids=[audio.pk])
        job, _ = submission.job_submit(user=user, spec=job_spec("transcription"), request=request,
                                       scheduling=Scheduling(**scheduling))
    return job


def start_deadline(job: Job) -> datetime:
    assert job.start_deadline is not None
    return job.start_deadline


def refunds(job: Job) -> list[int]:
    return list(CreditTransaction.objects.filter(job_id=job.pk, type="refund").values_list("amount", flat=True))


def past(job: Job, **delta: float) -> None:
    """Move the job's start deadline into the past (as if that much time went by)."""
    Job.objects.filter(pk=job.pk).update(start_deadline=timezone.now() - timedelta(**delta))


# ----------------------------------------------------------------------------- the API


def test_a_submission_takes_its_priority_and_deadlines_and_shows_them(auth_client, project, audio):
    before = timezone.now()
    body = {"project_id": str(project.pk), "media_id": str(audio.pk), "priority": "high",
            "start_within_seconds": 30, "run_within_seconds": 600}
    response = auth_client.post(jobs_url("/transcription"), body, format="json")
    assert response.status_code == 202, response.json()
    job = Job.objects.get(pk=response.json()["job_id"])
    assert (job.priority, job.start_within_seconds, job.run_within_seconds) == (HIGH, 30, 600)
    assert before + timedelta(seconds=30) <= start_deadline(job) <= timezone.now() + timedelta(seconds=30)
    assert "priority" not in job.input_params and "start_within_seconds" not in job.input_params
    shown = auth_client.get(jobs_url(f"/{job.pk}")).json()
    assert shown["priority"] == "high" and shown["run_within_seconds"] == 600 and shown["run_deadline"] is None
    assert shown["start_deadline"] == start_deadline(job).isoformat().replace("+00:00", "Z")
    listed = auth_client.get(jobs_url()).json()["jobs"][0]
    assert (listed["priority"], listed["start_deadline"]) == ("high", shown["start_deadline"])


def test_without_them_a_job_is_normal_and_waits_at_most_the_queue_ttl(auth_client, project, audio, settings):
    settings.AUTEUR_QUEUE_TTL_SECONDS = 3600
    response = auth_client.post(jobs_url("/transcription"), {"media_id": str(audio.pk)}, format="json")
    job = Job.objects.get(pk=response.json()["job_id"])
    assert job.priority == NORMAL and job.start_within_seconds is None and job.run_within_seconds is None
    assert abs((start_deadline(job) - job.created_at) - timedelta(hours=1)) < timedelta(seconds=5)
    settings.AUTEUR_QUEUE_TTL_SECONDS = 0  # no TTL, no client deadline: no start deadline at all
    response = auth_client.post(jobs_url("/transcription"), {"media_id": str(audio.pk)}, format="json")
    assert Job.objects.get(pk=response.json()["job_id"]).start_deadline is None


@pytest.mark.parametrize("field", [
    {"priority": "urgent"}, {"priority": 2}, {"start_within_seconds": 0}, {"start_within_seconds": -5},
    {"start_within_seconds": 7 * 24 * 3600 + 1}, {"run_within_seconds": 0}, {"run_within_seconds": "soon"},
])
def test_a_bad_priority_or_deadline_is_a_400_and_charges_nothing(auth_client, project, audio, field):
    balance = credit_balance_get(user=project.user)
    response = auth_client.post(jobs_url("/transcription"), {"media_id": str(audio.pk), **field}, format="json")
    assert response.status_code == 400, response.json()
    assert response.json()["error"]["code"] == "validation_error"
    assert set(response.json()["error"]["details"]["fields"]) == set(field)
    assert not Job.objects.exists() and credit_balance_get(user=project.user) == balance


# ----------------------------------------------------------------------------- start deadlines


def test_a_job_claimed_after_its_start_deadline_is_aborted_and_refunded_in_full(user, project, audio):
    job = submit(user, project, audio, start_within_seconds=30)
    balance = credit_balance_get(user=user)
    past(job, seconds=1)
    with TestCase.captureOnCommitCallbacks(execute=True):
        assert lifecycle.job_claim(job_id=job.pk) is None  # never starts late
    job.refresh_from_db()
    assert job.status == JobStatus.ABORTED and job.started_at is None and job.completed_at is not None
    assert (job.error_code, job.credits_refunded, job.credits_refund, job.retryable) == (
        "start_deadline", True, job.credits_cost, True)
    assert job.error_message == lifecycle.ABORT_REASONS["start_deadline"]
    assert refunds(job) == [job.credits_cost] and credit_balance_get(user=user) == balance + job.credits_cost
    event = JobEvent.objects.get(job=job, type="aborted")
    assert event.data == {"code": "start_deadline", "refunded": job.credits_cost,
                          "charge": {"charged": job.credits_cost, "refunded": job.credits_cost, "net": 0}}
    # Again, by the sweep or a redelivered claim: nothing moves twice.
    assert not lifecycle.job_abort(job_id=job.pk)
    assert lifecycle.job_claim(job_id=job.pk) is None
    assert jobs_deadlines_enforce() == {"aborted": 0, "canceled": 0}
    assert refunds(job) == [job.credits_cost]


def test_the_sweep_aborts_pending_and_queued_jobs_past_their_deadline_only(user, project, audio):
    pending = submit(user, project, audio, start_within_seconds=10)
    queued = submit(user, project, audio, start_within_seconds=10)
    Job.objects.filter(pk=queued.pk).update(status=JobStatus.QUEUED)
    not_yet = submit(user, project, audio, start_within_seconds=3600)
    running = submit(user, project, audio, start_within_seconds=10)
    Job.objects.filter(pk=running.pk).update(status=JobStatus.PROCESSING, started_at=timezone.now())
    for job in (pending, queued, running):
        past(job, seconds=1)
    assert jobs_deadlines_enforce() == {"aborted": 2, "canceled": 0}
    statuses = dict(Job.objects.values_list("pk", "status"))
    assert (statuses[pending.pk], statuses[queued.pk]) == (JobStatus.ABORTED, JobStatus.ABORTED)
    assert (statuses[not_yet.pk], statuses[running.pk]) == (JobStatus.PENDING, JobStatus.PROCESSING)
    assert refunds(pending) == [pending.credits_cost] and refunds(running) == []


def test_an_abort_starts_the_jobs_it_held_back(user, project, audio, monkeypatch):
    """A user's waiting job ahead of the others is aborted: the next one starts now."""
    ahead, behind = submit(user, project, audio, start_within_seconds=10), submit(user, project, audio)
    Job.objects.filter(pk__in=[ahead.pk, behind.pk]).update(status=JobStatus.QUEUED)
    started: list[Any] = []
    monkeypatch.setattr(pipeline, "start", lambda job_id, job_type, trace="": started.append(job_id))
    past(ahead, seconds=1)
    with TestCase.captureOnCommitCallbacks(execute=True):
        assert jobs_deadlines_enforce()["aborted"] == 1
    # Its owner's slots and its type's line each look (a duplicate start is a no-op).
    assert set(started) == {behind.pk}


@pytest.mark.parametrize(("ttl", "client", "code"), [(60, None, "queue_ttl"), (60, 3600, "queue_ttl"),
                                                      (3600, 60, "start_deadline")])
def test_the_queue_ttl_ends_a_forgotten_job_the_same_way(user, project, audio, settings, ttl, client, code):
    settings.AUTEUR_QUEUE_TTL_SECONDS = 24 * 3600
    settings.AUTEUR_QUEUE_TTL_BY_TYPE = {"transcription": ttl, "tts": 5}
    job = submit(user, project, audio, start_within_seconds=client)
    expected = timedelta(seconds=min(ttl, client or ttl))
    assert abs((start_deadline(job) - job.created_at) - expected) < timedelta(seconds=5)
    assert jobs_deadlines_enforce(now=start_deadline(job) - timedelta(seconds=1))["aborted"] == 0
    assert jobs_deadlines_enforce(now=start_deadline(job) + timedelta(seconds=1))["aborted"] == 1
    job.refresh_from_db()
    assert (job.status, job.error_code, refunds(job)) == (JobStatus.ABORTED, code, [job.credits_cost])


def test_an_aborted_job_can_be_retried_with_its_priority_and_deadlines(auth_client, user, project, audio):
    job = submit(user, project, audio, priority=HIGH, start_within_seconds=20, run_within_seconds=90)
    past(job, seconds=1)
    jobs_deadlines_enforce()
    response = auth_client.post(jobs_url(f"/{job.pk}/retry"), {}, format="json")
    assert response.status_code == 202, response.json()
    new = Job.objects.get(pk=response.json()["job_id"])
    assert (new.retry_of_id, new.priority, new.start_within_seconds, new.run_within_seconds) == (job.pk, HIGH, 20, 90)
    assert start_deadline(new) > timezone.now() and new.status == JobStatus.PENDING


# ----------------------------------------------------------------------------- run deadlines


def test_a_claim_sets_the_run_deadline_from_its_start(user, project, audio):
    job = submit(user, project, audio, run_within_seconds=120)
    claimed = lifecycle.job_claim(job_id=job.pk)
    assert claimed is not None
    job.refresh_from_db()
    assert job.started_at is not None
    assert job.run_deadline == job.started_at + timedelta(seconds=120) == claimed.run_deadline
    plain = submit(user, project, audio)
    Job.objects.filter(pk=job.pk).update(status=JobStatus.COMPLETED)
    assert lifecycle.job_claim(job_id=plain.pk) is not None
    plain.refresh_from_db()
    assert plain.run_deadline is None


def test_a_job_running_past_its_run_deadline_is_canceled_pro_rata(user, project, audio):
    job = submit(user, project, audio, run_within_seconds=60)
    assert lifecycle.job_claim(job_id=job.pk) is not None
    started = timezone.now() - timedelta(seconds=120)
    Job.objects.filter(pk=job.pk).update(inference_started_at=started, gpu_call_id="noop-1", progress=40,
                                         run_deadline=timezone.now() - timedelta(seconds=1))
    job.refresh_from_db()
    expected = cancel_refund(job=job, at=timezone.now())
    assert 0 < expected < job.credits_cost  # some of it was spent, some not
    assert jobs_deadlines_enforce() == {"aborted": 0, "canceled": 1}
    job.refresh_from_db()
    assert (job.status, job.error_code, job.error_message) == (JobStatus.CANCELED, "run_deadline", RUN_DEADLINE_REASON)
    assert refunds(job) == [job.credits_refund] and abs(job.credits_refund - expected) <= 1
    assert JobEvent.objects.get(job=job, type="canceled").data["reason"] == RUN_DEADLINE_REASON


def test_a_job_storing_its_result_is_left_to_finish_past_its_run_deadline(user, project, audio):
    job = submit(user, project, audio, run_within_seconds=60)
    assert lifecycle.job_claim(job_id=job.pk) is not None
    now = timezone.now()
    Job.objects.filter(pk=job.pk).update(inference_started_at=now, inference_ended_at=now, gpu_call_id="noop-1",
                                         run_deadline=now - timedelta(seconds=1))
    assert jobs_deadlines_enforce() == {"aborted": 0, "canceled": 0}
    job.refresh_from_db()
    assert job.status == JobStatus.PROCESSING and refunds(job) == []


# ----------------------------------------------------------------------------- priority


def test_a_users_high_priority_job_starts_before_their_older_normal_ones(user, project, audio, monkeypatch):
    running = submit(user, project, audio)
    assert lifecycle.job_claim(job_id=running.pk) is not None  # the only slot (no plan)
    batch = [submit(user, project, audio, priority=LOW) for _ in range(2)] + [submit(user, project, audio)]
    urgent = submit(user, project, audio, priority=HIGH)
    for job in (*batch, urgent):
        assert lifecycle.job_claim(job_id=job.pk) is None  # queued behind the running one
    started: list[Any] = []
    monkeypatch.setattr(pipeline, "start", lambda job_id, job_type, trace="": started.append(job_id))
    Job.objects.filter(pk=running.pk).update(status=JobStatus.COMPLETED)
    with TestCase.captureOnCommitCallbacks(execute=True):
        slots.job_slot_release(user_id=user.pk)
    # One slot free: one start, for the first of the user's waiting jobs by priority (the rest's
    # order: their positions below).
    assert started == [urgent.pk]
    # The older jobs may not take the slot before the high one...
    assert lifecycle.job_claim(job_id=batch[0].pk) is None
    assert lifecycle.job_claim(job_id=batch[2].pk) is None
    # ... which takes it; and positions follow the same order.
    assert lifecycle.job_claim(job_id=urgent.pk) is not None
    positions = {job.pk: job_position(user, job) for job in batch}
    assert positions == {batch[2].pk: 1, batch[0].pk: 2, batch[1].pk: 3}


def job_position(user, job: Job) -> int | None:
    from jobs.selectors.jobs import job_detail_get

    return job_detail_get(user_id=user.pk, job_id=job.pk, balances=False)["queue_position"]


def test_priority_orders_only_a_users_own_jobs(user, make_user, project, audio):
    """Another user's high-priority jobs neither take this user's slot nor move this user's place."""
    other = make_user()
    credit_grant(user=other, amount=100, type="bonus", description="test")
    theirs_project = ProjectFactory.create(user=other, name="q")
    theirs_media = MediaFileFactory.create(project=theirs_project, name="b.wav", type="audio", duration_ms=30_000)
    mine = submit(user, project, audio, priority=LOW)
    theirs = [submit(other, theirs_project, theirs_media, priority=HIGH) for _ in range(3)]
    assert job_position(user, mine) == 1
    assert lifecycle.job_claim(job_id=mine.pk) is not None  # their urgent jobs do not hold mine back
    assert lifecycle.job_claim(job_id=theirs[2].pk) is None  # nor do mine theirs: their own order holds
    assert lifecycle.job_claim(job_id=theirs[0].pk) is not None


# ----------------------------------------------------------------------------- where it shows


def test_an_aborted_job_is_a_terminal_webhook_and_stream_event(user, project, audio, monkeypatch):
    from jobs.events import stream
    from webhooks.models import Delivery
    from webhooks.services import job_webhook_create

    job = submit(user, project, audio, start_within_seconds=5)
    job_webhook_create(job_id=job.pk, owner=user, url="https://receiver.invalid/a", event_types=["completed"])
    monkeypatch.setattr("webhooks.services._publish", lambda delivery_id: None)  # no broker here
    streamed: list[Any] = []
    monkeypatch.setattr(stream, "job_stream_append", lambda event, state=None: streamed.append((event.type, state)))
    past(job, seconds=1)
    with TestCase.captureOnCommitCallbacks(execute=True):
        assert jobs_deadlines_enforce()["aborted"] == 1
    (delivery,) = Delivery.objects.filter(job_id=job.pk)
    assert delivery.event_type == "completed"
    data = delivery.payload["data"]
    assert (data["status"], data["error_code"]) == ("aborted", "start_deadline")
    assert data["credits_refund"] == job.credits_cost
    from realtime.hub import TERMINAL_EVENT_TYPES

    assert "aborted" in TERMINAL_EVENT_TYPES


def test_beat_sends_the_deadline_sweep_to_the_housekeeping_queue(settings):
    from auteur.core.queues import QUEUE_DEFAULT, TASK_ROUTES
    from celeryconfig import beat_schedule

    (entry,) = [e for e in beat_schedule.values() if e["task"] == "jobs.deadlines"]
    assert entry["schedule"] == settings.AUTEUR_DEADLINE_INTERVAL_SECONDS == 5.0
    assert TASK_ROUTES["jobs.deadlines"] == {"queue": QUEUE_DEFAULT}


def test_a_job_inserted_without_a_priority_is_normal():
    """A server of the previous release inserts jobs without the column during a rolling deploy."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT column_default, is_nullable FROM information_schema.columns "
                       "WHERE table_name = 'jobs' AND column_name = 'priority'")
        default, nullable = cursor.fetchone()
    assert (default, nullable) == ("1", "NO")

"""A waiting job's place in line and start estimate on GET /jobs/{id}: `queue_position` among the
owner's waiting jobs, `lane_position` among every user's on its Celery queue, `eta_seconds` from
the recent durations of the jobs that must end first; all null once it is processing or ended."""

from __future__ import annotations

import math
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from auteur.users.models import User
from credits.models import Subscription
from jobs.models import Job, JobStatus
from jobs.selectors.queue import HISTORY_SAMPLE, lane_of, lane_types, slot_free_after
from tests.contract.support import served_schema
from tests.jobs.support import jobs_url

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
FIELDS = ("queue_position", "lane_position", "eta_seconds")


def make_job(user: User, job_type: str, status: str, at: int, **fields: Any) -> Job:
    """A job of `user` submitted `at` seconds after T0 (set directly: no worker runs here)."""
    job = Job.objects.create(user=user, type=job_type, status=status, credits_cost=1, **fields)
    Job.objects.filter(pk=job.pk).update(created_at=T0 + timedelta(seconds=at))
    job.refresh_from_db()
    return job


def history(job_type: str, seconds: Sequence[float], *, user: User, ended: datetime | None = None) -> None:
    """Completed jobs of the type that ran for these seconds, the last one ending latest."""
    ended = ended or datetime.now(UTC) - timedelta(hours=1)
    for i, s in enumerate(seconds):
        job = Job.objects.create(user=user, type=job_type, status=JobStatus.COMPLETED, credits_cost=1,
                                 processing_time_ms=int(s * 1000))
        Job.objects.filter(pk=job.pk).update(completed_at=ended - timedelta(seconds=len(seconds) - i),
                                             created_at=T0 - timedelta(days=1))


def estimate(client: Any, job: Job) -> dict[str, Any]:
    response = client.get(jobs_url(f"/{job.pk}"))
    assert response.status_code == 200, response.json()
    body = response.json()
    return {k: body[k] for k in FIELDS}


@pytest.fixture
def alice(make_user) -> User:
    return make_user()


@pytest.fixture
def bob(make_user) -> User:
    return make_user()


def subscribe(user: User, plan: str) -> None:
    now = datetime.now(UTC)
    Subscription.objects.create(user=user, plan=plan, current_period_start=now,
                                current_period_end=now + timedelta(days=30))


# ----------------------------------------------------------------------------- the replay of the slots


def test_a_job_starts_when_the_first_slot_it_can_take_frees():
    assert slot_free_after(limit=1, running_left=[], ahead=[]) == 0
    assert slot_free_after(limit=1, running_left=[15], ahead=[]) == 15
    assert slot_free_after(limit=1, running_left=[15], ahead=[20, 20]) == 55
    # Two slots: the older waiting job takes the first one to free, this one the second.
    assert slot_free_after(limit=2, running_left=[10, 30], ahead=[5]) == 15
    assert slot_free_after(limit=2, running_left=[10, 30], ahead=[50]) == 30
    assert slot_free_after(limit=3, running_left=[10], ahead=[5]) == 0
    # More running than the limit (the plan went down): as many must end as make one slot free.
    assert slot_free_after(limit=1, running_left=[10, 20, 30], ahead=[]) == 30
    # A duration nobody knows stands in the way only if the job must wait for it.
    assert math.isinf(slot_free_after(limit=1, running_left=[math.inf], ahead=[]))
    assert slot_free_after(limit=2, running_left=[10], ahead=[math.inf, 5]) == 15
    assert math.isinf(slot_free_after(limit=2, running_left=[10], ahead=[math.inf, math.inf]))
    assert slot_free_after(limit=2, running_left=[math.inf], ahead=[]) == 0


def test_lanes_are_the_celery_queues_the_types_share():
    assert lane_of("render") == lane_of("compression") == "render"
    assert lane_types("gpu_audio") == ["audio-generation", "transcription", "tts", "voice-consent"]
    assert lane_of("video-generation") == "gpu_generation"


# ----------------------------------------------------------------------------- positions


def test_positions_count_the_owners_waiting_jobs_and_every_users_in_the_lane(alice, bob, client_for):
    running = make_job(alice, "transcription", JobStatus.PROCESSING, 0, started_at=T0)
    a1 = make_job(alice, "transcription", JobStatus.QUEUED, 1)
    b1 = make_job(bob, "tts", JobStatus.PENDING, 2)  # same lane (gpu_audio), another user
    a2 = make_job(alice, "compression", JobStatus.QUEUED, 3)  # another lane (render)
    b2 = make_job(bob, "render", JobStatus.QUEUED, 4)
    a3 = make_job(alice, "audio-generation", JobStatus.PENDING, 5)
    make_job(bob, "transcription", JobStatus.COMPLETED, 6)  # ended: in no line
    make_job(bob, "lip-sync", JobStatus.PENDING, 7)  # another lane (gpu_vision)
    b3 = make_job(bob, "transcription", JobStatus.PENDING, 8)  # submitted after a3: behind it

    alice_client, bob_client = client_for(alice), client_for(bob)
    assert estimate(alice_client, running) == {"queue_position": None, "lane_position": None, "eta_seconds": None}
    # (No transcription has completed yet: when the running one ends is unknown.)
    assert estimate(alice_client, a1) == {"queue_position": 1, "lane_position": 1, "eta_seconds": None}
    assert estimate(alice_client, a2)["queue_position"] == 2 and estimate(alice_client, a2)["lane_position"] == 1
    assert estimate(alice_client, a3)["queue_position"] == 3
    assert estimate(alice_client, a3)["lane_position"] == 3  # a1 and b1 ahead in gpu_audio
    assert estimate(bob_client, b1)["queue_position"] == 1 and estimate(bob_client, b1)["lane_position"] == 2
    assert estimate(bob_client, b2)["queue_position"] == 2 and estimate(bob_client, b2)["lane_position"] == 2
    assert estimate(bob_client, b3)["queue_position"] == 4 and estimate(bob_client, b3)["lane_position"] == 4

    # a1 starts: it leaves both lines, and everything behind it moves up.
    Job.objects.filter(pk=a1.pk).update(status=JobStatus.PROCESSING, started_at=datetime.now(UTC))
    assert estimate(alice_client, a1) == dict.fromkeys(FIELDS)
    assert estimate(alice_client, a3)["queue_position"] == 2 and estimate(alice_client, a3)["lane_position"] == 2
    assert estimate(bob_client, b3)["lane_position"] == 3
    # Ended jobs show no place either, whichever way they ended.
    for status in (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELED):
        Job.objects.filter(pk=a3.pk).update(status=status)
        assert estimate(alice_client, a3) == dict.fromkeys(FIELDS)


def test_another_users_jobs_show_only_as_a_count(alice, bob, client_for):
    theirs = [make_job(alice, "tts", JobStatus.PENDING, i) for i in range(3)]
    mine = make_job(bob, "tts", JobStatus.PENDING, 10)
    response = client_for(bob).get(jobs_url(f"/{mine.pk}"))
    assert response.status_code == 200
    assert response.json()["lane_position"] == 4 and response.json()["queue_position"] == 1
    assert not any(str(job.pk) in response.content.decode() for job in theirs)
    # Their jobs themselves stay a 404 to this user, as every job of another user.
    assert client_for(bob).get(jobs_url(f"/{theirs[0].pk}")).status_code == 404


# ----------------------------------------------------------------------------- eta


def test_eta_replays_the_owners_slots_with_the_median_of_the_last_completed_jobs(alice, bob, client_for):
    # The latest HISTORY_SAMPLE transcriptions took 20 s each (median 20 s); older ones, long
    # before, took ten minutes and no longer count.
    history("transcription", [600] * 10, user=bob, ended=datetime.now(UTC) - timedelta(days=2))
    history("transcription", [10, 20, 30] + [20] * (HISTORY_SAMPLE - 3), user=bob)
    history("tts", [4, 6, 8], user=bob)
    client = client_for(alice)
    # Free plan, one slot: a transcription running well past its median is due any moment.
    make_job(alice, "transcription", JobStatus.PROCESSING, 0, started_at=datetime.now(UTC) - timedelta(hours=1))
    first = make_job(alice, "transcription", JobStatus.QUEUED, 1)
    second = make_job(alice, "tts", JobStatus.QUEUED, 2)
    third = make_job(alice, "render", JobStatus.QUEUED, 3)  # render has no history: its own does not matter
    assert estimate(client, first)["eta_seconds"] == 0
    assert estimate(client, second)["eta_seconds"] == 20
    assert estimate(client, third)["eta_seconds"] == 26
    # The running job just started: it has about its whole median left.
    Job.objects.filter(user=alice, status=JobStatus.PROCESSING).update(started_at=datetime.now(UTC))
    eta = estimate(client, second)["eta_seconds"]
    assert 20 < eta <= 40
    # Other users' jobs in the lane do not hold this user's slots: the estimate is the same.
    make_job(bob, "transcription", JobStatus.PENDING, -5)
    assert estimate(client, second)["eta_seconds"] in (eta, eta - 1)


def test_a_plan_with_more_slots_starts_sooner(alice, client_for):
    history("tts", [10] * 5, user=alice)
    subscribe(alice, "pro")  # five slots
    now = datetime.now(UTC) - timedelta(hours=1)
    for i in range(4):
        make_job(alice, "tts", JobStatus.PROCESSING, i, started_at=now)
    fifth = make_job(alice, "tts", JobStatus.PENDING, 5)
    sixth = make_job(alice, "tts", JobStatus.QUEUED, 6)
    seventh = make_job(alice, "tts", JobStatus.QUEUED, 7)
    client = client_for(alice)
    assert estimate(client, fifth)["eta_seconds"] == 0  # a slot is free: it starts as soon as picked up
    assert estimate(client, sixth)["eta_seconds"] == 0  # the running ones are all due
    assert estimate(client, seventh) == {"queue_position": 3, "lane_position": 3, "eta_seconds": 0}
    Job.objects.filter(status=JobStatus.PROCESSING).update(started_at=datetime.now(UTC))
    assert 0 < estimate(client, seventh)["eta_seconds"] <= 10


def test_eta_is_null_without_history_but_positions_are_shown(alice, client_for):
    client = client_for(alice)
    make_job(alice, "video-query", JobStatus.PROCESSING, 0, started_at=datetime.now(UTC))
    waiting = make_job(alice, "tts", JobStatus.QUEUED, 1)
    assert estimate(client, waiting) == {"queue_position": 1, "lane_position": 1, "eta_seconds": None}
    # Failed and canceled jobs are no history: only completed ones tell how long a type runs.
    for status in (JobStatus.FAILED, JobStatus.CANCELED):
        Job.objects.create(user=alice, type="video-query", status=status, credits_cost=1, processing_time_ms=5000,
                           completed_at=datetime.now(UTC))
    assert estimate(client, waiting)["eta_seconds"] is None
    history("video-query", [5], user=alice)
    assert 0 < estimate(client, waiting)["eta_seconds"] <= 5


def test_a_waiting_job_costs_the_detail_one_query_more_and_any_other_none(
    alice, client_for, django_assert_num_queries
):
    client = client_for(alice)
    job = make_job(alice, "tts", JobStatus.PENDING, 0)
    client.get(jobs_url(f"/{job.pk}"))  # the session prepares its statements (auteur/core/postgres/plans.py)
    with django_assert_num_queries(2):
        assert client.get(jobs_url(f"/{job.pk}")).status_code == 200
    Job.objects.filter(pk=job.pk).update(status=JobStatus.PROCESSING)
    with django_assert_num_queries(1):
        assert client.get(jobs_url(f"/{job.pk}")).status_code == 200


def test_an_unknown_job_is_still_404_and_estimates_nothing(alice, client_for):
    response = client_for(alice).get(jobs_url(f"/{uuid.uuid4()}"))
    assert response.status_code == 404 and response.json()["error"]["code"] == "job_not_found"


def test_the_schema_says_what_the_fields_mean():
    job = served_schema()["components"]["schemas"]["Job"]["properties"]
    for name in FIELDS:
        assert job[name]["type"] == "integer" and job[name]["nullable"] is True, name
        assert "Null once it is processing" in job[name]["description"] or "once it is processing" in (
            job[name]["description"]), name
    assert "median processing time" in job["eta_seconds"]["description"]

"""Reading and acting on jobs: detail, list, events, types, cancel, retry, and who may see what."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from django.db import connection
from rest_framework.renderers import JSONRenderer

from auteur.core.throttling import hit
from auteur.users.models import User
from credits.selectors import credit_balance_get
from jobs.life.status import job_fail
from jobs.models import Job, JobStatus
from jobs.serializers import JobSerializer
from media.models import MediaFile
from tests.factories import ProjectFactory
from tests.jobs.support import (
    PRICE,
    START_BALANCE,
    error_code,
    jobs_url,
    ledger_state,
    refund_rows,
    submit,
    usage_rows,
    valid_body,
)

FEATURE_UNAVAILABLE = ("This feature is not available on this server: its GPU backend does not run it. "
                       "An operator can enable it.")

pytestmark = pytest.mark.django_db

DETAIL_KEYS = {
    "id", "type", "status", "project_id", "credits_cost", "credits_refunded", "credits_refund", "progress",
    "error_code", "error_message", "retryable", "attempts", "retry_of_id", "created_at", "queued_at", "started_at",
    "completed_at", "processing_time_ms", "gpu_seconds", "gpu", "priority", "start_deadline", "run_within_seconds",
    "run_deadline", "waiting_for", "trace_id", "charge", "cache", "output_data", "output_media", "queue_position",
    "lane_position", "eta_seconds",
}


@pytest.fixture
def job(auth_client, funded, project, media) -> Job:
    response = submit(auth_client, "transcription", valid_body("transcription", project, media))
    assert response.status_code == 202, response.json()
    return Job.objects.get(pk=response.json()["job_id"])


def complete(job: Job, output_media: list[MediaFile]) -> None:
    """Where the pipeline would leave a completed job (set directly: these tests run no worker)."""
    Job.objects.filter(pk=job.pk).update(
        status=JobStatus.COMPLETED, progress=100, gpu_seconds=1.5, processing_time_ms=2300,
        output_data={"text": "hello", "output_media_ids": [str(m.pk) for m in output_media]},
    )


# ----------------------------------------------------------------------------- detail, list, events


def test_a_job_reads_as_the_seed_shape_with_progress_errors_and_timings(auth_client, job, project):
    response = auth_client.get(jobs_url(f"/{job.pk}"))
    assert response.status_code == 200
    body = response.json()
    assert set(body) == DETAIL_KEYS
    assert body["id"] == str(job.pk) and body["type"] == "transcription" and body["status"] == "pending"
    assert body["project_id"] == str(project.pk) and body["credits_cost"] == PRICE["transcription"]
    assert body["output_data"] == {} and body["output_media"] == []
    assert body["progress"] == 0 and body["credits_refunded"] is False and body["retry_of_id"] is None


def test_a_completed_job_lists_its_output_media(auth_client, job, project, make_media):
    produced = make_media(project, "audio", name="speech.wav")
    gone = uuid.uuid4()  # an output since deleted is left out
    complete(job, [produced])
    Job.objects.filter(pk=job.pk).update(
        output_data={"text": "hello", "output_media_ids": [str(produced.pk), str(gone)]}
    )
    body = auth_client.get(jobs_url(f"/{job.pk}")).json()
    assert body["status"] == "completed" and body["output_data"]["text"] == "hello"
    assert body["output_media"] == [{"id": str(produced.pk), "name": "speech.wav", "type": "audio"}]
    assert body["gpu_seconds"] == 1.5 and body["processing_time_ms"] == 2300


def test_the_detail_is_byte_for_byte_what_the_job_serializer_writes(auth_client, job, project, make_media):
    """The detail builds its body without the serializer; cancel answers with the serializer and
    the schema documents it, so the two must not drift apart, whatever state the job is in."""
    produced = make_media(project, "audio", name="spéech.wav")
    at = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)  # no microseconds: isoformat writes none
    states = [
        {},
        {"status": JobStatus.PROCESSING, "progress": 40, "attempts": 1, "queued_at": at,
         "started_at": datetime(2026, 3, 1, 12, 0, 1, 250000, tzinfo=UTC)},
        {"status": JobStatus.COMPLETED, "progress": 100, "gpu_seconds": 1.5, "processing_time_ms": 2300,
         "completed_at": at, "output_data": {"text": "héllo", "output_media_ids": [str(produced.pk)]}},
        {"status": JobStatus.FAILED, "error_code": "gpu_oom", "error_message": "out of memory",
         "retryable": True, "credits_refunded": True, "credits_refund": 5, "retry_of_id": job.pk, "gpu_seconds": 2.0},
        {"status": JobStatus.ABORTED, "error_code": "start_deadline", "priority": 2, "start_deadline": at,
         "run_within_seconds": 60, "credits_refunded": True, "credits_refund": 5},
        {"status": JobStatus.QUEUED, "priority": 0, "run_deadline": at, "error_code": "", "credits_refunded": False,
         "credits_refund": 0},
    ]
    for fields in states:
        Job.objects.filter(pk=job.pk).update(**fields)
        job.refresh_from_db()
        response = auth_client.get(jobs_url(f"/{job.pk}"))
        assert response.status_code == 200, fields
        assert response.content == JSONRenderer().render(JobSerializer(job).data), fields


def test_reading_a_job_is_one_query(auth_client, job, django_assert_num_queries):
    # The token's account is proven by the job's row (its owner, active): no query of its own.
    # (A job still waiting costs one more, for its place in line: tests/jobs/test_queue_position.py.)
    # The session's first read prepares the statement (auteur/core/postgres/plans.py), once.
    Job.objects.filter(pk=job.pk).update(status=JobStatus.PROCESSING)
    assert auth_client.get(jobs_url(f"/{job.pk}")).status_code == 200
    with django_assert_num_queries(1) as captured:
        assert auth_client.get(jobs_url(f"/{job.pk}")).status_code == 200
    (sql,) = [query["sql"] for query in captured.captured_queries]
    name = sql[sql.index("EXECUTE ") + 8:sql.index("(", sql.index("EXECUTE "))]
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements WHERE name = %s", [name])
        assert 'FROM "jobs"' in cursor.fetchone()[0]


def test_a_disabled_account_cannot_read_its_own_job(auth_client, job, funded):
    User.objects.filter(pk=funded.pk).update(is_active=False)
    response = auth_client.get(jobs_url(f"/{job.pk}"))
    assert response.status_code == 401 and error_code(response) == "invalid_token"
    # Nor reach what the detail's path answers to other methods.
    response = auth_client.post(jobs_url("/teleport"))
    assert response.status_code == 401 and error_code(response) == "invalid_token"


def test_the_first_token_of_a_new_account_creates_it_on_a_job_read_too(api_client, make_token, job):
    sub = str(uuid.uuid4())
    response = api_client.get(jobs_url(f"/{job.pk}"),
                              HTTP_AUTHORIZATION=f"Bearer {make_token(sub=sub, email='new@example.com')}")
    assert response.status_code == 404 and error_code(response) == "job_not_found"
    assert User.objects.get(pk=sub).email == "new@example.com"
    # Without an email too (a phone or anonymous sign-in): the account is its `sub`.
    stranger = str(uuid.uuid4())
    token = make_token(sub=stranger, email=None)
    response = api_client.get(jobs_url(f"/{job.pk}"), HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 404 and error_code(response) == "job_not_found"
    assert User.objects.get(pk=stranger).email == ""


def test_job_reads_count_against_the_callers_rate_limit(auth_client, job, funded, settings):
    # Another process fills the caller's window (the submission of the job counted in it too).
    while not hit(f"rl:u:{funded.pk}", limit=settings.AUTEUR_RATE_LIMIT_USER_PER_MINUTE, window_seconds=60):
        pass
    response = auth_client.get(jobs_url(f"/{job.pk}"))
    assert response.status_code == 429 and error_code(response) == "rate_limited"


def test_the_list_is_paginated_newest_first_and_filtered(auth_client, funded, project, media):
    ids = []
    for job_type in ("transcription", "tts", "compression"):
        response = submit(auth_client, job_type, valid_body(job_type, project, media))
        ids.append(response.json()["job_id"])
    other_project = ProjectFactory.create(user=funded, name="other")
    ids.append(submit(auth_client, "tts", {"project_id": str(other_project.pk), "text": "x"}).json()["job_id"])
    Job.objects.filter(pk=ids[0]).update(status=JobStatus.FAILED)

    body = auth_client.get(jobs_url(), {"page_size": 2}).json()
    assert body["count"] == 4 and body["next"] and body["previous"] is None
    assert [j["id"] for j in body["jobs"]] == ids[::-1][:2]
    assert "output_data" not in body["jobs"][0]

    def listed(**params):
        response = auth_client.get(jobs_url(), params)
        assert response.status_code == 200, response.json()
        return {j["id"] for j in response.json()["jobs"]}

    assert listed(type="tts") == {ids[1], ids[3]}
    assert listed(status="failed") == {ids[0]}
    assert listed(status="pending", type="tts", project_id=str(project.pk)) == {ids[1]}
    assert listed(project_id=str(other_project.pk)) == {ids[3]}


@pytest.mark.parametrize("params", [{"status": "done"}, {"type": "teleport"}, {"project_id": "nope"},
                                    {"page": 0}])
def test_a_bad_list_filter_is_400(auth_client, funded, params):
    response = auth_client.get(jobs_url(), params)
    assert response.status_code == 400 and error_code(response) == "validation_error"


def test_events_are_paginated_oldest_first(auth_client, job):
    auth_client.post(jobs_url(f"/{job.pk}/cancel"), {}, format="json")
    response = auth_client.get(jobs_url(f"/{job.pk}/events"))
    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 2
    assert [e["type"] for e in body["events"]] == ["submitted", "canceled"]
    assert body["events"][0]["data"] == {"credits_cost": PRICE["transcription"]}
    assert set(body["events"][0]) == {"id", "type", "data", "created_at"}


def test_types_lists_every_type_with_price_gpu_and_local_availability(auth_client):
    response = auth_client.get(jobs_url("/types"))
    assert response.status_code == 200
    body = response.json()
    assert body["backend"] == "local"
    types = {t["type"]: t for t in body["types"]}
    assert set(types) == set(PRICE)
    assert {t for t, v in types.items() if v["available"]} == {"transcription", "tts", "render", "compression",
                                                               "voice-consent"}
    assert types["transcription"]["price"] == {
        "rule": "5 credits per started 10 min of audio", "credits": 5, "unit": "10 min of audio",
    }
    assert types["transcription"]["gpu"] == "A10G" and types["transcription"]["time_limit_s"] == 600
    assert types["video-generation"]["pro_only"] is True and types["video-generation"]["gpu"] == "A100-80GB"
    assert types["render"]["gpu"] == "cpu" and types["tts"]["time_limit_s"] == 120
    assert types["video-query"]["price"]["rule"] == "2 credits per job"
    assert types["compression"]["price"]["rule"] == "1 credit per started 10 min of video"
    # What the result cache serves: deterministic types always, generators with a seed, TTS never.
    assert {t: v["cached"] for t, v in types.items()} == {
        **{t: "input" for t in ("transcription", "lip-sync", "performance-cloning", "gaze-redirection",
                                "video-query", "render", "compression")},
        **{t: "seed" for t in ("audio-generation", "video-generation", "image-generation")}, "tts": "none",
        "voice-consent": "none", "likeness-consent": "none",
    }
    assert all(v["engine_version"] >= 1 for v in types.values())
    # Every type names its model (the local engine's where it runs another), its plan, and why not.
    assert all(t["model"] for t in types.values())
    assert types["transcription"]["model"] == "Whisper tiny.en for English, base for other languages (faster-whisper)"
    assert types["video-generation"]["plan"] == "pro" and types["tts"]["plan"] is None
    assert all((t["reason"] is None) == t["available"] for t in types.values())
    # A client is told a sentence, never the backend's reason (paths, commands for operators).
    assert {t["reason"] for t in types.values() if not t["available"]} == {
        FEATURE_UNAVAILABLE}


# ----------------------------------------------------------------------------- cancel


def test_cancelling_a_pending_job_refunds_it_once_and_a_second_cancel_is_409(auth_client, funded, job):
    assert credit_balance_get(user=funded) == START_BALANCE - job.credits_cost
    response = auth_client.post(jobs_url(f"/{job.pk}/cancel"))
    assert response.status_code == 200, response.json()
    body = response.json()
    assert set(body) == DETAIL_KEYS
    assert body["status"] == "canceled" and body["credits_refunded"] is True and body["completed_at"]
    assert refund_rows(job.pk) == 1
    assert credit_balance_get(user=funded) == START_BALANCE

    again = auth_client.post(jobs_url(f"/{job.pk}/cancel"), {}, format="json")
    assert again.status_code == 409 and error_code(again) == "job_not_cancelable"
    assert again.json()["error"]["details"]["status"] == "canceled"
    assert refund_rows(job.pk) == 1
    assert credit_balance_get(user=funded) == START_BALANCE


def test_cancelling_a_completed_job_is_409_and_refunds_nothing(auth_client, funded, job):
    complete(job, [])
    before = ledger_state(funded)
    response = auth_client.post(jobs_url(f"/{job.pk}/cancel"))
    assert response.status_code == 409 and error_code(response) == "job_not_cancelable"
    assert ledger_state(funded) == before and refund_rows(job.pk) == 0


def test_cancel_takes_no_fields(auth_client, funded, job):
    response = auth_client.post(jobs_url(f"/{job.pk}/cancel"), {"force": True}, format="json")
    assert response.status_code == 400
    assert Job.objects.get(pk=job.pk).status == JobStatus.PENDING


# ----------------------------------------------------------------------------- retry


def test_retrying_a_job_that_did_not_fail_is_409(auth_client, funded, job):
    before = ledger_state(funded)
    response = auth_client.post(jobs_url(f"/{job.pk}/retry"))
    assert response.status_code == 409 and error_code(response) == "job_not_retryable"
    assert ledger_state(funded) == before


def test_retrying_a_failed_job_whose_error_is_permanent_is_409(auth_client, funded, job):
    assert job_fail(job_id=job.pk, code="invalid_media", detail="not decodable", retryable=False)
    before = ledger_state(funded)
    response = auth_client.post(jobs_url(f"/{job.pk}/retry"))
    assert response.status_code == 409 and error_code(response) == "job_not_retryable"
    assert ledger_state(funded) == before


def test_retrying_a_failed_retryable_job_submits_a_new_job_charged_again(auth_client, funded, job):
    assert job_fail(job_id=job.pk, code="gpu_oom", detail="out of memory", retryable=True)
    assert credit_balance_get(user=funded) == START_BALANCE  # refunded
    response = auth_client.post(jobs_url(f"/{job.pk}/retry"), {}, format="json")
    assert response.status_code == 202, response.json()
    body = response.json()
    assert set(body) == {"job_id", "status", "credits_cost", "cache", "deduplicated"}
    assert body["job_id"] != str(job.pk) and body["status"] == "pending" and body["credits_cost"] == job.credits_cost
    new = Job.objects.get(pk=body["job_id"])
    assert new.retry_of_id == job.pk and new.input_params == job.input_params and new.type == job.type
    assert usage_rows(new.pk) == 1
    assert credit_balance_get(user=funded) == START_BALANCE - job.credits_cost
    detail = auth_client.get(jobs_url(f"/{new.pk}")).json()
    assert detail["retry_of_id"] == str(job.pk)


# ----------------------------------------------------------------------------- ownership


def test_another_users_job_is_404_on_every_endpoint_and_nothing_changes(job, funded, make_user, client_for):
    other = client_for(make_user())
    assert job_fail(job_id=job.pk, code="gpu_oom", detail="oom", retryable=True)
    job.refresh_from_db()
    before = (ledger_state(funded), job.status, Job.objects.count())
    for method, suffix in [("get", ""), ("get", "/events"), ("post", "/cancel"), ("post", "/retry")]:
        response = getattr(other, method)(jobs_url(f"/{job.pk}{suffix}"))
        assert response.status_code == 404, (suffix, response.json())
        assert error_code(response) == "job_not_found"
    assert other.get(jobs_url()).json()["count"] == 0
    assert other.get(jobs_url(), {"project_id": str(job.project_id)}).json()["count"] == 0
    job.refresh_from_db()
    assert (ledger_state(funded), job.status, Job.objects.count()) == before


@pytest.mark.parametrize("job_id", ["not-a-uuid", "12345", pytest.param(str(uuid.uuid4()), id="unknown-uuid"), "%20"])
def test_an_unknown_or_malformed_job_id_is_404_never_500(auth_client, funded, job_id):
    for method, suffix in [("get", ""), ("get", "/events"), ("post", "/cancel"), ("post", "/retry")]:
        response = getattr(auth_client, method)(jobs_url(f"/{job_id}{suffix}"))
        assert response.status_code == 404, (job_id, suffix)
        assert error_code(response) == "job_not_found"


def test_every_job_endpoint_needs_authentication(api_client, job):
    before = (job.status, refund_rows(job.pk), Job.objects.count())
    requests = [
        ("get", jobs_url()), ("get", jobs_url("/types")), ("get", jobs_url(f"/{job.pk}")),
        ("get", jobs_url(f"/{job.pk}/events")), ("post", jobs_url(f"/{job.pk}/cancel")),
        ("post", jobs_url(f"/{job.pk}/retry")), ("post", jobs_url("/tts")), ("post", jobs_url("/transcription")),
    ]
    for method, url in requests:
        response = getattr(api_client, method)(url)
        assert response.status_code == 401, url
        assert error_code(response) == "not_authenticated"
    job.refresh_from_db()
    assert (job.status, refund_rows(job.pk), Job.objects.count()) == before

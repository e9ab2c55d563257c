"""The webhooks API and the `webhook` fields of a submission: shapes, refusals (4xx with a code
and nothing created), and scoping (another user's webhook is a 404)."""

from __future__ import annotations

import json
import logging
import threading
from typing import Any

import pytest

from jobs.models import Job
from tests.factories import ProjectFactory
from tests.jobs.support import error_code, ledger_state, submit, valid_body
from webhooks import services
from webhooks.keys import secret_open
from webhooks.models import AccountNotice, Delivery, JobWebhook, NoticeKind, SigningSecret, Webhook

pytestmark = pytest.mark.django_db

URL = "https://hooks.example.test/in"


@pytest.fixture(autouse=True)
def public_dns(fake_dns, settings) -> None:
    settings.AUTEUR_WEBHOOK_ALLOW_LOOPBACK = False  # production's rules
    fake_dns({"hooks.example.test": ["93.184.216.34"], "intranet.example.test": ["10.0.0.7"],
              "sixtofour.example.test": ["2002:c0a8:1::1"]})


def create(client: Any, **body: Any) -> Any:
    return client.post("/api/v1/webhooks", {"url": URL, **body}, format="json")


def test_create_answers_the_secret_once_and_never_again(auth_client, user, caplog):
    caplog.set_level(logging.DEBUG)
    response = create(auth_client, event_types=["completed"], description="farm")
    assert response.status_code == 201, response.json()
    body = response.json()
    secret = body["secret"]
    assert secret.startswith("whsec_") and len(secret) > 40
    assert body["url"] == URL and body["event_types"] == ["completed"] and body["enabled"] is True
    webhook = Webhook.objects.get(pk=body["id"], owner=user)
    assert secret not in webhook.secret_sealed and secret_open(webhook.secret_sealed) == secret
    for read in (auth_client.get(f"/api/v1/webhooks/{webhook.pk}"), auth_client.get("/api/v1/webhooks")):
        assert read.status_code == 200 and secret not in read.content.decode()
        assert "secret" not in read.content.decode()
    listed = auth_client.get("/api/v1/webhooks").json()
    assert listed["count"] == 1 and listed["webhooks"][0]["id"] == str(webhook.pk)
    assert secret not in caplog.text


def test_event_types_default_to_all(auth_client):
    assert create(auth_client).json()["event_types"] == ["start", "progress", "completed"]


@pytest.mark.parametrize(("url", "reason"), [
    ("http://hooks.example.test/in", "scheme"),
    ("https://10.0.0.1/in", "address"),
    ("https://[::ffff:192.168.0.1]/in", "address"),
    ("https://169.254.169.254/latest/meta-data", "address"),
    ("https://127.0.0.1/in", "address"),
    ("https://intranet.example.test/in", "address"),
    ("https://[2002:a00:1::1]/in", "address"),  # 6to4 of 10.0.0.1
    ("https://[64:ff9b::a9fe:a9fe]/in", "address"),  # NAT64 of 169.254.169.254
    ("https://sixtofour.example.test/in", "address"),
    ("https://nowhere.example.test/in", "unresolvable"),
    ("not a url", "malformed"),
])
def test_a_refused_url_is_a_400_with_its_reason_and_creates_nothing(auth_client, user, url, reason):
    response = create(auth_client, url=url)
    assert response.status_code == 400 and error_code(response) == "invalid_webhook_url"
    assert response.json()["error"]["details"]["reason"] == reason
    assert not Webhook.objects.filter(owner=user).exists()


@pytest.mark.parametrize("body", [
    {"event_types": ["finished"]},
    {"event_types": []},
    {"event_types": "completed"},
    {"secret": "whsec_mine"},
    {"url": ""},
])
def test_invalid_fields_are_a_400_validation_error(auth_client, user, body):
    response = create(auth_client, **body)
    assert response.status_code == 400 and error_code(response) == "validation_error"
    assert not Webhook.objects.filter(owner=user).exists()


def test_another_users_webhook_is_a_404(auth_client, make_user, client_for):
    other = client_for(make_user())
    webhook_id = create(other).json()["id"]
    for method, path in (("get", ""), ("delete", ""), ("post", "/test"), ("get", "/deliveries"), ("post", "/secret")):
        response = getattr(auth_client, method)(f"/api/v1/webhooks/{webhook_id}{path}", format="json")
        assert response.status_code == 404 and error_code(response) == "webhook_not_found", (method, path)
    assert Webhook.objects.filter(pk=webhook_id).exists() and not Delivery.objects.exists()
    assert auth_client.get("/api/v1/webhooks/not-a-uuid").status_code == 404


def test_delete_removes_it(auth_client):
    webhook_id = create(auth_client).json()["id"]
    assert auth_client.delete(f"/api/v1/webhooks/{webhook_id}").status_code == 204
    assert not Webhook.objects.filter(pk=webhook_id).exists()
    assert auth_client.get(f"/api/v1/webhooks/{webhook_id}").status_code == 404


def test_the_test_endpoint_queues_one_test_delivery(auth_client):
    webhook_id = create(auth_client, event_types=["completed"]).json()["id"]
    response = auth_client.post(f"/api/v1/webhooks/{webhook_id}/test", format="json")
    assert response.status_code == 202, response.json()
    body = response.json()
    assert body["event_type"] == "test" and body["state"] == "pending" and body["webhook_id"].startswith("msg_")
    assert body["payload"]["type"] == "webhook.test"
    deliveries = auth_client.get(f"/api/v1/webhooks/{webhook_id}/deliveries").json()
    assert deliveries["count"] == 1 and deliveries["deliveries"][0]["webhook_id"] == body["webhook_id"]
    refused = auth_client.post(f"/api/v1/webhooks/{webhook_id}/test", {"x": 1}, format="json")
    assert refused.status_code == 400 and Delivery.objects.count() == 1


def test_a_hung_resolver_is_a_400_at_creation_and_creates_nothing(auth_client, user, monkeypatch, settings):
    settings.AUTEUR_WEBHOOK_RESOLVE_TIMEOUT_SECONDS = 0.2
    release = threading.Event()
    monkeypatch.setattr("webhooks.ssrf.lookup", lambda host, port: release.wait(60) and [])
    try:
        response = create(auth_client, url="https://hung.example.test/in")
    finally:
        release.set()
    assert response.status_code == 400 and error_code(response) == "invalid_webhook_url"
    assert response.json()["error"]["details"] == {"reason": "resolution_timeout"}
    assert not Webhook.objects.filter(owner=user).exists()


def test_the_test_endpoint_refuses_with_429_while_too_many_tests_are_pending(auth_client,
                                                                             django_capture_on_commit_callbacks):
    """No worker runs here: each accepted test message stays pending, as it would while a slow
    receiver holds it. Past the limit the endpoint refuses, and nothing is created or queued."""
    webhook_id = create(auth_client).json()["id"]
    for _ in range(services.MAX_PENDING_TESTS):
        assert auth_client.post(f"/api/v1/webhooks/{webhook_id}/test", format="json").status_code == 202
    with django_capture_on_commit_callbacks(execute=False) as queued:
        refused = auth_client.post(f"/api/v1/webhooks/{webhook_id}/test", format="json")
    assert refused.status_code == 429 and error_code(refused) == "webhook_backlog_full"
    details = refused.json()["error"]["details"]
    assert details["pending_tests"] == details["max_pending_tests"] == services.MAX_PENDING_TESTS
    assert refused["Retry-After"] == str(details["retry_after_seconds"])
    assert Delivery.objects.filter(webhook_id=webhook_id).count() == services.MAX_PENDING_TESTS and queued == []
    # Once they have had their attempt, testing works again.
    Delivery.objects.filter(webhook_id=webhook_id).update(state="failed")
    assert auth_client.post(f"/api/v1/webhooks/{webhook_id}/test", format="json").status_code == 202


def test_the_test_endpoint_refuses_while_the_receiver_is_far_behind(auth_client, user):
    webhook_id = create(auth_client).json()["id"]
    Delivery.objects.bulk_create([
        Delivery(owner=user, webhook_id=webhook_id, event_type="completed", payload={}, next_attempt_at=None)
        for _ in range(services.MAX_PENDING_FOR_TEST)
    ])
    refused = auth_client.post(f"/api/v1/webhooks/{webhook_id}/test", format="json")
    assert refused.status_code == 429 and error_code(refused) == "webhook_backlog_full"
    assert refused.json()["error"]["details"]["pending"] == services.MAX_PENDING_FOR_TEST
    assert not Delivery.objects.filter(webhook_id=webhook_id, event_type="test").exists()


def test_deliveries_page_like_every_list(auth_client):
    webhook_id = create(auth_client).json()["id"]
    for _ in range(3):
        auth_client.post(f"/api/v1/webhooks/{webhook_id}/test", format="json")
    page = auth_client.get(f"/api/v1/webhooks/{webhook_id}/deliveries?page_size=2").json()
    assert page["count"] == 3 and len(page["deliveries"]) == 2 and page["next"]
    assert auth_client.get(f"/api/v1/webhooks/{webhook_id}/deliveries?page=0").status_code == 400


def test_an_account_has_at_most_20_webhooks(auth_client, user):
    for _ in range(20):
        assert create(auth_client).status_code == 201
    response = create(auth_client)
    assert response.status_code == 409 and error_code(response) == "webhook_limit_reached"
    assert Webhook.objects.filter(owner=user).count() == 20


def test_the_jobs_signing_secret_is_the_accounts_and_stable(auth_client, user, make_user, client_for):
    first = auth_client.get("/api/v1/webhooks/default/secret").json()["key"]
    assert first.startswith("whsec_") and auth_client.get("/api/v1/webhooks/default/secret").json()["key"] == first
    other = client_for(make_user()).get("/api/v1/webhooks/default/secret").json()["key"]
    assert other != first and SigningSecret.objects.count() == 2


def test_notices_list_only_the_callers(auth_client, user, make_user):
    AccountNotice.objects.create(owner=user, kind=NoticeKind.WEBHOOK_DISABLED, message="off")
    AccountNotice.objects.create(owner=make_user(), kind=NoticeKind.WEBHOOK_DISABLED, message="theirs")
    notices = auth_client.get("/api/v1/webhooks/notices").json()
    assert notices["count"] == 1 and notices["notices"][0]["message"] == "off"


# ----------------------------------------------------------------------------- per job


def test_a_submission_with_a_webhook_stores_its_target_beside_the_job(auth_client, funded, project, media):
    body = {**valid_body("tts", project, media), "webhook": URL, "webhook_events_filter": ["completed", "start"]}
    response = submit(auth_client, "tts", body)
    assert response.status_code == 202, response.json()
    job = Job.objects.get(pk=response.json()["job_id"])
    target = JobWebhook.objects.get(job=job)
    assert target.url == URL and target.event_types == ["start", "completed"] and target.owner_id == funded.pk
    assert "webhook" not in job.input_params and "webhook_events_filter" not in job.input_params
    assert SigningSecret.objects.filter(owner=funded).exists()


def test_a_submission_without_a_filter_gets_every_event(auth_client, funded, project, media):
    response = submit(auth_client, "tts", {**valid_body("tts", project, media), "webhook": URL})
    assert JobWebhook.objects.get(job_id=response.json()["job_id"]).event_types == ["start", "progress", "completed"]


@pytest.mark.parametrize(("extra", "code"), [
    ({"webhook": "http://hooks.example.test/in"}, "invalid_webhook_url"),
    ({"webhook": "https://192.168.1.10/in"}, "invalid_webhook_url"),
    ({"webhook": "https://intranet.example.test/in"}, "invalid_webhook_url"),
    ({"webhook": "https://[fe80::1]/in"}, "invalid_webhook_url"),
    ({"webhook": URL, "webhook_events_filter": ["done"]}, "validation_error"),
    ({"webhook": URL, "webhook_events_filter": []}, "validation_error"),
    ({"webhook_events_filter": ["completed"]}, "validation_error"),
])
def test_a_bad_job_webhook_refuses_the_submission_and_charges_nothing(auth_client, funded, project, media, extra,
                                                                       code):
    before = ledger_state(funded)
    response = submit(auth_client, "tts", {**valid_body("tts", project, media), **extra})
    assert response.status_code == 400 and error_code(response) == code, response.json()
    assert ledger_state(funded) == before and not JobWebhook.objects.exists()


def test_a_submission_that_fails_later_leaves_no_target(make_user, client_for):
    poor = make_user()  # no credits: the charge fails after the body was accepted
    project = ProjectFactory.create(user=poor)
    body = {"project_id": str(project.pk), "text": "Hello world", "webhook": URL}
    response = submit(client_for(poor), "tts", body)
    assert response.status_code == 402 and error_code(response) == "insufficient_credits"
    assert not JobWebhook.objects.exists() and not Job.objects.filter(user=poor).exists()


def test_the_signing_secret_is_never_in_an_answer_about_jobs(auth_client, funded, project, media):
    response = submit(auth_client, "tts", {**valid_body("tts", project, media), "webhook": URL})
    secret = secret_open(SigningSecret.objects.get(owner=funded).secret_sealed)
    job = auth_client.get(f"/api/v1/jobs/{response.json()['job_id']}")
    assert secret not in json.dumps(response.json()) and secret not in job.content.decode()


def test_a_retried_job_reports_to_the_same_webhook(auth_client, funded, project, media):
    response = submit(auth_client, "tts", {**valid_body("tts", project, media), "webhook": URL,
                                           "webhook_events_filter": ["completed"]})
    job_id = response.json()["job_id"]
    Job.objects.filter(pk=job_id).update(status="failed", retryable=True, error_code="gpu_unavailable")
    retried = auth_client.post(f"/api/v1/jobs/{job_id}/retry", format="json")
    assert retried.status_code == 202, retried.json()
    target = JobWebhook.objects.get(job_id=retried.json()["job_id"])
    assert target.url == URL and target.event_types == ["completed"]


@pytest.mark.parametrize("body", [{"keep_previous_seconds": -1}, {"keep_previous_seconds": 7 * 24 * 3600 + 1},
                                  {"keep_previous_seconds": "soon"}, {"keep_previous_seconds": None}, {"x": 1}])
def test_a_rotation_keeps_the_old_secret_for_a_whole_number_of_seconds_up_to_a_week(auth_client, body):
    webhook = Webhook.objects.get(pk=create(auth_client).json()["id"])
    for path in (f"/api/v1/webhooks/{webhook.pk}/secret", "/api/v1/webhooks/default/secret"):
        response = auth_client.post(path, body, format="json")
        assert (response.status_code, error_code(response)) == (400, "validation_error"), (path, response.content)
    webhook.refresh_from_db()
    assert webhook.previous_secret_sealed == "" and webhook.previous_expires_at is None


def test_a_rotation_answers_the_new_secret_once_and_logs_neither(auth_client, user, caplog):
    caplog.set_level(logging.DEBUG)
    created = create(auth_client).json()
    rotated = auth_client.post(f"/api/v1/webhooks/{created['id']}/secret", format="json").json()
    webhook = Webhook.objects.get(pk=created["id"])
    assert secret_open(webhook.secret_sealed) == rotated["secret"] != created["secret"]
    assert secret_open(webhook.previous_secret_sealed) == created["secret"]
    assert rotated["secret"] not in auth_client.get(f"/api/v1/webhooks/{webhook.pk}").content.decode()
    default = auth_client.post("/api/v1/webhooks/default/secret", {"keep_previous_seconds": 0}, format="json").json()
    row = SigningSecret.objects.get(owner=user)
    assert secret_open(row.secret_sealed) == default["key"] and row.previous_secret_sealed == ""
    for secret in (created["secret"], rotated["secret"], default["key"]):
        assert secret not in caplog.text

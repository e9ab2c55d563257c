"""Deliveries through a real Celery worker (queue `webhooks`) to the loopback receiver, which
verifies every signature with `standardwebhooks`: a job's whole life, retries that keep their
`webhook-id`, hangs, 500s and redirects that never hold the job up, the durable sweep and the
admin's redeliver.

One worker serves the whole module: a test's leftover messages (a retry still due when it
ended) find their delivery rows gone with the test's data and send nothing."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from standardwebhooks import Webhook as Verifier

from jobs.events.record import job_event_record
from jobs.events.webhooks import WEBHOOK_EVENT_OF
from jobs.models import JobEvent, JobEventType, JobStatus
from tests.jobs.conftest import Worker, subprocess_env, wait_for, wait_terminal
from tests.jobs.support import submit
from tests.webhooks.conftest import Answer, Receiver
from webhooks.models import Delivery, DeliveryState, Webhook
from webhooks.tasks import sweep

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

WORKER_ENV = {
    "AUTEUR_WEBHOOK_ALLOW_LOOPBACK": "1",
    "AUTEUR_WEBHOOK_TIMEOUT_SECONDS": "1",
    "AUTEUR_WEBHOOK_RETRY_BASE_SECONDS": "0.3",
}


@pytest.fixture(scope="module")
def worker(django_db_setup: None) -> Iterator[Worker]:
    started = Worker(subprocess_env(**WORKER_ENV))
    yield started
    started.stop()


def received_at(receiver: Receiver, path: str) -> list[Any]:
    return [r for r in receiver.received if r.path == path]


def verified(receiver: Receiver, path: str, secret: str) -> list[dict[str, Any]]:
    """The payloads received at `path`, each verified against its signature (raises if one fails)."""
    return [Verifier(secret).verify(r.body, r.headers) for r in received_at(receiver, path)]


def tts(client: Any, project: Any, **extra: Any) -> str:
    response = submit(client, "tts", {"project_id": str(project.pk), "text": "Hello world", **extra})
    assert response.status_code == 202, response.json()
    return str(response.json()["job_id"])


def account_webhook(client: Any, url: str, **body: Any) -> dict[str, Any]:
    response = client.post("/api/v1/webhooks", {"url": url, **body}, format="json")
    assert response.status_code == 201, response.json()
    return dict(response.json())


def test_a_jobs_whole_life_reaches_its_own_and_the_account_webhook(worker, auth_client, project, receiver):
    account = account_webhook(auth_client, receiver.url("/account"))
    job_secret = auth_client.get("/api/v1/webhooks/default/secret").json()["key"]
    job_id = tts(auth_client, project, webhook=receiver.url("/job"))
    job = wait_terminal(job_id)
    assert job.status == JobStatus.COMPLETED, (job.error_code, job.error_detail)
    expected = Counter(f"job.{WEBHOOK_EVENT_OF[JobEventType(t)]}"
                       for t in JobEvent.objects.filter(job=job).values_list("type", flat=True)
                       if t in WEBHOOK_EVENT_OF)
    assert expected["job.start"] == 1 and expected["job.completed"] == 1
    total = sum(expected.values())
    wait_for(lambda: len(received_at(receiver, "/job")) >= total and len(received_at(receiver, "/account")) >= total)
    for path, secret in (("/job", job_secret), ("/account", account["secret"])):
        payloads = verified(receiver, path, secret)
        assert Counter(p["type"] for p in payloads) == expected, path
        final = next(p for p in payloads if p["type"] == "job.completed")
        assert final["data"]["id"] == job_id and final["data"]["status"] == "completed"
        assert final["data"]["progress"] == 100 and final["data"]["output_media"]
        ids = [r.headers["webhook-id"] for r in received_at(receiver, path)]
        assert len(set(ids)) == len(ids)  # one message per event
    # The signatures are per target: the account's secret does not verify the job's messages.
    with pytest.raises(Exception, match="signature"):
        verified(receiver, "/job", account["secret"])
    wait_for(lambda: not Delivery.objects.exclude(state=DeliveryState.SUCCEEDED).exists())
    log = auth_client.get(f"/api/v1/webhooks/{account['id']}/deliveries").json()
    assert log["count"] == total
    assert all(d["state"] == "succeeded" and [a["status_code"] for a in d["attempts"]] == [200]
               for d in log["deliveries"])


def test_a_progress_event_is_delivered_and_an_unsubscribed_type_is_not(worker, auth_client, project, receiver):
    account = account_webhook(auth_client, receiver.url("/account"), event_types=["progress"])
    job_id = tts(auth_client, project)
    wait_terminal(job_id)
    job_event_record(job_id, JobEventType.PROGRESS, progress=50)  # outside a transaction: committed at once
    wait_for(lambda: received_at(receiver, "/account"))
    [payload] = verified(receiver, "/account", account["secret"])
    assert payload["type"] == "job.progress" and payload["data"]["id"] == job_id
    assert Delivery.objects.count() == 1  # start and completed were not subscribed


def test_the_test_endpoint_sends_a_signed_test_message(worker, auth_client, receiver):
    account = account_webhook(auth_client, receiver.url("/account"), event_types=["completed"])
    response = auth_client.post(f"/api/v1/webhooks/{account['id']}/test", format="json")
    assert response.status_code == 202
    wait_for(lambda: received_at(receiver, "/account"))
    [payload] = verified(receiver, "/account", account["secret"])
    assert payload["type"] == "webhook.test" and payload["data"] == {"webhook_id": account["id"]}
    assert received_at(receiver, "/account")[0].headers["webhook-id"] == response.json()["webhook_id"]
    wait_for(lambda: Delivery.objects.filter(state=DeliveryState.SUCCEEDED).exists())


def test_a_rotated_secret_signs_beside_the_new_one_until_it_expires_or_at_once_not_at_all(
    worker, auth_client, receiver
):
    from standardwebhooks import WebhookVerificationError

    account = account_webhook(auth_client, receiver.url("/account"), event_types=["completed"])
    old = account["secret"]

    def test_message() -> Any:
        before = len(received_at(receiver, "/account"))
        assert auth_client.post(f"/api/v1/webhooks/{account['id']}/test", format="json").status_code == 202
        wait_for(lambda: len(received_at(receiver, "/account")) > before)
        return received_at(receiver, "/account")[-1]

    rotated = auth_client.post(f"/api/v1/webhooks/{account['id']}/secret", {"keep_previous_seconds": 3600},
                               format="json")
    assert rotated.status_code == 200, rotated.content
    new = rotated.json()["secret"]
    assert new.startswith("whsec_") and new != old and rotated.json()["previous_valid_until"] is not None
    both = test_message()
    assert len(both.headers["webhook-signature"].split(" ")) == 2
    for secret in (new, old):  # a receiver holding either verifies the message
        assert Verifier(secret).verify(both.body, both.headers)["type"] == "webhook.test"

    # A secret a removed member knew is ended at once.
    cut = auth_client.post(f"/api/v1/webhooks/{account['id']}/secret", {"keep_previous_seconds": 0}, format="json")
    assert cut.json()["previous_valid_until"] is None
    newest = cut.json()["secret"]
    alone = test_message()
    assert Verifier(newest).verify(alone.body, alone.headers)["type"] == "webhook.test"
    for secret in (new, old):
        with pytest.raises(WebhookVerificationError):
            Verifier(secret).verify(alone.body, alone.headers)
    # An expired rotation signs with the new secret only.
    Webhook.objects.filter(pk=account["id"]).update(
        previous_secret_sealed=Webhook.objects.get(pk=account["id"]).secret_sealed,
        previous_expires_at=timezone.now() - timedelta(seconds=1))
    assert len(test_message().headers["webhook-signature"].split(" ")) == 1


def test_the_jobs_signing_secret_rotates_too(worker, auth_client, project, receiver):
    old = auth_client.get("/api/v1/webhooks/default/secret").json()["key"]
    rotated = auth_client.post("/api/v1/webhooks/default/secret", {}, format="json").json()
    assert rotated["key"] != old and auth_client.get("/api/v1/webhooks/default/secret").json()["key"] == rotated["key"]
    job_id = tts(auth_client, project, webhook=receiver.url("/job"), webhook_events_filter=["completed"])
    assert wait_terminal(job_id).status == JobStatus.COMPLETED
    wait_for(lambda: received_at(receiver, "/job"))
    for secret in (rotated["key"], old):  # the default keeps the old one signing for a day
        assert [p["type"] for p in verified(receiver, "/job", secret)] == ["job.completed"]


def test_a_500_is_retried_with_the_same_webhook_id_and_logged(worker, auth_client, project, receiver):
    receiver.script = [Answer(status=500, body=b"down for maintenance"), Answer(status=503, body=b"still down")]
    job_id = tts(auth_client, project, webhook=receiver.url("/job"), webhook_events_filter=["completed"])
    assert wait_terminal(job_id).status == JobStatus.COMPLETED
    delivery = wait_for(lambda: Delivery.objects.filter(state=DeliveryState.SUCCEEDED).first())
    secret = auth_client.get("/api/v1/webhooks/default/secret").json()["key"]
    payloads = verified(receiver, "/job", secret)
    assert [p["type"] for p in payloads] == ["job.completed"] * 3
    assert {r.headers["webhook-id"] for r in received_at(receiver, "/job")} == {delivery.message_id}
    attempts = list(delivery.attempt_log.values_list("number", "status_code", "error", "response_body"))
    assert attempts == [(1, 500, "HTTP 500", "down for maintenance"), (2, 503, "HTTP 503", "still down"),
                        (3, 200, "", "ok")]
    assert delivery.attempts == 3 and delivery.job_webhook is not None and delivery.job_webhook.failing_since is None


def test_a_hanging_receiver_times_out_is_retried_and_never_holds_the_job(worker, auth_client, project,
                                                                          receiver):
    receiver.default = Answer(hang_seconds=3)  # every attempt outlasts the 1 s timeout
    job_id = tts(auth_client, project, webhook=receiver.url("/job"))
    assert wait_terminal(job_id).status == JobStatus.COMPLETED
    wait_for(lambda: Delivery.objects.filter(attempts__gte=2, event_type="completed").exists())
    delivery = Delivery.objects.get(event_type="completed")
    assert delivery.state == DeliveryState.PENDING
    assert set(delivery.attempt_log.values_list("error", flat=True)) == {"timed out after 1 s"}
    receiver.default = Answer()
    wait_for(lambda: Delivery.objects.filter(pk=delivery.pk, state=DeliveryState.SUCCEEDED).exists())
    assert {r.headers["webhook-id"] for r in received_at(receiver, "/job")
            if b"job.completed" in r.body} == {delivery.message_id}


def test_a_redirect_to_a_private_address_is_refused_logged_and_retried(worker, auth_client, project,
                                                                        receiver):
    receiver.default = Answer(status=307, headers={"Location": "http://169.254.169.254/latest/meta-data/"})
    job_id = tts(auth_client, project, webhook=receiver.url("/job"), webhook_events_filter=["completed"])
    assert wait_terminal(job_id).status == JobStatus.COMPLETED
    delivery = wait_for(lambda: Delivery.objects.filter(attempts__gte=2).first())
    assert delivery.state == DeliveryState.PENDING
    assert list(delivery.attempt_log.values_list("status_code", "error"))[:2] == [(307, "redirect not followed")] * 2
    assert {r.path for r in receiver.received} == {"/job"}
    # Its retries would go on past the test; it is given up, so no attempt is left to run into
    # the emptying of the tables.
    Delivery.objects.filter(pk=delivery.pk).update(state=DeliveryState.FAILED, next_attempt_at=None)


def test_test_messages_to_a_slow_drip_receiver_cost_one_bounded_attempt_each(worker, auth_client, user,
                                                                              drip_receiver, receiver):
    """The flood: test messages to a receiver that answers a byte a second. Past 3 pending the
    endpoint refuses (429); each accepted one has one attempt that ends at the worker's 1 s
    deadline and is logged as failed; another account's delivery still goes through."""
    account = account_webhook(auth_client, drip_receiver.url())
    accepted = [auth_client.post(f"/api/v1/webhooks/{account['id']}/test", format="json") for _ in range(3)]
    assert [r.status_code for r in accepted] == [202] * 3
    refused = auth_client.post(f"/api/v1/webhooks/{account['id']}/test", format="json")
    assert refused.status_code == 429 and refused.json()["error"]["code"] == "webhook_backlog_full"
    other = Webhook.objects.create(owner=user, url=receiver.url("/other"), event_types=["completed"],
                                   secret_sealed=Webhook.objects.get(pk=account["id"]).secret_sealed)
    lost = Delivery.objects.create(owner=user, webhook=other, event_type="completed",
                                   payload={"type": "job.completed", "data": {}}, next_attempt_at=timezone.now())
    sweep.delay()
    wait_for(lambda: Delivery.objects.filter(pk=lost.pk, state=DeliveryState.SUCCEEDED).exists())
    tests = Delivery.objects.filter(webhook_id=account["id"])
    wait_for(lambda: tests.filter(state=DeliveryState.FAILED).count() == 3)
    assert [list(d.attempt_log.values_list("status_code", "error")) for d in tests] == [
        [(None, "timed out after 1 s")]] * 3
    assert all(d.cut for d in drip_receiver.wait_ended(3))
    # Their attempts are over: the webhook can be tested again (and that attempt ends like them,
    # before the test does: nothing of it is left in flight when the tables are emptied).
    assert auth_client.post(f"/api/v1/webhooks/{account['id']}/test", format="json").status_code == 202
    wait_for(lambda: tests.filter(state=DeliveryState.FAILED).count() == 4)


def test_a_delivery_whose_message_was_lost_is_sent_by_the_sweep(worker, auth_client, user, receiver):
    account = account_webhook(auth_client, receiver.url("/account"))
    webhook = Webhook.objects.get(pk=account["id"])
    # A due row and no message for it (as after a broker loss): only the sweep can send it.
    lost = Delivery.objects.create(owner=user, webhook=webhook, event_type="completed",
                                   payload={"type": "job.completed", "data": {}},
                                   next_attempt_at=timezone.now() - timedelta(minutes=5))
    sweep.delay()
    wait_for(lambda: Delivery.objects.filter(pk=lost.pk, state=DeliveryState.SUCCEEDED).exists())
    [got] = received_at(receiver, "/account")
    assert got.headers["webhook-id"] == lost.message_id


def test_the_admin_redelivers_with_the_same_webhook_id(worker, auth_client, superuser_client, receiver):
    account = account_webhook(auth_client, receiver.url("/account"))
    auth_client.post(f"/api/v1/webhooks/{account['id']}/test", format="json")
    delivery = wait_for(lambda: Delivery.objects.filter(state=DeliveryState.SUCCEEDED).first())
    response = superuser_client.post("/admin/webhooks/delivery/", {"action": "redeliver",
                                                                   "_selected_action": [delivery.pk]})
    assert response.status_code == 302
    wait_for(lambda: len(received_at(receiver, "/account")) == 2)
    wait_for(lambda: Delivery.objects.filter(pk=delivery.pk, state=DeliveryState.SUCCEEDED).exists())
    assert {r.headers["webhook-id"] for r in received_at(receiver, "/account")} == {delivery.message_id}
    assert delivery.attempt_log.count() == 2

"""POST /api/v1/jobs/batch and the batch's reads: all-or-nothing charge, idempotent replay, item
errors, ownership, counts and the manifest."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import TestCase

from auteur.users.models import Membership, User
from credits.models import CreditTransaction
from credits.selectors import credit_balance_get
from credits.services.budgets import member_budget_set
from credits.services.ledger import credit_grant
from jobs.models import Batch, Job, JobEvent, JobPriority, JobStatus
from tests.factories import ProjectFactory, UserFactory, acting_in, team_workspace
from tests.jobs.support import PRICE, START_BALANCE, error_code, ledger_state, valid_body
from tests.webhooks.conftest import fake_dns  # noqa: F401 - a fixture

pytestmark = pytest.mark.django_db

BATCH_URL = "/api/v1/jobs/batch"


def tts(text: str = "Hello world", **extra: Any) -> dict[str, Any]:
    return {"type": "tts", "input": {"text": text, **extra}}


def post_batch(client: Any, items: list[dict[str, Any]], **body: Any) -> Any:
    headers = {k: body.pop(k) for k in list(body) if k.startswith("HTTP_")}
    return client.post(BATCH_URL, {"items": items, **body}, format="json", **headers)


def manifest(client: Any, batch_id: str, query: str = "") -> list[dict[str, Any]]:
    response = client.get(f"/api/v1/batches/{batch_id}/manifest{query}")
    assert response.status_code == 200, response
    assert response["Content-Type"] == "application/x-ndjson"
    return [json.loads(line) for line in b"".join(response.streaming_content).splitlines()]


def test_a_batch_of_several_types_is_charged_once_per_item_in_one_go(auth_client, funded, project, media):
    items = [tts(), {"type": "transcription", "input": valid_body("transcription", project, media)},
             {"type": "compression", "input": valid_body("compression", project, media)}, tts("Bonjour")]
    response = post_batch(auth_client, items)
    assert response.status_code == 202, response.json()
    body = response.json()
    total = PRICE["tts"] * 2 + PRICE["transcription"] + PRICE["compression"]
    assert body["item_count"] == 4 and body["credits_cost"] == total and body["priority"] == "low"
    assert body["counts"]["queued"] == 4 and body["ended"] == 0 and body["done"] is False
    assert credit_balance_get(user=funded) == START_BALANCE - total
    jobs = {str(j.pk): j for j in Job.objects.filter(batch_id=body["id"])}
    assert list(jobs) and set(jobs) == set(body["job_ids"])
    ordered = [jobs[i] for i in body["job_ids"]]
    assert [j.type for j in ordered] == ["tts", "transcription", "compression", "tts"]
    assert [j.batch_index for j in ordered] == [0, 1, 2, 3]
    assert all(j.status == JobStatus.QUEUED and j.priority == JobPriority.LOW and j.waiting_for == "slot"
               for j in ordered)
    # One usage entry per job, in the items' order, each with the balance after it.
    entries = list(CreditTransaction.objects.filter(job_id__in=jobs, type="usage").order_by("created_at"))
    assert [str(e.job_id) for e in entries] == body["job_ids"]
    running = START_BALANCE
    for entry, job in zip(entries, ordered, strict=True):
        running -= job.credits_cost
        assert entry.amount == -job.credits_cost and entry.balance_after == running and entry.job_type == job.type
    events = JobEvent.objects.filter(job_id__in=jobs)
    assert {(str(e.job_id), e.type) for e in events} == {(i, "submitted") for i in body["job_ids"]}
    assert all(e.data["batch_id"] == body["id"] for e in events)
    # The items' library project is made once for the items that name none.
    library = jobs[body["job_ids"][0]].project
    assert library is not None and library.is_library and jobs[body["job_ids"][1]].project_id == project.pk


def test_a_batch_the_balance_does_not_cover_is_refused_whole_naming_the_first_item_that_does_not_fit(
    auth_client, user
):
    credit_grant(user=user, amount=5, type="bonus", description="test")
    before = ledger_state(user)
    response = post_batch(auth_client, [tts(), tts(), tts(), tts()])  # 2 credits each: 8 > 5
    assert response.status_code == 402 and error_code(response) == "insufficient_credits"
    details = response.json()["error"]["details"]
    assert details["cost"] == 8 and details["balance"] == 5 and details["shortfall"] == 3 and details["item"] == 2
    assert ledger_state(user) == before and not Batch.objects.exists()


def test_the_charge_under_the_lock_refuses_the_whole_batch_too(auth_client, funded, monkeypatch):
    # The balance checked before the transaction covered it; a spend since did not leave enough.
    from jobs.intake import batches

    monkeypatch.setattr(batches, "batch_can_pay", lambda **kwargs: None)
    response = post_batch(auth_client, [tts()] * 501)  # 1,002 credits > 1,000
    assert response.status_code == 402 and error_code(response) == "insufficient_credits"
    assert response.json()["error"]["details"]["item"] == 500
    assert credit_balance_get(user=funded) == START_BALANCE and not Job.objects.exists()
    assert not CreditTransaction.objects.filter(type="usage").exists() and not Batch.objects.exists()


def test_a_team_members_budget_refuses_the_batch_that_would_pass_it(user):
    owner = user
    workspace = team_workspace(owner)
    account = User.objects.get(pk=workspace.pk)
    credit_grant(user=account, amount=1000, type="bonus", description="test")
    membership = Membership.objects.get(workspace=workspace, user=owner)
    member_budget_set(membership=membership, user_id=owner.pk, monthly_limit=5)
    client = acting_in(owner, workspace)
    response = post_batch(client, [tts(), tts(), tts()])
    assert response.status_code == 402 and error_code(response) == "spend_cap_reached"
    details = response.json()["error"]["details"]
    assert details["cap"] == "member" and details["shortfall"] == 1 and details["item"] == 2
    assert credit_balance_get(user=account) == 1000
    assert post_batch(client, [tts(), tts()]).status_code == 202


def test_an_invalid_item_is_named_and_nothing_is_made(auth_client, funded):
    before = ledger_state(funded)
    response = post_batch(auth_client, [tts(), {"type": "tts", "input": {"text": ""}}, {"type": "nope", "input": {}},
                                        tts(priority="high"), {"type": "tts"}])
    assert response.status_code == 400, response.json()
    assert set(response.json()["error"]["details"]["fields"]) == {
        "items.1.input.text", "items.2.type", "items.3.input.priority", "items.4.input"}
    assert ledger_state(funded) == before


def test_an_item_naming_another_users_object_is_a_404_naming_the_item(auth_client, funded):
    stranger_project = ProjectFactory.create(user=UserFactory.create())
    response = post_batch(auth_client, [tts(), tts(project_id=str(stranger_project.pk))])
    assert response.status_code == 404 and error_code(response) == "project_not_found"
    assert response.json()["error"]["details"]["item"] == 1
    assert not Batch.objects.exists()


@pytest.mark.parametrize("body", [{"items": []}, {"items": "x"}, {"items": [tts()], "priority": "urgent"},
                                  {"items": [tts()], "webhook": "https://example.com"}])
def test_a_malformed_batch_is_a_400(auth_client, funded, body):
    assert auth_client.post(BATCH_URL, body, format="json").status_code == 400


def test_a_batch_past_the_limits_is_a_400(auth_client, funded, settings):
    settings.AUTEUR_BATCH_MAX_ITEMS = 3
    response = post_batch(auth_client, [tts()] * 4)
    assert response.status_code == 400 and "at most 3" in json.dumps(response.json())
    settings.AUTEUR_BATCH_MAX_TIMELINE_ITEMS = 1
    response = post_batch(auth_client, [{"type": "render", "input": {}}] * 2)
    assert response.status_code == 400 and "at most 1 items of a timeline" in json.dumps(response.json())


def test_the_same_key_and_body_answer_the_same_batch_and_charge_nothing(auth_client, funded):
    key = {"HTTP_IDEMPOTENCY_KEY": "batch-1"}
    first = post_batch(auth_client, [tts(), tts()], **key)
    assert first.status_code == 202
    balance = credit_balance_get(user=funded)
    again = post_batch(auth_client, [tts(), tts()], **key)
    assert again.status_code == 200 and again["Idempotent-Replayed"] == "true"
    assert again.json()["id"] == first.json()["id"] and again.json()["job_ids"] == first.json()["job_ids"]
    assert credit_balance_get(user=funded) == balance and Batch.objects.count() == 1
    other = post_batch(auth_client, [tts()], **key)
    assert other.status_code == 422 and error_code(other) == "idempotency_key_reused"
    assert other.json()["error"]["details"]["batch_id"] == first.json()["id"]


def test_another_users_batch_is_a_404(auth_client, funded, client_for):
    batch_id = post_batch(auth_client, [tts()]).json()["id"]
    stranger = UserFactory.create()
    other = client_for(stranger)
    for path in (f"/api/v1/batches/{batch_id}", f"/api/v1/batches/{batch_id}/manifest"):
        response = other.get(path)
        assert response.status_code == 404 and error_code(response) == "batch_not_found"
    assert other.get("/api/v1/batches").json()["batches"] == []
    assert auth_client.get("/api/v1/batches/not-a-uuid").status_code == 404


def test_the_batch_counts_and_its_manifest_follow_its_items(auth_client, funded):
    body = post_batch(auth_client, [tts("one"), tts("two"), tts("three")]).json()
    first, second, third = body["job_ids"]
    Job.objects.filter(pk=first).update(status=JobStatus.COMPLETED, progress=100,
                                        output_data={"output_media_ids": ["m1"], "duration_ms": 900})
    Job.objects.filter(pk=second).update(status=JobStatus.FAILED, error_code="engine_error",
                                         error_message="It failed.", credits_refund=2, credits_refunded=True)
    detail = auth_client.get(f"/api/v1/batches/{body['id']}").json()
    assert detail["counts"]["completed"] == 1 and detail["counts"]["failed"] == 1 and detail["counts"]["queued"] == 1
    assert detail["ended"] == 2 and detail["done"] is False and detail["credits_refunded"] == 2
    lines = manifest(auth_client, body["id"])
    assert [line["index"] for line in lines] == [0, 1, 2]
    assert [line["job_id"] for line in lines] == [first, second, third]
    assert lines[0]["status"] == "completed" and lines[0]["output_data"]["output_media_ids"] == ["m1"]
    assert lines[1]["error_code"] == "engine_error" and lines[1]["credits_refund"] == 2
    assert lines[2]["status"] == "queued" and lines[2]["output_data"] == {}
    assert [line["index"] for line in manifest(auth_client, body["id"], "?after=0&limit=1")] == [1]
    assert auth_client.get(f"/api/v1/batches/{body['id']}/manifest?limit=0").status_code == 400
    listed = auth_client.get("/api/v1/batches").json()
    assert [b["id"] for b in listed["batches"]] == [body["id"]] and listed["count"] == 1


def test_the_manifest_is_json_lines_by_default_and_one_json_document_to_whom_prefers_it(auth_client, funded,
                                                                                       client_for):
    body = post_batch(auth_client, [tts("one"), tts("two"), tts("three")]).json()
    url = f"/api/v1/batches/{body['id']}/manifest"
    lines = manifest(auth_client, body["id"])
    assert [line["index"] for line in lines] == [0, 1, 2]

    def read(accept: str, query: str = "") -> tuple[str, bytes]:
        response = auth_client.get(url + query, HTTP_ACCEPT=accept)
        assert response.status_code == 200
        assert "Accept" in response["Vary"]
        return response["Content-Type"], b"".join(response.streaming_content)

    for accept in ("application/x-ndjson", "*/*", "application/*", "application/json;q=0.5, application/x-ndjson",
                   "text/html"):
        kind, content = read(accept)
        assert kind == "application/x-ndjson", accept
        assert [json.loads(line) for line in content.splitlines()] == lines
    for accept in ("application/json", "application/x-ndjson;q=0.2, application/json", "text/html, application/json"):
        kind, content = read(accept)
        assert kind == "application/json", accept
        assert json.loads(content) == {"items": lines}
    assert json.loads(read("application/json", "?after=0&limit=1")[1]) == {"items": lines[1:2]}
    assert json.loads(read("application/json", "?after=2")[1]) == {"items": []}
    # Whatever the request accepts, an error is the JSON envelope (never a 406).
    other = client_for(UserFactory.create())
    for accept in ("application/json", "application/x-ndjson"):
        response = other.get(url, HTTP_ACCEPT=accept)
        assert response.status_code == 404 and error_code(response) == "batch_not_found"
    refused = auth_client.get(url + "?limit=0", HTTP_ACCEPT="application/x-ndjson")
    assert refused.status_code == 400 and error_code(refused) == "validation_error"


def test_the_quote_is_the_sum_of_the_items_prices_and_says_the_refusal(auth_client, user):
    credit_grant(user=user, amount=5, type="bonus", description="test")
    items = [tts(), tts("x" * 1500)]  # 2 and 4 credits: their least prices (2 + 2) fit the balance, they do not
    response = auth_client.post("/api/v1/jobs/batch/quote", {"items": items}, format="json")
    assert response.status_code == 200, response.json()
    quote = response.json()
    assert quote["credits_cost"] == 6 == sum(i["credits_cost"] for i in quote["items"])
    assert quote["balance"] == 5 and quote["balance_after"] == -1
    # The same sum as the items' own quotes.
    single = auth_client.post("/api/v1/jobs/tts/quote", {"text": "x" * 1500}, format="json").json()
    assert quote["items"][1]["credits_cost"] == single["credits_cost"]
    assert quote["refusal"]["code"] == "insufficient_credits" and quote["refusal"]["details"]["item"] == 1
    assert quote["refusal"]["details"]["least"] is False
    assert not Job.objects.exists() and not Batch.objects.exists()


def test_a_quote_of_a_batch_whose_least_prices_the_balance_does_not_cover_is_a_402(auth_client, user):
    credit_grant(user=user, amount=3, type="bonus", description="test")
    response = auth_client.post("/api/v1/jobs/batch/quote", {"items": [tts(), tts()]}, format="json")
    assert response.status_code == 402 and error_code(response) == "insufficient_credits"
    details = response.json()["error"]["details"]
    assert (details["least"], details["cost"], details["shortfall"], details["item"]) == (True, 4, 1, 1)
    assert not Job.objects.exists() and not Batch.objects.exists()


def test_batch_items_never_start_late_by_their_types_queue_ttl(auth_client, funded, settings):
    settings.AUTEUR_QUEUE_TTL_SECONDS = 60
    settings.AUTEUR_BATCH_QUEUE_TTL_SECONDS = 3600

    def allowed_wait(**body: Any) -> float:
        job = Job.objects.get(pk=post_batch(auth_client, [tts()], **body).json()["job_ids"][0])
        assert job.start_deadline is not None
        return (job.start_deadline - job.created_at).total_seconds()

    assert 590 <= allowed_wait(start_within_seconds=600) <= 600
    assert 3590 <= allowed_wait() <= 3600


# ----------------------------------------------------------------------------- bulk cancel

CANCEL_URL = "/api/v1/jobs/bulk/cancel"


def test_a_bulk_cancel_of_a_batch_refunds_each_waiting_item_in_full_and_nothing_else(auth_client, funded):
    from credits.selectors import ledger_check
    from jobs.models import UsageEvent

    kept = post_batch(auth_client, [tts("kept")]).json()
    body = post_batch(auth_client, [tts("a"), tts("b"), tts("c")]).json()
    running = Job.objects.get(pk=body["job_ids"][2])
    Job.objects.filter(pk=running.pk).update(status=JobStatus.PROCESSING)
    balance = credit_balance_get(user=funded)
    dry = auth_client.post(CANCEL_URL, {"batch_id": body["id"], "dry_run": True}, format="json").json()
    assert dry == {"dry_run": True, "matched": 3, "canceled": 3, "by_status": {"queued": 2, "processing": 1},
                   "credits_refund": 6, "not_cancelable": 0, "remaining": 0}
    assert credit_balance_get(user=funded) == balance and Job.objects.filter(status="canceled").count() == 0
    done = auth_client.post(CANCEL_URL, {"batch_id": body["id"]}, format="json")
    assert done.status_code == 200, done.json()
    assert done.json() == {**dry, "dry_run": False}
    assert credit_balance_get(user=funded) == balance + 6
    jobs = Job.objects.filter(batch_id=body["id"])
    assert all(j.status == JobStatus.CANCELED and j.credits_refunded and j.credits_refund == j.credits_cost
               for j in jobs)
    assert CreditTransaction.objects.filter(job_id__in=jobs, type="refund").count() == 3
    assert set(JobEvent.objects.filter(job_id__in=jobs, type="canceled").values_list("job_id", flat=True)) == {
        j.pk for j in jobs}
    assert UsageEvent.objects.filter(job_id__in=jobs, outcome="canceled", credits_net=0).count() == 3
    assert Job.objects.get(pk=kept["job_ids"][0]).status == JobStatus.QUEUED
    assert ledger_check() == []
    counted = auth_client.get(f"/api/v1/batches/{body['id']}").json()
    assert counted["counts"]["canceled"] == 3 and counted["done"] is True and counted["credits_refunded"] == 6
    # Nothing is left to cancel: a second one does nothing.
    again = auth_client.post(CANCEL_URL, {"batch_id": body["id"]}, format="json").json()
    assert again["canceled"] == 0 and credit_balance_get(user=funded) == balance + 6


def test_a_bulk_cancel_takes_at_most_the_batch_limit_oldest_first_and_says_how_many_remain(auth_client, funded,
                                                                                          settings):
    """However many jobs a filter takes, one call ends at most AUTEUR_BATCH_MAX_ITEMS of them (its
    locks held for a bounded time), the next to start first, waiting before running; `remaining`
    says how many another call would take, and the rest are untouched until it does."""
    body = post_batch(auth_client, [tts(str(i)) for i in range(5)]).json()
    ids = body["job_ids"]
    Job.objects.filter(pk=ids[4]).update(status=JobStatus.PROCESSING)
    settings.AUTEUR_BATCH_MAX_ITEMS = 2
    balance = credit_balance_get(user=funded)

    def statuses() -> list[str]:
        return [Job.objects.get(pk=pk).status for pk in ids]

    dry = auth_client.post(CANCEL_URL, {"batch_id": body["id"], "dry_run": True}, format="json").json()
    assert dry == {"dry_run": True, "matched": 2, "canceled": 2, "by_status": {"queued": 2}, "credits_refund": 4,
                   "not_cancelable": 0, "remaining": 3}
    first = auth_client.post(CANCEL_URL, {"batch_id": body["id"]}, format="json")
    assert first.status_code == 200, first.json()
    assert first.json() == {**dry, "dry_run": False}
    assert statuses() == ["canceled", "canceled", "queued", "queued", "processing"]
    assert credit_balance_get(user=funded) == balance + 4
    assert CreditTransaction.objects.filter(job_id__in=ids[2:], type="refund").count() == 0
    assert not JobEvent.objects.filter(job_id__in=ids[2:], type="canceled").exists()

    second = auth_client.post(CANCEL_URL, {"batch_id": body["id"]}, format="json").json()
    assert (second["canceled"], second["by_status"], second["remaining"]) == (2, {"queued": 2}, 1)
    assert statuses() == ["canceled"] * 4 + ["processing"]
    dry = auth_client.post(CANCEL_URL, {"batch_id": body["id"], "dry_run": True}, format="json").json()
    assert (dry["canceled"], dry["by_status"], dry["remaining"]) == (1, {"processing": 1}, 0)
    last = auth_client.post(CANCEL_URL, {"batch_id": body["id"]}, format="json").json()
    assert (last["canceled"], last["by_status"], last["remaining"]) == (1, {"processing": 1}, 0)
    assert statuses() == ["canceled"] * 5 and credit_balance_get(user=funded) == balance + 10
    assert CreditTransaction.objects.filter(job_id__in=ids, type="refund").count() == 5


def test_a_bulk_cancel_by_type_and_time_takes_only_what_matches(auth_client, funded, project, media):
    body = post_batch(auth_client, [tts(), {"type": "transcription",
                                            "input": valid_body("transcription", project, media)}]).json()
    done = auth_client.post(CANCEL_URL, {"type": "transcription", "status": ["queued"],
                                         "created_before": "2999-01-01T00:00:00Z"}, format="json").json()
    assert done["canceled"] == 1 and done["credits_refund"] == PRICE["transcription"]
    assert Job.objects.get(pk=body["job_ids"][0]).status == JobStatus.QUEUED
    none = auth_client.post(CANCEL_URL, {"type": "tts", "created_after": "2999-01-01T00:00:00Z"}, format="json")
    assert none.json()["canceled"] == 0


def test_a_bulk_cancel_needs_a_filter_and_another_users_batch_is_a_404(auth_client, funded, client_for):
    assert auth_client.post(CANCEL_URL, {"dry_run": True}, format="json").status_code == 400
    assert auth_client.post(CANCEL_URL, {"status": ["completed"]}, format="json").status_code == 400
    body = post_batch(auth_client, [tts()]).json()
    other = client_for(UserFactory.create())
    response = other.post(CANCEL_URL, {"batch_id": body["id"]}, format="json")
    assert response.status_code == 404 and error_code(response) == "batch_not_found"
    stranger_project = ProjectFactory.create(user=UserFactory.create())
    response = auth_client.post(CANCEL_URL, {"project_id": str(stranger_project.pk)}, format="json")
    assert response.status_code == 404 and error_code(response) == "project_not_found"
    assert Job.objects.get(pk=body["job_ids"][0]).status == JobStatus.QUEUED


def test_a_bulk_cancel_gives_back_what_a_members_budget_counted(user):
    from credits.models import SpendCap
    from credits.selectors import ledger_check

    workspace = team_workspace(user)
    account = User.objects.get(pk=workspace.pk)
    credit_grant(user=account, amount=1000, type="bonus", description="test")
    member_budget_set(membership=Membership.objects.get(workspace=workspace, user=user), user_id=user.pk,
                      monthly_limit=100)
    client = acting_in(user, workspace)
    body = post_batch(client, [tts(), tts(), tts()]).json()
    assert SpendCap.objects.get(subject_id=user.pk).spent == 6
    assert client.post(CANCEL_URL, {"batch_id": body["id"]}, format="json").json()["credits_refund"] == 6
    assert SpendCap.objects.get(subject_id=user.pk).spent == 0
    assert credit_balance_get(user=account) == 1000 and ledger_check() == []


# ----------------------------------------------------------------------------- a batch's progress and end


def test_a_batch_announces_its_progress_then_its_end_once(auth_client, funded, fake_dns):  # noqa: F811
    from jobs.events import batches as batch_events
    from jobs.events.schema import event_errors
    from jobs.events.stream import parse_entry, stream_key, stream_redis
    from jobs.life.status import job_cancel, job_fail
    from webhooks.models import Delivery
    from webhooks.services import webhook_create

    fake_dns({"hooks.example.test": ["93.184.216.34"]})
    hook, _ = webhook_create(owner=funded, url="https://hooks.example.test/batches", event_types=["batch"])
    jobs_hook, _ = webhook_create(owner=funded, url="https://hooks.example.test/jobs", event_types=["completed"])
    body = post_batch(auth_client, [tts("a"), tts("b")]).json()
    stream_redis().delete(stream_key(funded.pk))
    try:
        job_cancel(job=Job.objects.get(pk=body["job_ids"][0]))
        assert batch_events.batch_announce(body["id"]) == "batch.progress"
        assert not Delivery.objects.filter(webhook=hook).exists()
        job_fail(job_id=body["job_ids"][1], code="engine_error", detail="test", retryable=True)
        with TestCase.captureOnCommitCallbacks(execute=True):
            assert batch_events.batch_announce(body["id"]) == "batch.completed"
        assert batch_events.batch_announce(body["id"]) is None  # once
        assert batch_events.batches_sweep() == 0
        sent = list(Delivery.objects.filter(webhook=hook))
        assert len(sent) == 1 and sent[0].payload["type"] == "batch.completed"
        data = sent[0].payload["data"]
        assert data["batch_id"] == body["id"] and data["done"] and data["counts"]["canceled"] == 1
        assert data["counts"]["failed"] == 1 and data["credits_refunded"] == 4
        assert not Delivery.objects.filter(webhook=jobs_hook, event_type="batch").exists()
        raw: Any = stream_redis().xrange(stream_key(funded.pk))
        entries = [parse_entry(entry_id, fields) for entry_id, fields in raw]
        batch_entries = [e for e in entries if e["type"].startswith("batch.")]
        assert [e["type"] for e in batch_entries] == ["batch.progress", "batch.completed"]
        assert [e["ended"] for e in batch_entries] == [1, 2]
        for entry in batch_entries:
            assert event_errors(entry, "BatchEvent") == []
        assert Batch.objects.get(pk=body["id"]).ended_at is not None
    finally:
        stream_redis().delete(stream_key(funded.pk))


def test_an_items_end_schedules_one_announcement_a_second_and_the_sweep_mends_a_lost_one(auth_client, funded,
                                                                                       monkeypatch):
    from jobs.events import batches as batch_events
    from jobs.events.stream import stream_key, stream_redis
    from jobs.life.status import job_cancel

    sent: list[Any] = []
    monkeypatch.setattr(batch_events, "send", lambda name, args, **kwargs: sent.append((name, args)))
    body = post_batch(auth_client, [tts("a"), tts("b"), tts("c")]).json()
    stream_redis().delete(f"batchannounce:{body['id']}")
    try:
        for job_id in body["job_ids"][:2]:
            with TestCase.captureOnCommitCallbacks(execute=True):
                job_cancel(job=Job.objects.get(pk=job_id))
        assert sent == [(batch_events.ANNOUNCE_TASK, (body["id"],))]  # the second rode on the first
        with TestCase.captureOnCommitCallbacks(execute=True):
            done = auth_client.post(CANCEL_URL, {"batch_id": body["id"]}, format="json").json()
        assert done["canceled"] == 1 and len(sent) == 1  # still within the second
        # The message is lost: the sweep announces the end.
        assert batch_events.batches_sweep() == 1 and batch_events.batches_sweep() == 0
    finally:
        stream_redis().delete(f"batchannounce:{body['id']}", stream_key(funded.pk))


# ----------------------------------------------------------------------------- bulk retry

RETRY_URL = "/api/v1/jobs/bulk/retry"


def test_a_bulk_retry_submits_the_failed_items_again_as_one_new_batch_once(auth_client, funded):
    from jobs.life.status import job_fail

    body = post_batch(auth_client, [tts("a"), tts("b"), tts("c")]).json()
    first, second, third = body["job_ids"]
    job_fail(job_id=first, code="engine_error", detail="test", retryable=True)
    job_fail(job_id=second, code="invalid_input", detail="test", retryable=False)  # not retryable
    balance = credit_balance_get(user=funded)
    dry = auth_client.post(RETRY_URL, {"batch_id": body["id"], "dry_run": True}, format="json").json()
    assert dry == {"dry_run": True, "matched": 1, "retried": 0, "credits_cost": 2, "batch_id": None, "remaining": 0}
    done = auth_client.post(RETRY_URL, {"batch_id": body["id"]}, format="json")
    assert done.status_code == 200, done.json()
    result = done.json()
    assert result["retried"] == 1 and result["credits_cost"] == 2 and result["batch_id"]
    retry = Job.objects.get(batch_id=result["batch_id"])
    assert str(retry.retry_of_id) == first and retry.status == JobStatus.QUEUED and retry.priority == JobPriority.LOW
    assert retry.input_params == Job.objects.get(pk=first).input_params
    assert credit_balance_get(user=funded) == balance - 2
    # Once: a second bulk retry, or the job's own retry, finds it retried.
    again = auth_client.post(RETRY_URL, {"batch_id": body["id"]}, format="json").json()
    assert again["retried"] == 0 and again["batch_id"] is None
    assert str(auth_client.post(f"/api/v1/jobs/{first}/retry", {}, format="json").json()["job_id"]) == str(retry.pk)
    assert Job.objects.get(pk=third).status == JobStatus.QUEUED


def test_a_bulk_retry_says_how_many_more_remain_however_many_past_its_limit(auth_client, funded, settings):
    """`remaining` is how many more another call would take, counted, not a sign that some remain:
    seven retryable jobs (and one that is not) through a limit of two."""
    from jobs.life.status import job_fail

    body = post_batch(auth_client, [tts(str(n)) for n in range(8)]).json()
    for n, job_id in enumerate(body["job_ids"]):
        job_fail(job_id=job_id, code="engine_error" if n else "invalid_input", detail="test", retryable=bool(n))
    settings.AUTEUR_BATCH_MAX_ITEMS = 2
    dry = auth_client.post(RETRY_URL, {"batch_id": body["id"], "dry_run": True}, format="json").json()
    assert (dry["matched"], dry["retried"], dry["remaining"]) == (2, 0, 5)
    seen = []
    for _ in range(4):
        done = auth_client.post(RETRY_URL, {"batch_id": body["id"]}, format="json")
        assert done.status_code == 200, done.json()
        seen.append((done.json()["retried"], done.json()["remaining"]))
    assert seen == [(2, 5), (2, 3), (2, 1), (1, 0)]
    assert Job.objects.filter(retry_of__batch_id=body["id"]).count() == 7
    again = auth_client.post(RETRY_URL, {"batch_id": body["id"]}, format="json").json()
    assert (again["retried"], again["remaining"]) == (0, 0)


def test_a_bulk_retry_the_balance_does_not_cover_retries_nothing(auth_client, user):
    from jobs.life.status import job_fail

    credit_grant(user=user, amount=4, type="bonus", description="test")
    body = post_batch(auth_client, [tts("a"), tts("b")]).json()
    for job_id in body["job_ids"]:
        job_fail(job_id=job_id, code="engine_error", detail="test", retryable=True)
    assert credit_balance_get(user=user) == 4  # both failed, refunded
    # Spend 2 elsewhere: 2 left, and a retry of both costs 4.
    assert post_batch(auth_client, [tts("c")]).status_code == 202
    before = ledger_state(user)
    refused = auth_client.post(RETRY_URL, {"status": ["failed"]}, format="json")
    assert refused.status_code == 402 and error_code(refused) == "insufficient_credits"
    details = refused.json()["error"]["details"]
    assert (details["item"], details["shortfall"]) == (1, 2) and ledger_state(user) == before
    assert not Job.objects.filter(retry_of__isnull=False).exists()


def test_a_bulk_retry_needs_a_filter_of_its_statuses(auth_client, funded):
    assert auth_client.post(RETRY_URL, {"dry_run": True}, format="json").status_code == 400
    assert auth_client.post(RETRY_URL, {"status": ["queued"]}, format="json").status_code == 400


def test_an_item_in_a_language_this_server_lacks_is_named_and_nothing_is_made(auth_client, funded, project, media):
    before = ledger_state(funded)
    item = {"type": "transcription", "input": {**valid_body("transcription", project, media), "language": "yue"}}
    response = post_batch(auth_client, [tts(), item])
    assert response.status_code == 422 and error_code(response) == "language_unsupported"
    assert response.json()["error"]["details"]["item"] == 1 and ledger_state(funded) == before

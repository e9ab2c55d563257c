"""POST /api/v1/jobs/<type>/quote: a price promised for a stated time, honoured by a submission
that names it (the same request, in time, once, by its owner) and refused otherwise."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from auteur.core.retention import SweepContext
from credits.selectors import credit_balance_get
from credits.services.ledger import credit_grant
from jobs.models import Job, Quote
from jobs.retention import quotes_sweep
from tests.contract.support import served_schema
from tests.jobs.support import PRICE, START_BALANCE, error_code, jobs_url, ledger_state, submit, valid_body

pytestmark = pytest.mark.django_db


def quote(client, job_type: str, body: dict) -> dict:
    response = client.post(jobs_url(f"/{job_type}/quote"), body, format="json")
    assert response.status_code == 201, response.json()
    return response.json()


def test_a_quote_prices_the_request_and_charges_nothing(auth_client, funded, project, media):
    before = ledger_state(funded)
    body = valid_body("transcription", project, media)
    answer = quote(auth_client, "transcription", body)
    assert set(answer) == {"quote_id", "type", "credits_cost", "balance", "balance_after", "queue_position",
                           "lane_position", "eta_seconds", "expires_at", "cache", "spend_cap"}
    assert answer["spend_cap"] is None  # no cap would refuse it
    assert (answer["type"], answer["credits_cost"], answer["balance"], answer["balance_after"]) == (
        "transcription", PRICE["transcription"], START_BALANCE, START_BALANCE - PRICE["transcription"])
    assert answer["queue_position"] == 1  # nothing of the user's waits: it would start next
    expires = Quote.objects.get(pk=answer["quote_id"]).expires_at
    assert timedelta(seconds=590) < expires - timezone.now() <= timedelta(seconds=600)
    assert ledger_state(funded) == before


def test_a_submission_naming_the_quote_is_charged_the_quoted_price(auth_client, funded, project, media):
    body = valid_body("tts", project, media)
    answer = quote(auth_client, "tts", body)
    # The price table changed after the quote (here: the quote holds a lower price than it says now).
    Quote.objects.filter(pk=answer["quote_id"]).update(credits_cost=1)
    response = submit(auth_client, "tts", {**body, "quote_id": answer["quote_id"]})
    assert response.status_code == 202, response.json()
    assert response.json()["credits_cost"] == 1
    job = Job.objects.get(pk=response.json()["job_id"])
    assert job.credits_cost == 1 and credit_balance_get(user=funded) == START_BALANCE - 1
    charge = auth_client.get(jobs_url(f"/{job.pk}")).json()["charge"]
    assert charge["charged"] == 1 and answer["quote_id"] in charge["entries"][0]["description"]
    # Once: it paid for that job.
    again = submit(auth_client, "tts", {**body, "quote_id": answer["quote_id"]})
    assert again.status_code == 409 and error_code(again) == "quote_used"
    assert again.json()["error"]["details"]["job_id"] == str(job.pk)


def test_an_expired_quote_is_refused_and_nothing_is_charged(auth_client, funded, project, media):
    body = valid_body("tts", project, media)
    answer = quote(auth_client, "tts", body)
    Quote.objects.filter(pk=answer["quote_id"]).update(expires_at=timezone.now() - timedelta(seconds=1))
    before = ledger_state(funded)
    response = submit(auth_client, "tts", {**body, "quote_id": answer["quote_id"]})
    assert response.status_code == 410 and error_code(response) == "quote_expired"
    assert ledger_state(funded) == before


def test_another_request_cannot_use_the_quote(auth_client, funded, project, media):
    body = valid_body("tts", project, media)
    answer = quote(auth_client, "tts", body)
    before = ledger_state(funded)
    for job_type, other in (("tts", {**body, "text": "Something much longer than what was quoted"}),
                            ("tts", {**body, "priority": "high"}),
                            ("compression", valid_body("compression", project, media))):
        response = submit(auth_client, job_type, {**other, "quote_id": answer["quote_id"]})
        assert response.status_code == 409 and error_code(response) == "quote_mismatch", (job_type, response.json())
    assert ledger_state(funded) == before


def test_the_quoted_work_must_not_have_changed(auth_client, funded, project, media):
    body = valid_body("transcription", project, media)
    answer = quote(auth_client, "transcription", body)
    media["audio"].duration_ms *= 40  # the file behind the id is not what was quoted any more
    media["audio"].save(update_fields=["duration_ms"])
    before = ledger_state(funded)
    response = submit(auth_client, "transcription", {**body, "quote_id": answer["quote_id"]})
    assert response.status_code == 409 and error_code(response) == "quote_mismatch"
    assert "work" in response.json()["error"]["message"]
    assert ledger_state(funded) == before


def test_another_users_quote_is_not_found(auth_client, client_for, make_user, funded, project, media):
    body = valid_body("tts", project, media)
    answer = quote(auth_client, "tts", body)
    from credits.services.ledger import credit_grant
    from tests.factories import ProjectFactory

    other = make_user()
    credit_grant(user=other, amount=100, type="bonus", description="test")
    theirs = {**body, "project_id": str(ProjectFactory.create(user=other, name="o").pk), "quote_id": answer["quote_id"]}
    response = submit(client_for(other), "tts", theirs)
    assert response.status_code == 404 and error_code(response) == "quote_not_found"
    missing = submit(auth_client, "tts", {**body, "quote_id": "00000000-0000-0000-0000-000000000000"})
    assert missing.status_code == 404 and error_code(missing) == "quote_not_found"


def test_a_quote_is_checked_as_a_submission_is(auth_client, funded, project, media):
    bad = auth_client.post(jobs_url("/tts/quote"), {"project_id": str(project.pk)}, format="json")
    assert bad.status_code == 400 and "text" in bad.json()["error"]["details"]["fields"]
    named = auth_client.post(jobs_url("/tts/quote"), {**valid_body("tts", project, media),
                                                       "quote_id": "00000000-0000-0000-0000-000000000000"},
                             format="json")
    assert named.status_code == 400 and "quote_id" in named.json()["error"]["details"]["fields"]
    pro_only = auth_client.post(jobs_url("/video-generation/quote"), valid_body("video-generation", project, media),
                                format="json")
    assert pro_only.status_code == 403 and error_code(pro_only) == "plan_required"
    assert not Quote.objects.exists()


def test_a_replayed_submission_with_a_quote_returns_its_job(auth_client, funded, project, media):
    body = valid_body("tts", project, media)
    answer = quote(auth_client, "tts", body)
    first = submit(auth_client, "tts", {**body, "quote_id": answer["quote_id"]}, HTTP_IDEMPOTENCY_KEY="k1")
    second = submit(auth_client, "tts", {**body, "quote_id": answer["quote_id"]}, HTTP_IDEMPOTENCY_KEY="k1")
    assert first.status_code == 202 and second.status_code == 200
    assert first.json()["job_id"] == second.json()["job_id"]


def test_a_balance_short_of_the_request_but_not_of_the_least_price_is_told_not_refused(client_for, make_user):
    from tests.factories import ProjectFactory

    short = make_user()
    credit_grant(user=short, amount=PRICE["tts"], type="bonus", description="test")  # the least price of a tts job
    body = {"project_id": str(ProjectFactory.create(user=short, name="b").pk), "text": "x" * 1500}  # 2 units
    answer = quote(client_for(short), "tts", body)
    assert answer["balance"] == 2 and answer["credits_cost"] == 4 and answer["balance_after"] == -2


def test_a_balance_short_of_the_least_price_is_refused_as_a_submission_is(client_for, make_user):
    """No price to promise when no submission of the type could pass: 402, nothing stored, and the
    request not resolved."""
    from tests.factories import ProjectFactory

    broke = make_user()
    body = {"project_id": str(ProjectFactory.create(user=broke, name="b").pk), "text": "Hello world"}
    response = client_for(broke).post(jobs_url("/tts/quote"), body, format="json")
    assert response.status_code == 402 and error_code(response) == "insufficient_credits"
    assert response.json()["error"]["details"] == {"balance": 0, "cost": PRICE["tts"]}
    assert not Quote.objects.exists()


def test_expired_quotes_are_swept(auth_client, funded, project, media, settings):
    fresh = quote(auth_client, "tts", valid_body("tts", project, media))
    stale = quote(auth_client, "tts", valid_body("tts", project, media))
    long_ago = timezone.now() - timedelta(seconds=settings.AUTEUR_IDEMPOTENCY_WINDOW_SECONDS + 60)
    Quote.objects.filter(pk=stale["quote_id"]).update(expires_at=long_ago)
    result = quotes_sweep(SweepContext(now=timezone.now(), batch_size=100, dry_run=False))
    assert result.count == 1
    assert list(Quote.objects.values_list("pk", flat=True)) == [Quote.objects.get(pk=fresh["quote_id"]).pk]


def test_the_schema_describes_quotes():
    schema = served_schema()
    operation = schema["paths"]["/api/v1/jobs/tts/quote"]["post"]
    assert operation["responses"]["201"]["content"]["application/json"]["schema"]["$ref"].endswith("/Quote")
    assert "quote_id" in schema["components"]["schemas"]["Quote"]["required"]
    submission = schema["paths"]["/api/v1/jobs/tts"]["post"]
    assert {"404", "409", "410"} <= set(submission["responses"])


def test_a_quote_of_another_users_project_or_media_is_not_found_and_stores_nothing(
        auth_client, client_for, make_user, funded, project, media):
    other = make_user()
    body = valid_body("transcription", project, media)  # this user's project and file
    response = client_for(other).post(jobs_url("/transcription/quote"), body, format="json")
    assert response.status_code == 404 and error_code(response) in ("project_not_found", "media_not_found")
    no_project = {k: v for k, v in body.items() if k != "project_id"}
    response = client_for(other).post(jobs_url("/transcription/quote"), no_project, format="json")
    assert response.status_code == 404 and error_code(response) == "media_not_found"
    assert not Quote.objects.exists()


def test_a_quote_needs_a_token(api_client, project, media):
    response = api_client.post(jobs_url("/tts/quote"), valid_body("tts", project, media), format="json")
    assert response.status_code == 401 and not Quote.objects.exists()

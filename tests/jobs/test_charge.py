"""The charge on every job: what was charged, refunded and why, and the net, read from the ledger
entries behind them, wherever a job is shown (GET, the list, terminal events, webhook payloads,
the admin); and ledger_check holds every job's own figures to those entries."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.test import TestCase
from django.urls import reverse
from django.utils import timezone

from credits.models import CreditTransaction
from credits.selectors import ledger_check
from gpu_tasks.backends.noop import fixed_result
from gpu_tasks.types import JobType
from jobs.events.webhooks import job_event_webhooks_send
from jobs.inputs import Scheduling
from jobs.intake import submission
from jobs.life import status as lifecycle
from jobs.life.deadlines import jobs_deadlines_enforce
from jobs.models import Job, JobEvent
from jobs.selectors.jobs import job_detail_get
from jobs.selectors.requests import JobRequest
from jobs.serializers import JobSerializer
from jobs.specs import job_spec
from tests.contract.support import served_schema
from tests.jobs.support import jobs_url

pytestmark = pytest.mark.django_db

PRICE = 5  # a 30 s transcription


@pytest.fixture
def audio(project, make_media):
    return make_media(project, "audio", duration_ms=30_000)


def submit(user, project, audio, **scheduling: Any) -> Job:
    params: dict[str, Any] = {"project_id": str(project.pk), "media_id": str(audio.pk),
                              "_quantities": {"duration_ms": 30_000}}
    with TestCase.captureOnCommitCallbacks(execute=False):
        request = JobRequest(project=project, input_params=params, quantities=params["_quantities"],
                             media_ids=[audio.pk])
        job, _ = submission.job_submit(user=user, spec=job_spec("transcription"), request=request,
                                       scheduling=Scheduling(**scheduling))
    return job


def ledger(job: Job) -> list[tuple[str, int]]:
    return list(CreditTransaction.objects.filter(job_id=job.pk).order_by("created_at", "id")
                .values_list("type", "amount"))


def shown(auth_client, job: Job) -> dict[str, Any]:
    response = auth_client.get(jobs_url(f"/{job.pk}"))
    assert response.status_code == 200
    return response.json()["charge"]


def completed(job: Job) -> Job:
    with TestCase.captureOnCommitCallbacks(execute=False):
        claimed = lifecycle.job_claim(job_id=job.pk)
        assert claimed is not None
        # A transcription's output as the store step records it.
        output = {**fixed_result(JobType.TRANSCRIPTION), "caption_key": "captions.json"}
        assert lifecycle.job_complete(job=claimed, output_data=output, output_media=[], gpu_seconds=1.0)
    return claimed


def test_a_completed_job_shows_its_charge_and_the_entry_behind_it(auth_client, user, project, audio):
    job = completed(submit(user, project, audio))
    charge = shown(auth_client, job)
    assert {k: charge[k] for k in ("charged", "refunded", "refund_reason", "net")} == {
        "charged": PRICE, "refunded": 0, "refund_reason": None, "net": PRICE}
    [entry] = charge["entries"]
    usage = CreditTransaction.objects.get(job_id=job.pk)
    assert entry == {"id": str(usage.pk), "type": "usage", "amount": -PRICE, "balance_after": usage.balance_after,
                     "description": usage.description,
                     "created_at": usage.created_at.isoformat().replace("+00:00", "Z")}
    event = JobEvent.objects.get(job=job, type="completed")
    assert event.data["charge"] == {"charged": PRICE, "refunded": 0, "net": PRICE}


def test_a_failed_job_is_refunded_and_says_why(auth_client, user, project, audio):
    job = submit(user, project, audio)
    with TestCase.captureOnCommitCallbacks(execute=False):
        assert lifecycle.job_fail(job_id=job.pk, code="gpu_oom", detail="out of memory", retryable=True)
    charge = shown(auth_client, job)
    assert (charge["charged"], charge["refunded"], charge["refund_reason"], charge["net"]) == (
        PRICE, PRICE, "failed:gpu_oom", 0)
    assert [(e["type"], e["amount"]) for e in charge["entries"]] == ledger(job) == [("usage", -PRICE),
                                                                                  ("refund", PRICE)]
    assert JobEvent.objects.get(job=job, type="failed").data["charge"] == {"charged": PRICE, "refunded": PRICE,
                                                                          "net": 0}


def test_a_job_canceled_while_running_is_charged_what_it_spent(auth_client, user, project, audio):
    job = submit(user, project, audio)
    with TestCase.captureOnCommitCallbacks(execute=False):
        assert lifecycle.job_claim(job_id=job.pk) is not None
    Job.objects.filter(pk=job.pk).update(inference_started_at=timezone.now() - timedelta(seconds=5),
                                         gpu_call_id="noop-1", progress=50)
    with TestCase.captureOnCommitCallbacks(execute=False):
        job = lifecycle.job_cancel(job=Job.objects.get(pk=job.pk))
    assert 0 < job.credits_refund < PRICE
    charge = shown(auth_client, job)
    assert (charge["charged"], charge["refunded"], charge["refund_reason"], charge["net"]) == (
        PRICE, job.credits_refund, "canceled", PRICE - job.credits_refund)
    assert JobEvent.objects.get(job=job, type="canceled").data["charge"]["net"] == PRICE - job.credits_refund


def test_an_aborted_job_names_its_deadline(auth_client, user, project, audio):
    job = submit(user, project, audio, start_within_seconds=10)
    Job.objects.filter(pk=job.pk).update(start_deadline=timezone.now() - timedelta(seconds=1))
    with TestCase.captureOnCommitCallbacks(execute=False):
        assert jobs_deadlines_enforce()["aborted"] == 1
    charge = shown(auth_client, job)
    assert (charge["refund_reason"], charge["net"]) == ("aborted:start_deadline", 0)


def test_a_waiting_job_shows_what_it_was_charged_so_far(auth_client, user, project, audio):
    job = submit(user, project, audio)
    charge = shown(auth_client, job)
    assert (charge["charged"], charge["refunded"], charge["net"], len(charge["entries"])) == (PRICE, 0, PRICE, 1)


def test_the_list_the_serializer_and_the_webhook_payload_show_the_same_charge(auth_client, user, project, audio,
                                                                            monkeypatch):
    jobs = [completed(submit(user, project, audio)), submit(user, project, audio)]
    with TestCase.captureOnCommitCallbacks(execute=False):
        assert lifecycle.job_fail(job_id=jobs[1].pk, code="internal", detail="x", retryable=True)
    listed = {item["id"]: item["charge"] for item in auth_client.get(jobs_url()).json()["jobs"]}
    for job in jobs:
        detail = shown(auth_client, job)
        assert listed[str(job.pk)] == detail
        assert auth_client.get(jobs_url(f"/{job.pk}")).json()["charge"] == detail
        serialized = JobSerializer(Job.objects.get(pk=job.pk)).data["charge"]
        assert [str(e["id"]) for e in serialized["entries"]] == [e["id"] for e in detail["entries"]]
        assert {k: serialized[k] for k in ("charged", "refunded", "net")} == {k: detail[k] for k in
                                                                             ("charged", "refunded", "net")}
    sent: list[Callable[[bool], dict[str, Any]]] = []
    monkeypatch.setattr("jobs.events.webhooks.webhook_subscribers", lambda job_id, event_type: user.pk)
    monkeypatch.setattr("jobs.events.webhooks.deliveries_enqueue", lambda **kwargs: sent.append(kwargs["data"]))
    job_event_webhooks_send(JobEvent.objects.get(job=jobs[1], type="failed"))
    # The payload is what each target's reader may see: the owner's (who sees the balance) or not.
    assert sent[0](True)["charge"] == job_detail_get(user_id=user.pk, job_id=jobs[1].pk, balances=True)["charge"]
    assert sent[0](False)["charge"] == job_detail_get(user_id=user.pk, job_id=jobs[1].pk, balances=False)["charge"]
    assert sent[0](True)["charge"]["entries"][0]["balance_after"] is not None
    assert sent[0](False)["charge"]["refund_reason"] == "failed:internal"


def test_ledger_check_finds_a_job_whose_figures_disagree_with_its_entries(user, project, audio):
    fine = completed(submit(user, project, audio))
    refunded_flag = completed(submit(user, project, audio))
    off = submit(user, project, audio)
    assert ledger_check() == []
    Job.objects.filter(pk=off.pk).update(credits_cost=PRICE + 1)
    Job.objects.filter(pk=refunded_flag.pk).update(credits_refunded=True)
    problems = [str(p) for p in ledger_check()]
    assert len(problems) == 2
    assert any(str(off.pk) in p and f"cost {PRICE + 1}" in p and f"charged {PRICE}" in p for p in problems)
    assert any(str(refunded_flag.pk) in p and "refunded: True" in p for p in problems)
    assert not any(str(fine.pk) in p for p in problems)


def test_staff_see_the_charge_on_the_job_page(user, project, audio, superuser_client):
    job = submit(user, project, audio)
    with TestCase.captureOnCommitCallbacks(execute=False):
        assert lifecycle.job_fail(job_id=job.pk, code="internal", detail="x", retryable=True)
    page = superuser_client.get(reverse("admin:jobs_job_change", args=[job.pk])).content.decode()
    assert f"charged {PRICE}, refunded {PRICE} (failed:internal), net 0" in page


def test_the_schema_describes_the_charge():
    schema = served_schema()
    components = schema["components"]["schemas"]
    charge = components["Charge"]
    assert set(charge["required"]) == {"charged", "refunded", "refund_reason", "net", "entries"}
    assert charge["properties"]["refund_reason"]["nullable"] is True
    assert components["JobSummary"]["properties"]["charge"]["allOf"][0]["$ref"].endswith("/Charge")
    entry_type = components["LedgerEntry"]["properties"]["type"]["allOf"][0]["$ref"].rsplit("/", 1)[1]
    assert {"usage", "refund", "adjustment"} <= set(components[entry_type]["enum"])

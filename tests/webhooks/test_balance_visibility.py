"""Who a webhook's message tells the workspace's balance: its reader as the database says, never
the process that builds it. A job's own webhook is its submitter's (an API key without
credits:read sees no `balance_after`), an account webhook its maker's; a spend cap's thresholds
go only to the webhooks whose maker may see the workspace's credits."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import TestCase

from auteur.users.key_services import api_key_create, api_key_revoke
from auteur.users.models import Membership, User, Workspace
from credits.models import CapAlert
from credits.services.budgets import workspace_cap_set
from credits.services.ledger import credit_deduct_for_job, credit_grant
from jobs.events.account import cap_alerts_announce
from jobs.events.webhooks import job_event_webhooks_send
from jobs.life import status as lifecycle
from jobs.models import Job, JobEvent
from tests.factories import MediaFileFactory, ProjectFactory, acting_in, key_client, team_workspace
from tests.jobs.support import valid_body
from tests.webhooks.conftest import Receiver
from webhooks.models import Delivery
from webhooks.services import delivery_attempt, webhook_create

pytestmark = pytest.mark.django_db


@pytest.fixture
def team(make_user: Any) -> Workspace:
    team = team_workspace(make_user())
    credit_grant(user=User.objects.get(pk=team.pk), amount=1000, type="bonus", description="pool")
    return team


def owner_seat(team: Workspace) -> Membership:
    return Membership.objects.get(workspace=team, role="owner")


def submitted_by_key(team: Workspace, scopes: list[str], webhook: str) -> Job:
    """A tts job the key (with `scopes`) submits through the API, naming its own webhook."""
    _, text = api_key_create(membership=owner_seat(team), name="ci", scopes=scopes)
    project = ProjectFactory.create(user=User.objects.get(pk=team.pk), name="Film")
    media = {kind: MediaFileFactory.create(project=project, type=kind) for kind in ("video", "audio", "image")}
    answer = key_client(text).post("/api/v1/jobs/tts", {**valid_body("tts", project, media), "webhook": webhook},
                                   format="json")
    assert answer.status_code == 202, answer.content
    return Job.objects.get(pk=answer.json()["job_id"])


def failed_and_sent(job: Job) -> None:
    """Fail the job (refunded) and send its `completed` webhooks now."""
    with TestCase.captureOnCommitCallbacks(execute=False):
        assert lifecycle.job_fail(job_id=job.pk, code="internal", detail="x", retryable=True)
        job_event_webhooks_send(JobEvent.objects.get(job=job, type="failed"))
        for delivery in Delivery.objects.filter(job_id=job.pk).order_by("pk"):
            delivery_attempt(delivery_id=delivery.pk)


def bodies(receiver: Receiver, path: str) -> list[dict[str, Any]]:
    return [json.loads(r.body) for r in receiver.received if r.path == path]


def balances(body: dict[str, Any]) -> list[Any]:
    return [entry["balance_after"] for entry in body["data"]["charge"]["entries"]]


def test_a_keys_own_webhook_without_credits_read_carries_no_balance(team: Workspace, receiver: Receiver):
    job = submitted_by_key(team, ["jobs:write"], receiver.url("/job"))
    # The owner's account webhook gets the same event with the balance: its maker sees it.
    webhook_create(owner=User.objects.get(pk=team.pk), member_id=owner_seat(team).user_id,
                   url=receiver.url("/owner"), event_types=["completed"])
    failed_and_sent(job)
    [own] = bodies(receiver, "/job")
    [owners] = bodies(receiver, "/owner")
    assert own["data"]["id"] == owners["data"]["id"] == str(job.pk)
    assert own["data"]["charge"]["refunded"] == owners["data"]["charge"]["refunded"] > 0
    assert balances(own) == [None, None]  # the usage entry and its refund
    assert all(isinstance(b, int) for b in balances(owners))
    # What was stored (and is redelivered by staff) is what was sent.
    stored = Delivery.objects.get(job_webhook__job=job).payload
    assert balances(stored) == [None, None]


def test_a_keys_own_webhook_with_credits_read_carries_the_balance(team: Workspace, receiver: Receiver):
    job = submitted_by_key(team, ["jobs:write", "credits:read"], receiver.url("/job"))
    failed_and_sent(job)
    [own] = bodies(receiver, "/job")
    assert all(isinstance(b, int) for b in balances(own)) and len(balances(own)) == 2


def test_an_account_webhook_a_key_without_credits_read_made_carries_no_balance(team: Workspace,
                                                                              receiver: Receiver):
    _, hooks = api_key_create(membership=owner_seat(team), name="hooks", scopes=["webhooks:write"])
    made = key_client(hooks).post("/api/v1/webhooks", {"url": receiver.url("/keys"), "event_types": ["completed"]},
                                  format="json")
    assert made.status_code == 201, made.content
    job = submitted_by_key(team, ["jobs:write", "credits:read"], receiver.url("/job"))
    failed_and_sent(job)
    [keys] = bodies(receiver, "/keys")
    [own] = bodies(receiver, "/job")
    assert balances(keys) == [None, None]
    assert all(isinstance(b, int) for b in balances(own))


def test_a_revoked_submitters_webhook_carries_no_balance(team: Workspace, receiver: Receiver):
    job = submitted_by_key(team, ["jobs:write", "credits:read"], receiver.url("/job"))
    api_key_revoke(membership=owner_seat(team), key_id=str(job.member_id))
    failed_and_sent(job)
    [own] = bodies(receiver, "/job")
    assert balances(own) == [None, None]


def test_a_spend_caps_thresholds_reach_only_the_webhooks_whose_maker_sees_the_credits(team: Workspace,
                                                                                     receiver: Receiver):
    seat = owner_seat(team)
    account = User.objects.get(pk=team.pk)
    workspace_cap_set(membership=seat, monthly_limit=10)
    blind, _ = api_key_create(membership=seat, name="hooks", scopes=["webhooks:write"])
    webhook_create(owner=account, member_id=blind.pk, url=receiver.url("/blind"), event_types=["spend_cap"])
    webhook_create(owner=account, member_id=seat.user_id, url=receiver.url("/owner"), event_types=["spend_cap"])
    job = Job.objects.create(user=account, type="tts", credits_cost=8)
    with TestCase.captureOnCommitCallbacks(execute=False):
        credit_deduct_for_job(user=account, job_id=job.pk, amount=8, description="x", member_id=seat.user_id)
        assert cap_alerts_announce() == CapAlert.objects.filter(user=account).count() == 2
        for delivery in Delivery.objects.filter(owner=account).order_by("pk"):
            delivery_attempt(delivery_id=delivery.pk)
    assert [b["data"]["threshold"] for b in bodies(receiver, "/owner")] == [50, 80]
    assert bodies(receiver, "/blind") == []
    assert not Delivery.objects.filter(webhook__member_id=blind.pk).exists()


def test_a_webhooks_delivery_log_shows_the_balance_only_to_whom_sees_the_credits(team: Workspace,
                                                                                 receiver: Receiver):
    owner = owner_seat(team).user
    webhook, _ = webhook_create(owner=User.objects.get(pk=team.pk), member_id=owner.pk, url=receiver.url("/owner"),
                                event_types=["completed"])
    failed_and_sent(submitted_by_key(team, ["jobs:write"], receiver.url("/job")))
    [sent] = bodies(receiver, "/owner")
    assert all(isinstance(b, int) for b in balances(sent))
    _, reader = api_key_create(membership=owner_seat(team), name="logs", scopes=["webhooks:read"])
    path = f"/api/v1/webhooks/{webhook.pk}/deliveries"
    [by_key] = key_client(reader).get(path).json()["deliveries"]
    [by_owner] = acting_in(owner, team).get(path).json()["deliveries"]
    assert by_key["payload"]["data"]["id"] == by_owner["payload"]["data"]["id"] == sent["data"]["id"]
    assert balances(by_key["payload"]) == [None, None]
    assert balances(by_owner["payload"]) == balances(sent)

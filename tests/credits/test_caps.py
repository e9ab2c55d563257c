"""Spend caps of a workspace and of its API keys: counted in the charge's own statement, refusing
with the cap named, shown by quotes, and their thresholds announced exactly once."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from rest_framework.test import APIClient

from auteur.users.key_services import api_key_create
from auteur.users.models import ApiKey, Membership, User, Workspace
from auteur.users.roles import Role
from credits.errors import SpendCapReached
from credits.models import CapAlert, CreditTransaction
from credits.selectors import credit_balance_get, ledger_check
from credits.services.budgets import key_cap_set, member_budget_set, workspace_cap_set
from credits.services.ledger import credit_deduct_for_job, credit_grant, credit_refund_job
from jobs.events.account import cap_alerts_announce
from jobs.events.stream import stream_key, stream_redis
from projects.models import Project
from tests.factories import acting_in, key_client, team_workspace
from tests.webhooks.conftest import fake_dns  # noqa: F401 - a fixture
from webhooks.models import Delivery
from webhooks.services import webhook_create

pytestmark = pytest.mark.django_db


@pytest.fixture
def owner(make_user: Callable[..., User]) -> User:
    return make_user()


@pytest.fixture
def team(owner: User) -> Workspace:
    team = team_workspace(owner)
    credit_grant(user=User.objects.get(pk=team.pk), amount=1000, description="pool")
    return team


def seat(owner: User, team: Workspace) -> Membership:
    return Membership.objects.get(workspace=team, user=owner)


def account(team: Workspace) -> User:
    return User.objects.get(pk=team.pk)


def charge(team: Workspace, member_id: uuid.UUID, amount: int, job_id: uuid.UUID | None = None) -> CreditTransaction:
    return credit_deduct_for_job(user=account(team), job_id=job_id or uuid.uuid4(), amount=amount, description="job",
                                 member_id=member_id)


@pytest.mark.django_db(transaction=True)
def test_a_cap_set_while_charges_run_misses_none_of_them(owner: User, team: Workspace):
    from tests.credits.test_concurrency import race

    def work(i: int) -> None:
        if i % 10 == 5:
            workspace_cap_set(membership=seat(owner, team), monthly_limit=10_000 + i)
        else:
            charge(team, owner.pk, 1)

    results = race(30, work)
    assert [r for r in results if isinstance(r, BaseException)] == []
    assert ledger_check() == []  # the workspace's counter holds every charge, made before or after the cap
    assert credit_balance_get(user=account(team)) == 1000 - 27


def test_the_workspace_cap_counts_every_members_and_keys_charge(owner: User, team: Workspace):
    key, _ = api_key_create(membership=seat(owner, team), name="ci", scopes=["jobs:write"])
    workspace_cap_set(membership=seat(owner, team), monthly_limit=10)
    charge(team, owner.pk, 6)
    charge(team, key.pk, 4)
    with pytest.raises(SpendCapReached) as refused:
        charge(team, key.pk, 1)
    details = refused.value.details
    assert (details["cap"], details["limit"], details["spent"], details["cost"]) == ("workspace", 10, 10, 1)
    assert details["resets_at"].endswith("+00:00")
    assert credit_balance_get(user=account(team)) == 990
    assert ledger_check() == []


def test_a_keys_monthly_and_per_job_limits(owner: User, team: Workspace):
    key, _ = api_key_create(membership=seat(owner, team), name="ci", scopes=["jobs:write"])
    cap = key_cap_set(membership=seat(owner, team), key_id=key.pk, monthly_limit=10, job_limit=4)
    assert (cap.scope, cap.subject_id, cap.monthly_limit, cap.job_limit, cap.spent) == ("key", key.pk, 10, 4, 0)
    with pytest.raises(SpendCapReached) as refused:
        charge(team, key.pk, 5)
    assert refused.value.details == {"cap": "key_per_job", "key_id": str(key.pk), "limit": 4, "job_limit": 4,
                                     "cost": 5, "resets_at": None}
    charge(team, key.pk, 4)
    charge(team, key.pk, 4)
    with pytest.raises(SpendCapReached) as refused:
        charge(team, key.pk, 3)
    assert (refused.value.details["cap"], refused.value.details["key_id"]) == ("key", str(key.pk))
    charge(team, owner.pk, 50)  # a person is not held to a key's caps
    assert credit_balance_get(user=account(team)) == 1000 - 58
    assert ledger_check() == []


def test_a_limit_set_later_counts_what_was_spent_this_month(owner: User, team: Workspace):
    key, _ = api_key_create(membership=seat(owner, team), name="ci", scopes=["jobs:write"])
    charge(team, key.pk, 7)
    cap = key_cap_set(membership=seat(owner, team), key_id=key.pk, monthly_limit=8, job_limit=None)
    assert cap.spent == 7 and cap.remaining == 1
    # Reached before the limit was set: not announced.
    assert not CapAlert.objects.exists()
    with pytest.raises(SpendCapReached):
        charge(team, key.pk, 2)


def test_each_threshold_is_announced_once_a_month(owner: User, team: Workspace, fake_dns: Any):  # noqa: F811
    fake_dns({"hooks.example.test": ["93.184.216.34"]})
    # Made by the owner, who sees the workspace's credits (a cap's figures go to no other maker's).
    hook, _ = webhook_create(owner=account(team), url="https://hooks.example.test/caps", event_types=["spend_cap"],
                             member_id=owner.pk)
    job_hook, _ = webhook_create(owner=account(team), url="https://hooks.example.test/jobs", event_types=["completed"])
    workspace_cap_set(membership=seat(owner, team), monthly_limit=100)
    stream_redis().delete(stream_key(team.pk))
    jobs = [uuid.uuid4() for _ in range(5)]
    charge(team, owner.pk, 40, jobs[0])   # 40 %
    charge(team, owner.pk, 20, jobs[1])   # 60 %: 50 crossed
    charge(team, owner.pk, 25, jobs[2])   # 85 %: 80 crossed
    credit_refund_job(job_id=jobs[2], reason="failed")  # back to 60 %
    charge(team, owner.pk, 25, jobs[3])   # 85 % again: nothing new
    charge(team, owner.pk, 15, jobs[4])   # 100 %: 100 crossed
    alerts = list(CapAlert.objects.order_by("threshold").values_list("threshold", "spent", "job_id", "announced_at"))
    assert alerts == [(50, 60, jobs[1], None), (80, 85, jobs[2], None), (100, 100, jobs[4], None)]

    assert cap_alerts_announce() == 3
    assert cap_alerts_announce() == 0
    sent = Delivery.objects.filter(owner=account(team)).order_by("id")
    assert [d.webhook_id for d in sent] == [hook.pk] * 3  # the jobs' webhook is not sent them
    assert [d.payload["data"]["threshold"] for d in sent] == [50, 80, 100]
    assert sent[0].payload["type"] == "spend_cap.threshold" and sent[0].payload["data"]["cap"] == "workspace"
    entries: Any = stream_redis().xrange(stream_key(team.pk))
    events = [json.loads(value) for _, fields in entries for value in fields.values()]
    assert [(e["type"], e["threshold"]) for e in events] == [("spend_cap.threshold", t) for t in (50, 80, 100)]
    assert job_hook.pk not in {d.webhook_id for d in sent}
    assert ledger_check() == []


def test_quotes_name_the_cap_that_would_refuse(owner: User, team: Workspace):
    # (The cap's figures only to a key that sees the credits: tests/jobs/test_spend_cap_visibility.py.)
    key, text = api_key_create(membership=seat(owner, team), name="ci",
                               scopes=["jobs:write", "projects:write", "credits:read"])
    project = Project.objects.create(user=account(team), name="p")
    # Two units of text: a limit below its cost but not below the type's least price is told, not refused.
    body = {"project_id": str(project.pk), "text": "Hello there. " * 100}
    quoted = key_client(text).post("/api/v1/jobs/tts/quote", body, format="json")
    assert quoted.status_code == 201, quoted.content
    assert quoted.json()["spend_cap"] is None
    cost = quoted.json()["credits_cost"]
    key_cap_set(membership=seat(owner, team), key_id=key.pk, monthly_limit=None, job_limit=cost - 1)
    capped = key_client(text).post("/api/v1/jobs/tts/quote", body, format="json").json()["spend_cap"]
    assert (capped["cap"], capped["key_id"], capped["limit"], capped["cost"]) == ("key_per_job", str(key.pk),
                                                                                  cost - 1, cost)
    refused = key_client(text).post("/api/v1/jobs/tts", body, format="json")
    assert (refused.status_code, refused.json()["error"]["code"]) == (402, "spend_cap_reached")
    assert refused.json()["error"]["details"]["cap"] == "key_per_job"
    assert credit_balance_get(user=account(team)) == 1000


def test_the_caps_api(owner: User, team: Workspace, make_user: Callable[..., User],
                      client_for: Callable[[User], APIClient]):
    key, _ = api_key_create(membership=seat(owner, team), name="ci", scopes=["jobs:write"])
    api = client_for(owner)
    put = api.put(f"/api/v1/workspaces/{team.pk}/caps/workspace", {"monthly_limit": 500}, format="json")
    assert put.status_code == 200 and put.json()["monthly_limit"] == 500 and put.json()["cap"] == "workspace"
    put = api.put(f"/api/v1/workspaces/{team.pk}/caps/keys/{key.pk}", {"monthly_limit": 50, "job_limit": 5},
                  format="json")
    assert put.status_code == 200, put.content
    assert (put.json()["key_id"], put.json()["job_limit"], put.json()["remaining"]) == (str(key.pk), 5, 50)
    listed = api.get(f"/api/v1/workspaces/{team.pk}/caps").json()["caps"]
    assert [(c["cap"], c["key_id"], c["monthly_limit"]) for c in listed] == [("workspace", None, 500),
                                                                            ("key", str(key.pk), 50)]
    assert api.put(f"/api/v1/workspaces/{team.pk}/caps/keys/{uuid.uuid4()}", {"monthly_limit": 1},
                   format="json").status_code == 404
    assert api.put(f"/api/v1/workspaces/{team.pk}/caps/workspace", {"monthly_limit": -1},
                   format="json").status_code == 400
    for role, get, put_code in ((Role.EDITOR, 200, 403), (Role.VIEWER, 403, 403), (Role.BILLING, 200, 200),
                                (Role.ADMIN, 200, 403)):
        member = make_user()
        Membership.objects.create(workspace=team, user=member, role=role)
        theirs = client_for(member)
        assert theirs.get(f"/api/v1/workspaces/{team.pk}/caps").status_code == get, role
        assert theirs.put(f"/api/v1/workspaces/{team.pk}/caps/workspace", {"monthly_limit": None},
                          format="json").status_code == put_code, role
    stranger = client_for(make_user())
    assert stranger.get(f"/api/v1/workspaces/{team.pk}/caps").status_code == 404
    revoked = ApiKey.objects.filter(pk=key.pk)
    revoked.update(revoked_at="2026-01-01T00:00Z")
    assert [c["cap"] for c in api.get(f"/api/v1/workspaces/{team.pk}/caps").json()["caps"]] == ["workspace"]
    # A key sets no cap, its own least of all.
    assert acting_in(owner, team).get("/api/v1/credits").status_code == 200


def test_a_personal_workspace_has_caps_too(owner: User, client_for: Callable[[User], APIClient]):
    credit_grant(user=owner, amount=100, description="mine")
    personal = Workspace.objects.get(pk=owner.pk)
    credit_deduct_for_job(user=owner, job_id=uuid.uuid4(), amount=2, description="x", member_id=owner.pk)
    listed = client_for(owner).get(f"/api/v1/workspaces/{personal.pk}/caps").json()["caps"]
    assert [(c["cap"], c["spent"], c["monthly_limit"]) for c in listed] == [("workspace", 2, None)]  # the ledger's
    put = client_for(owner).put(f"/api/v1/workspaces/{personal.pk}/caps/workspace", {"monthly_limit": 7},
                                format="json")
    assert put.status_code == 200 and put.json()["spent"] == 2  # counted from the ledger when set
    credit_deduct_for_job(user=owner, job_id=uuid.uuid4(), amount=5, description="x", member_id=owner.pk)
    with pytest.raises(SpendCapReached):
        credit_deduct_for_job(user=owner, job_id=uuid.uuid4(), amount=1, description="x", member_id=owner.pk)
    assert ledger_check() == []


def test_a_submission_through_the_api_records_the_thresholds_it_crosses(owner: User, team: Workspace):
    key, text = api_key_create(membership=seat(owner, team), name="ci", scopes=["jobs:write", "projects:write"])
    project = key_client(text).post("/api/v1/projects", {"name": "p"}, format="json").json()
    body = {"project_id": project["id"], "text": "Hello there"}
    cost = key_client(text).post("/api/v1/jobs/tts/quote", body, format="json").json()["credits_cost"]
    key_cap_set(membership=seat(owner, team), key_id=key.pk, monthly_limit=cost, job_limit=None)
    submitted = key_client(text).post("/api/v1/jobs/tts", body, format="json")
    assert submitted.status_code == 202, submitted.content
    assert list(CapAlert.objects.order_by("threshold").values_list("scope", "subject_id", "threshold")) == [
        ("key", key.pk, 50), ("key", key.pk, 80), ("key", key.pk, 100)]
    refused = key_client(text).post("/api/v1/jobs/tts", body, format="json")
    assert (refused.status_code, refused.json()["error"]["details"]["cap"]) == (402, "key")
    assert CapAlert.objects.count() == 3


def test_refused_answers_name_the_cap(owner: User, team: Workspace, client_for: Callable[[User], APIClient]):
    workspace_cap_set(membership=seat(owner, team), monthly_limit=0)
    project = acting_in(owner, team).post("/api/v1/projects", {"name": "p"}, format="json").json()
    refused = acting_in(owner, team).post("/api/v1/jobs/tts", {"project_id": project["id"], "text": "Hi"},
                                          format="json")
    assert (refused.status_code, refused.json()["error"]["code"]) == (402, "spend_cap_reached")
    details: dict[str, Any] = refused.json()["error"]["details"]
    assert (details["cap"], details["limit"], details["spent"]) == ("workspace", 0, 0)
    assert credit_balance_get(user=account(team)) == 1000


def test_a_keys_charges_count_on_its_makers_budget(owner: User, team: Workspace, make_user: Callable[..., User]):
    admin = make_user()
    Membership.objects.create(workspace=team, user=admin, role=Role.ADMIN)
    member_budget_set(membership=seat(owner, team), user_id=admin.pk, monthly_limit=10)
    key, _ = api_key_create(membership=Membership.objects.get(workspace=team, user=admin), name="mine",
                            scopes=["jobs:write"])
    charge(team, key.pk, 6)
    with pytest.raises(SpendCapReached) as refused:
        charge(team, key.pk, 5)  # the key has no cap of its own: its maker's budget holds it
    assert (refused.value.details["cap"], refused.value.details["member_id"]) == ("member", str(admin.pk))
    with pytest.raises(SpendCapReached):
        charge(team, admin.pk, 5)  # and what the key spent is the admin's too
    charge(team, admin.pk, 4)
    job = uuid.uuid4()
    charge(team, owner.pk, 1, job)
    assert ledger_check() == []
    # An admin sets no workspace cap: those who pay for the workspace do.
    with pytest.raises(Exception) as denied:
        workspace_cap_set(membership=Membership.objects.get(workspace=team, user=admin), monthly_limit=None)
    assert getattr(denied.value, "code", None) == "permission_denied"


def test_a_refusal_names_the_cap_that_refused(owner: User, team: Workspace):
    key, _ = api_key_create(membership=seat(owner, team), name="ci", scopes=["jobs:write"])
    workspace_cap_set(membership=seat(owner, team), monthly_limit=15)
    key_cap_set(membership=seat(owner, team), key_id=key.pk, monthly_limit=5, job_limit=None)
    with pytest.raises(SpendCapReached) as refused:
        charge(team, key.pk, 10)
    assert (refused.value.details["cap"], refused.value.details["spent"]) == ("key", 0)
    charge(team, owner.pk, 12)
    with pytest.raises(SpendCapReached) as refused:
        charge(team, key.pk, 4)
    assert (refused.value.details["cap"], refused.value.details["spent"]) == ("workspace", 12)


def test_limits_of_tens_of_millions(owner: User, team: Workspace):
    credit_grant(user=account(team), amount=40_000_000, description="big pool")
    cap = workspace_cap_set(membership=seat(owner, team), monthly_limit=30_000_000)
    assert cap.monthly_limit == 30_000_000
    charge(team, owner.pk, 16_000_000)  # 53 %: crosses 50 % without overflowing the arithmetic
    assert list(CapAlert.objects.values_list("threshold", flat=True)) == [50]
    member_budget_set(membership=seat(owner, team), user_id=owner.pk, monthly_limit=2**31 - 1)
    charge(team, owner.pk, 1)
    assert ledger_check() == []


def test_staff_see_the_counters_and_the_alerts(owner: User, team: Workspace, superuser_client: Any):
    key, _ = api_key_create(membership=seat(owner, team), name="farm", scopes=["jobs:write"])
    key_cap_set(membership=seat(owner, team), key_id=key.pk, monthly_limit=4, job_limit=None)
    workspace_cap_set(membership=seat(owner, team), monthly_limit=100)
    charge(team, key.pk, 4)
    listed = superuser_client.get("/admin/credits/spendcap/").content.decode()
    assert "key: farm" in listed and "the workspace" in listed
    alerts = superuser_client.get("/admin/credits/capalert/")
    assert alerts.status_code == 200 and "100" in alerts.content.decode()
    alert = CapAlert.objects.filter(scope="key").first()
    assert alert is not None
    assert superuser_client.get(f"/admin/credits/capalert/{alert.pk}/change/").status_code == 200


def test_a_key_without_credits_read_is_not_told_the_balance(owner: User, make_user: Callable[..., User]):
    poor = team_workspace(owner, name="Poor")
    seat_ = Membership.objects.get(workspace=poor, user=owner)
    _, blind = api_key_create(membership=seat_, name="runner", scopes=["jobs:write", "projects:write"])
    _, sees = api_key_create(membership=seat_, name="books", scopes=["jobs:write", "projects:write", "credits:read"])
    # The least price of a tts job, not the price of this one (two units of text).
    credit_grant(user=account(poor), amount=2, description="almost nothing")
    project = key_client(blind).post("/api/v1/projects", {"name": "p"}, format="json").json()
    body = {"project_id": project["id"], "text": "Hello there, a long enough text. " * 40}
    quoted = key_client(blind).post("/api/v1/jobs/tts/quote", body, format="json").json()
    assert (quoted["balance"], quoted["balance_after"]) == (None, None)
    assert key_client(sees).post("/api/v1/jobs/tts/quote", body, format="json").json()["balance"] == 2
    refused = key_client(blind).post("/api/v1/jobs/tts", body, format="json").json()["error"]
    assert refused["code"] == "insufficient_credits" and refused["details"]["balance"] is None
    assert "balance is" not in refused["message"]
    assert key_client(sees).post("/api/v1/jobs/tts", body, format="json").json()["error"]["details"]["balance"] == 2


@pytest.mark.django_db(transaction=True)
def test_a_personal_cap_set_while_its_owner_charges_misses_none_of_them(owner: User):
    from tests.credits.test_concurrency import race

    credit_grant(user=owner, amount=1000, description="mine")
    personal = Membership.objects.get(workspace_id=owner.pk, user=owner)

    def work(i: int) -> None:
        if i % 10 == 5:
            workspace_cap_set(membership=personal, monthly_limit=10_000 + i)
        else:
            credit_deduct_for_job(user=owner, job_id=uuid.uuid4(), amount=1, description="x", member_id=owner.pk)

    results = race(30, work)
    assert [r for r in results if isinstance(r, BaseException)] == []
    assert ledger_check() == []  # charged by the plain statement before the cap, counted after it
    assert credit_balance_get(user=owner) == 1000 - 27

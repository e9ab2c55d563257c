"""A spend cap's figures (its limit, what it counted this month) are the workspace's credits: a
caller who may not see them (an API key without credits:read) is told which cap refused and the
cost, never the figures, wherever a refusal reaches it (a submission's 402, a quote, a batch's
402 and its quote). Nothing is charged either way."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest

from auteur.users.key_services import api_key_create
from auteur.users.models import ApiKey, Membership, User, Workspace
from credits.selectors import credit_balance_get
from credits.services.budgets import key_cap_set, workspace_cap_set
from credits.services.ledger import credit_grant
from jobs.models import Job
from projects.models import Project
from tests.factories import key_client, team_workspace

pytestmark = pytest.mark.django_db

FIGURES = ("limit", "monthly_limit", "job_limit", "spent")


@pytest.fixture
def team(make_user: Callable[..., User]) -> Workspace:
    team = team_workspace(make_user())
    credit_grant(user=User.objects.get(pk=team.pk), amount=1000, description="pool")
    return team


def owner_seat(team: Workspace) -> Membership:
    return Membership.objects.get(workspace=team, role="owner")


def keys(team: Workspace) -> tuple[ApiKey, str, str]:
    """A key without credits:read (and its text), and one with it."""
    key, blind = api_key_create(membership=owner_seat(team), name="runner", scopes=["jobs:write"])
    _, sees = api_key_create(membership=owner_seat(team), name="books", scopes=["jobs:write", "credits:read"])
    return key, blind, sees


def tts_body(team: Workspace) -> dict[str, Any]:
    project = Project.objects.create(user=User.objects.get(pk=team.pk), name="p")
    return {"project_id": str(project.pk), "text": "Hello there"}


def assert_hidden(error: dict[str, Any], *numbers: int) -> None:
    assert error["code"] == "spend_cap_reached"
    assert all(error["details"].get(name) is None for name in FIGURES), error
    for number in numbers:  # the message names no figure either
        assert not re.search(rf"\b{number}\b", error["message"]), error["message"]


def test_a_keys_monthly_cap_refusal_shows_no_figures_to_a_key_without_credits_read(team: Workspace):
    key, blind, sees = keys(team)
    body = tts_body(team)
    cost = key_client(sees).post("/api/v1/jobs/tts/quote", body, format="json").json()["credits_cost"]
    key_cap_set(membership=owner_seat(team), key_id=key.pk, monthly_limit=cost - 1, job_limit=None)

    refused = key_client(blind).post("/api/v1/jobs/tts", body, format="json")
    assert refused.status_code == 402
    error = refused.json()["error"]
    assert_hidden(error, cost - 1)
    assert (error["details"]["cap"], error["details"]["key_id"], error["details"]["cost"]) == ("key", str(key.pk),
                                                                                               cost)
    # A quote says which cap would refuse (or, short of even the type's least price, is that 402).
    quoted = key_client(blind).post("/api/v1/jobs/tts/quote", body, format="json")
    if quoted.status_code == 402:
        assert_hidden(quoted.json()["error"], cost - 1)
    else:
        capped = quoted.json()["spend_cap"]
        assert capped["cap"] == "key" and capped["limit"] is None and capped["spent"] is None
        assert not re.search(rf"\b{cost - 1}\b", capped["message"])
    assert not Job.objects.filter(user_id=team.pk).exists() and credit_balance_get(user=User.objects.get(pk=team.pk)) \
        == 1000


def test_a_workspace_cap_and_a_per_job_limit_shown_only_to_whom_sees_the_credits(team: Workspace):
    key, blind, sees = keys(team)
    body = tts_body(team)
    cost = key_client(sees).post("/api/v1/jobs/tts/quote", body, format="json").json()["credits_cost"]
    workspace_cap_set(membership=owner_seat(team), monthly_limit=cost - 1)
    refused = key_client(blind).post("/api/v1/jobs/tts", body, format="json")
    assert refused.status_code == 402
    assert_hidden(refused.json()["error"], cost - 1)
    told = key_client(sees).post("/api/v1/jobs/tts", body, format="json").json()["error"]
    assert (told["details"]["cap"], told["details"]["limit"], told["details"]["spent"]) == ("workspace", cost - 1, 0)

    workspace_cap_set(membership=owner_seat(team), monthly_limit=None)
    key_cap_set(membership=owner_seat(team), key_id=key.pk, monthly_limit=None, job_limit=1)
    per_job = key_client(blind).post("/api/v1/jobs/tts", body, format="json").json()["error"]
    assert per_job["details"]["cap"] == "key_per_job"
    assert_hidden(per_job)
    assert not Job.objects.filter(user_id=team.pk).exists()


def test_a_batch_refused_by_a_cap_shows_no_figures_nor_shortfall_to_a_key_without_credits_read(team: Workspace):
    _, blind, sees = keys(team)
    body = tts_body(team)
    cost = key_client(sees).post("/api/v1/jobs/tts/quote", body, format="json").json()["credits_cost"]
    # Two of the three items fit: the refusal would name the shortfall and the third item.
    workspace_cap_set(membership=owner_seat(team), monthly_limit=2 * cost)
    items = [{"type": "tts", "input": body} for _ in range(3)]
    for path in ("/api/v1/jobs/batch", "/api/v1/jobs/batch/quote"):
        hidden = key_client(blind).post(path, {"items": items}, format="json")
        shown = key_client(sees).post(path, {"items": items}, format="json")
        error = hidden.json()["error"] if hidden.status_code == 402 else hidden.json()["refusal"]
        told = shown.json()["error"] if shown.status_code == 402 else shown.json()["refusal"]
        assert hidden.status_code == shown.status_code, path
        assert_hidden(error, 2 * cost)
        assert error["details"].get("shortfall") is None and error["details"].get("item") is None
        assert told["details"]["limit"] == 2 * cost and told["details"]["shortfall"] == cost, told
    assert not Job.objects.filter(user_id=team.pk).exists()

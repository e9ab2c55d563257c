"""Requests in a team workspace (the Auteur-Workspace header): they act as the workspace's account,
every role is held to its actions on every endpoint, and an outsider gets 404 for all of it."""

from __future__ import annotations

import re
import socket
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.urls import URLPattern, URLResolver, get_resolver
from rest_framework.test import APIClient

from auteur.users.models import Membership, User, Workspace
from auteur.users.permissions import workspace_action
from auteur.users.roles import ACTIONS, Role, allowed
from credits.models import CreditTransaction
from credits.selectors import credit_balance_get, ledger_check
from credits.services.ledger import credit_grant
from jobs.life.status import job_fail
from jobs.models import Job, UsageEvent
from projects.models import Project
from tests.factories import acting_in, team_workspace

pytestmark = pytest.mark.django_db

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


def api_routes() -> Iterator[tuple[str, Any]]:
    def walk(patterns: list[Any], prefix: str) -> Iterator[tuple[str, Any]]:
        for pattern in patterns:
            if isinstance(pattern, URLResolver):
                yield from walk(pattern.url_patterns, prefix + str(pattern.pattern))
            elif isinstance(pattern, URLPattern) and getattr(pattern.callback, "cls", None) is not None:
                yield prefix + str(pattern.pattern), getattr(pattern.callback, "cls")  # noqa: B009

    for route, cls in walk(get_resolver().url_patterns, ""):
        if route.startswith("api/v1/") and getattr(cls, "authentication_classes", None) != []:
            yield route, cls


def operations() -> list[tuple[str, str, str | None]]:
    """(path, method, action) of every operation that acts in a workspace."""
    found = []
    for route, cls in api_routes():
        if not getattr(cls, "acts_in_workspace", True):
            continue
        path = "/" + re.sub(r"<(?:\w+:)?(\w+)>", lambda _: str(uuid.uuid4()), route)
        for method in METHODS:
            if hasattr(cls, method.lower()):
                action = workspace_action(cls, method)
                found.append((path, method, action))
    return found


OPERATIONS = operations()


def test_every_operation_names_its_action_or_is_about_the_caller_themself():
    missing = [(path, method) for path, method, action in OPERATIONS if action is None]
    assert missing == []
    assert {action for _, _, action in OPERATIONS} <= set(ACTIONS)
    assert len(OPERATIONS) > 60


@pytest.fixture
def owner(make_user: Callable[..., User]) -> User:
    return make_user()


@pytest.fixture
def team(owner: User) -> Workspace:
    return team_workspace(owner)




def send(client: APIClient, method: str, path: str) -> Any:
    return getattr(client, method.lower())(path, {}, format="json")


@pytest.mark.parametrize("role", list(Role))
def test_every_role_against_every_operation_of_the_api(
    role: Role, team: Workspace, make_user: Callable[..., User], client_for: Callable[[User], APIClient]
):
    member = make_user()
    Membership.objects.create(workspace=team, user=member, role=role)
    client = acting_in(member, team)

    wrong = {}
    for path, method, action in OPERATIONS:
        answer = send(client, method, path)
        denied = answer.status_code == 403 and answer.json()["error"]["code"] == "permission_denied"
        if denied != (action is None or not allowed(role, action)):
            wrong[f"{method} {path}"] = (action, answer.status_code, answer.content[:200])
        elif denied:
            assert answer.json()["error"]["details"] == {"action": action, "role": role.value}
    assert wrong == {}


def test_an_outsider_gets_404_for_every_operation_of_a_workspace(
    team: Workspace, make_user: Callable[..., User], settings: Any
):
    settings.AUTEUR_RATE_LIMIT_USER_PER_MINUTE = 10_000  # refusals count: this sends a few hundred
    stranger = make_user()
    for header in (str(team.pk), str(uuid.uuid4()), "not-a-workspace"):
        outsider = acting_in(stranger, header)
        for path, method, _ in OPERATIONS:
            answer = send(outsider, method, path)
            assert answer.status_code == 404, (header, method, path, answer.content)
            assert answer.json()["error"]["code"] == "workspace_not_found"


def test_members_share_a_team_workspaces_projects_and_nothing_else(
    owner: User, team: Workspace, make_user: Callable[..., User], client_for: Callable[[User], APIClient]
):
    editor, viewer = make_user(), make_user()
    Membership.objects.create(workspace=team, user=editor, role=Role.EDITOR)
    Membership.objects.create(workspace=team, user=viewer, role=Role.VIEWER)

    made = acting_in(editor, team).post("/api/v1/projects", {"name": "Team film"}, format="json")
    assert made.status_code == 201, made.content
    project = Project.objects.get(pk=made.json()["id"])
    assert project.user_id == team.pk  # the workspace's account owns it

    for member in (owner, viewer):
        seen = acting_in(member, team).get(f"/api/v1/projects/{project.pk}")
        assert seen.status_code == 200 and seen.json()["name"] == "Team film"
    # In their own workspaces, nobody has it.
    for member in (owner, editor, viewer):
        assert client_for(member).get(f"/api/v1/projects/{project.pk}").status_code == 404
        assert client_for(member).get("/api/v1/projects").json()["count"] == 0
    refused = acting_in(viewer, team).patch(f"/api/v1/projects/{project.pk}", {"name": "Mine"},
                                                      format="json")
    assert refused.status_code == 403
    project.refresh_from_db()
    assert project.name == "Team film"


def test_a_job_in_a_team_workspace_is_paid_from_its_pool_and_seen_by_its_members(
    owner: User, team: Workspace, make_user: Callable[..., User], client_for: Callable[[User], APIClient]
):
    editor, viewer, payer = make_user(), make_user(), make_user()
    for user, role in ((editor, Role.EDITOR), (viewer, Role.VIEWER), (payer, Role.BILLING)):
        Membership.objects.create(workspace=team, user=user, role=role)
    account = User.objects.get(pk=team.pk)
    credit_grant(user=account, amount=100, type="bonus", description="team pool")
    credit_grant(user=editor, amount=7, type="bonus", description="personal")
    project = acting_in(editor, team).post("/api/v1/projects", {"name": "p"}, format="json").json()

    submitted = acting_in(editor, team).post(
        "/api/v1/jobs/tts", {"project_id": project["id"], "text": "Hello team"}, format="json")

    assert submitted.status_code == 202, submitted.content
    job = Job.objects.get(pk=submitted.json()["job_id"])
    assert job.user_id == team.pk
    assert credit_balance_get(user=account) == 100 - job.credits_cost
    assert credit_balance_get(user=editor) == 7
    shown = acting_in(viewer, team).get(f"/api/v1/jobs/{job.pk}")
    assert shown.status_code == 200 and shown.json()["id"] == str(job.pk)
    # A viewer does not see the workspace's credits, and so not the balance its ledger entries carry.
    assert [e["balance_after"] for e in shown.json()["charge"]["entries"]] == [None]
    listed = acting_in(viewer, team).get("/api/v1/jobs").json()["jobs"]
    assert [e["balance_after"] for e in listed[0]["charge"]["entries"]] == [None]
    as_editor = acting_in(editor, team).get(f"/api/v1/jobs/{job.pk}").json()
    assert [e["balance_after"] for e in as_editor["charge"]["entries"]] == [100 - job.credits_cost]
    assert client_for(viewer).get(f"/api/v1/jobs/{job.pk}").status_code == 404
    assert acting_in(viewer, team).post(
        "/api/v1/jobs/tts", {"project_id": project["id"], "text": "x"}, format="json").status_code == 403
    assert acting_in(payer, team).get("/api/v1/credits").json()["balance"] == 100 - job.credits_cost
    assert acting_in(payer, team).get(f"/api/v1/jobs/{job.pk}").status_code == 403


def test_a_removed_member_is_refused_at_their_next_request_in_the_workspace(
    owner: User, team: Workspace, make_user: Callable[..., User], client_for: Callable[[User], APIClient]
):
    editor = make_user()
    Membership.objects.create(workspace=team, user=editor, role=Role.EDITOR)
    editors = acting_in(editor, team)
    assert editors.get("/api/v1/projects").status_code == 200

    assert client_for(owner).delete(f"/api/v1/workspaces/{team.pk}/members/{editor.pk}").status_code == 204

    for path in ("/api/v1/projects", "/api/v1/jobs", f"/api/v1/jobs/{uuid.uuid4()}", "/api/v1/credits"):
        answer = editors.get(path)
        assert (answer.status_code, answer.json()["error"]["code"]) == (404, "workspace_not_found"), path


def test_the_header_naming_ones_own_id_is_ones_personal_workspace(user: User):
    made = acting_in(user, str(user.pk)).post("/api/v1/projects", {"name": "Mine"}, format="json")
    assert made.status_code == 201
    assert Project.objects.get(pk=made.json()["id"]).user_id == user.pk


def test_views_about_the_caller_ignore_the_header(
    owner: User, team: Workspace, client_for: Callable[[User], APIClient]
):
    client = acting_in(owner, team)
    me = client.get("/api/v1/users/me")
    assert me.status_code == 200 and me.json()["id"] == str(owner.pk)
    assert [w["id"] for w in client.get("/api/v1/workspaces").json()["workspaces"]] == [str(owner.pk), str(team.pk)]


@pytest.mark.parametrize("role", [None, Role.VIEWER])
def test_refused_requests_count_against_the_callers_rate_limit(
    role: Role | None, team: Workspace, make_user: Callable[..., User], settings: Any
):
    """A header naming a workspace one is not in (404), or an operation one's role may not do
    (403), is refused before DRF's throttles run; it still counts, and the limit still holds."""
    settings.AUTEUR_RATE_LIMIT_USER_PER_MINUTE = 3
    caller = make_user()
    if role is not None:
        Membership.objects.create(workspace=team, user=caller, role=role)
    client = acting_in(caller, team)
    answers = [client.post("/api/v1/projects", {"name": "x"}, format="json").status_code for _ in range(5)]
    assert answers == [404 if role is None else 403] * 3 + [429] * 2


def test_an_answer_to_a_request_naming_a_workspace_says_so_to_caches(user: User, auth_client: APIClient):
    assert "Auteur-Workspace" in acting_in(user, str(user.pk)).get("/api/v1/projects")["Vary"]
    assert "Auteur-Workspace" not in acting_in(user, str(user.pk)).get("/api/v1/users/me").get("Vary", "")
    # A single user's answers, which name none, are what they were.
    assert "Auteur-Workspace" not in auth_client.get("/api/v1/projects").get("Vary", "")


def test_staff_may_only_suspend_a_team_workspaces_account(team: Workspace, superuser_client: Any):
    page = superuser_client.get(f"/admin/users/user/{team.pk}/change/")
    assert page.status_code == 200
    editable = set(page.context["adminform"].form.fields)
    assert editable == {"is_active"}


def test_a_team_jobs_charge_refund_and_usage_name_the_member_who_submitted_it(
    owner: User, team: Workspace, make_user: Callable[..., User]
):
    editor = make_user()
    Membership.objects.create(workspace=team, user=editor, role=Role.EDITOR)
    account = User.objects.get(pk=team.pk)
    credit_grant(user=account, amount=100, type="bonus", description="team pool")
    project = acting_in(editor, team).post("/api/v1/projects", {"name": "p"}, format="json").json()
    job_id = acting_in(editor, team).post(
        "/api/v1/jobs/tts", {"project_id": project["id"], "text": "Hello"}, format="json").json()["job_id"]
    job = Job.objects.get(pk=job_id)
    assert job.member_id == editor.pk

    assert job_fail(job_id=job.pk, code="internal", detail="boom", retryable=False)

    entries = CreditTransaction.objects.filter(job_id=job.pk).order_by("created_at")
    assert [(e.type, e.member_id, e.user_id) for e in entries] == [
        ("usage", editor.pk, team.pk), ("refund", editor.pk, team.pk)]
    assert UsageEvent.objects.get(job_id=job.pk).member_id == editor.pk
    # The pool's spend adds up by member; and an entry naming another member than its job's is a problem.
    assert ledger_check() == []
    Job.objects.filter(pk=job.pk).update(member_id=None)
    assert len(ledger_check()) == 2  # named on the entries, on the job no more
    Job.objects.filter(pk=job.pk).update(member_id=owner.pk)
    assert sorted(p.message for p in ledger_check()) == sorted([
        f"usage entry {entries[0].pk} names member {editor.pk}, but job {job.pk} was submitted by {owner.pk}",
        f"refund entry {entries[1].pk} names member {editor.pk}, but job {job.pk} was submitted by {owner.pk}"])


def test_a_personal_job_names_its_owner_as_the_member(user: User, auth_client: APIClient):
    credit_grant(user=user, amount=10, type="bonus", description="mine")
    project = auth_client.post("/api/v1/projects", {"name": "p"}, format="json").json()
    job_id = auth_client.post("/api/v1/jobs/tts", {"project_id": project["id"], "text": "Hi"},
                              format="json").json()["job_id"]
    assert Job.objects.get(pk=job_id).member_id == user.pk
    assert CreditTransaction.objects.get(job_id=job_id).member_id == user.pk


def test_what_a_member_makes_in_a_team_workspace_names_them(
    owner: User, team: Workspace, make_user: Callable[..., User], monkeypatch: pytest.MonkeyPatch
):
    from media.models import MediaFile
    from webhooks.models import Webhook

    # A public address for the webhook's host, with no lookup made (the SSRF guard's resolver).
    monkeypatch.setattr("webhooks.ssrf.lookup", lambda host, port: [
        (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.34", port))])
    editor = make_user()
    Membership.objects.create(workspace=team, user=editor, role=Role.EDITOR)
    project = acting_in(editor, team).post("/api/v1/projects", {"name": "p"}, format="json").json()
    upload = acting_in(editor, team).post(f"/api/v1/projects/{project['id']}/media/upload-url", {
        "filename": "a.wav", "content_type": "audio/wav", "size_bytes": 1000}, format="json")
    assert upload.status_code == 201, upload.content
    hook = acting_in(owner, team).post("/api/v1/webhooks", {"url": "https://hooks.example.com/x"}, format="json")
    assert hook.status_code == 201, hook.content

    assert Project.objects.get(pk=project["id"]).member_id == editor.pk
    assert MediaFile.objects.get(pk=upload.json()["media_id"]).member_id == editor.pk
    assert Webhook.objects.get(pk=hook.json()["id"]).member_id == owner.pk
    # None of it is shown: a single user's answers are what they were.
    assert "member_id" not in project and "member_id" not in hook.json()


def test_a_transcription_started_on_upload_names_the_member_who_uploaded(
    owner: User, team: Workspace, make_user: Callable[..., User]
):
    from jobs.intake.transcribe import job_auto_transcribe
    from tests.factories import MediaFileFactory, ProjectFactory

    editor = make_user()
    Membership.objects.create(workspace=team, user=editor, role=Role.EDITOR)
    account = User.objects.get(pk=team.pk)
    credit_grant(user=account, amount=100, type="bonus", description="team pool")
    project = ProjectFactory.create(user=account, auto_transcribe=True)
    media = MediaFileFactory.create(project=project, user=account, type="audio", mime_type="audio/wav",
                                    status="ready", duration_ms=10_000, member_id=editor.pk)

    job = job_auto_transcribe(media_id=media.pk)

    assert job is not None and job.member_id == editor.pk
    assert CreditTransaction.objects.get(job_id=job.pk).member_id == editor.pk

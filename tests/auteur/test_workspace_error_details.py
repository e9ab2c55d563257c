"""Every 4xx of the workspace endpoints (the workspaces, their members, invitations, budgets and caps,
accepting an invitation, and the comments on a timeline) carries the `details` docs/workspaces.md
documents for its code: a request is sent that gets each code each operation's schema lists, and
each answer is held to the documentation's table."""

from __future__ import annotations

import importlib.util
import re
import sys
import uuid
from collections import defaultdict
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from auteur.core.errors import http_status
from auteur.users.key_services import api_key_create
from auteur.users.models import Invitation, Membership, User
from auteur.users.roles import ACTIONS, SCOPES, Role
from credits.services.budgets import member_budget_set
from projects.models import Comment, Project
from tests.contract.support import operations, served_schema
from tests.factories import ProjectFactory, acting_in, key_client, team_workspace

pytestmark = pytest.mark.django_db

DOCS = Path(__file__).resolve().parents[2] / "docs" / "workspaces.md"
# Answered by the framework the same way on every operation, with nothing of the workspace's in them.
GENERIC = {"not_authenticated", "invalid_token", "rate_limited", "payload_too_large", "unsupported_media_type",
           "not_found"}


def documented() -> dict[str, tuple[int, set[str]]]:
    """code -> (status, the keys of `details`) from the documentation's table."""
    text = DOCS.read_text()
    table = text.split("<!-- details of the workspace endpoints' errors -->", 1)[1].split("\n\n", 1)[0]
    found = {}
    for row in table.strip().splitlines()[2:]:
        code, status, details = (cell.strip() for cell in row.strip("|").split("|")[:3])
        found[code.strip("`")] = (int(status), set(re.findall(r"`([a-z_]+)`", details)))
    return found


def workspace_operations() -> list[tuple[str, str, set[str]]]:
    """(METHOD, path, the codes its schema lists, but the generic ones) of each operation checked."""
    checked = []
    for method, path, operation in operations(served_schema()):
        if not (path.startswith(("/api/v1/workspaces", "/api/v1/invitations/")) or "/comments" in path):
            continue
        if "/keys" in path:
            continue  # the API keys' endpoints are tested with the keys (tests/auteur/test_api_keys.py)
        codes = set()
        for status, response in operation["responses"].items():
            if status.startswith("4"):
                codes |= set(re.findall(r"`([a-z_]+)`", response["description"])) - GENERIC
        checked.append((method, path, codes))
    return checked


class Scene:
    def __init__(self, make_user: Callable[..., User], client_for: Callable[[User], APIClient]) -> None:
        self.client_for = client_for
        self.people = {role: make_user() for role in ("owner", "admin", "editor", "viewer", "billing", "stranger")}
        self.team = team_workspace(self.people["owner"])
        for role in ("admin", "editor", "viewer", "billing"):
            Membership.objects.create(workspace=self.team, user=self.people[role], role=role)
        self.project = ProjectFactory.create(user=User.objects.get(pk=self.team.pk))
        self.comment = Comment.objects.create(project=self.project, user_id=self.team.pk,
                                              member_id=self.people["viewer"].pk, text="t", start_ms=0, end_ms=1,
                                              edl_version=1)
        owner_seat = Membership.objects.get(workspace=self.team, user=self.people["owner"])
        _, text = api_key_create(membership=owner_seat, name="ci", scopes=list(SCOPES))
        self.key = key_client(text)
        member_budget_set(membership=owner_seat, user_id=self.people["admin"].pk, monthly_limit=10)
        self.seen: dict[tuple[str, str], set[str]] = defaultdict(set)
        self.wrong: list[str] = []
        self.docs = documented()

    def who(self, name: str) -> APIClient:
        return self.key if name == "key" else self.client_for(self.people[name])

    def check(self, client: APIClient | str, method: str, template: str, code: str, body: Any = None,
              raw: str | None = None, **values: Any) -> None:
        path = "/api/v1" + template.format(**{"workspace_id": self.team.pk, "project_id": self.project.pk,
                                  "comment_id": self.comment.pk, **values})
        client = self.who(client) if isinstance(client, str) else client
        call = getattr(client, method.lower())
        if raw is not None:
            answer = call(path, raw, content_type="application/json")
        elif method in ("GET", "DELETE"):
            answer = call(path)
        else:
            answer = call(path, body, format="json")
        where = f"{method} {template} ({code})"
        error = answer.json().get("error", {}) if answer.status_code >= 400 and answer.get(
            "Content-Type") == "application/json" else {}
        if error.get("code") != code:
            self.wrong.append(f"{where}: answered {answer.status_code} {answer.content[:200]!r}")
            return
        status, keys = self.docs[code]
        if client is self.key and code == "permission_denied":
            keys = keys | {"scope"}
        if not answer.status_code == status == http_status(code):
            self.wrong.append(f"{where}: status {answer.status_code}, documented {status}")
        if set(error["details"]) != keys:
            self.wrong.append(f"{where}: details {sorted(error['details'])}, documented {sorted(keys)}")
        self.seen[(method, "/api/v1" + template.split("?")[0])].add(code)


def test_every_4xx_of_the_workspace_endpoints_carries_its_documented_details(
    make_user: Callable[..., User], client_for: Callable[[User], APIClient], settings: Any
):
    s = Scene(make_user, client_for)
    team, p = s.team, s.people
    nobody, bogus = str(uuid.uuid4()), "{not json"
    personal: dict[str, Any] = {"workspace_id": p["owner"].pk}
    other: dict[str, Any] = {"workspace_id": nobody}

    ws, one = "/workspaces", "/workspaces/{workspace_id}"
    s.check("key", "GET", ws, "permission_denied")
    s.check("owner", "GET", ws + "?page=0", "validation_error")
    s.check("owner", "POST", ws, "validation_error", {})
    s.check("owner", "POST", ws, "malformed_request", raw=bogus)
    s.check("key", "POST", ws, "permission_denied", {"name": "x"})
    settings.AUTEUR_QUOTA_WORKSPACES = 1
    s.check("owner", "POST", ws, "quota_exceeded", {"name": "Second"})
    s.check("key", "GET", one, "permission_denied")
    s.check("stranger", "GET", one, "workspace_not_found")
    s.check("owner", "PATCH", one, "validation_error", {"name": ""})
    s.check("owner", "PATCH", one, "malformed_request", raw=bogus)
    s.check("viewer", "PATCH", one, "permission_denied", {"name": "Mine"})
    s.check("stranger", "PATCH", one, "workspace_not_found", {"name": "Mine"})
    policy = one + "/likeness-policy"
    s.check("owner", "PUT", policy, "malformed_request", raw=bogus)
    s.check("owner", "PUT", policy, "validation_error", {"likeness_policy": "trust me"})
    s.check("admin", "PUT", policy, "permission_denied", {"likeness_policy": "attested"})
    s.check("stranger", "PUT", policy, "workspace_not_found", {"likeness_policy": "attested"})
    s.check("owner", "PUT", policy, "personal_workspace", {"likeness_policy": "attested"}, **personal)
    content = one + "/content-policy"
    s.check("owner", "PUT", content, "malformed_request", raw=bogus)
    s.check("owner", "PUT", content, "validation_error", {"content_policy": "off"})
    s.check("admin", "PUT", content, "permission_denied", {"content_policy": "strict"})
    s.check("stranger", "PUT", content, "workspace_not_found", {"content_policy": "strict"})

    budgets, budget = one + "/budgets", one + "/budgets/{user_id}"
    s.check("owner", "GET", budgets + "?page=0", "validation_error")
    s.check("key", "GET", budgets, "permission_denied")
    s.check("stranger", "GET", budgets, "workspace_not_found")
    s.check("owner", "GET", budgets, "personal_workspace", **personal)
    editor: dict[str, Any] = {"user_id": p["editor"].pk}
    s.check("owner", "PUT", budget, "malformed_request", raw=bogus, **editor)
    s.check("owner", "PUT", budget, "validation_error", {"monthly_limit": -1}, **editor)
    s.check("editor", "PUT", budget, "permission_denied", {"monthly_limit": 1}, **editor)
    s.check("admin", "PUT", budget, "permission_denied", {"monthly_limit": 1}, user_id=p["owner"].pk)
    s.check("admin", "PUT", budget, "own_budget", {"monthly_limit": None}, user_id=p["admin"].pk)
    s.check("admin", "PUT", budget, "budget_above_own", {"monthly_limit": 45}, **editor)
    s.check("owner", "PUT", budget, "workspace_not_found", {"monthly_limit": 1}, **other, **editor)
    s.check("owner", "PUT", budget, "member_not_found", {"monthly_limit": 1}, user_id=p["stranger"].pk)
    s.check("owner", "PUT", budget, "personal_workspace", {"monthly_limit": 1}, **personal, user_id=p["owner"].pk)

    caps, cap = one + "/caps", one + "/caps/workspace"
    s.check("owner", "GET", caps + "?page=0", "validation_error")
    s.check("viewer", "GET", caps, "permission_denied")
    s.check("stranger", "GET", caps, "workspace_not_found")
    s.check("owner", "PUT", cap, "malformed_request", raw=bogus)
    s.check("owner", "PUT", cap, "validation_error", {"monthly_limit": "ten"})
    s.check("admin", "PUT", cap, "permission_denied", {"monthly_limit": None})
    s.check("stranger", "PUT", cap, "workspace_not_found", {"monthly_limit": None})

    invitations, invitation = one + "/invitations", one + "/invitations/{invitation_id}"
    s.check("owner", "GET", invitations + "?page=0", "validation_error")
    s.check("editor", "GET", invitations, "permission_denied")
    s.check("stranger", "GET", invitations, "workspace_not_found")
    s.check("owner", "POST", invitations, "malformed_request", raw=bogus)
    s.check("owner", "POST", invitations, "validation_error", {"role": "emperor"})
    s.check("admin", "POST", invitations, "permission_denied", {"role": "billing"})
    s.check("owner", "POST", invitations, "personal_workspace", {"role": "editor"}, **personal)
    s.check("stranger", "POST", invitations, "workspace_not_found", {"role": "editor"})
    offered = s.who("owner").post(f"/api/v1/workspaces/{team.pk}/invitations", {"role": "billing"}, format="json")
    token, offered_id = offered.json()["token"], offered.json()["id"]
    s.check("admin", "DELETE", invitation, "permission_denied", invitation_id=offered_id)
    s.check("stranger", "DELETE", invitation, "workspace_not_found", invitation_id=offered_id)
    s.check("owner", "DELETE", invitation, "invitation_not_found", invitation_id=nobody)

    members, member = one + "/members", one + "/members/{user_id}"
    s.check("owner", "GET", members + "?page=0", "validation_error")
    s.check("key", "GET", members, "permission_denied")
    s.check("stranger", "GET", members, "workspace_not_found")
    s.check("owner", "PATCH", member, "malformed_request", raw=bogus, **editor)
    s.check("owner", "PATCH", member, "validation_error", {"role": "emperor"}, **editor)
    s.check("admin", "PATCH", member, "permission_denied", {"role": "billing"}, **editor)
    s.check("stranger", "PATCH", member, "workspace_not_found", {"role": "viewer"}, **editor)
    s.check("owner", "PATCH", member, "member_not_found", {"role": "viewer"}, user_id=nobody)
    s.check("owner", "PATCH", member, "last_owner", {"role": "admin"}, user_id=p["owner"].pk)
    s.check("editor", "DELETE", member, "permission_denied", user_id=p["viewer"].pk)
    s.check("stranger", "DELETE", member, "workspace_not_found", **editor)
    s.check("owner", "DELETE", member, "member_not_found", user_id=nobody)
    s.check("owner", "DELETE", member, "last_owner", user_id=p["owner"].pk)

    accept = "/invitations/accept"
    s.check("stranger", "POST", accept, "malformed_request", raw=bogus)
    s.check("stranger", "POST", accept, "validation_error", {})
    s.check("key", "POST", accept, "permission_denied", {"token": token})
    s.check("stranger", "POST", accept, "invitation_not_found", {"token": token + "x"})
    s.check("editor", "POST", accept, "already_member", {"token": token})
    settings.AUTEUR_QUOTA_MEMBERS = 5
    s.check("stranger", "POST", accept, "quota_exceeded", {"token": token})
    settings.AUTEUR_QUOTA_MEMBERS = 100
    assert s.who("stranger").post("/api/v1" + accept, {"token": token}, format="json").status_code == 200
    s.check(client_for(make_user()), "POST", accept, "invitation_used", {"token": token})
    late = s.who("owner").post(f"/api/v1/workspaces/{team.pk}/invitations", {"role": "viewer"}, format="json")
    Invitation.objects.filter(pk=late.json()["id"]).update(expires_at=timezone.now() - timedelta(seconds=1))
    s.check(client_for(make_user()), "POST", accept, "invitation_expired", {"token": late.json()["token"]})
    assert s.who("owner").post(f"/api/v1/workspaces/{team.pk}/invitations", {"role": "viewer"},
                               format="json").status_code == 201
    settings.AUTEUR_QUOTA_INVITATIONS = 1
    s.check("owner", "POST", invitations, "quota_exceeded", {"role": "viewer"})

    in_team = {name: acting_in(p[name], team) for name in ("owner", "editor", "viewer", "billing")}
    elsewhere = acting_in(p["editor"], nobody)
    comments, comment = "/projects/{project_id}/comments", "/projects/{project_id}/comments/{comment_id}"
    thread = {"text": "x", "start_ms": 0, "end_ms": 1, "edl_version": 1}
    lost: dict[str, Any] = {"project_id": nobody}
    s.check(in_team["editor"], "GET", comments + "?resolved=maybe", "validation_error")
    s.check(in_team["billing"], "GET", comments, "permission_denied")
    s.check(in_team["editor"], "GET", comments, "project_not_found", **lost)
    s.check(elsewhere, "GET", comments, "workspace_not_found")
    s.check(in_team["editor"], "POST", comments, "malformed_request", raw=bogus)
    s.check(in_team["editor"], "POST", comments, "validation_error", {"text": "x", "start_ms": 0})
    s.check(in_team["billing"], "POST", comments, "permission_denied", thread)
    s.check(in_team["editor"], "POST", comments, "project_not_found", thread, **lost)
    s.check(elsewhere, "POST", comments, "workspace_not_found", thread)
    s.check(in_team["editor"], "POST", comments, "comment_not_found", {"text": "x", "parent_id": nobody})
    s.check(in_team["editor"], "PATCH", comment, "malformed_request", raw=bogus)
    s.check(in_team["editor"], "PATCH", comment, "validation_error", {"resolved": "perhaps"})
    s.check(in_team["editor"], "PATCH", comment, "permission_denied", {"text": "Mine now"})
    s.check(in_team["billing"], "PATCH", comment, "permission_denied", {"resolved": True})
    s.check(in_team["editor"], "PATCH", comment, "project_not_found", {"resolved": True}, **lost)
    s.check(elsewhere, "PATCH", comment, "workspace_not_found", {"resolved": True})
    s.check(in_team["editor"], "PATCH", comment, "comment_not_found", {"resolved": True}, comment_id=nobody)
    s.check(in_team["editor"], "DELETE", comment, "permission_denied")
    s.check(in_team["editor"], "DELETE", comment, "project_not_found", **lost)
    s.check(elsewhere, "DELETE", comment, "workspace_not_found")
    s.check(in_team["editor"], "DELETE", comment, "comment_not_found", comment_id=nobody)
    settings.AUTEUR_QUOTA_COMMENTS = 1
    s.check(in_team["editor"], "POST", comments, "quota_exceeded", thread)

    assert s.wrong == []
    untested = {f"{method} {path}": sorted(codes - s.seen[(method, path)])
                for method, path, codes in workspace_operations() if codes - s.seen[(method, path)]}
    assert untested == {}
    assert Project.objects.filter(pk=s.project.pk).exists() and Comment.objects.count() == 1
    assert Membership.objects.get(workspace=team, user=p["editor"]).role == Role.EDITOR


def test_a_refusal_to_delete_or_change_anothers_comment_names_the_action_and_the_role(
    make_user: Callable[..., User], client_for: Callable[[User], APIClient]
):
    s = Scene(make_user, client_for)
    url = f"/api/v1/projects/{s.project.pk}/comments/{s.comment.pk}"  # the viewer's
    refused = acting_in(s.people["editor"], s.team).delete(url)
    assert refused.json()["error"]["details"] == {"action": "comments.moderate", "role": "editor"}
    changed = acting_in(s.people["owner"], s.team).patch(url, {"text": "Mine"}, format="json")
    assert changed.json()["error"]["details"] == {"action": "comments.author", "role": "owner"}
    owner_seat = Membership.objects.get(workspace=s.team, user=s.people["owner"])
    _, text = api_key_create(membership=owner_seat, name="writer", scopes=["projects:write"])
    by_key = key_client(text).delete(url)
    assert by_key.json()["error"]["details"] == {"action": "comments.moderate", "role": "key", "scope": None}
    assert Comment.objects.filter(pk=s.comment.pk, text="t").exists()
    assert acting_in(s.people["admin"], s.team).delete(url).status_code == 204
    assert not Comment.objects.filter(pk=s.comment.pk).exists()


def test_a_key_is_refused_its_workspace_as_the_scope_table_says(
    make_user: Callable[..., User], client_for: Callable[[User], APIClient]
):
    """The workspaces endpoints are a person's: `workspace.view` names no scope, so the generated
    scope table gives keys only what every key may read, and a key's GET workspaces/{id} is a 403."""
    s = Scene(make_user, client_for)
    spec = importlib.util.spec_from_file_location("docs_hooks", DOCS.parent / "hooks.py")
    assert spec is not None and spec.loader is not None
    hooks = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = hooks  # its dataclasses look their module up
    try:
        spec.loader.exec_module(hooks)
    finally:
        del sys.modules[spec.name]
    every_key = hooks.key_scope_table().splitlines()[-1]
    assert every_key == "| (any key) | `job_types.view` |"
    assert ACTIONS["workspace.view"].scope is None

    refused = s.key.get(f"/api/v1/workspaces/{s.team.pk}")
    assert (refused.status_code, refused.json()["error"]["details"]) == (
        403, {"action": None, "role": "key", "scope": None})
    assert s.key.get("/api/v1/jobs/types").status_code == 200
    assert client_for(s.people["billing"]).get(f"/api/v1/workspaces/{s.team.pk}").json()["role"] == "billing"

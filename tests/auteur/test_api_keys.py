"""API keys: made by a workspace's owners and admins, shown once, scoped, refused the moment they
are revoked or expire, rate-limited on their own, and never written to a log."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from auteur.core.logging import scrub
from auteur.users.key_services import api_key_create
from auteur.users.keys import KEY_LENGTH, key_generate, key_hash, well_formed
from auteur.users.models import ApiKey, Membership, User, Workspace
from auteur.users.roles import ACTIONS, SCOPES, Role, scope_allows, scopes_allowed_to
from credits.models import CreditTransaction
from credits.services.ledger import credit_grant
from jobs.models import Job
from projects.models import Project
from tests.auteur.test_workspace_requests import OPERATIONS, api_routes, send
from tests.factories import acting_in, key_client, team_workspace

pytestmark = pytest.mark.django_db


@pytest.fixture
def owner(make_user: Callable[..., User]) -> User:
    return make_user()


@pytest.fixture
def team(owner: User) -> Workspace:
    return team_workspace(owner)


def make_key(owner: User, workspace: Workspace, scopes: list[str], **extra: Any) -> tuple[ApiKey, str]:
    return api_key_create(membership=Membership.objects.get(workspace=workspace, user=owner), name="ci",
                          scopes=scopes, **extra)


def test_a_keys_text_is_recognisable_and_checksummed():
    text = key_generate()
    assert text.startswith("auteur_sk_") and len(text) == KEY_LENGTH and well_formed(text)
    assert key_generate() != text
    typo = text[:20] + ("A" if text[20] != "A" else "B") + text[21:]
    assert not well_formed(typo)
    assert not well_formed(text[:-1]) and not well_formed(text + "x") and not well_formed("auteur_sk_")
    # A log line that quotes one keeps only what the list of keys shows of it.
    assert scrub(f"sent {text} twice") == f"sent {text[:16]}[redacted] twice"


def test_an_owner_makes_a_key_that_is_shown_once_and_kept_as_a_hash(owner: User, team: Workspace,
                                                                        client_for: Callable[[User], APIClient]):
    made = client_for(owner).post(f"/api/v1/workspaces/{team.pk}/keys",
                                  {"name": "render farm", "scopes": ["jobs:write", "media:read"]}, format="json")
    assert made.status_code == 201, made.content
    body = made.json()
    text = body["key"]
    assert well_formed(text) and body["prefix"] == text[:16] and body["state"] == "active"
    assert body["scopes"] == ["jobs:write", "media:read"] and body["created_by"] == str(owner.pk)
    row = ApiKey.objects.get(pk=body["id"])
    assert row.secret_hash == key_hash(text) and text not in str(row.__dict__)
    listed = client_for(owner).get(f"/api/v1/workspaces/{team.pk}/keys").json()
    assert [k["id"] for k in listed["keys"]] == [body["id"]] and "key" not in listed["keys"][0]
    shown = client_for(owner).get(f"/api/v1/workspaces/{team.pk}/keys/{body['id']}").json()
    assert "key" not in shown and text not in str(shown)


@pytest.mark.parametrize("role, code", [(Role.EDITOR, 403), (Role.VIEWER, 403), (Role.BILLING, 403)])
def test_only_owners_and_admins_make_keys(role: Role, code: int, team: Workspace, make_user: Callable[..., User],
                                          client_for: Callable[[User], APIClient]):
    member = make_user()
    Membership.objects.create(workspace=team, user=member, role=role)
    answer = client_for(member).post(f"/api/v1/workspaces/{team.pk}/keys", {"name": "x", "scopes": ["jobs:read"]},
                                     format="json")
    assert (answer.status_code, answer.json()["error"]["code"]) == (code, "permission_denied")
    assert client_for(member).get(f"/api/v1/workspaces/{team.pk}/keys").status_code == 403
    assert not ApiKey.objects.exists()


def test_a_key_gets_no_scope_its_makers_role_may_not_use(team: Workspace, make_user: Callable[..., User],
                                                          client_for: Callable[[User], APIClient]):
    admin = make_user()
    Membership.objects.create(workspace=team, user=admin, role=Role.ADMIN)
    assert "credits:write" not in scopes_allowed_to(Role.ADMIN)  # an admin buys nothing
    refused = client_for(admin).post(f"/api/v1/workspaces/{team.pk}/keys",
                                     {"name": "x", "scopes": ["jobs:write", "credits:write"]}, format="json")
    assert refused.status_code == 403
    assert refused.json()["error"]["details"]["scopes"] == ["credits:write"]
    assert scopes_allowed_to(Role.OWNER) == list(SCOPES)


@pytest.mark.parametrize("body, code", [
    ({"name": "x", "scopes": []}, "invalid_scopes"),
    ({"name": "x", "scopes": ["jobs:admin"]}, "invalid_scopes"),
    ({"name": "x", "scopes": ["jobs:read"], "expires_at": "2001-01-01T00:00:00Z"}, "invalid_expiry"),
    ({"name": "x", "scopes": ["jobs:read"], "rate_limit_per_minute": 0}, "validation_error"),
    ({"name": "", "scopes": ["jobs:read"]}, "validation_error"),
    ({"name": "x", "scopes": ["jobs:read"], "role": "owner"}, "validation_error"),
])
def test_a_bad_key_request_is_400_and_makes_nothing(body: dict[str, Any], code: str, owner: User, team: Workspace,
                                                    client_for: Callable[[User], APIClient]):
    answer = client_for(owner).post(f"/api/v1/workspaces/{team.pk}/keys", body, format="json")
    assert (answer.status_code, answer.json()["error"]["code"]) == (400, code), answer.content
    assert not ApiKey.objects.exists()


def test_keys_in_use_are_limited_per_workspace(owner: User, team: Workspace, settings: Any):
    settings.AUTEUR_MAX_KEYS_PER_WORKSPACE = 2
    make_key(owner, team, ["jobs:read"])
    key, _ = make_key(owner, team, ["jobs:read"])
    with pytest.raises(Exception) as refused:
        make_key(owner, team, ["jobs:read"])
    assert getattr(refused.value, "code", None) == "key_limit_reached"
    key.revoked_at = timezone.now()
    key.save()
    make_key(owner, team, ["jobs:read"])  # a revoked key is not in use


@pytest.mark.parametrize("scope", SCOPES)
def test_each_scope_against_every_operation_of_the_api(scope: str, owner: User, team: Workspace, settings: Any):
    settings.AUTEUR_RATE_LIMIT_KEY_PER_MINUTE = 10_000
    _, text = make_key(owner, team, [scope])
    client = key_client(text)
    wrong = {}
    for path, method, action in OPERATIONS:
        answer = send(client, method, path)
        denied = answer.status_code == 403 and answer.json()["error"]["code"] == "permission_denied"
        if answer.status_code == 401 or denied != (action is None or not scope_allows(frozenset({scope}), action)):
            wrong[f"{method} {path}"] = (action, answer.status_code, answer.content[:200])
        elif denied and action is not None:
            assert answer.json()["error"]["details"] == {"action": action, "role": "key",
                                                         "scope": ACTIONS[action].scope}
    assert wrong == {}


def test_a_key_may_do_nothing_that_is_about_a_person(owner: User, team: Workspace):
    _, text = make_key(owner, team, list(SCOPES))
    client = key_client(text)
    for route, cls in api_routes():
        if getattr(cls, "acts_in_workspace", True):
            continue
        path = "/" + route.replace("<str:workspace_id>", str(team.pk))
        for method in ("GET", "POST", "PUT", "PATCH", "DELETE"):
            if hasattr(cls, method.lower()):
                answer = send(client, method, path.replace("<str:", "").replace(">", ""))
                assert answer.status_code == 403, (method, path, answer.content)
                assert answer.json()["error"]["details"]["scope"] is None


def test_a_key_acts_in_its_workspace_as_a_service_member(owner: User, team: Workspace):
    key, text = make_key(owner, team, ["jobs:write", "projects:write"])
    account = User.objects.get(pk=team.pk)
    credit_grant(user=account, amount=100, type="bonus", description="pool")
    client = key_client(text)
    project = client.post("/api/v1/projects", {"name": "From CI"}, format="json")
    assert project.status_code == 201, project.content
    made = Project.objects.get(pk=project.json()["id"])
    assert (made.user_id, made.member_id) == (team.pk, key.pk)

    submitted = client.post("/api/v1/jobs/tts", {"project_id": str(made.pk), "text": "Hello"}, format="json")
    assert submitted.status_code == 202, submitted.content
    job = Job.objects.get(pk=submitted.json()["job_id"])
    assert (job.user_id, job.member_id) == (team.pk, key.pk)
    assert CreditTransaction.objects.get(job_id=job.pk, type="usage").member_id == key.pk
    # Its header, if any, names its own workspace; any other is unknown to it.
    assert key_client(text, team.pk).get("/api/v1/jobs").status_code == 200
    other = key_client(text, owner.pk).get("/api/v1/jobs")
    assert (other.status_code, other.json()["error"]["code"]) == (404, "workspace_not_found")
    key.refresh_from_db()
    assert key.last_used_at is not None and key.last_used_ip == "127.0.0.1"


def test_a_personal_workspaces_key_acts_as_its_owner(owner: User):
    personal = Workspace.objects.get(pk=owner.pk)
    key, text = make_key(owner, personal, ["projects:write"])
    made = key_client(text).post("/api/v1/projects", {"name": "Mine"}, format="json")
    assert made.status_code == 201
    assert Project.objects.filter(pk=made.json()["id"], user=owner, member_id=key.pk).exists()


def test_a_revoked_or_expired_key_is_refused_at_once(owner: User, team: Workspace,
                                                      client_for: Callable[[User], APIClient]):
    key, text = make_key(owner, team, ["jobs:read"])
    client = key_client(text)
    assert client.get("/api/v1/jobs").status_code == 200

    revoked = client_for(owner).delete(f"/api/v1/workspaces/{team.pk}/keys/{key.pk}")
    assert revoked.status_code == 200 and revoked.json()["state"] == "revoked"
    refused = client.get("/api/v1/jobs")
    assert (refused.status_code, refused.json()["error"]["code"]) == (401, "invalid_token")
    assert client_for(owner).delete(f"/api/v1/workspaces/{team.pk}/keys/{key.pk}").status_code == 200

    soon, soon_text = make_key(owner, team, ["jobs:read"], expires_at=timezone.now() + timedelta(hours=1))
    assert key_client(soon_text).get("/api/v1/jobs").status_code == 200
    ApiKey.objects.filter(pk=soon.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert key_client(soon_text).get("/api/v1/jobs").status_code == 401
    assert client_for(owner).get(f"/api/v1/workspaces/{team.pk}/keys/{soon.pk}").json()["state"] == "expired"


def test_unknown_and_malformed_keys_are_401(owner: User, team: Workspace):
    _, text = make_key(owner, team, ["jobs:read"])
    for bad in (key_generate(), text[:-1], text + "0", "auteur_sk_" + "0" * 49, "auteur_sk_"):
        answer = key_client(bad).get("/api/v1/jobs")
        assert (answer.status_code, answer.json()["error"]["code"]) == (401, "invalid_token"), bad


def test_a_disabled_workspaces_keys_are_refused(owner: User, team: Workspace):
    _, text = make_key(owner, team, ["jobs:read"])
    User.objects.filter(pk=team.pk).update(is_active=False)
    assert key_client(text).get("/api/v1/jobs").status_code == 401


def test_another_workspaces_admin_cannot_see_or_revoke_a_key(owner: User, team: Workspace,
                                                             make_user: Callable[..., User],
                                                             client_for: Callable[[User], APIClient]):
    key, text = make_key(owner, team, ["jobs:read"])
    stranger = make_user()
    other = team_workspace(stranger)
    assert client_for(stranger).get(f"/api/v1/workspaces/{team.pk}/keys/{key.pk}").status_code == 404
    assert client_for(stranger).get(f"/api/v1/workspaces/{other.pk}/keys/{key.pk}").status_code == 404
    assert client_for(stranger).delete(f"/api/v1/workspaces/{other.pk}/keys/{key.pk}").status_code == 404
    assert key_client(text).get("/api/v1/jobs").status_code == 200


def test_a_key_has_a_rate_limit_of_its_own(owner: User, team: Workspace, client_for: Callable[[User], APIClient]):
    _, text = make_key(owner, team, ["jobs:read"], rate_limit_per_minute=3)
    client = key_client(text)
    assert [client.get("/api/v1/jobs").status_code for _ in range(4)] == [200, 200, 200, 429]
    assert acting_in(owner, team).get("/api/v1/jobs").status_code == 200  # the person's window is theirs
    _, other = make_key(owner, team, ["jobs:read"])
    assert key_client(other).get("/api/v1/jobs").status_code == 200


def test_no_key_reaches_a_log(owner: User, team: Workspace, caplog: Any, capfd: Any,
                              client_for: Callable[[User], APIClient]):
    caplog.set_level(logging.DEBUG)
    capfd.readouterr()
    _, text = make_key(owner, team, ["jobs:read"])
    revoked, revoked_text = make_key(owner, team, ["jobs:read"])
    client_for(owner).delete(f"/api/v1/workspaces/{team.pk}/keys/{revoked.pk}")
    used = [
        key_client(text).get("/api/v1/jobs"),
        key_client(text).get(f"/api/v1/jobs/{uuid.uuid4()}"),
        key_client(text).post("/api/v1/projects", {"name": "x"}, format="json"),  # 403: no such scope
        key_client(text, uuid.uuid4()).get("/api/v1/jobs"),
        key_client(revoked_text).get("/api/v1/jobs"),
        key_client(text[:-1]).get("/api/v1/jobs"),
        key_client(text + "x").get(f"/api/v1/jobs?key={text}"),
    ]
    assert [r.status_code for r in used] == [200, 404, 403, 404, 401, 401, 401]
    # What the log handlers wrote (the service's JSON lines), and every record's message and args.
    out, err = capfd.readouterr()
    logged = "\n".join([out, err, *(f"{r.getMessage()} {r.args}" for r in caplog.records)])
    assert "Unauthorized" in logged  # the run did log
    for secret in (text, revoked_text):
        assert secret[16:] not in logged
        assert all(secret[16:] not in r.content.decode() for r in used)


def test_staff_see_keys_without_their_secret_and_revoke_a_leaked_one(owner: User, team: Workspace,
                                                                       superuser_client: Any):
    key, text = make_key(owner, team, ["jobs:read"])
    for page in ("/admin/users/apikey/", f"/admin/users/apikey/{key.pk}/change/"):
        shown = superuser_client.get(page)
        assert shown.status_code == 200 and key.prefix in shown.content.decode()
        assert text[16:] not in shown.content.decode() and key.secret_hash not in shown.content.decode()
    answer = superuser_client.post("/admin/users/apikey/", {"action": "revoke", "_selected_action": [str(key.pk)]})
    assert answer.status_code == 302
    key.refresh_from_db()
    assert key.revoked_at is not None
    assert key_client(text).get("/api/v1/jobs").status_code == 401


def test_a_makers_demotion_or_removal_revokes_the_keys_it_no_longer_allows(
        team: Workspace, make_user: Callable[..., User], client_for: Callable[[User], APIClient], owner: User):
    admin = make_user()
    Membership.objects.create(workspace=team, user=admin, role=Role.ADMIN)
    seat = Membership.objects.get(workspace=team, user=admin)
    hooks, hooks_text = api_key_create(membership=seat, name="hooks", scopes=["webhooks:write"])
    jobs, jobs_text = api_key_create(membership=seat, name="jobs", scopes=["jobs:write"])
    api = client_for(owner)
    assert api.patch(f"/api/v1/workspaces/{team.pk}/members/{admin.pk}", {"role": "editor"},
                     format="json").status_code == 200
    assert key_client(hooks_text).get("/api/v1/webhooks").status_code == 401  # an editor manages no webhooks
    assert key_client(jobs_text).get("/api/v1/jobs").status_code == 200  # an editor runs jobs
    assert api.delete(f"/api/v1/workspaces/{team.pk}/members/{admin.pk}").status_code == 204
    assert key_client(jobs_text).get("/api/v1/jobs").status_code == 401
    assert set(ApiKey.objects.filter(pk__in=[hooks.pk, jobs.pk]).values_list("revoked_at", flat=True)) != {None}
    assert not ApiKey.objects.filter(pk__in=[hooks.pk, jobs.pk], revoked_at__isnull=True).exists()


def test_a_keys_rate_limit_is_never_above_the_services(owner: User, team: Workspace, settings: Any,
                                                       client_for: Callable[[User], APIClient]):
    settings.AUTEUR_RATE_LIMIT_KEY_PER_MINUTE = 300
    answer = client_for(owner).post(f"/api/v1/workspaces/{team.pk}/keys",
                                    {"name": "x", "scopes": ["jobs:read"], "rate_limit_per_minute": 301}, format="json")
    assert (answer.status_code, answer.json()["error"]["code"]) == (400, "invalid_rate_limit")


def test_signed_media_urls_in_a_timeline_export_need_media_read(owner: User, team: Workspace):
    _, text = make_key(owner, team, ["projects:write"])
    project = key_client(text).post("/api/v1/projects", {"name": "p"}, format="json").json()
    signed = key_client(text).get(f"/api/v1/projects/{project['id']}/timeline/export?format=otio&media_urls=signed")
    assert (signed.status_code, signed.json()["error"]["details"]["scope"]) == (403, "media:read")
    assert key_client(text).get(f"/api/v1/projects/{project['id']}/timeline/export?format=otio").status_code != 403


def test_the_workspace_header_names_the_keys_workspace_in_any_case(owner: User, team: Workspace):
    _, text = make_key(owner, team, ["jobs:read"])
    assert key_client(text, str(team.pk).upper()).get("/api/v1/jobs").status_code == 200

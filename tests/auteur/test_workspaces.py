"""Workspaces: every account has its own, teams make more, and only members learn that one exists."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.test import Client
from rest_framework.test import APIClient

from auteur.users.models import Membership, User, Workspace
from auteur.users.roles import ACTIONS, Role, allowed
from auteur.users.services import user_get_or_create_from_claims
from tests.factories import team_workspace

pytestmark = pytest.mark.django_db


def seat(user: User, workspace: Workspace, role: Role) -> Membership:
    return Membership.objects.create(workspace=workspace, user=user, role=role)


@pytest.fixture
def team(make_user: Callable[..., User]) -> Workspace:
    owner = make_user()
    return team_workspace(owner)


def test_every_account_is_the_owner_of_its_personal_workspace(user: User):
    (membership,) = Membership.objects.filter(user=user)
    assert membership.role == Role.OWNER
    assert membership.workspace.pk == user.pk and membership.workspace.personal
    assert membership.workspace.created_by == user


def test_the_first_token_of_a_subject_makes_its_account_and_personal_workspace_as_the_api_role(
    make_token: Callable[..., str], api_client: APIClient
):
    sub = str(uuid.uuid4())
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {make_token(sub=sub)}")

    answer = api_client.get("/api/v1/workspaces")

    assert answer.status_code == 200, answer.content
    body = answer.json()
    assert body["count"] == 1
    (personal,) = body["workspaces"]
    assert personal["id"] == sub and personal["personal"] is True and personal["role"] == "owner"
    assert personal["name"] == "Personal"
    assert Membership.objects.filter(user_id=sub).count() == 1


@pytest.mark.django_db(transaction=True)
def test_a_subject_whose_first_requests_race_gets_one_account_and_one_workspace():
    claims = {"sub": str(uuid.uuid4()), "email": "race@example.com"}
    start = threading.Barrier(4)

    def first_request() -> uuid.UUID:
        start.wait()
        try:
            return user_get_or_create_from_claims(claims=claims).pk
        finally:
            connection.close()

    with ThreadPoolExecutor(4) as pool:
        accounts = set(pool.map(lambda _: first_request(), range(4)))

    assert accounts == {uuid.UUID(claims["sub"])}
    assert Workspace.objects.filter(pk=claims["sub"]).count() == 1
    assert Membership.objects.filter(user_id=claims["sub"]).count() == 1


def test_a_team_workspace_is_made_with_its_creator_as_owner_and_listed_after_the_personal_one(
    user: User, auth_client: APIClient
):
    made = auth_client.post("/api/v1/workspaces", {"name": "Studio"}, format="json")

    assert made.status_code == 201, made.content
    team = made.json()
    assert team["name"] == "Studio" and team["role"] == "owner" and team["personal"] is False
    assert Workspace.objects.get(pk=team["id"]).created_by == user
    listed = auth_client.get("/api/v1/workspaces").json()
    assert [w["id"] for w in listed["workspaces"]] == [str(user.pk), team["id"]]
    assert auth_client.get(f"/api/v1/workspaces/{team['id']}").json() == team


@pytest.mark.parametrize(("body", "field"), [
    ({}, "name"), ({"name": ""}, "name"), ({"name": "x" * 101}, "name"), ({"name": "A", "owner": "me"}, "owner"),
])
def test_a_workspace_needs_a_name_of_at_most_100_characters_and_nothing_else(
    user: User, auth_client: APIClient, body: dict[str, str], field: str
):
    answer = auth_client.post("/api/v1/workspaces", body, format="json")
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "validation_error"
    assert field in answer.json()["error"]["details"]["fields"]
    assert Workspace.objects.filter(created_by=user).count() == 1  # the personal one only


def test_an_account_creates_at_most_its_quota_of_team_workspaces(user: User, auth_client: APIClient, settings):
    settings.AUTEUR_QUOTA_WORKSPACES = 1
    assert auth_client.post("/api/v1/workspaces", {"name": "One"}, format="json").status_code == 201

    refused = auth_client.post("/api/v1/workspaces", {"name": "Two"}, format="json")

    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "quota_exceeded"
    assert refused.json()["error"]["details"]["quota"] == "workspaces"
    assert not Workspace.objects.filter(name="Two").exists()


@pytest.mark.parametrize("method", ["get", "patch"])
def test_a_workspace_one_is_not_a_member_of_is_not_found_whatever_is_asked(
    team: Workspace, auth_client: APIClient, method: str
):
    for ref in (str(team.pk), str(uuid.uuid4()), "not-a-uuid"):
        answer = getattr(auth_client, method)(f"/api/v1/workspaces/{ref}", {"name": "Mine now"}, format="json")
        assert answer.status_code == 404, (ref, answer.content)
        assert answer.json()["error"]["code"] == "workspace_not_found"
    team.refresh_from_db()
    assert team.name == "Studio"


def test_each_action_is_allowed_to_exactly_the_roles_of_its_table():
    assert ACTIONS["workspace.view"].roles == frozenset(Role)
    assert {r for r in Role if allowed(r, "workspace.rename")} == {Role.OWNER, Role.ADMIN}


@pytest.mark.parametrize("role", list(Role))
def test_every_role_against_every_workspace_operation(
    role: Role, team: Workspace, make_user: Callable[..., User], client_for: Callable[[User], APIClient]
):
    member = make_user()
    seat(member, team, role)
    client = client_for(member)

    seen = client.get(f"/api/v1/workspaces/{team.pk}")
    assert (seen.status_code == 200) == allowed(role, "workspace.view")
    assert seen.json()["role"] == role.value

    renamed = client.patch(f"/api/v1/workspaces/{team.pk}", {"name": f"By {role}"}, format="json")
    team.refresh_from_db()
    if allowed(role, "workspace.rename"):
        assert renamed.status_code == 200, renamed.content
        assert renamed.json()["name"] == team.name == f"By {role}"
    else:
        assert renamed.status_code == 403
        assert renamed.json()["error"]["code"] == "permission_denied"
        assert renamed.json()["error"]["details"] == {"action": "workspace.rename", "role": role.value}
        assert team.name == "Studio"


@pytest.mark.django_db(transaction=True)
def test_the_migration_gives_every_existing_account_its_personal_workspace():
    before, after = [("users", "0005_api_grants")], [("users", "0006_workspaces")]
    executor = MigrationExecutor(connection)
    try:
        executor.migrate(before)
        with connection.cursor() as cursor:
            cursor.execute("""
                INSERT INTO users (id, email, email_verified, name, avatar_url, password, is_active, is_staff,
                                   is_superuser, created_at, updated_at)
                SELECT gen_random_uuid(), 'u' || n || '@example.com', false, '', '', '!', true, false, false,
                       now() - n * interval '1 minute', now()
                FROM generate_series(1, 500) n
            """)
        executor = MigrationExecutor(connection)
        executor.migrate(after)
        with connection.cursor() as cursor:
            cursor.execute("""
                SELECT count(*), count(*) FILTER (
                    WHERE w.personal AND w.created_by_id = u.id AND w.created_at = u.created_at
                      AND m.role = 'owner' AND m.user_id = u.id)
                FROM users u JOIN workspaces w ON w.id = u.id JOIN workspace_members m ON m.workspace_id = w.id
            """)
            assert cursor.fetchone() == (500, 500)
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())


def test_an_account_staff_add_in_the_admin_gets_its_personal_workspace(superuser_client: Client):
    added = superuser_client.post("/admin/users/user/add/", {
        "email": "added@example.com", "password1": "a-Long-passw0rd-here", "password2": "a-Long-passw0rd-here",
        "_save": "Save"})

    assert added.status_code == 302, added.content
    user = User.objects.get(email="added@example.com")
    assert Membership.objects.get(user=user).workspace_id == user.pk


def test_staff_see_a_workspace_and_its_members_in_the_admin(team: Workspace, superuser_client: Client):
    listing = superuser_client.get("/admin/users/workspace/")
    page = superuser_client.get(f"/admin/users/workspace/{team.pk}/change/")

    assert listing.status_code == page.status_code == 200
    assert "Studio" in listing.text
    owner = Membership.objects.get(workspace=team).user
    assert str(owner) in page.text and "owner" in page.text


def test_a_team_workspace_has_an_account_of_its_id_that_nobody_signs_in_as(
    user: User, auth_client: APIClient, make_token: Callable[..., str], api_client: APIClient
):
    team = auth_client.post("/api/v1/workspaces", {"name": "Studio"}, format="json").json()
    account = User.objects.get(pk=team["id"])
    assert account.is_team and not account.has_usable_password() and account.email == ""
    assert not Workspace.objects.filter(pk=account.pk, personal=True).exists()  # it has no personal one

    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {make_token(sub=team['id'])}")
    for path in ("/api/v1/workspaces", "/api/v1/users/me", f"/api/v1/jobs/{uuid.uuid4()}"):
        answer = api_client.get(path)
        assert answer.status_code == 401, (path, answer.content)


@pytest.mark.django_db(transaction=True)
def test_the_migration_gives_team_workspaces_made_before_their_accounts():
    before, after = [("users", "0008_personal_workspace_by_the_database")], [("users", "0009_team_accounts")]
    executor = MigrationExecutor(connection)
    try:
        executor.migrate(before)
        with connection.cursor() as cursor:
            cursor.execute("INSERT INTO users (id, email, email_verified, name, avatar_url, password, is_active, "
                           "is_staff, is_superuser, created_at, updated_at) VALUES (gen_random_uuid(), 'a@x.org', "
                           "false, '', '', '!', true, false, false, now(), now()) RETURNING id")
            owner = cursor.fetchone()[0]
            cursor.execute("INSERT INTO workspaces (id, name, personal, created_by_id, created_at, updated_at) "
                           "VALUES (gen_random_uuid(), 'Old team', false, %s, now(), now()) RETURNING id", [owner])
            team = cursor.fetchone()[0]
        executor = MigrationExecutor(connection)
        executor.migrate(after)
        with connection.cursor() as cursor:
            cursor.execute("SELECT is_team, is_active, email FROM users WHERE id = %s", [team])
            assert cursor.fetchone() == (True, True, "")
            cursor.execute("SELECT count(*) FROM workspaces w LEFT JOIN users u ON u.id = w.id WHERE u.id IS NULL")
            assert cursor.fetchone() == (0,)
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())

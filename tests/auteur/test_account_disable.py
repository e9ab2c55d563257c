"""Disabling or deleting an account ends every credential it holds at once: its tokens, and the API
keys it made (in any workspace) or its personal workspace holds, revoked in the same transaction
as the disabling, so that neither can happen without the other. Staff do it in the admin."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client

from auteur.users import workspace_services
from auteur.users.key_services import api_key_create
from auteur.users.models import ApiKey, Membership, User, Workspace
from auteur.users.services import user_disable
from tests.auteur.test_admin_users import form_data
from tests.factories import key_client, team_workspace

pytestmark = pytest.mark.django_db


@pytest.fixture
def team(make_user: Callable[..., User]) -> Workspace:
    return team_workspace(make_user())


@pytest.fixture
def admin(team: Workspace, make_user: Callable[..., User]) -> User:
    admin = make_user()
    Membership.objects.create(workspace=team, user=admin, role="admin")
    return admin


def key_of(user: User, workspace: Workspace | User) -> tuple[ApiKey, str]:
    seat = Membership.objects.get(workspace_id=workspace.pk, user=user)
    return api_key_create(membership=seat, name="ci", scopes=["jobs:read"])


def owner_of(team: Workspace) -> User:
    return Membership.objects.get(workspace=team, role="owner").user


def works(text: str) -> int:
    return int(key_client(text).get("/api/v1/jobs").status_code)


def staff(superuser_client: Client) -> User:
    return User.objects.get(email="boss@example.com")


def admin_change(client: Client, user: User, **changed: Any) -> Any:
    """The admin's change form of `user` posted back as the browser would, with `changed` ("" unticks)."""
    url = f"/admin/users/user/{user.pk}/change/"
    data = {**form_data(client.get(url)), **changed}
    return client.post(url, {name: value for name, value in data.items() if value != ""})


def test_a_disabled_members_keys_are_revoked_with_the_disabling(team: Workspace, admin: User,
                                                                superuser_client: Client):
    in_team, in_team_text = key_of(admin, team)
    personal, personal_text = key_of(admin, admin)
    _, owners_text = key_of(owner_of(team), team)
    assert works(in_team_text) == works(personal_text) == 200

    answer = admin_change(superuser_client, admin, is_active="")
    assert answer.status_code == 302, answer.content.decode()[:2000]
    admin.refresh_from_db()
    assert not admin.is_active
    for key in (in_team, personal):
        key.refresh_from_db()
        assert key.revoked_at is not None and key.revoked_by_id == staff(superuser_client).pk
    assert works(in_team_text) == works(personal_text) == 401
    assert works(owners_text) == 200  # another member's key of the workspace goes on

    # Enabled again, the account gets no key back: its holder makes new ones.
    assert admin_change(superuser_client, admin, is_active="on").status_code == 302
    admin.refresh_from_db()
    assert admin.is_active
    assert works(in_team_text) == works(personal_text) == 401


def test_a_deleted_members_keys_are_revoked_before_the_account_goes(team: Workspace, admin: User,
                                                                   make_user: Callable[..., User],
                                                                   superuser_client: Client):
    in_team, in_team_text = key_of(admin, team)
    answer = superuser_client.post(f"/admin/users/user/{admin.pk}/delete/", {"post": "yes"})
    assert answer.status_code == 302
    assert not User.objects.filter(pk=admin.pk).exists()
    in_team.refresh_from_db()
    # The key stays (what it spent stays attributable), revoked; its maker is gone.
    assert in_team.revoked_at is not None and in_team.created_by_id is None
    assert works(in_team_text) == 401

    # The admin's bulk action deletes the same way.
    other = make_user()
    Membership.objects.create(workspace=team, user=other, role="admin")
    key, text = key_of(other, team)
    answer = superuser_client.post("/admin/users/user/", {"action": "delete_selected", "post": "yes",
                                                          "_selected_action": [str(other.pk)]})
    assert answer.status_code == 302
    assert not User.objects.filter(pk=other.pk).exists()
    assert ApiKey.objects.get(pk=key.pk).revoked_at is not None and works(text) == 401


def test_a_failure_after_the_revocation_leaves_the_account_and_its_keys_as_they_were(
        team: Workspace, admin: User, monkeypatch: pytest.MonkeyPatch):
    keys = [key_of(admin, team), key_of(admin, admin)]

    def broken(**kwargs: Any) -> None:
        raise RuntimeError("Redis went away while the account's streams were told")

    # The last step of the disabling (after the keys were revoked) fails: nothing of it stays.
    monkeypatch.setattr(workspace_services, "streams_end", broken)
    with pytest.raises(RuntimeError):
        user_disable(user=admin, staff_id=None)
    monkeypatch.undo()
    admin.refresh_from_db()
    assert admin.is_active
    assert not ApiKey.objects.filter(pk__in=[key.pk for key, _ in keys], revoked_at__isnull=False).exists()
    assert [works(text) for _, text in keys] == [200, 200]

    # Done whole, the revoked rows are there as soon as it returns (the same transaction).
    user_disable(user=admin, staff_id=None)
    assert ApiKey.objects.filter(pk__in=[key.pk for key, _ in keys], revoked_at__isnull=False).count() == 2
    assert not User.objects.get(pk=admin.pk).is_active
    assert [works(text) for _, text in keys] == [401, 401]


def test_a_suspended_team_workspace_keeps_its_keys_refused_until_it_is_enabled(team: Workspace,
                                                                                 superuser_client: Client):
    key, text = key_of(owner_of(team), team)
    account = User.objects.get(pk=team.pk)
    assert admin_change(superuser_client, account, is_active="").status_code == 302
    assert not User.objects.get(pk=account.pk).is_active
    assert works(text) == 401
    key.refresh_from_db()
    assert key.revoked_at is None
    assert admin_change(superuser_client, account, is_active="on").status_code == 302
    assert works(text) == 200


def test_the_migration_revokes_the_keys_left_by_accounts_ended_before(team: Workspace, admin: User,
                                                                      make_user: Callable[..., User]):
    from importlib import import_module

    from django.db import connection

    revoke = import_module("auteur.users.migrations.0012_revoke_keys_of_ended_accounts").REVOKE
    disabled_in_team, _ = key_of(admin, team)
    disabled_personal, _ = key_of(admin, admin)
    gone = make_user()
    Membership.objects.create(workspace=team, user=gone, role="admin")
    orphan, _ = key_of(gone, team)
    kept, kept_text = key_of(owner_of(team), team)
    # As it was before disabling and deleting revoked keys: the rows changed, the keys left alone.
    User.objects.filter(pk=admin.pk).update(is_active=False)
    ApiKey.objects.filter(pk=orphan.pk).update(created_by=None)
    with connection.cursor() as cursor:
        cursor.execute(revoke)
    revoked = set(ApiKey.objects.filter(revoked_at__isnull=False).values_list("pk", flat=True))
    assert revoked == {disabled_in_team.pk, disabled_personal.pk, orphan.pk}
    assert kept.pk not in revoked and works(kept_text) == 200

"""Members of a workspace: invitations are signed, expire and seat one account once; roles decide
who manages seats; a workspace always keeps an owner; an outsider gets 404 for everything of it."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any
from unittest import mock

import pytest
from django.core import signing
from django.db import connection
from django.test import Client as DjangoClient
from django.utils import timezone
from rest_framework.test import APIClient

from auteur.users.models import Invitation, Membership, User, Workspace
from auteur.users.roles import Role, allowed
from auteur.users.workspace_services import INVITATION_SALT, invitation_accept
from tests.factories import team_workspace

pytestmark = pytest.mark.django_db

Client = Callable[[User], APIClient]


@pytest.fixture
def owner(make_user: Callable[..., User]) -> User:
    return make_user(name="Olive Owner")


@pytest.fixture
def team(owner: User) -> Workspace:
    return team_workspace(owner)


def seat(user: User, workspace: Workspace, role: Role) -> Membership:
    return Membership.objects.create(workspace=workspace, user=user, role=role)


def invite(client: APIClient, workspace: Workspace, role: str = "editor") -> dict[str, Any]:
    answer = client.post(f"/api/v1/workspaces/{workspace.pk}/invitations", {"role": role}, format="json")
    assert answer.status_code == 201, answer.content
    return answer.json()


def accept(client: APIClient, token: str) -> Any:
    return client.post("/api/v1/invitations/accept", {"token": token}, format="json")


def error(answer: Any) -> tuple[int, str]:
    return answer.status_code, answer.json()["error"]["code"]


def roles_in(workspace: Workspace) -> dict[uuid.UUID, str]:
    return dict(Membership.objects.filter(workspace=workspace).values_list("user_id", "role"))


def test_an_invitation_seats_the_account_that_accepts_it_once(
    owner: User, team: Workspace, make_user: Callable[..., User], client_for: Client
):
    bob, carol = make_user(name="Bob"), make_user()
    invitation = invite(client_for(owner), team, "editor")
    assert invitation["role"] == "editor" and invitation["invited_by"] == str(owner.pk)

    joined = accept(client_for(bob), invitation["token"])

    assert joined.status_code == 200, joined.content
    assert joined.json()["id"] == str(team.pk) and joined.json()["role"] == "editor"
    assert error(accept(client_for(carol), invitation["token"])) == (409, "invitation_used")
    assert error(accept(client_for(bob), invitation["token"])) == (409, "invitation_used")
    assert roles_in(team) == {owner.pk: "owner", bob.pk: "editor"}
    members = client_for(bob).get(f"/api/v1/workspaces/{team.pk}/members").json()
    assert [(m["user_id"], m["name"], m["email"], m["role"]) for m in members["members"]] == [
        (str(owner.pk), "Olive Owner", owner.email, "owner"), (str(bob.pk), "Bob", bob.email, "editor")]
    stored = Invitation.objects.get(pk=invitation["id"])
    assert stored.accepted_by == bob and stored.accepted_at is not None
    # Only its id is kept: the token is nowhere in the row.
    assert invitation["token"] not in str(Invitation.objects.filter(pk=invitation["id"]).values().get())


def forged_tokens(real: str) -> dict[str, str]:
    value, _, signature = real.rpartition(":")
    flipped = signature[:-1] + ("A" if signature[-1] != "A" else "B")
    return {
        "its signature changed": f"{value}:{flipped}",
        "another id under its signature": signing.dumps(str(uuid.uuid4()), salt="another.salt"),
        "an id no invitation has, signed here": signing.dumps(str(uuid.uuid4()), salt=INVITATION_SALT),
        "a value that is not an id, signed here": signing.dumps({"workspace": "x"}, salt=INVITATION_SALT),
        "not a token": "hello",
        "truncated": real[:-5],
    }


def test_a_forged_or_altered_token_seats_nobody(
    owner: User, team: Workspace, make_user: Callable[..., User], client_for: Client
):
    bob = make_user()
    real = invite(client_for(owner), team)["token"]

    for what, token in forged_tokens(real).items():
        assert error(accept(client_for(bob), token)) == (404, "invitation_not_found"), what

    assert roles_in(team) == {owner.pk: "owner"}
    assert accept(client_for(bob), real).status_code == 200  # the real one was never spent


def test_an_expired_invitation_seats_nobody(
    owner: User, team: Workspace, make_user: Callable[..., User], client_for: Client, settings
):
    bob = make_user()
    # Its signature too old (signed a TTL ago) ...
    signed_at = time.time() - settings.AUTEUR_INVITATION_TTL_SECONDS - 5
    with mock.patch("django.core.signing.time.time", return_value=signed_at):
        old = invite(client_for(owner), team)
    # ... or its row past its expiry (the TTL shortened since).
    stale = invite(client_for(owner), team)
    Invitation.objects.filter(pk=stale["id"]).update(expires_at=timezone.now() - timedelta(seconds=1))

    assert error(accept(client_for(bob), old["token"])) == (410, "invitation_expired")
    assert error(accept(client_for(bob), stale["token"])) == (410, "invitation_expired")
    assert roles_in(team) == {owner.pk: "owner"}
    listed = client_for(owner).get(f"/api/v1/workspaces/{team.pk}/invitations").json()["invitations"]
    assert stale["id"] not in [i["id"] for i in listed]


def test_a_revoked_invitation_seats_nobody(
    owner: User, team: Workspace, make_user: Callable[..., User], client_for: Client
):
    bob = make_user()
    invitation = invite(client_for(owner), team)
    assert [i["id"] for i in client_for(owner).get(f"/api/v1/workspaces/{team.pk}/invitations").json()[
        "invitations"]] == [invitation["id"]]

    revoked = client_for(owner).delete(f"/api/v1/workspaces/{team.pk}/invitations/{invitation['id']}")

    assert revoked.status_code == 204
    assert error(accept(client_for(bob), invitation["token"])) == (404, "invitation_not_found")
    assert client_for(owner).get(f"/api/v1/workspaces/{team.pk}/invitations").json()["count"] == 0
    again = client_for(owner).delete(f"/api/v1/workspaces/{team.pk}/invitations/{invitation['id']}")
    assert error(again) == (404, "invitation_not_found")


def test_a_member_accepting_again_is_refused_and_the_invitation_stays_usable(
    owner: User, team: Workspace, make_user: Callable[..., User], client_for: Client
):
    invitation = invite(client_for(owner), team, "viewer")
    assert error(accept(client_for(owner), invitation["token"])) == (409, "already_member")
    assert roles_in(team) == {owner.pk: "owner"}  # not demoted to viewer
    bob = make_user()
    assert accept(client_for(bob), invitation["token"]).json()["role"] == "viewer"


def test_nobody_is_invited_into_a_personal_workspace(owner: User, client_for: Client):
    personal = Workspace.objects.get(pk=owner.pk)
    answer = client_for(owner).post(f"/api/v1/workspaces/{personal.pk}/invitations", {"role": "editor"},
                                    format="json")
    assert error(answer) == (409, "personal_workspace")
    assert not Invitation.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_two_accounts_racing_for_one_invitation_get_one_seat(owner: User, team: Workspace,
                                                             make_user: Callable[..., User], client_for: Client):
    token = invite(client_for(owner), team)["token"]
    contenders = [make_user() for _ in range(4)]
    start = threading.Barrier(len(contenders))

    def take(user: User) -> str:
        start.wait()
        try:
            invitation_accept(user=user, token=token)
            return "seated"
        except Exception as exc:  # the error's code is the result
            return getattr(exc, "code", repr(exc))
        finally:
            connection.close()

    with ThreadPoolExecutor(len(contenders)) as pool:
        results = sorted(pool.map(take, contenders))

    assert results == ["invitation_used"] * 3 + ["seated"]
    assert len(roles_in(team)) == 2


def test_a_workspace_seats_at_most_its_quota_of_members_and_a_refused_invitation_stays_usable(
    owner: User, team: Workspace, make_user: Callable[..., User], client_for: Client, settings
):
    token = invite(client_for(owner), team)["token"]
    settings.AUTEUR_QUOTA_MEMBERS = 1
    bob = make_user()
    refused = accept(client_for(bob), token)
    assert error(refused) == (403, "quota_exceeded") and refused.json()["error"]["details"]["quota"] == "members"
    settings.AUTEUR_QUOTA_MEMBERS = 2
    assert accept(client_for(bob), token).status_code == 200


def test_a_workspace_keeps_at_most_its_quota_of_pending_invitations(
    owner: User, team: Workspace, client_for: Client, settings
):
    settings.AUTEUR_QUOTA_INVITATIONS = 2
    invite(client_for(owner), team)
    invite(client_for(owner), team)
    refused = client_for(owner).post(f"/api/v1/workspaces/{team.pk}/invitations", {"role": "viewer"}, format="json")
    assert error(refused) == (403, "quota_exceeded")
    assert Invitation.objects.count() == 2


# ---- roles: every role against every operation on members


OPERATIONS = ("members.view", "members.invite", "members.set_role", "members.remove")


def attempt(client: APIClient, workspace: Workspace, operation: str, target: User) -> Any:
    base = f"/api/v1/workspaces/{workspace.pk}"
    if operation == "members.view":
        return client.get(f"{base}/members")
    if operation == "members.invite":
        return client.post(f"{base}/invitations", {"role": "viewer"}, format="json")
    if operation == "members.set_role":
        return client.patch(f"{base}/members/{target.pk}", {"role": "viewer"}, format="json")
    return client.delete(f"{base}/members/{target.pk}")


@pytest.mark.parametrize("operation", OPERATIONS)
@pytest.mark.parametrize("role", list(Role))
def test_every_role_against_every_operation_on_members(
    role: Role, operation: str, team: Workspace, make_user: Callable[..., User], client_for: Client
):
    actor, editor = make_user(), make_user()
    seat(actor, team, role)
    seat(editor, team, Role.EDITOR)

    answer = attempt(client_for(actor), team, operation, editor)

    if allowed(role, operation):
        assert answer.status_code in (200, 201, 204), answer.content
    else:
        assert error(answer) == (403, "permission_denied")
        assert answer.json()["error"]["details"] == {"action": operation, "role": role.value}
        assert roles_in(team)[editor.pk] == "editor" and not Invitation.objects.exists()


@pytest.mark.parametrize("operation", ["members.invite", "members.set_role", "members.remove"])
def test_only_an_owner_offers_grants_changes_or_removes_an_owners_seat(
    operation: str, owner: User, team: Workspace, make_user: Callable[..., User], client_for: Client
):
    admin, other_owner = make_user(), make_user()
    seat(admin, team, Role.ADMIN)
    seat(other_owner, team, Role.OWNER)
    base = f"/api/v1/workspaces/{team.pk}"
    tries = {
        "members.invite": lambda c: c.post(f"{base}/invitations", {"role": "owner"}, format="json"),
        "members.set_role": lambda c: c.patch(f"{base}/members/{other_owner.pk}", {"role": "editor"}, format="json"),
        "members.remove": lambda c: c.delete(f"{base}/members/{other_owner.pk}"),
    }

    refused = tries[operation](client_for(admin))
    assert error(refused) == (403, "permission_denied")
    assert refused.json()["error"]["details"]["action"] == "members.manage_owners"
    assert roles_in(team)[other_owner.pk] == "owner" and not Invitation.objects.exists()
    assert tries[operation](client_for(owner)).status_code in (201, 200, 204)
    # An admin makes nobody an owner either.
    promoted = client_for(admin).patch(f"{base}/members/{admin.pk}", {"role": "owner"}, format="json")
    assert error(promoted) == (403, "permission_denied")


def test_the_last_owner_can_neither_leave_nor_be_demoted(
    owner: User, team: Workspace, make_user: Callable[..., User], client_for: Client
):
    base = f"/api/v1/workspaces/{team.pk}"
    assert error(client_for(owner).delete(f"{base}/members/{owner.pk}")) == (409, "last_owner")
    assert error(client_for(owner).patch(f"{base}/members/{owner.pk}", {"role": "admin"},
                                         format="json")) == (409, "last_owner")
    personal = f"/api/v1/workspaces/{owner.pk}/members/{owner.pk}"
    assert error(client_for(owner).delete(personal)) == (409, "last_owner")
    assert roles_in(team) == {owner.pk: "owner"}

    second = make_user()
    seat(second, team, Role.OWNER)
    assert client_for(owner).delete(f"{base}/members/{owner.pk}").status_code == 204
    assert roles_in(team) == {second.pk: "owner"}


def test_any_member_may_leave(team: Workspace, make_user: Callable[..., User], client_for: Client):
    viewer = make_user()
    seat(viewer, team, Role.VIEWER)
    assert client_for(viewer).delete(f"/api/v1/workspaces/{team.pk}/members/{viewer.pk}").status_code == 204
    assert viewer.pk not in roles_in(team)


def test_a_removed_member_is_refused_at_their_next_request(
    owner: User, team: Workspace, make_user: Callable[..., User], client_for: Client
):
    bob = make_user()
    seat(bob, team, Role.ADMIN)
    bobs = client_for(bob)
    assert bobs.get(f"/api/v1/workspaces/{team.pk}").status_code == 200

    assert client_for(owner).delete(f"/api/v1/workspaces/{team.pk}/members/{bob.pk}").status_code == 204

    for answer in (bobs.get(f"/api/v1/workspaces/{team.pk}"), bobs.get(f"/api/v1/workspaces/{team.pk}/members"),
                   bobs.post(f"/api/v1/workspaces/{team.pk}/invitations", {"role": "admin"}, format="json")):
        assert error(answer) == (404, "workspace_not_found")
    assert [w["id"] for w in bobs.get("/api/v1/workspaces").json()["workspaces"]] == [str(bob.pk)]


def test_a_member_changed_by_another_request_acts_as_what_they_are_now(
    owner: User, team: Workspace, make_user: Callable[..., User]
):
    """The acting seat is read again under the workspace's lock: a seat read before its demotion
    does not carry its old role into the change."""
    from auteur.users.workspace_services import member_remove

    admin, editor = make_user(), make_user()
    stale = seat(admin, team, Role.ADMIN)
    seat(editor, team, Role.EDITOR)
    Membership.objects.filter(pk=stale.pk).update(role=Role.VIEWER)

    with pytest.raises(Exception) as refused:
        member_remove(membership=stale, user_id=editor.pk)
    assert getattr(refused.value, "code", None) == "permission_denied"
    assert editor.pk in roles_in(team)


def test_an_outsider_gets_404_for_every_operation_of_a_workspace(
    owner: User, team: Workspace, make_user: Callable[..., User], client_for: Client
):
    invitation = invite(client_for(owner), team)
    outsider = client_for(make_user())
    base = f"/api/v1/workspaces/{team.pk}"
    answers = {
        "get": outsider.get(base),
        "rename": outsider.patch(base, {"name": "x"}, format="json"),
        "members": outsider.get(f"{base}/members"),
        "set role": outsider.patch(f"{base}/members/{owner.pk}", {"role": "viewer"}, format="json"),
        "remove": outsider.delete(f"{base}/members/{owner.pk}"),
        "invitations": outsider.get(f"{base}/invitations"),
        "invite": outsider.post(f"{base}/invitations", {"role": "owner"}, format="json"),
        "revoke": outsider.delete(f"{base}/invitations/{invitation['id']}"),
    }
    assert {what: error(answer) for what, answer in answers.items()} == dict.fromkeys(
        answers, (404, "workspace_not_found"))
    assert roles_in(team) == {owner.pk: "owner"} and Invitation.objects.get().revoked_at is None


@pytest.mark.parametrize(("path", "body"), [
    ("members/{member}", {"role": "emperor"}), ("members/{member}", {"role": "viewer", "extra": 1}),
    ("invitations", {"role": "emperor"}), ("invitations", {}),
])
def test_a_role_outside_the_list_is_refused(
    path: str, body: dict[str, Any], owner: User, team: Workspace, make_user: Callable[..., User], client_for: Client
):
    member = make_user()
    seat(member, team, Role.EDITOR)
    url = f"/api/v1/workspaces/{team.pk}/" + path.format(member=member.pk)
    send = client_for(owner).patch if path.startswith("members") else client_for(owner).post
    assert error(send(url, body, format="json")) == (400, "validation_error")
    assert roles_in(team)[member.pk] == "editor" and not Invitation.objects.exists()


def test_an_unknown_member_is_not_found(owner: User, team: Workspace, client_for: Client):
    for ref in (str(uuid.uuid4()), "nope"):
        answer = client_for(owner).delete(f"/api/v1/workspaces/{team.pk}/members/{ref}")
        assert error(answer) == (404, "member_not_found")


def test_an_invitation_offers_only_what_its_maker_may_offer_now(
    owner: User, team: Workspace, make_user: Callable[..., User], client_for: Client
):
    """A member demoted or removed cannot come back, nor seat anyone, with invitations made before."""
    base = f"/api/v1/workspaces/{team.pk}"
    maker, admin, newcomer = make_user(), make_user(), make_user()
    seat(maker, team, Role.OWNER)
    seat(admin, team, Role.ADMIN)
    as_owner = invite(client_for(maker), team, "owner")
    as_editor = invite(client_for(maker), team, "editor")
    by_admin = invite(client_for(admin), team, "viewer")
    # Made unusable without being revoked: the check at acceptance stands on its own.
    kept = invite(client_for(maker), team, "owner")

    Membership.objects.filter(workspace=team, user=maker).update(role=Role.ADMIN)  # behind the API's back
    assert error(accept(client_for(newcomer), kept["token"])) == (404, "invitation_not_found")

    assert client_for(owner).patch(f"{base}/members/{maker.pk}", {"role": "admin"}, format="json").status_code == 200
    pending = {i["id"] for i in client_for(owner).get(f"{base}/invitations").json()["invitations"]}
    assert as_owner["id"] not in pending and as_editor["id"] in pending  # an admin still invites editors
    assert error(accept(client_for(make_user()), as_owner["token"])) == (404, "invitation_not_found")

    assert client_for(owner).delete(f"{base}/members/{admin.pk}").status_code == 204
    assert error(accept(client_for(admin), by_admin["token"])) == (404, "invitation_not_found")

    maker.delete()  # an account gone: its invitations offer nothing
    assert error(accept(client_for(newcomer), as_editor["token"])) == (404, "invitation_not_found")
    assert roles_in(team) == {owner.pk: "owner"}


def test_a_member_leaves_whatever_case_their_id_is_written_in(
    team: Workspace, make_user: Callable[..., User], client_for: Client
):
    viewer = make_user()
    seat(viewer, team, Role.VIEWER)
    answer = client_for(viewer).delete(f"/api/v1/workspaces/{team.pk}/members/{str(viewer.pk).upper()}")
    assert answer.status_code == 204
    assert viewer.pk not in roles_in(team)


def test_an_owner_whose_account_is_disabled_does_not_keep_the_workspace_owned(
    owner: User, team: Workspace, make_user: Callable[..., User], client_for: Client
):
    disabled = make_user(is_active=False)
    seat(disabled, team, Role.OWNER)
    answer = client_for(owner).delete(f"/api/v1/workspaces/{team.pk}/members/{owner.pk}")
    assert error(answer) == (409, "last_owner")


def test_staff_cannot_delete_the_only_owner_of_a_team_with_other_members(
    owner: User, team: Workspace, make_user: Callable[..., User], superuser_client: DjangoClient
):
    alone = make_user()
    team_workspace(alone, "Solo")
    seat(make_user(), team, Role.EDITOR)

    assert superuser_client.get(f"/admin/users/user/{owner.pk}/delete/").status_code == 403
    # An owner of a team with nobody else, or one with another owner, can go.
    assert superuser_client.get(f"/admin/users/user/{alone.pk}/delete/").status_code == 200
    seat(make_user(), team, Role.OWNER)
    assert superuser_client.get(f"/admin/users/user/{owner.pk}/delete/").status_code == 200

"""An admin runs a workspace for its owners and cannot get around what the owners hold: the billing
role (which sets the workspace's cap) is given only by owners, and a budget an owner set on an
admin bounds the seats the admin makes or re-roles and the budgets the admin sets."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
from rest_framework.test import APIClient

from auteur.users.models import Invitation, Membership, User, Workspace
from auteur.users.roles import ACTIONS, GIVING, Role, allowed, givers, may_give
from credits.errors import SpendCapReached
from credits.models import CapScope, SpendCap
from credits.selectors import credit_balance_get, ledger_check
from credits.services.ledger import credit_deduct_for_job, credit_grant
from tests.factories import team_workspace

pytestmark = pytest.mark.django_db

Client = Callable[[User], APIClient]


@pytest.fixture
def studio(make_user: Callable[..., User]) -> dict[str, Any]:
    """A team holding 1,000 credits: its owner, an admin, an editor; the admin's second account."""
    owner, admin, editor, second = make_user(), make_user(), make_user(), make_user()
    team = team_workspace(owner)
    Membership.objects.create(workspace=team, user=admin, role=Role.ADMIN)
    Membership.objects.create(workspace=team, user=editor, role=Role.EDITOR)
    account = User.objects.get(pk=team.pk)
    credit_grant(user=account, amount=1000, description="pool")
    return {"team": team, "account": account, "owner": owner, "admin": admin, "editor": editor, "second": second}


def url(team: Workspace, tail: str) -> str:
    return f"/api/v1/workspaces/{team.pk}/{tail}"


def invite(client: APIClient, team: Workspace, role: str) -> Any:
    return client.post(url(team, "invitations"), {"role": role}, format="json")


def accept(client: APIClient, token: str) -> Any:
    return client.post("/api/v1/invitations/accept", {"token": token}, format="json")


def set_budget(client: APIClient, team: Workspace, member: User, limit: int | None) -> Any:
    return client.put(url(team, f"budgets/{member.pk}"), {"monthly_limit": limit}, format="json")


def budget(account: User, member: User) -> int | None:
    cap = SpendCap.objects.filter(user=account, scope=CapScope.MEMBER, subject_id=member.pk).first()
    return None if cap is None else cap.monthly_limit


def charge(account: User, member: User, amount: int) -> None:
    credit_deduct_for_job(user=account, job_id=uuid.uuid4(), amount=amount, description="job", member_id=member.pk)


def role_of(team: Workspace, user: User) -> str | None:
    return Membership.objects.filter(workspace=team, user=user).values_list("role", flat=True).first()


def test_the_billing_role_is_given_only_by_those_who_hold_billing_and_owners_seats():
    assert GIVING[Role.BILLING] == ("billing.manage", "members.manage_owners")
    for role in Role:
        assert may_give(role, Role.BILLING) == (allowed(role, "billing.manage")
                                                and allowed(role, "members.manage_owners"))
    assert givers(Role.BILLING) == givers(Role.OWNER) == [Role.OWNER]
    assert givers(Role.EDITOR) == [Role.OWNER, Role.ADMIN]


def test_an_admin_cannot_make_a_billing_seat_to_lift_the_owners_cap(studio: dict[str, Any], client_for: Client):
    """The attack: an admin invites a second account of theirs as billing (or re-roles an editor to
    billing), and that seat lifts the workspace's cap the owner set. Each step is refused."""
    s = studio
    team, owner, admin = s["team"], client_for(s["owner"]), client_for(s["admin"])
    assert owner.put(url(team, "caps/workspace"), {"monthly_limit": 100}, format="json").status_code == 200

    invited = invite(admin, team, "billing")
    assert (invited.status_code, invited.json()["error"]["code"]) == (403, "permission_denied")
    assert invited.json()["error"]["details"] == {"action": "billing.manage", "role": "admin"}
    assert "billing" in invited.json()["error"]["message"]
    assert not Invitation.objects.filter(workspace=team).exists()

    # The second account, invited as an editor, is then re-roled to billing: refused, and so is the
    # editor's.
    editor_seat = invite(admin, team, "editor").json()
    assert accept(client_for(s["second"]), editor_seat["token"]).status_code == 200
    for member in (s["second"], s["editor"]):
        rerole = admin.patch(url(team, f"members/{member.pk}"), {"role": "billing"}, format="json")
        assert (rerole.status_code, rerole.json()["error"]["details"]) == (
            403, {"action": "billing.manage", "role": "admin"})
        assert role_of(team, member) == "editor"
    # Neither the admin nor the seat it made lifts the cap.
    for client in (admin, client_for(s["second"])):
        lifted = client.put(url(team, "caps/workspace"), {"monthly_limit": None}, format="json")
        assert (lifted.status_code, lifted.json()["error"]["details"]["action"]) == (403, "billing.manage")
    cap = SpendCap.objects.get(user=s["account"], scope=CapScope.WORKSPACE)
    assert cap.monthly_limit == 100
    # Nor does an admin take back a billing seat an owner offers.
    offered = invite(owner, team, "billing").json()
    revoked = admin.delete(url(team, f"invitations/{offered['id']}"))
    assert (revoked.status_code, revoked.json()["error"]["code"]) == (403, "permission_denied")
    assert Invitation.objects.get(pk=offered["id"]).revoked_at is None


def test_a_billing_invitation_of_an_owner_demoted_to_admin_offers_nothing(
    studio: dict[str, Any], client_for: Client, make_user: Callable[..., User]
):
    s = studio
    team, owner = s["team"], client_for(s["owner"])
    other_owner = make_user()
    Membership.objects.create(workspace=team, user=other_owner, role=Role.OWNER)
    offered = invite(client_for(other_owner), team, "billing").json()
    assert owner.patch(url(team, f"members/{other_owner.pk}"), {"role": "admin"}, format="json").status_code == 200

    taken = accept(client_for(s["second"]), offered["token"])

    assert (taken.status_code, taken.json()["error"]["code"]) == (404, "invitation_not_found")
    assert role_of(team, s["second"]) is None
    # An owner gives the billing role, by either way.
    assert owner.patch(url(team, f"members/{s['editor'].pk}"), {"role": "billing"}, format="json").status_code == 200
    assert accept(client_for(s["second"]), invite(owner, team, "billing").json()["token"]).status_code == 200
    assert role_of(team, s["second"]) == role_of(team, s["editor"]) == "billing"


def test_an_admin_held_to_10_makes_no_seat_that_charges_45_and_45(studio: dict[str, Any], client_for: Client):
    """The attack: the owner holds the admin to 10 credits a month; the admin makes a seat (with no
    budget) or lifts an editor's, and spends 45 + 45 through it. Each seat is held to the admin's 10."""
    s = studio
    team, account, owner, admin = s["team"], s["account"], client_for(s["owner"]), client_for(s["admin"])
    assert set_budget(owner, team, s["admin"], 10).status_code == 200
    assert set_budget(owner, team, s["editor"], 100).status_code == 200

    # A seat the admin invites starts with the admin's remaining 10.
    joined = accept(client_for(s["second"]), invite(admin, team, "editor").json()["token"])
    assert joined.status_code == 200, joined.content
    assert budget(account, s["second"]) == 10
    # Re-roling an editor caps the owner's 100 at the admin's 10.
    assert admin.patch(url(team, f"members/{s['editor'].pk}"), {"role": "viewer"}, format="json").status_code == 200
    assert admin.patch(url(team, f"members/{s['editor'].pk}"), {"role": "editor"}, format="json").status_code == 200
    assert budget(account, s["editor"]) == 10

    # Nor does the admin raise or lift either budget past their own remaining.
    for member in (s["second"], s["editor"]):
        for limit in (45, 90, None):
            raised = set_budget(admin, team, member, limit)
            assert (raised.status_code, raised.json()["error"]["code"]) == (403, "budget_above_own"), raised.content
            assert raised.json()["error"]["details"] == {"monthly_limit": limit, "remaining": 10}
        assert budget(account, member) == 10

    balance = credit_balance_get(user=account)
    for member in (s["second"], s["editor"]):
        for _ in range(2):
            with pytest.raises(SpendCapReached):
                charge(account, member, 45)
    assert credit_balance_get(user=account) == balance
    assert ledger_check() == []


def test_an_admin_sets_budgets_up_to_what_remains_of_their_own(studio: dict[str, Any], client_for: Client):
    s = studio
    team, account, owner, admin = s["team"], s["account"], client_for(s["owner"]), client_for(s["admin"])
    assert set_budget(owner, team, s["admin"], 10).status_code == 200
    charge(account, s["admin"], 4)  # 6 remain

    assert set_budget(admin, team, s["editor"], 6).json()["monthly_limit"] == 6
    refused = set_budget(admin, team, s["editor"], 7)
    assert refused.json()["error"]["details"] == {"monthly_limit": 7, "remaining": 6}
    assert budget(account, s["editor"]) == 6
    # Lowering a budget is always allowed: it only narrows what the member may spend.
    assert set_budget(owner, team, s["editor"], 50).status_code == 200
    assert set_budget(admin, team, s["editor"], 40).json()["monthly_limit"] == 40
    assert set_budget(admin, team, s["editor"], 41).status_code == 403
    assert budget(account, s["editor"]) == 40
    # A seat made while nothing remains starts with a budget of 0.
    charge(account, s["admin"], 6)
    assert accept(client_for(s["second"]), invite(admin, team, "viewer").json()["token"]).status_code == 200
    assert budget(account, s["second"]) == 0
    # An admin the owner gives no budget is bounded by nothing (nor are the seats they make), and an
    # owner's seats are never bounded.
    assert set_budget(owner, team, s["admin"], None).status_code == 200
    assert set_budget(admin, team, s["editor"], None).json()["monthly_limit"] is None
    assert set_budget(owner, team, s["admin"], 1).status_code == 200
    assert owner.patch(url(team, f"members/{s['editor'].pk}"), {"role": "viewer"}, format="json").status_code == 200
    assert budget(account, s["editor"]) is None


def test_a_seat_an_admin_makes_admin_is_held_to_the_makers_remaining(
    studio: dict[str, Any], client_for: Client
):
    s = studio
    team, account, owner, admin = s["team"], s["account"], client_for(s["owner"]), client_for(s["admin"])
    assert set_budget(owner, team, s["admin"], 10).status_code == 200
    assert admin.patch(url(team, f"members/{s['editor'].pk}"), {"role": "admin"}, format="json").status_code == 200
    assert budget(account, s["editor"]) == 10

    # The new admin, held to 10 in turn, neither lifts their own budget nor makes an unbounded seat.
    promoted = client_for(s["editor"])
    own = set_budget(promoted, team, s["editor"], None)
    assert (own.status_code, own.json()["error"]["code"]) == (403, "own_budget")
    assert accept(client_for(s["second"]), invite(promoted, team, "editor").json()["token"]).status_code == 200
    assert budget(account, s["second"]) == 10
    assert ACTIONS["budgets.manage_admins"].roles == frozenset({Role.OWNER})

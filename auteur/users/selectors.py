"""Reads of workspaces and memberships, always as a member: an outsider learns nothing of a workspace."""

from __future__ import annotations

import uuid

from django.db.models import Case, QuerySet, When
from django.utils import timezone

from auteur.core import rls
from auteur.users.errors import PermissionDenied, WorkspaceNotFound
from auteur.users.models import ApiKey, Invitation, Membership, User
from auteur.users.roles import ACTIONS, Role, allowed
from auteur.users.workspace_context import KEY_ROLE, Seat


def membership_list(*, user: User) -> QuerySet[Membership]:
    """The user's seats, with their workspaces: the personal one first, then by when they joined."""
    return (Membership.objects.filter(user=user).select_related("workspace")
            .order_by("-workspace__personal", "created_at", "id"))


def membership_get(*, user: User, workspace_id: uuid.UUID | str) -> Membership:
    """The user's seat in a workspace, or 404 `workspace_not_found`: a workspace the user is not a
    member of is indistinguishable from none."""
    try:
        pk = uuid.UUID(str(workspace_id))
    except ValueError:
        raise WorkspaceNotFound("No such workspace.") from None
    membership = Membership.objects.filter(user=user, workspace_id=pk).select_related("workspace").first()
    if membership is None:
        raise WorkspaceNotFound("No such workspace.")
    return membership


def require(membership: Membership, action: str) -> None:
    """Raise 403 `permission_denied` (details: action, role) unless the member's role allows `action`
    (auteur/users/roles.py)."""
    require_role(membership.role, action)


def require_role(role: str, action: str) -> None:
    if not allowed(role, action):
        raise PermissionDenied(f"A workspace's {role} may not {ACTIONS[action].description}.",
                               details={"action": action, "role": role})


def require_seat(seat: Seat, action: str) -> None:
    """As require_role, for a request's seat: an API key's by its scopes (details: action, role
    `key`, the scope it would need, or null for what no key may do)."""
    if not seat.key:
        require_role(seat.role, action)
    elif not seat.may(action):
        needed = ACTIONS[action].scope
        reason = f"needs the {needed} scope" if needed else "is for the workspace's people only"
        raise PermissionDenied(f"This API key may not {ACTIONS[action].description}: that {reason}.",
                               details={"action": action, "role": KEY_ROLE, "scope": needed})


def seat_now(*, workspace_id: uuid.UUID, member_id: uuid.UUID) -> Seat | None:
    """The seat of the workspace's member (a person, or an API key by its id) as the database says
    now, or None once it ended: a key revoked or expired, a person removed or their account
    disabled. What a connection opened earlier re-reads before it is given more (its role may
    have changed since its credential was checked)."""
    with rls.trusted():
        key = (ApiKey.objects.filter(ApiKey.usable(), pk=member_id, user_id=workspace_id)
               .values_list("scopes", "rate_limit_per_minute").first())
        if key is not None:
            return Seat(workspace_id, member_id, KEY_ROLE, frozenset(key[0]), key[1])
        role = (Membership.objects.filter(workspace_id=workspace_id, user_id=member_id, user__is_active=True)
                .values_list("role", flat=True).first())
        # A personal workspace's owner, whatever seat rows say: their account is the workspace.
        if role is None and member_id == workspace_id and User.objects.filter(
                pk=workspace_id, is_active=True, is_team=False).exists():
            role = Role.OWNER
    return None if role is None else Seat(workspace_id, member_id, role)


def member_sees_credits(*, workspace_id: uuid.UUID, member_id: uuid.UUID | None) -> bool:
    """Whether the workspace's member (a person, or an API key by its id) may see the workspace's
    credits now (`credits.view`: a key needs credits:read). What decides the balance in what is sent
    where no request carries the reader's seat: a job's own webhook and its `Prefer: wait` answer
    (the job's submitter), an account webhook's messages (its maker). Nobody recorded (`None`: from
    before workspaces) is the owner of a personal workspace only; a team's sees nothing."""
    if member_id is None:
        with rls.trusted():
            return User.objects.filter(pk=workspace_id, is_active=True, is_team=False).exists()
    seat = seat_now(workspace_id=workspace_id, member_id=member_id)
    return seat is not None and seat.may("credits.view")


def member_list(*, membership: Membership) -> list[Membership]:
    """The members of the member's workspace, with their accounts, owners first (at most the
    `members` quota of them). Read on the owner's login: a session's own reach in `users` is its
    own account, and members see each other's names and emails."""
    require(membership, "members.view")
    with rls.trusted():
        return list(Membership.objects.filter(workspace_id=membership.workspace_id).select_related("user")
                    .order_by(Case(When(role=Role.OWNER, then=0), default=1), "created_at", "id"))


def invitation_list(*, membership: Membership) -> QuerySet[Invitation]:
    """The workspace's invitations still to be taken, newest first."""
    require(membership, "members.invite")
    return Invitation.objects.filter(workspace_id=membership.workspace_id, accepted_at__isnull=True,
                                     revoked_at__isnull=True, expires_at__gt=timezone.now())

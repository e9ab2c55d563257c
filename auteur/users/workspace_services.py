"""Changes of workspaces, their members and invitations.

Apart from the account services (auteur/users/services.py), which the authentication class loads
while the API's error types are still being defined.

Seats are changed on the owner's login (the API's database role adds, changes and removes none),
inside one transaction that first locks the workspace's row and reads the acting member's seat
again: a member removed or demoted a moment ago acts no more, two changes of one workspace take
turns, and "the last owner" is counted under the lock.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from functools import lru_cache

import redis
from django.conf import settings
from django.contrib.auth.hashers import make_password
from django.core import signing
from django.db import transaction
from django.utils import timezone

from auteur.core import rls
from auteur.core.quotas import quota_check, quota_lock
from auteur.users.errors import (
    AlreadyMember,
    InvitationExpired,
    InvitationNotFound,
    InvitationUsed,
    LastOwner,
    MemberNotFound,
    PermissionDenied,
    PersonalWorkspace,
    WorkspaceNotFound,
)
from auteur.users.models import ApiKey, ContentPolicy, Invitation, LikenessPolicy, Membership, User, Workspace
from auteur.users.roles import GIVING, Role, allowed, may_give, scopes_allowed_to
from auteur.users.selectors import require
from auteur.users.signals import seat_given
from auteur.users.workspace_context import SEAT_CHANGED, SEAT_ENDED, SEAT_ENDS_KEEP, seat_ends_key

logger = logging.getLogger(__name__)

# An invitation's token is this salt's signature of the invitation's id, with its time: a token
# made anywhere else, or changed by one character, is refused before any row is read.
INVITATION_SALT = "auteur.users.invitation"


def workspace_create(*, user: User, name: str) -> Membership:
    """A team workspace, with its account, and the user as its owner; QuotaExceeded past the user's
    `workspaces` quota."""
    with rls.trusted(), transaction.atomic():
        quota_lock(user_id=user.pk)
        quota_check(name="workspaces", used=Workspace.objects.filter(created_by=user, personal=False).count())
        account = User.objects.create(is_team=True, password=make_password(None))
        workspace = Workspace.objects.create(id=account.pk, name=name, created_by=user)
        return Membership.objects.create(workspace=workspace, user=user, role=Role.OWNER)


def workspace_rename(*, membership: Membership, name: str) -> Workspace:
    """Rename the member's workspace, if their role allows it."""
    with acting(membership, "workspace.rename") as actor:
        workspace = actor.workspace
        workspace.name = name
        workspace.save(update_fields=["name", "updated_at"])
    membership.workspace = workspace
    return workspace


def workspace_likeness_policy_set(*, membership: Membership, policy: str) -> Workspace:
    """Set the member's workspace's likeness policy, if their role allows it (owners only). A personal
    workspace keeps `verified` (409 `personal_workspace`): nobody but its owner could attest there. Back to
    `verified`, the workspace's attested consents stay stored but no job may use them (checked at submission)."""
    with acting(membership, "workspace.likeness_policy") as actor:
        workspace = actor.workspace
        if workspace.personal and policy != LikenessPolicy.VERIFIED:
            raise PersonalWorkspace("A personal workspace accepts only verified likeness consents: create a team "
                                    "workspace to use attested ones.")
        if workspace.likeness_policy != policy:
            workspace.likeness_policy = LikenessPolicy(policy)
            workspace.save(update_fields=["likeness_policy", "updated_at"])
            logger.info("workspace %s: likeness policy %s, set by %s", workspace.pk, policy, actor.user_id)
    membership.workspace = workspace
    return workspace


def workspace_content_policy_set(*, membership: Membership, policy: str) -> Workspace:
    """Set the member's workspace's content policy, if their role allows it (owners only): `strict`
    refuses more than the platform's policy; `standard` is the platform's, the least any workspace has."""
    with acting(membership, "workspace.content_policy") as actor:
        workspace = actor.workspace
        if workspace.content_policy != policy:
            workspace.content_policy = ContentPolicy(policy)
            workspace.save(update_fields=["content_policy", "updated_at"])
            logger.info("workspace %s: content policy %s, set by %s", workspace.pk, policy, actor.user_id)
    membership.workspace = workspace
    return workspace


@contextmanager
def acting(membership: Membership, action: str | None) -> Iterator[Membership]:
    """The member's seat as it is now, inside a transaction on the owner's login that holds the
    workspace's row lock; `action` (if any) allowed to its role. A seat gone since is a 404."""
    with rls.trusted(), transaction.atomic():
        list(Workspace.objects.select_for_update().filter(pk=membership.workspace_id).values_list("pk"))
        seat = (Membership.objects.select_related("workspace")
                .filter(workspace_id=membership.workspace_id, user_id=membership.user_id).first())
        if seat is None:
            raise WorkspaceNotFound("No such workspace.")
        if action is not None:
            require(seat, action)
        yield seat


def _user_id(value: uuid.UUID | str) -> uuid.UUID:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise MemberNotFound("No such member.") from None


def _seat(workspace_id: uuid.UUID, user_id: uuid.UUID) -> Membership:
    seat = Membership.objects.select_related("user").filter(workspace_id=workspace_id, user_id=user_id).first()
    if seat is None:
        raise MemberNotFound("No such member.")
    return seat


def member_seat(*, actor: Membership, user_id: uuid.UUID | str) -> Membership:
    """Inside `acting`: the seat of the workspace's member `user_id`, or 404 `member_not_found`."""
    return _seat(actor.workspace_id, _user_id(user_id))


def _keeps_an_owner(seat: Membership) -> None:
    """Raise LastOwner if `seat` is its workspace's only owner whose account may sign in (under the
    workspace's lock): a disabled account's seat runs nothing."""
    others = Membership.objects.filter(workspace_id=seat.workspace_id, role=Role.OWNER, user__is_active=True)
    if seat.role == Role.OWNER and not others.exclude(pk=seat.pk).exists():
        raise LastOwner("A workspace keeps at least one owner: make another member an owner first.")


def _may_offer(seat: Membership | None, role: str) -> bool:
    """Whether a member (None: no longer one) may offer a seat with `role` now."""
    return seat is not None and allowed(seat.role, "members.invite") and may_give(seat.role, role)


def _require_may_give(actor: Membership, role: str) -> None:
    """403 `permission_denied` unless the member may give a seat with `role` (roles.GIVING), naming the
    first action it takes that their role lacks."""
    if role == Role.OWNER:
        require(actor, "members.manage_owners")
    missing = [action for action in GIVING[Role(role)] if not allowed(actor.role, action)]
    if missing:
        needs = " and ".join(f"`{action}`" for action in GIVING[Role(role)])
        raise PermissionDenied(f"A workspace's {actor.role} may not give the {role} role: it is given only by "
                               f"those who hold {needs}.", details={"action": missing[0], "role": actor.role})


def _revoke_what_they_may_no_longer_offer(seat: Membership, now_role: str | None) -> None:
    """A member demoted or removed takes back the pending invitations they may no longer make."""
    pending = Invitation.objects.filter(workspace_id=seat.workspace_id, invited_by_id=seat.user_id,
                                        accepted_at__isnull=True, revoked_at__isnull=True)
    if now_role is not None and allowed(now_role, "members.invite"):
        pending = pending.exclude(role__in=[role for role in Role if may_give(now_role, role)])
    pending.update(revoked_at=timezone.now())


def _revoke_keys_beyond(seat: Membership, now_role: str | None) -> None:
    """A member demoted or removed has the API keys they made revoked, those whose scopes their
    role (None: none) may no longer give: a key never does more than its maker could."""
    allowed_scopes = set(scopes_allowed_to(now_role)) if now_role is not None else set()
    now = timezone.now()
    for key in ApiKey.objects.select_for_update().filter(user_id=seat.workspace_id, created_by_id=seat.user_id,
                                                           revoked_at__isnull=True):
        if not set(key.scopes) <= allowed_scopes:
            key.revoked_at, key.revoked_by_id = now, None
            key.save(update_fields=["revoked_at", "revoked_by"])
            streams_end(workspace_id=seat.workspace_id, member_id=key.pk)


@lru_cache(maxsize=1)
def _redis() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2)


def _end_streams(seat: Membership, reason: str = SEAT_ENDED) -> None:
    streams_end(workspace_id=seat.workspace_id, member_id=seat.user_id, reason=reason)


def streams_end(*, workspace_id: uuid.UUID, member_id: uuid.UUID, reason: str = SEAT_ENDED) -> None:
    """Once the change commits: the member's (or API key's) open event streams of the workspace
    close (within the stream reader's next read, well under a second), saying `reason`: the seat
    ended (SEAT_ENDED) or its role changed (SEAT_CHANGED: reconnecting reads what the new role
    allows). Redis being unreachable leaves them open until their credential is next checked; that
    is logged."""

    def announce() -> None:
        key = seat_ends_key(workspace_id)
        try:
            client = _redis()
            client.xadd(key, {"member": str(member_id), "reason": reason}, maxlen=SEAT_ENDS_KEEP, approximate=True)
            client.expire(key, 7 * 24 * 3600)
        except redis.RedisError:
            logger.warning("could not close the ended seat's event streams of workspace %s", workspace_id)

    transaction.on_commit(announce)


def member_set_role(*, membership: Membership, user_id: uuid.UUID | str, role: str) -> Membership:
    """Give a member another role. Only an owner makes, changes or demotes an owner; only those who
    may give a role (roles.GIVING) give it. A seat an admin re-roles starts with a budget no larger
    than what remains of the admin's own (`seat_given`)."""
    with acting(membership, "members.set_role") as actor:
        seat = _seat(actor.workspace_id, _user_id(user_id))
        if seat.role == Role.OWNER:
            require(actor, "members.manage_owners")
        _require_may_give(actor, role)
        if role != Role.OWNER:
            _keeps_an_owner(seat)
        changed = seat.role != role
        seat.role = role
        seat.save(update_fields=["role"])
        seat_given.send(sender=Membership, giver=actor, seat=seat)
        _revoke_what_they_may_no_longer_offer(seat, role)
        _revoke_keys_beyond(seat, role)
        if changed:
            # Each open stream was allowed what it carries (jobs, the account's events) by the old
            # role: all of them close, and the client reconnects under the new one.
            _end_streams(seat, SEAT_CHANGED if allowed(role, "jobs.view") else SEAT_ENDED)
    return seat


def member_remove(*, membership: Membership, user_id: uuid.UUID | str) -> None:
    """Remove a member, or leave (`user_id` the member's own). From the next request on, the removed
    account gets 404 for the workspace. The last owner cannot leave."""
    target = _user_id(user_id)
    leaving = target == membership.user_id
    with acting(membership, None if leaving else "members.remove") as actor:
        seat = _seat(actor.workspace_id, target)
        if seat.role == Role.OWNER and not leaving:
            require(actor, "members.manage_owners")
        _keeps_an_owner(seat)
        seat.delete()
        _revoke_what_they_may_no_longer_offer(seat, None)
        _revoke_keys_beyond(seat, None)
        _end_streams(seat)


def invitation_create(*, membership: Membership, role: str) -> tuple[Invitation, str]:
    """An invitation to the member's team workspace with `role`, and its token (shown once: only
    its id is kept). Only an owner invites an owner; only those who may give a role (roles.GIVING)
    invite to it."""
    with acting(membership, "members.invite") as actor:
        _require_may_give(actor, role)
        if actor.workspace.personal:
            raise PersonalWorkspace("A personal workspace has no other member: create a team workspace to invite.")
        now = timezone.now()
        pending = Invitation.objects.filter(workspace_id=actor.workspace_id, accepted_at__isnull=True,
                                            revoked_at__isnull=True, expires_at__gt=now)
        quota_check(name="invitations", used=pending.count())
        invitation = Invitation.objects.create(
            workspace_id=actor.workspace_id, role=role, invited_by_id=actor.user_id,
            expires_at=now + timedelta(seconds=settings.AUTEUR_INVITATION_TTL_SECONDS))
    return invitation, signing.dumps(str(invitation.pk), salt=INVITATION_SALT)


def invitation_revoke(*, membership: Membership, invitation_id: uuid.UUID | str) -> None:
    """Revoke a pending invitation: its token is refused from now on."""
    with acting(membership, "members.invite") as actor:
        invitation = _pending(actor.workspace_id, invitation_id)
        _require_may_give(actor, invitation.role)
        invitation.revoked_at = timezone.now()
        invitation.save(update_fields=["revoked_at"])


def _pending(workspace_id: uuid.UUID, invitation_id: uuid.UUID | str) -> Invitation:
    try:
        pk = uuid.UUID(str(invitation_id))
    except ValueError:
        raise InvitationNotFound("No such invitation.") from None
    invitation = Invitation.objects.filter(pk=pk, workspace_id=workspace_id, accepted_at__isnull=True,
                                           revoked_at__isnull=True).first()
    if invitation is None:
        raise InvitationNotFound("No such invitation.")
    return invitation


def invitation_accept(*, user: User, token: str) -> Membership:
    """Take the seat an invitation offers, once: a forged, altered or revoked token is 404
    `invitation_not_found`, an expired one 410 `invitation_expired`, one already taken 409
    `invitation_used`. A member already is 409 `already_member`, and the invitation stays usable."""
    ttl = settings.AUTEUR_INVITATION_TTL_SECONDS
    try:
        invitation_id = uuid.UUID(str(signing.loads(token, salt=INVITATION_SALT, max_age=ttl)))
    except signing.SignatureExpired:
        raise InvitationExpired("This invitation has expired: ask for a new one.") from None
    except (signing.BadSignature, ValueError):
        raise InvitationNotFound("No such invitation.") from None
    with rls.trusted(), transaction.atomic():
        workspace_id = Invitation.objects.filter(pk=invitation_id).values_list("workspace_id", flat=True).first()
        if workspace_id is None:
            raise InvitationNotFound("No such invitation.")
        # The workspace before its invitation: every change of a workspace's seats locks in that order.
        list(Workspace.objects.select_for_update().filter(pk=workspace_id).values_list("pk"))
        invitation = Invitation.objects.select_for_update().get(pk=invitation_id)
        if invitation.revoked_at is not None:
            raise InvitationNotFound("No such invitation.")
        if invitation.accepted_at is not None:
            raise InvitationUsed("This invitation has been used.")
        if invitation.expires_at <= timezone.now():
            raise InvitationExpired("This invitation has expired: ask for a new one.")
        # An invitation offers what its maker may offer now: one removed or demoted since (or whose
        # account is gone) offers nothing, as if they had revoked it.
        maker = None if invitation.invited_by_id is None else (
            Membership.objects.filter(workspace_id=workspace_id, user_id=invitation.invited_by_id).first())
        if not _may_offer(maker, invitation.role):
            raise InvitationNotFound("No such invitation.")
        if Membership.objects.filter(workspace_id=workspace_id, user=user).exists():
            raise AlreadyMember("You are a member of this workspace already.")
        quota_check(name="members", used=Membership.objects.filter(workspace_id=workspace_id).count())
        seat = Membership.objects.create(workspace_id=workspace_id, user=user, role=invitation.role)
        assert maker is not None  # _may_offer
        seat_given.send(sender=Membership, giver=maker, seat=seat)
        invitation.accepted_by, invitation.accepted_at = user, seat.created_at
        invitation.save(update_fields=["accepted_by", "accepted_at"])
        return Membership.objects.select_related("workspace").get(pk=seat.pk)

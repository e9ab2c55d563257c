"""Changes of workspaces.

Apart from the account services (auteur/users/services.py), which the authentication class loads
while the API's error types are still being defined.
"""

from __future__ import annotations

from django.db import transaction

from auteur.core import rls
from auteur.core.quotas import quota_check, quota_lock
from auteur.users.models import Membership, User, Workspace
from auteur.users.roles import Role
from auteur.users.selectors import require


def workspace_create(*, user: User, name: str) -> Membership:
    """A team workspace with the user as its owner; QuotaExceeded past the user's `workspaces` quota.

    On the owner's login: the API's role adds no member to a workspace (the owner's seat of a new
    one included); what may be added is decided here."""
    with rls.trusted(), transaction.atomic():
        quota_lock(user_id=user.pk)
        quota_check(name="workspaces", used=Workspace.objects.filter(created_by=user, personal=False).count())
        workspace = Workspace.objects.create(name=name, created_by=user)
        return Membership.objects.create(workspace=workspace, user=user, role=Role.OWNER)


def workspace_rename(*, membership: Membership, name: str) -> Workspace:
    """Rename the member's workspace, if their role allows it."""
    require(membership, "workspace.rename")
    workspace = membership.workspace
    workspace.name = name
    workspace.save(update_fields=["name", "updated_at"])
    return workspace

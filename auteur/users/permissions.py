"""Every API view's permission: a signed-in caller, and in a team workspace a role that allows the
action the view names for the request's method (auteur/users/workspace_context.py)."""

from __future__ import annotations

from typing import Any

from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request

from auteur.core.throttling import count_refused
from auteur.users.workspace_context import seat_of


def workspace_action(view: Any, method: str) -> str | None:
    """The action (auteur/users/roles.py) a view names for `method` (HEAD is GET's); None if none."""
    actions: dict[str, str] = getattr(view, "workspace_actions", {})
    return actions.get("GET" if method == "HEAD" else method)


class WorkspacePermission(IsAuthenticated):
    """Signed in; and in a team workspace, allowed the view's action by the caller's role (403
    `permission_denied` otherwise, naming the action and the role). In one's personal workspace one
    is its owner, and every action is one's own."""

    def has_permission(self, request: Request, view: Any) -> bool:
        # Imported here: DRF imports this module (its default permission) while its own views
        # module, which the error types need, is still loading.
        from auteur.users.errors import PermissionDenied
        from auteur.users.selectors import require_seat

        if not super().has_permission(request, view):
            return False
        seat = seat_of(request._request)
        if seat is None or seat.personal:
            return True
        action = workspace_action(view, request.method or "") if getattr(view, "acts_in_workspace", True) else None
        if action is None or not seat.may(action):
            count_refused(request, seat.member_id)
        if action is None and seat.key:
            raise PermissionDenied("An API key acts in its workspace only: this is for the person signed in.",
                                   details={"action": None, "role": seat.role, "scope": None})
        if action is None:
            raise PermissionDenied("This is not done in a team workspace: send it without the Auteur-Workspace "
                                   "header.", details={"action": None, "role": seat.role})
        require_seat(seat, action)
        return True

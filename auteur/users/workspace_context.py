"""The workspace a request acts in, named by its `Auteur-Workspace` header, and the caller's seat there.

Without the header (or naming the caller's own id), a request acts in the caller's personal
workspace, as the caller's own account, exactly as before workspaces existed. With the id of a team
workspace the caller is a member of, it acts as that workspace's account (the owner of the team's
work), under the caller's role there; any other value is 404 `workspace_not_found`, whether the
workspace exists or not. Views that are about the caller themself (their profile, their list of
workspaces, accepting an invitation) set `acts_in_workspace = False` and ignore the header.

What a role may do is decided by auteur/users/roles.py: each API view names the action of each of
its methods in `workspace_actions` (a view that names none is refused in a team workspace), and
WorkspacePermission checks it before the view runs.
"""

from __future__ import annotations

import contextvars
import uuid
from dataclasses import dataclass
from typing import Any

from django.http import HttpRequest

from auteur.users.roles import allowed, scope_allows

WORKSPACE_HEADER = "Auteur-Workspace"
WORKSPACE_META_KEY = "HTTP_AUTEUR_WORKSPACE"
_SEAT = "auteur_workspace_seat"


@dataclass(frozen=True)
class Seat:
    """Where a request acts: the workspace (its account's id), the member acting (the signed-in
    person) and their role there."""

    workspace_id: uuid.UUID
    member_id: uuid.UUID
    role: str
    # An API key's scopes (its member_id is the key's id, its role KEY_ROLE); None for a person.
    scopes: frozenset[str] | None = None
    rate_limit: int | None = None  # an API key's requests per minute

    @property
    def personal(self) -> bool:
        return self.workspace_id == self.member_id

    @property
    def key(self) -> bool:
        return self.scopes is not None

    def may(self, action: str) -> bool:
        """Whether the seat allows `action`: a person's by their role, a key's by its scopes."""
        if self.scopes is not None:
            return scope_allows(self.scopes, action)
        return allowed(self.role, action)


KEY_ROLE = "key"  # the role an API key's seat shows


def named_workspace(request: HttpRequest, view: Any) -> str | None:
    """The workspace the request's header names, if the view acts in one; None for the personal."""
    if not getattr(view, "acts_in_workspace", True):
        return None
    value = request.META.get(WORKSPACE_META_KEY, "").strip()
    return value or None


def seat_set(request: HttpRequest, seat: Seat) -> None:
    setattr(request, _SEAT, seat)


# Whether the running request may see the balance of the account it acts as (a job's ledger
# entries carry it), and a spend cap's limits: set for every authenticated request from its seat.
# Anything else sees nothing: what is sent outside a request (a webhook's payload, a `Prefer:
# wait` answer) decides from its reader's seat in the database (auteur.users.selectors
# .member_sees_credits), never from this.
_balances_shown: contextvars.ContextVar[bool] = contextvars.ContextVar("auteur_balances_shown", default=False)


def show_balances(shown: bool) -> None:
    _balances_shown.set(shown)


def balances_shown() -> bool:
    return _balances_shown.get()


def seat_of(request: HttpRequest) -> Seat | None:
    """The request's seat once authenticated (None before, or without a token)."""
    seat: Seat | None = getattr(request, _SEAT, None)
    return seat


# A member removed from a team workspace, or given another role, has their open event streams of
# it closed: the change appends the member's id (and why) to this stream of the
# workspace, which every process's stream reader follows while one of its connections reads the
# workspace's events (realtime/hub.py).
SEAT_ENDS_PREFIX = "auteur:streams:seat-ends:"
SEAT_ENDS_KEEP = 100  # entries per workspace; a reader only needs those since it started following
# Why a member's streams close, in each entry: the seat ended (removed, a key revoked, an account
# disabled, a role that no longer sees jobs), or its role changed to another that still sees them.
SEAT_ENDED, SEAT_CHANGED = "ended", "changed"


def seat_ends_key(workspace_id: uuid.UUID | str) -> str:
    return f"{SEAT_ENDS_PREFIX}{workspace_id}"

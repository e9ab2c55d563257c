"""The roles of a workspace's members and what each may do: the one place a permission is decided.

Every check of a member's role asks `allowed(role, action)`; the table below is the whole rule, and
the documentation's role table is generated from it (docs/hooks.py). The roles follow what teams
buy in the editors and job APIs people compare Auteur with:

- owner: everything, including what ends the workspace; there is always at least one.
- admin: runs the workspace for its owners: its name, its members (never an owner's seat).
- editor: makes things: projects, media, jobs (spending the pool's credits).
- viewer: sees the work and comments on it; changes and spends nothing.
- billing: pays for the workspace (plans, packs, usage), and sees no content.

A caller who is not a member of a workspace gets 404 for it and for everything in it, never 403
(auteur/users/selectors.py): whether a workspace exists is not revealed to outsiders. A member whose
role does not allow an action gets 403 `permission_denied`.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db import models


class Role(models.TextChoices):
    OWNER = "owner"
    ADMIN = "admin"
    EDITOR = "editor"
    VIEWER = "viewer"
    BILLING = "billing"


@dataclass(frozen=True)
class Action:
    name: str  # what the API's 403 names in `details.action`
    description: str  # for the documentation's table
    roles: frozenset[Role]


EVERY_ROLE = frozenset(Role)
RUNS_IT = frozenset({Role.OWNER, Role.ADMIN})
MAKES_WORK = frozenset({*RUNS_IT, Role.EDITOR})
SEES_WORK = frozenset({*MAKES_WORK, Role.VIEWER})

ACTIONS: dict[str, Action] = {
    a.name: a
    for a in (
        Action("workspace.view", "see the workspace, its name and one's own role", EVERY_ROLE),
        Action("workspace.rename", "rename the workspace", RUNS_IT),
        Action("projects.view", "see projects, their timelines, media and captions", SEES_WORK),
        Action("projects.edit", "create, change and delete projects, their timelines and media", MAKES_WORK),
        Action("comments.view", "read the comments on projects' timelines", SEES_WORK),
        Action("comments.write", "comment on a timeline, reply, resolve and reopen threads", SEES_WORK),
        Action("comments.moderate", "delete any member's comment", RUNS_IT),
        Action("voices.view", "see the cloned voices", SEES_WORK),
        Action("voices.edit", "clone and delete voices", MAKES_WORK),
        Action("jobs.view", "see jobs, their events and what they made", SEES_WORK),
        Action("jobs.run", "quote, submit, cancel and retry jobs, spending the workspace's credits", MAKES_WORK),
        Action("credits.view", "see the workspace's credit balance and ledger",
               frozenset({Role.OWNER, Role.ADMIN, Role.EDITOR, Role.BILLING})),
        Action("budgets.manage", "set each member's monthly budget of the workspace's credits", RUNS_IT),
        Action("billing.view", "see the workspace's plan and what is on offer", frozenset({*RUNS_IT, Role.BILLING})),
        Action("billing.manage", "buy plans and credit packs, and open the billing portal",
               frozenset({Role.OWNER, Role.BILLING})),
        Action("webhooks.manage", "see, add, test and delete webhooks, their deliveries and signing secret", RUNS_IT),
        Action("members.view", "see the members, their roles, names and emails", EVERY_ROLE),
        Action("members.invite", "invite members, see and revoke pending invitations", RUNS_IT),
        Action("members.set_role", "change a member's role", RUNS_IT),
        Action("members.remove", "remove another member", RUNS_IT),
        # An owner's seat: offering, granting, changing or removing one. Every member may leave
        # (but the last owner), which needs no action.
        Action("members.manage_owners", "invite, make, change or remove an owner", frozenset({Role.OWNER})),
    )
}


def allowed(role: str, action: str) -> bool:
    """Whether a member with `role` may do `action` (a name of ACTIONS; any other is a bug)."""
    return role in ACTIONS[action].roles


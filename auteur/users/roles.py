"""The roles of a workspace's members and what each may do: the one place a permission is decided.

Every check of a member's role asks `allowed(role, action)`; the table below is the whole rule, and
the documentation's role table is generated from it (docs/hooks.py). The roles follow what teams
buy in the editors and job APIs people compare Auteur with:

- owner: everything, including what ends the workspace; there is always at least one.
- admin: runs the workspace for its owners: its name, its members (never an owner's or a billing
  seat), within the budget an owner gives them.
- editor: makes things: projects, media, jobs (spending the pool's credits).
- viewer: sees the work and comments on it; changes and spends nothing.
- billing: pays for the workspace (plans, packs, usage), and sees no content.

An API key (auteur/users/keys.py) acts in its workspace as a service member whose role is its
scopes: an action is allowed to a key only if the action names a scope (`Action.scope`) and the key
holds it; `*:write` includes `*:read`. Actions that name none (the workspace itself, its members, its
name, its keys, budgets and caps) are people's only. A key's scopes are those its creator's role allows.

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


# What an API key may be given: an operation group, read or write.
SCOPES = ("jobs:read", "jobs:write", "projects:read", "projects:write", "media:read", "media:write",
          "credits:read", "credits:write", "webhooks:read", "webhooks:write")
ANY_KEY = "*"  # an action every key may do (`Action.scope`)


@dataclass(frozen=True)
class Action:
    name: str  # what the API's 403 names in `details.action`
    description: str  # for the documentation's table
    roles: frozenset[Role]
    scope: str | None = None  # the scope a key needs (ANY_KEY: none); None: never a key


EVERY_ROLE = frozenset(Role)
RUNS_IT = frozenset({Role.OWNER, Role.ADMIN})
MAKES_WORK = frozenset({*RUNS_IT, Role.EDITOR})
SEES_WORK = frozenset({*MAKES_WORK, Role.VIEWER})

ACTIONS: dict[str, Action] = {
    a.name: a
    for a in (
        # The workspaces endpoints are about a person's own seats: a key is refused them (it sees
        # its workspace's work through the scopes below).
        Action("workspace.view", "see the workspace, its name and one's own role", EVERY_ROLE),
        Action("job_types.view", "see the job types, their prices and which of them this server runs", EVERY_ROLE,
               ANY_KEY),
        Action("workspace.rename", "rename the workspace", RUNS_IT),
        # Whether an attestation may stand for a person's consent to the use of their face: the owners'
        # choice, as it decides what the admins' own attestations are worth.
        Action("workspace.likeness_policy", "choose the workspace's likeness policy (verified or attested consents)",
               frozenset({Role.OWNER})),
        # How strictly the content policy screens the workspace's requests: never below the platform's.
        Action("workspace.content_policy", "choose the workspace's content policy (standard or strict)",
               frozenset({Role.OWNER})),
        Action("projects.view", "see projects and their timelines", SEES_WORK, "projects:read"),
        Action("projects.edit", "create, change and delete projects and their timelines", MAKES_WORK,
               "projects:write"),
        Action("media.view", "see projects' media and their captions", SEES_WORK, "media:read"),
        Action("media.edit", "upload, publish and delete projects' media", MAKES_WORK, "media:write"),
        Action("comments.view", "read the comments on projects' timelines", SEES_WORK, "projects:read"),
        Action("comments.write", "comment on a timeline, reply, resolve and reopen threads", SEES_WORK,
               "projects:write"),
        Action("comments.moderate", "delete any member's comment", RUNS_IT),
        Action("voices.view", "see the cloned voices", SEES_WORK, "media:read"),
        Action("voices.edit", "clone and delete voices", MAKES_WORK, "media:write"),
        Action("consents.view", "see the voice and likeness consents, and who attested a likeness", SEES_WORK,
               "media:read"),
        # A person's word that the workspace holds someone's consent: never a key's.
        Action("consents.attest", "attest a person's consent to the use of their face (under the attested policy)",
               RUNS_IT),
        Action("jobs.view", "see jobs, their events and what they made", SEES_WORK, "jobs:read"),
        Action("jobs.run", "quote, submit, cancel and retry jobs, spending the workspace's credits", MAKES_WORK,
               "jobs:write"),
        Action("credits.view", "see the workspace's credit balance, ledger and usage",
               frozenset({Role.OWNER, Role.ADMIN, Role.EDITOR, Role.BILLING}), "credits:read"),
        Action("budgets.manage", "set each member's monthly budget and each API key's spend caps",
               RUNS_IT),
        # Those who set budgets are held to theirs by an owner: an admin sets no admin's budget, their
        # own included, and gives other members at most what remains of their own (credits/services/budgets.py).
        Action("budgets.manage_admins", "set an owner's or an admin's monthly budget, one's own included",
               frozenset({Role.OWNER})),
        Action("keys.manage", "create, see and revoke the workspace's API keys", RUNS_IT),
        Action("billing.view", "see the workspace's plan and what is on offer", frozenset({*RUNS_IT, Role.BILLING}),
               "credits:read"),
        Action("billing.manage", "buy plans and credit packs, open the billing portal, and set the workspace's "
               "monthly spend cap",
               frozenset({Role.OWNER, Role.BILLING}), "credits:write"),
        Action("webhooks.view", "see the webhooks and their deliveries", RUNS_IT, "webhooks:read"),
        Action("webhooks.manage", "add, test and delete webhooks, and see and rotate their signing secrets",
               RUNS_IT, "webhooks:write"),
        Action("members.view", "see the members, their roles, names and emails", EVERY_ROLE),
        Action("members.invite", "invite members, see and revoke pending invitations", RUNS_IT),
        Action("members.set_role", "change a member's role", RUNS_IT),
        Action("members.remove", "remove another member", RUNS_IT),
        # An owner's seat: offering, granting, changing or removing one. Every member may leave
        # (but the last owner), which needs no action.
        Action("members.manage_owners", "invite, make, change or remove an owner", frozenset({Role.OWNER})),
    )
}


# What giving a seat of each role takes, beyond `members.invite` (an invitation) or `members.set_role`
# (a change of role): the actions its giver must hold too. The billing role sets the workspace's
# cap and buys its credits, so only those who hold both may give it: an admin who could make a
# billing seat (a second account of their own) could lift the cap the owners set on their spending.
GIVING: dict[Role, tuple[str, ...]] = {
    Role.OWNER: ("members.manage_owners",),
    Role.ADMIN: (),
    Role.EDITOR: (),
    Role.VIEWER: (),
    Role.BILLING: ("billing.manage", "members.manage_owners"),
}


def allowed(role: str, action: str) -> bool:
    """Whether a member with `role` may do `action` (a name of ACTIONS; any other is a bug)."""
    return role in ACTIONS[action].roles


def may_give(role: str, given: str) -> bool:
    """Whether a member with `role` may give a seat with role `given` (GIVING), once allowed to invite or
    to change roles at all."""
    return all(allowed(role, action) for action in GIVING[Role(given)])


def givers(given: str) -> list[Role]:
    """The roles that may give a seat with role `given` by invitation or role change."""
    return [role for role in Role if allowed(role, "members.invite") and allowed(role, "members.set_role")
            and may_give(role, given)]


def scope_allows(scopes: frozenset[str], action: str) -> bool:
    """Whether a key holding `scopes` may do `action`."""
    needed = ACTIONS[action].scope
    if needed is None:
        return False
    if needed == ANY_KEY or needed in scopes:
        return True
    group, _, kind = needed.partition(":")
    return kind == "read" and f"{group}:write" in scopes


def scopes_allowed_to(role: str) -> list[str]:
    """The scopes a member with `role` may give a key: those of whose actions the role may do all."""
    def gives(scope: str, action: Action) -> bool:
        return action.scope not in (None, ANY_KEY) and scope_allows(frozenset({scope}), action.name)

    return [scope for scope in SCOPES
            if all(role in action.roles for action in ACTIONS.values() if gives(scope, action))]


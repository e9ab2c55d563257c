"""Per-user quotas: every limit on what one user may keep, with its setting, its check and its error.

A quota is checked where the thing is created, inside the creating transaction and after
``quota_lock``, so two concurrent requests of one user cannot both pass the same check (a
workspace's own quotas, members and invitations, after its row is locked instead). What
counts as use is measured by the app that owns it (media: bytes stored, voices; projects:
projects) and handed to ``quota_check``: this module imports no app.

EDL history is the one quota that never refuses: past its limit the oldest undo steps are
dropped (projects/edl/versions.py). Refusing a save would lose the user's edit, and a bounded
undo is what every editor offers; undo keeps working over the most recent steps.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction

from auteur.core.errors import ApplicationError
from auteur.users.models import User


@dataclass(frozen=True)
class Quota:
    name: str  # what clients see in ``details.quota``
    setting: str  # the Django setting (read from the environment in auteur/settings/)
    what: str  # the unit, for the message


QUOTAS: dict[str, Quota] = {
    q.name: q
    for q in (
        # Sum of file_size_bytes of the user's media files, uploads in progress included.
        Quota("storage_bytes", "AUTEUR_QUOTA_STORAGE_BYTES", "bytes of stored media"),
        Quota("voices", "AUTEUR_QUOTA_VOICES", "voices"),
        # Consent challenges issued and neither read nor expired.
        Quota("consent_challenges", "AUTEUR_CONSENT_OPEN_CHALLENGES", "unused consent challenges"),
        Quota("projects", "AUTEUR_QUOTA_PROJECTS", "projects"),
        # Team workspaces the user created.
        Quota("workspaces", "AUTEUR_QUOTA_WORKSPACES", "team workspaces"),
        # Per workspace: its members, and its invitations neither taken, revoked nor expired.
        Quota("members", "AUTEUR_QUOTA_MEMBERS", "members of the workspace"),
        Quota("invitations", "AUTEUR_QUOTA_INVITATIONS", "pending invitations of the workspace"),
        # Per project, replies included (under the project's row lock).
        Quota("comments", "AUTEUR_QUOTA_COMMENTS", "comments on the project"),
        # Per project, and pruned rather than refused (see above).
        Quota("edl_history", "AUTEUR_EDL_HISTORY", "undo steps per project"),
    )
}


class QuotaExceeded(ApplicationError):
    code = "quota_exceeded"


def quota_limit(name: str) -> int:
    """The limit now (read at call time, so a changed setting applies at once)."""
    return int(getattr(settings, QUOTAS[name].setting))


def quota_check(*, name: str, used: int, adding: int = 1) -> None:
    """Raise QuotaExceeded (details: quota, limit, used, requested) unless ``used + adding`` fits."""
    limit = quota_limit(name)
    if used + adding > limit:
        raise QuotaExceeded(
            f"This would go over your quota of {limit} {QUOTAS[name].what} ({used} in use).",
            details={"quota": name, "limit": limit, "used": used, "requested": adding},
        )


def quota_lock(*, user_id: uuid.UUID | str) -> None:
    """Lock the user's row until the transaction ends: the quota checks of one user take turns.

    FOR NO KEY UPDATE, not FOR UPDATE: the foreign keys of the rows a user's requests insert (jobs,
    ledger entries, spend counters) take FOR KEY SHARE on this row, which it does not block. A
    submission holds this lock while it waits for the account's (credits/lock_objects.py: this row
    comes before the account), and a charge, refund or cap change holds the account while its
    foreign keys, checked at its commit (deferred), take that KEY SHARE: with FOR UPDATE the two
    would deadlock."""
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("quota_lock needs a transaction: the lock ends with it")
    list(User.objects.select_for_update(no_key=True).filter(pk=user_id).values_list("pk", flat=True))

"""Making and revoking a workspace's API keys (auteur/users/keys.py), by its owners and admins.

Each runs inside `acting` (the workspace's row locked, the actor's seat read again): a member
demoted a moment ago makes no key. A key's scopes are at most what its maker's role may do, so a
key never does more than the person who made it could: a member removed, or given a role that
may not do what their key's scopes allow, has that key revoked with the change
(auteur/users/workspace_services.py), and a key's charges count on its maker's budget too.
"""

from __future__ import annotations

import uuid
import zlib
from collections.abc import Iterable
from datetime import datetime

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from auteur.core import rls
from auteur.core.errors import ApplicationError
from auteur.users.errors import KeyLimitReached, KeyNotFound, PermissionDenied
from auteur.users.keys import key_generate, key_hash, visible_part
from auteur.users.models import ApiKey, Membership, Workspace
from auteur.users.payers import workspace_payer_id
from auteur.users.roles import SCOPES, scopes_allowed_to
from auteur.users.selectors import require
from auteur.users.workspace_services import acting, streams_end

# The first key of the advisory lock that serializes key making per paying account (the users'
# locks take the one-bigint form, the job types' another first key: no overlap).
_ACCOUNT_KEYS_LOCK_CLASS = 0x4B45


def api_key_list(*, membership: Membership) -> list[ApiKey]:
    """The workspace's keys, newest first, revoked and expired ones included (what they spent
    stays theirs). Read on the owner's login: the workspace's rows are its account's."""
    require(membership, "keys.manage")
    with rls.trusted():
        return list(ApiKey.objects.filter(user_id=membership.workspace_id))


def api_key_get(*, membership: Membership, key_id: uuid.UUID | str) -> ApiKey:
    require(membership, "keys.manage")
    with rls.trusted():
        return _key(membership.workspace_id, key_id)


def _key(workspace_id: uuid.UUID, key_id: uuid.UUID | str) -> ApiKey:
    try:
        pk = uuid.UUID(str(key_id))
    except ValueError:
        raise KeyNotFound("No such API key.") from None
    key = ApiKey.objects.filter(pk=pk, user_id=workspace_id).first()
    if key is None:
        raise KeyNotFound("No such API key.")
    return key


def api_key_create(*, membership: Membership, name: str, scopes: Iterable[str], expires_at: datetime | None = None,
                   rate_limit_per_minute: int | None = None) -> tuple[ApiKey, str]:
    """A new key of the member's workspace and its text, which is shown this once. 403
    `permission_denied` for a scope the member's role may not give; 400 `invalid_expiry` for an
    expiry not in the future, `invalid_rate_limit` for a rate limit above the service's for keys; 409
    `key_limit_reached` past AUTEUR_MAX_KEYS_PER_WORKSPACE keys in use in the workspace, or
    AUTEUR_MAX_KEYS_PER_ACCOUNT in the workspaces its paying account pays for (auteur/users/payers.py)."""
    wanted = sorted(set(scopes))
    unknown = [scope for scope in wanted if scope not in SCOPES]
    if unknown or not wanted:
        raise ApplicationError("Name at least one scope, each one of: " + ", ".join(SCOPES) + ".",
                               code="invalid_scopes", details={"unknown": unknown, "scopes": list(SCOPES)})
    now = timezone.now()
    most = settings.AUTEUR_RATE_LIMIT_KEY_PER_MINUTE
    if rate_limit_per_minute is not None and rate_limit_per_minute > most:
        # A key may be held to less than the service's limit for keys, never given more.
        raise ApplicationError(f"A key's rate limit is at most {most} requests a minute.", code="invalid_rate_limit",
                               details={"rate_limit_per_minute": rate_limit_per_minute, "max": most})
    if expires_at is not None and expires_at <= now:
        raise ApplicationError("A key's expiry must be in the future.", code="invalid_expiry",
                               details={"expires_at": expires_at.isoformat()})
    with acting(membership, "keys.manage") as actor:
        beyond = [scope for scope in wanted if scope not in scopes_allowed_to(actor.role)]
        if beyond:
            raise PermissionDenied(f"A workspace's {actor.role} may not give a key the scopes {', '.join(beyond)}.",
                                   details={"action": "keys.manage", "role": actor.role, "scopes": beyond})
        _keys_fit(actor.workspace, now)
        text = key_generate()
        key = ApiKey.objects.create(
            user_id=actor.workspace_id, name=name, prefix=visible_part(text), secret_hash=key_hash(text),
            scopes=wanted, created_by_id=actor.user_id, expires_at=expires_at,
            rate_limit_per_minute=rate_limit_per_minute)
    return key, text


def _keys_fit(workspace: Workspace, now: datetime) -> None:
    """Raise KeyLimitReached unless one more key fits the workspace's bound and its paying account's
    (inside `acting`: the workspace's row is locked; the account's keys are counted under a lock of
    their own, taken after it, so that keys made at once in two of its workspaces take turns)."""
    most = settings.AUTEUR_MAX_KEYS_PER_WORKSPACE
    if ApiKey.objects.filter(ApiKey.usable(now), user_id=workspace.pk).count() >= most:
        raise KeyLimitReached(f"A workspace has at most {most} keys in use: revoke one first.",
                              details={"limit": most, "scope": "workspace"})
    payer = workspace_payer_id(workspace)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)",
                       [_ACCOUNT_KEYS_LOCK_CLASS, zlib.crc32(payer.bytes) - 2**31])
    # The payer's own workspace and every one it created (a workspace whose creator is gone pays
    # for itself, and counts only its own keys).
    paid = Workspace.objects.filter(Q(created_by_id=payer) | Q(pk=payer)).values("pk")
    most = settings.AUTEUR_MAX_KEYS_PER_ACCOUNT
    if ApiKey.objects.filter(ApiKey.usable(now), user_id__in=paid).count() >= most:
        raise KeyLimitReached(f"The workspaces one account pays for have at most {most} keys in use together: "
                              f"revoke one first.", details={"limit": most, "scope": "account"})


def api_key_revoke(*, membership: Membership, key_id: uuid.UUID | str) -> ApiKey:
    """Revoke a key: refused from its next request on, its open event streams closed. Revoking a
    revoked key changes nothing."""
    with acting(membership, "keys.manage") as actor:
        key = _key(actor.workspace_id, key_id)
        _revoke(key, by_id=actor.user_id)
    return key


def api_keys_revoke_by_staff(*, keys: Iterable[ApiKey], staff_id: uuid.UUID) -> int:
    """Staff revoke keys (a leaked key reported to them): as the workspace's own revocation.
    Returns how many were in use."""
    revoked = 0
    with transaction.atomic():
        for key in ApiKey.objects.select_for_update().filter(pk__in=[key.pk for key in keys]):
            revoked += key.revoked_at is None
            _revoke(key, by_id=staff_id)
    return revoked


def _revoke(key: ApiKey, *, by_id: uuid.UUID | None) -> None:
    if key.revoked_at is None:
        key.revoked_at = timezone.now()
        key.revoked_by_id = by_id
        key.save(update_fields=["revoked_at", "revoked_by"])
        streams_end(workspace_id=key.user_id, member_id=key.pk)


def api_keys_revoke_of_account(*, user_id: uuid.UUID, by_id: uuid.UUID | None) -> int:
    """Revoke, in the caller's transaction, every key in use that the account made (in any
    workspace) and, for a person's account, its personal workspace's keys: what disabling or
    deleting the account does, so that no key outlives the person it acts for. Their open event
    streams close once it commits. Returns how many were in use.

    A team workspace's own account suspended by staff keeps its keys: they are refused while it is
    disabled (auteur/users/authentication.py) and work again when it is enabled."""
    personal = Q(user_id=user_id, user__is_team=False)
    with rls.trusted():
        keys = list(ApiKey.objects.select_for_update(of=("self",)).filter(Q(created_by_id=user_id) | personal,
                                                              revoked_at__isnull=True).order_by("pk"))
        for key in keys:
            _revoke(key, by_id=by_id)
    return len(keys)

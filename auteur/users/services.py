from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
from django.conf import settings
from django.contrib.auth.hashers import make_password
from django.core.exceptions import ValidationError
from django.core.validators import URLValidator, validate_email
from django.db import transaction
from django.utils import timezone

from auteur.core import rls
from auteur.core.prepared import PreparedRead
from auteur.users.models import Membership, User

logger = logging.getLogger(__name__)

EMAIL_MAX_LENGTH = User._meta.get_field("email").max_length or 255


def token_email(claims: dict[str, Any]) -> tuple[str, bool]:
    """The email a verified token carries, as the provider gave it, and whether the provider
    says it verified it; ("", False) when there is none or it is not an address.

    Only the top-level `email_verified` counts: Supabase's `user_metadata` is written by the user.
    """
    email = claims.get("email")
    if not isinstance(email, str) or not email.strip():
        return "", False
    email = email.strip()
    try:
        if len(email) > EMAIL_MAX_LENGTH:
            raise ValidationError("too long")
        validate_email(email)
    except ValidationError:
        # The account is still created (its `sub` names it); the address is not kept.
        logger.info("token email not recorded: not an address of at most %d characters", EMAIL_MAX_LENGTH)
        return "", False
    return email, claims.get("email_verified") is True


NAME_MAX_LENGTH = User._meta.get_field("name").max_length or 255
AVATAR_MAX_LENGTH = User._meta.get_field("avatar_url").max_length or 2000


def clean_name(value: Any) -> str:
    """A display name as kept: text, its whitespace runs made single spaces, no control
    characters, at most NAME_MAX_LENGTH characters; "" for anything else."""
    if not isinstance(value, str):
        return ""
    text = " ".join("".join(c for c in value if c.isprintable() or c.isspace()).split())
    return text[:NAME_MAX_LENGTH]


def clean_avatar_url(value: Any) -> str:
    """An avatar's address as kept: an https URL with a host, at most AVATAR_MAX_LENGTH
    characters; "" for anything else. It is only shown to its owner's apps, never fetched here."""
    if not isinstance(value, str) or len(value) > AVATAR_MAX_LENGTH:
        return ""
    try:
        URLValidator(schemes=["https"])(value)
    except ValidationError:
        return ""
    return value


def token_profile(claims: dict[str, Any]) -> tuple[str, str]:
    """The display name and avatar a token's `user_metadata` carries (the provider's profile:
    `full_name` or `name`, `avatar_url` or `picture`, as Supabase fills them from Google, GitHub
    and the like), cleaned; ("", "") when it carries none. The user can write this metadata, which
    is why only a profile is taken from it, never anything that grants access."""
    metadata = claims.get("user_metadata")
    if not isinstance(metadata, dict):
        return "", ""
    name = clean_name(metadata.get("full_name") or metadata.get("name"))
    avatar = clean_avatar_url(metadata.get("avatar_url") or metadata.get("picture"))
    return name, avatar


# Every authenticated request reads it: built once per process (auteur.core.prepared).
_BY_ID = PreparedRead(lambda pk: User.objects.filter(pk=pk), pk=uuid.UUID(int=1))


def user_get_or_create_from_claims(*, claims: dict[str, Any]) -> User:
    """The account a verified token names by its `sub`; the first token for an unknown `sub`
    creates it, whatever email it carries or lacks.

    An email never finds, links or takes an account (User's docstring): the new account records
    the token's email, and whether the provider verified it, and nothing is looked up by it.
    """
    user_id = uuid.UUID(str(claims["sub"]))
    user = _BY_ID.object(pk=user_id)
    if user is not None:
        if not (user.name or user.avatar_url or user.profile_edited_at):
            _profile_from_token(user, claims)
        return user
    email, verified = token_email(claims)
    name, avatar = token_profile(claims)
    # Two first requests may race: the loser's insert fails on the primary key and reads the row.
    # The database makes the account's personal workspace in the same statement (users.0008).
    user, _created = User.objects.get_or_create(
        pk=user_id, defaults={"email": email, "email_verified": verified, "password": make_password(None),
                              "name": name, "avatar_url": avatar},
    )
    return user


def _profile_from_token(user: User, claims: dict[str, Any]) -> None:
    """An account with no profile that its user never set takes the token's, once it carries one
    (accounts created before profiles were read from tokens, or whose provider added one later)."""
    name, avatar = token_profile(claims)
    if not (name or avatar):
        return
    User.objects.filter(pk=user.pk, name="", avatar_url="", profile_edited_at__isnull=True).update(
        name=name, avatar_url=avatar)
    user.name, user.avatar_url = name, avatar


def user_profile_update(*, user: User, fields: dict[str, str]) -> User:
    """Set the user's `name` and/or `avatar_url` (already cleaned; "" clears one). From then on the
    token's profile no longer replaces them."""
    for field, value in fields.items():
        setattr(user, field, value)
    user.profile_edited_at = timezone.now()
    user.save(update_fields=[*fields, "profile_edited_at", "updated_at"])
    return user


def user_issue_token(*, user: User, days: float = 7) -> str:
    """An HS256 token as the identity provider would issue it (development and scripts)."""
    now = datetime.now(UTC)
    claims = {
        "sub": str(user.id),
        "email": user.email,
        "aud": settings.AUTEUR_JWT_AUDIENCE,
        "role": "authenticated",
        "iat": int(now.timestamp()),
        "exp": int((now + timedelta(days=days)).timestamp()),
    }
    if settings.AUTEUR_JWT_ISSUER:
        claims["iss"] = settings.AUTEUR_JWT_ISSUER
    return jwt.encode(claims, settings.AUTEUR_JWT_SECRET, algorithm="HS256")


def user_find(*, ref: str) -> User | None:
    """The account `ref` names, for staff tools and scripts: its id, or an email exactly one
    account has (emails are not unique: with several, AmbiguousEmail)."""
    # Imported here: DRF imports this module (through the authentication class) while its own
    # views module, which auteur.core.errors imports, is still loading.
    from auteur.users.errors import AmbiguousEmail

    ref = ref.strip()
    try:
        return User.objects.filter(pk=uuid.UUID(ref)).first()
    except ValueError:
        pass
    users = list(User.objects.filter(email__iexact=ref).order_by("created_at")[:2])
    if len(users) > 1:
        raise AmbiguousEmail(f"Several accounts have the email {ref!r}; name the account by its id.")
    return users[0] if users else None


def user_get_or_create_by_email(*, email: str) -> User:
    """The one account with this email, created if there is none (development and scripts)."""
    user = user_find(ref=email)
    return user if user is not None else User.objects.create_user(email=email)


@transaction.atomic
def user_disable(*, user: User, staff_id: uuid.UUID | None) -> User:
    """Disable an account (staff): every credential it holds stops working together. In one
    transaction its row is marked inactive (its tokens are refused: 401) and every API key it made,
    or its personal workspace holds, is revoked (auteur.users.key_services.api_keys_revoke_of_account),
    so that a failure in either leaves both as they were. Its open event streams of team
    workspaces, and its keys', close once this commits. Enabling it again gives no key back."""
    # Imported here: see user_find.
    from auteur.users.key_services import api_keys_revoke_of_account
    from auteur.users.workspace_services import streams_end

    with rls.trusted():
        User.objects.filter(pk=user.pk).update(is_active=False, updated_at=timezone.now())
        api_keys_revoke_of_account(user_id=user.pk, by_id=staff_id)
        for workspace_id in Membership.objects.filter(user_id=user.pk).values_list("workspace_id", flat=True):
            streams_end(workspace_id=workspace_id, member_id=user.pk)
    user.is_active = False
    return user


@transaction.atomic
def user_delete(*, user: User, staff_id: uuid.UUID | None) -> None:
    """Delete an account (staff), revoking first, in the same transaction, the API keys it made in
    other workspaces, which outlive it (their maker is then unknown) and would otherwise go on
    working; its personal workspace's keys go with it. Its streams close as user_disable's."""
    user_disable(user=user, staff_id=staff_id)
    with rls.trusted():
        user.delete()

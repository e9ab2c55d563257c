from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
from django.conf import settings
from django.db import IntegrityError, transaction
from rest_framework.exceptions import AuthenticationFailed

from auteur.users.models import User


def user_get_or_create_from_claims(*, claims: dict[str, Any]) -> User:
    """The user a verified token names; the first token for an unknown `sub` creates it."""
    user_id = uuid.UUID(str(claims["sub"]))
    user = User.objects.filter(pk=user_id).first()
    if user is not None:
        return user
    email = str(claims.get("email") or "").strip().lower()
    if not email:
        raise AuthenticationFailed("The token has no email claim for this new account.")
    try:
        with transaction.atomic():
            return User.objects.create_user(email=email, id=user_id)
    except IntegrityError:
        # Two first requests raced (the other created it), or the email belongs to another id.
        user = User.objects.filter(pk=user_id).first()
        if user is None:
            raise AuthenticationFailed("This email is already registered to another account.") from None
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


def user_get_or_create_by_email(*, email: str) -> User:
    email = email.strip().lower()
    user = User.objects.filter(email=email).first()
    return user if user is not None else User.objects.create_user(email=email)

"""Bearer JWT authentication, Supabase-compatible.

The accepted algorithms are fixed by configuration and tied to the key type, never read from
the token: HS256 tokens are verified with AUTEUR_JWT_SECRET only, RS256/ES256 tokens only with a
key from AUTEUR_JWKS_URL. So `alg: none`, and an HS256 token signed with an RSA public key as
its HMAC secret (algorithm confusion), both fail verification.
"""

from __future__ import annotations

import logging
import uuid
from functools import lru_cache
from typing import Any

import jwt
from django.conf import settings
from rest_framework.authentication import BaseAuthentication
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.request import Request

from auteur.logging import user_id_var
from auteur.users.models import User
from auteur.users.services import user_get_or_create_from_claims

logger = logging.getLogger(__name__)

HMAC_ALGORITHMS = ("HS256",)
JWKS_ALGORITHMS = ("RS256", "ES256")
REQUIRED_CLAIMS = ("exp", "sub", "aud")
LEEWAY_SECONDS = 30
MAX_TOKEN_LENGTH = 8192


@lru_cache(maxsize=4)
def _jwks_client(url: str) -> jwt.PyJWKClient:
    # Keys are cached for lifespan seconds; a token with an unknown kid refetches once.
    return jwt.PyJWKClient(url, cache_keys=True, lifespan=300, timeout=5)


def decode_token(token: str) -> dict[str, Any]:
    """Verify a token and return its claims; raise jwt.InvalidTokenError otherwise."""
    if len(token) > MAX_TOKEN_LENGTH:
        raise jwt.InvalidTokenError("token too long")
    header = jwt.get_unverified_header(token)
    alg = header.get("alg")
    key: Any
    if alg in HMAC_ALGORITHMS:
        key, algorithms = settings.AUTEUR_JWT_SECRET, list(HMAC_ALGORITHMS)
    elif alg in JWKS_ALGORITHMS and settings.AUTEUR_JWKS_URL:
        try:
            key = _jwks_client(settings.AUTEUR_JWKS_URL).get_signing_key_from_jwt(token).key
        except jwt.PyJWKClientError as exc:
            raise jwt.InvalidTokenError(f"no usable signing key: {exc}") from exc
        algorithms = list(JWKS_ALGORITHMS)
    else:
        raise jwt.InvalidAlgorithmError("algorithm not allowed")
    claims: dict[str, Any] = jwt.decode(
        token,
        key=key,
        algorithms=algorithms,
        audience=settings.AUTEUR_JWT_AUDIENCE,
        issuer=settings.AUTEUR_JWT_ISSUER or None,
        leeway=LEEWAY_SECONDS,
        options={"require": list(REQUIRED_CLAIMS), "verify_signature": True},
    )
    try:
        uuid.UUID(str(claims["sub"]))
    except ValueError as exc:
        raise jwt.InvalidTokenError("sub is not a UUID") from exc
    return claims


class JWTAuthentication(BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request: Request) -> tuple[User, dict[str, Any]] | None:
        header = request.META.get("HTTP_AUTHORIZATION", "")
        if not header:
            return None
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthenticationFailed("Authorization must be 'Bearer <token>'.")
        try:
            claims = decode_token(token.strip())
        except jwt.InvalidTokenError as exc:
            # The reason goes to the log (without the token), not to the caller.
            logger.info("rejected token: %s", type(exc).__name__)
            raise AuthenticationFailed("The token is invalid or expired.") from exc
        user = user_get_or_create_from_claims(claims=claims)
        if not user.is_active:
            raise AuthenticationFailed("This account is disabled.")
        user_id_var.set(str(user.id))
        return user, claims

    def authenticate_header(self, request: Request) -> str:
        return f'{self.keyword} realm="api"'

"""Bearer JWT authentication, Supabase-compatible.

The algorithm is tied to the key, never chosen by the token: an HS256 token is verified with
AUTEUR_JWT_SECRET only (and refused outright once AUTEUR_JWT_HS256_ENABLED is off), any other
token only with the key its `kid` names in AUTEUR_JWKS_URL and with an algorithm of that key's
type (auteur/users/jwks.py). So `alg: none`, and an HS256 token signed with an RSA public key as
its HMAC secret (algorithm confusion), both fail verification. Every failure, a JWKS that cannot
be fetched included, is a 401.

A bearer credential that starts with `auteur_sk_` is an API key (auteur/users/keys.py), never a JWT:
it is found by its hash, and a key unknown, malformed, revoked or past its expiry is a 401 like a
bad token.

A verified token names its account by `sub` alone; its email is recorded on the account it creates
and never used to find one (auteur/users/services.py).
"""

from __future__ import annotations

import ipaddress
import logging
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import jwt
from cachetools import TLRUCache
from django.conf import settings
from django.utils import timezone
from rest_framework.authentication import BaseAuthentication
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.request import Request

from auteur.core import rls
from auteur.core.logging import user_id_var
from auteur.core.prepared import PreparedRead
from auteur.core.throttling import count_refused, count_unauthenticated
from auteur.users.jwks import ASYMMETRIC_ALGORITHMS, jwks_keys
from auteur.users.keys import FoundKey, key_find, key_mark_used, looks_like_key
from auteur.users.models import Membership, User
from auteur.users.payers import payer_of_workspace
from auteur.users.roles import Role, allowed
from auteur.users.services import user_get_or_create_from_claims
from auteur.users.workspace_context import KEY_ROLE, Seat, named_workspace, seat_set, show_balances

logger = logging.getLogger(__name__)

HMAC_ALGORITHMS = ("HS256",)
REQUIRED_CLAIMS = ("exp", "sub", "aud")
LEEWAY_SECONDS = 30
MAX_TOKEN_LENGTH = 8192
# bench/api_reads.py: a client sends the same token with every request until it expires, and
# verifying it (PyJWT's parsing, mostly) costs as much as the rest of a job read. So each process
# keeps the tokens it verified, by their exact text, for at most VERIFIED_TTL_SECONDS and never
# past their `exp` (with the same leeway); any other text is verified in full. Not longer, so
# that a signing key dropped from the JWKS stops working about when PyJWKClient's own key cache
# lets go of it (AUTEUR_JWKS_CACHE_SECONDS). At most VERIFIED_MAX_TOKENS, the least recently used leaving first.
VERIFIED_TTL_SECONDS = 60
VERIFIED_MAX_TOKENS = 4096


def _good_until(_token: str, claims: dict[str, Any], now: float) -> float:
    # PyJWT refuses a token once exp <= now - leeway; `exp` is an integer (it checked).
    return min(int(claims["exp"]) + LEEWAY_SECONDS, now + VERIFIED_TTL_SECONDS)


# token -> claims (read-only). Wall-clock timer, as `exp` is; the lock because cachetools' caches
# are not thread-safe and gunicorn's threaded workers share the process's cache.
_verified: TLRUCache[str, dict[str, Any]] = TLRUCache(VERIFIED_MAX_TOKENS, ttu=_good_until, timer=time.time)
_verified_lock = threading.Lock()


def decode_token(token: str) -> dict[str, Any]:
    """Verify a token and return its claims (never to be modified: they may be shared with the
    next request that sends the same token); raise jwt.PyJWTError otherwise."""
    with _verified_lock:
        claims = _verified.get(token)
    if claims is None:
        claims = _verify_token(token)
        with _verified_lock:
            _verified[token] = claims
    return claims


def _verify_token(token: str) -> dict[str, Any]:
    if len(token) > MAX_TOKEN_LENGTH:
        raise jwt.InvalidTokenError("token too long")
    # The header's `alg` and `kid` only pick the key; the key decides which algorithms it may
    # verify, and jwt.decode then checks the header, the signature and the claims in full.
    header = jwt.get_unverified_header(token)
    alg, kid = header.get("alg"), header.get("kid")
    key: Any
    if not isinstance(alg, str):
        raise jwt.InvalidAlgorithmError("alg is not a string")
    if alg in HMAC_ALGORITHMS and settings.AUTEUR_JWT_HS256_ENABLED:
        key, algorithms = settings.AUTEUR_JWT_SECRET, list(HMAC_ALGORITHMS)
    elif alg in ASYMMETRIC_ALGORITHMS and settings.AUTEUR_JWKS_URL:
        if not isinstance(kid, str) or not kid:
            raise jwt.InvalidTokenError("a JWKS token must name its key (kid)")
        signing_key = jwks_keys(settings.AUTEUR_JWKS_URL).signing_key(kid)
        if alg not in signing_key.algorithms:
            raise jwt.InvalidAlgorithmError("alg does not match the key's type")
        key, algorithms = signing_key.key, [alg]
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


def account_for_claims(claims: dict[str, Any]) -> User:
    """The active account a verified token names; the first token for an unknown `sub` creates it."""
    user = user_get_or_create_from_claims(claims=claims)
    if not user.is_active or user.is_team:
        # A team workspace's account owns work; nobody signs in as it.
        raise AuthenticationFailed("This account is disabled.")
    return user


class TokenExpired(AuthenticationFailed):
    """A token whose signature holds and whose time is over: 401 `invalid_token` (RFC 6750's
    error), `details.reason: "expired"`, and a challenge that says so."""

    default_detail = "The token has expired: sign in again for a new one."
    reason = "expired"


class JWTAuthentication(BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request: Request) -> tuple[User, Any] | None:
        # Nothing is shown until this request's seat says so: a thread's previous request (a sync
        # worker serves many) never lends it its own.
        show_balances(False)
        token = self.bearer_token(request)
        if token is None:
            return None
        if looks_like_key(token):
            return self.authenticate_key(request, token)
        try:
            claims = self.verified_claims(request)
            if claims is None:
                return None
            # The verified token's subject is the caller before its account is read: the API's
            # database role sees (and may create) only the row of `users` its session names.
            rls.act_as(claims["sub"])
            caller = self.caller(claims)
        except AuthenticationFailed:
            rls.act_as(None)
            # DRF checks throttles only once authentication has passed: without this count, token
            # guessing would be unlimited.
            count_unauthenticated(request)
            raise
        user_id_var.set(str(caller.id))
        named = named_workspace(request._request, (request.parser_context or {}).get("view"))
        if named is None or named == str(caller.id):
            seat_set(request._request, Seat(caller.id, caller.id, Role.OWNER))
            show_balances(True)
            return caller, claims
        seat = _team_seat(request, member_id=caller.id, named=named)
        seat_set(request._request, seat)
        # A job's ledger entries show the workspace's balance: to the roles that see its credits.
        show_balances(allowed(seat.role, "credits.view"))
        # From here on the request's queries are the workspace's: its account owns the team's rows.
        rls.act_as(seat.workspace_id)
        return self.team(seat, claims), claims

    def authenticate_key(self, request: Request, token: str) -> tuple[User, FoundKey]:
        """An API key's request: the key's workspace's account, and a seat of the key's own."""
        from auteur.users.errors import WorkspaceNotFound  # (see _team_seat)

        try:
            key = key_find(token)
            if key is None or not key.usable(timezone.now()):
                # Which of unknown, revoked or expired is not said: the key's holder can see it in
                # the workspace's list of keys.
                raise AuthenticationFailed("This API key is not valid: unknown, revoked or expired.")
            rls.act_as(key.user_id)
            account = _ACCOUNT.object(account_id=key.user_id)
            if account is None:
                raise AuthenticationFailed("This API key's workspace is disabled.")
        except AuthenticationFailed:
            rls.act_as(None)
            count_unauthenticated(request)
            raise
        user_id_var.set(str(key.user_id))
        named = named_workspace(request._request, (request.parser_context or {}).get("view"))
        if named is not None and named.lower() != str(key.user_id):
            count_refused(request, key.id, account_id=payer_of_workspace(key.user_id))
            raise WorkspaceNotFound("No such workspace.")
        seat = Seat(key.user_id, key.id, KEY_ROLE, key.scopes,
                    key.rate_limit_per_minute or settings.AUTEUR_RATE_LIMIT_KEY_PER_MINUTE)
        seat_set(request._request, seat)
        show_balances(seat.may("credits.view"))
        key_mark_used(key, _address(request))
        return self.key_caller(account), key

    def key_caller(self, account: User) -> Any:
        """What `request.user` is for an API key's request: its workspace's account."""
        return account

    def team(self, seat: Seat, claims: dict[str, Any]) -> User:
        """What `request.user` is in a team workspace: the workspace's account (404 while staff
        have disabled it)."""
        from auteur.users.errors import WorkspaceNotFound  # (see _team_seat)

        account = User.objects.filter(pk=seat.workspace_id, is_team=True, is_active=True).first()
        if account is None:
            raise WorkspaceNotFound("No such workspace.")
        return account

    def caller(self, claims: dict[str, Any]) -> User:
        """What `request.user` is: the token's account (read, or created for a first token)."""
        return account_for_claims(claims)

    def bearer_token(self, request: Request) -> str | None:
        """The request's bearer credential (None without an Authorization header)."""
        header = request.META.get("HTTP_AUTHORIZATION", "")
        if not header:
            return None
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            count_unauthenticated(request)
            raise AuthenticationFailed("Authorization must be 'Bearer <token>'.")
        return token.strip()

    def verified_claims(self, request: Request) -> dict[str, Any] | None:
        """The claims of the request's bearer token (None without an Authorization header)."""
        token = self.bearer_token(request)
        if token is None:
            return None
        try:
            return decode_token(token)
        except jwt.ExpiredSignatureError as exc:
            # Its signature held (checked before its time): telling its owner it expired tells a
            # forger nothing.
            raise TokenExpired() from exc
        except jwt.PyJWTError as exc:
            # The reason goes to the log (without the token), not to the caller.
            logger.info("rejected token: %s", type(exc).__name__)
            raise AuthenticationFailed(
                "The token is not valid here (its signature, issuer, audience or claims).") from exc

    def authenticate_header(self, request: Request) -> str:
        return f'{self.keyword} realm="api"'


def _address(request: Request) -> str | None:
    """The client's address as a key's "last used" records it (the proxies' forwarding, when
    trusted, was already applied to REMOTE_ADDR by the middleware)."""
    address = request.META.get("REMOTE_ADDR") or ""
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        return None


# The account an API key acts as, read once its workspace is the session's.
_ACCOUNT = PreparedRead(
    lambda account_id: User.objects.filter(pk=account_id, is_active=True),
    account_id=uuid.UUID(int=4),
)


def _team_seat(request: Request, *, member_id: uuid.UUID, named: str) -> Seat:
    """The caller's seat in the team workspace `named`, read as the caller (its own seats only);
    404 `workspace_not_found` unless they are a member of it and its account is active."""
    # Imported here: DRF imports this module while its own views module, which the error types
    # need, is still loading.
    from auteur.users.errors import WorkspaceNotFound

    try:
        workspace_id = uuid.UUID(named)
        row = _SEAT.first(workspace_id=workspace_id, member_id=member_id)
    except ValueError:
        row = None
    if row is None:
        count_refused(request, member_id)
        raise WorkspaceNotFound("No such workspace.")
    return Seat(workspace_id, member_id, row["role"])


# Every request in a team workspace reads it (bench/api_reads.py): built once per process.
_SEAT = PreparedRead(
    lambda workspace_id, member_id: Membership.objects.filter(
        workspace_id=workspace_id, user_id=member_id, user__is_active=True).values("role"),
    workspace_id=uuid.UUID(int=2), member_id=uuid.UUID(int=3),
)


class TokenSubject:
    """The caller of a request as its verified token names it, before its account row is read.

    `request.user` of the views that use DeferredAccountJWTAuthentication. `id` (and `pk`, which
    rate limits key on) comes from the token; account() does what JWTAuthentication does at once:
    read the row, create it for a first token, refuse a disabled account (401). A view must call
    account() unless what it reads proves the same thing: a row found by its owner's id *and* that
    owner being active (jobs.selectors.job_detail_get).
    """

    is_authenticated = True  # what DRF's IsAuthenticated checks: the token itself is verified
    is_anonymous = False

    def __init__(self, claims: dict[str, Any]) -> None:
        self.claims = claims
        self.id = self.pk = uuid.UUID(str(claims["sub"]))
        self._account: User | None = None

    def account(self) -> User:
        if self._account is None:
            self._account = account_for_claims(self.claims)
        return self._account


class DeferredAccountJWTAuthentication(JWTAuthentication):
    """The same token check, without reading the account: for a hot read that proves it anyway.

    The account read is a second query on every request; a view whose own query joins the caller's
    active account (and which falls back to TokenSubject.account() when that query finds nothing)
    answers exactly as with JWTAuthentication, one round trip cheaper.
    """

    def caller(self, claims: dict[str, Any]) -> TokenSubject:  # type: ignore[override]
        return TokenSubject(claims)

    def team(self, seat: Seat, claims: dict[str, Any]) -> TokenSubject:  # type: ignore[override]
        return WorkspaceSubject(claims, seat, lambda: JWTAuthentication.team(self, seat, claims))

    def key_caller(self, account: User) -> TokenSubject:
        return KeySubject(account)


class WorkspaceSubject(TokenSubject):
    """The caller of a deferred view in a team workspace: its id is the workspace's account's (the
    member's seat was read, which proves the member's account active); account() reads the
    workspace's account, as a view must unless what it reads proves that account active too."""

    def __init__(self, claims: dict[str, Any], seat: Seat, read: Callable[[], User]) -> None:
        super().__init__(claims)
        self.id = self.pk = seat.workspace_id
        self._read = read

    def account(self) -> User:
        if self._account is None:
            self._account = self._read()
        return self._account


class KeySubject(TokenSubject):
    """The caller of a deferred view with an API key: the key's workspace's account, already read."""

    def __init__(self, account: User) -> None:
        self.claims = {}
        self.id = self.pk = account.pk
        self._account = account

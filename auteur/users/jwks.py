"""The identity provider's public signing keys (AUTEUR_JWKS_URL), fetched rarely and on a bound.

A token names its key by `kid`, which the sender chooses freely. So what a token can make this
process do is bounded: a kid the JWKS did not have is remembered as unknown for a while
(AUTEUR_JWKS_UNKNOWN_KID_TTL_SECONDS), and the JWKS is fetched at most once per
AUTEUR_JWKS_MIN_REFETCH_SECONDS, whatever tokens arrive. A flood of tokens with random kids costs
at most that one fetch per interval, and a key the provider has just rotated in is found at the
next allowed fetch.

Each key is bound to the algorithms of its type (RSA: RS*/PS*, EC: the ES* of its curve, OKP:
EdDSA), narrowed to the JWK's own `alg` when it declares one. Symmetric (`oct`) keys are never
taken from a JWKS: an HS* token is verified with AUTEUR_JWT_SECRET only, never against a key
published here.
"""

from __future__ import annotations

import http.client
import json
import logging
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import jwt
from cachetools import TTLCache
from django.conf import settings

logger = logging.getLogger(__name__)

FETCH_TIMEOUT_SECONDS = 5
MAX_JWKS_BYTES = 1024 * 1024
# Unknown kids remembered at once; beyond it the oldest go first (they still cannot force a fetch).
MAX_UNKNOWN_KIDS = 10_000

RSA_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512")
EC_ALGORITHMS_BY_CURVE = {"P-256": ("ES256",), "P-384": ("ES384",), "P-521": ("ES512",)}
OKP_ALGORITHMS_BY_CURVE = {"Ed25519": ("EdDSA",), "Ed448": ("EdDSA",)}
# Every algorithm a JWKS key may verify: the only ones that ever reach the JWKS.
ASYMMETRIC_ALGORITHMS = (*RSA_ALGORITHMS, "ES256", "ES384", "ES512", "EdDSA")


@dataclass(frozen=True)
class SigningKey:
    kid: str
    key: Any  # the `cryptography` public key object
    algorithms: tuple[str, ...]


def key_algorithms(jwk: dict[str, Any]) -> tuple[str, ...]:
    """The algorithms a JWK may verify, from its type (and curve); () for a key never to be used."""
    kty, crv = jwk.get("kty"), jwk.get("crv")
    if kty == "RSA":
        allowed: tuple[str, ...] = RSA_ALGORITHMS
    elif kty == "EC" and isinstance(crv, str):
        allowed = EC_ALGORITHMS_BY_CURVE.get(crv, ())
    elif kty == "OKP" and isinstance(crv, str):
        allowed = OKP_ALGORITHMS_BY_CURVE.get(crv, ())
    else:
        return ()  # `oct` (a shared secret published in a JWKS) and anything unknown
    declared = jwk.get("alg")
    if declared is not None:
        # A key that declares an algorithm of another type is refused whole, not reinterpreted.
        allowed = (declared,) if declared in allowed else ()
    return allowed


def parse_jwks(document: bytes) -> dict[str, SigningKey]:
    """The usable signing keys of a JWKS document, by kid. Raises jwt.PyJWKClientError."""
    try:
        keys = json.loads(document)["keys"]
        if not isinstance(keys, list):
            raise TypeError("keys is not a list")
    except (ValueError, KeyError, TypeError) as exc:
        raise jwt.PyJWKClientError(f"the JWKS is not a JSON key set ({type(exc).__name__})") from exc
    found: dict[str, SigningKey] = {}
    for jwk in keys:
        if not isinstance(jwk, dict) or not isinstance(jwk.get("kid"), str) or jwk.get("use", "sig") != "sig":
            continue
        algorithms = key_algorithms(jwk)
        if not algorithms:
            continue
        try:
            # The algorithm is ours (one of the key's type), so a JWK's own `alg` cannot pick the parser.
            key = jwt.PyJWK(jwk, algorithm=algorithms[0]).key
        except jwt.PyJWTError as exc:
            logger.warning("JWKS key %r skipped: %s", jwk["kid"][:64], type(exc).__name__)
            continue
        found[jwk["kid"]] = SigningKey(kid=jwk["kid"], key=key, algorithms=algorithms)
    return found


def fetch_url(url: str) -> bytes:
    """GET the JWKS with a timeout and a size cap. Raises jwt.PyJWKClientConnectionError."""
    if not url.startswith(("https://", "http://")):
        raise jwt.PyJWKClientConnectionError("AUTEUR_JWKS_URL must be an http(s) URL")
    request = urllib.request.Request(url, headers={"Accept": "application/json", "User-Agent": "auteur-jwks"})  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=FETCH_TIMEOUT_SECONDS) as response:  # noqa: S310 - scheme checked
            body: bytes = response.read(MAX_JWKS_BYTES + 1)
    except (OSError, ValueError, http.client.HTTPException) as exc:  # URLError, HTTPError, timeouts: OSError
        raise jwt.PyJWKClientConnectionError(f"the JWKS could not be fetched ({type(exc).__name__})") from exc
    if len(body) > MAX_JWKS_BYTES:
        raise jwt.PyJWKClientError("the JWKS is too large")
    return body


class JwksKeys:
    """The keys of one JWKS URL, refreshed at most once per `min_refetch_seconds`."""

    def __init__(
        self,
        url: str,
        *,
        cache_seconds: float,
        min_refetch_seconds: float,
        unknown_kid_ttl_seconds: float,
        fetch: Callable[[str], bytes] = fetch_url,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url
        self.cache_seconds = cache_seconds
        self.min_refetch_seconds = min_refetch_seconds
        self._fetch = fetch
        self._clock = clock
        self._keys: dict[str, SigningKey] = {}
        self._fresh_until = float("-inf")
        self._last_fetch = float("-inf")
        self._unknown: TTLCache[str, bool] = TTLCache(MAX_UNKNOWN_KIDS, ttl=unknown_kid_ttl_seconds, timer=clock)
        # Held while deciding on (and doing) a fetch, so concurrent requests cause one fetch.
        self._lock = threading.Lock()

    def signing_key(self, kid: str) -> SigningKey:
        """The key named `kid`. Raises jwt.PyJWKClientError when there is none (or no JWKS)."""
        key = self._keys.get(kid)
        if key is not None and self._clock() < self._fresh_until:
            return key
        with self._lock:
            if kid in self._unknown:
                raise jwt.PyJWKClientError("unknown kid (remembered)")
            now = self._clock()
            fetched = False
            if now - self._last_fetch >= self.min_refetch_seconds:
                fetched = self._refresh(now)
            key = self._keys.get(kid)
            if key is None and fetched:
                # Only a set fetched just now proves the kid absent; without a fetch (too soon) it
                # may be a key rotated in since, found at the next allowed fetch.
                self._unknown[kid] = True
        if key is None:
            raise jwt.PyJWKClientError("unknown kid")
        return key

    def _refresh(self, now: float) -> bool:
        """Fetch the key set; False when that failed."""
        # A failed fetch counts too: an outage of the provider must not turn into a fetch per token.
        self._last_fetch = now
        try:
            keys = parse_jwks(self._fetch(self.url))
        except jwt.PyJWTError as exc:
            # The keys fetched before stay in use until a fetch succeeds: the provider being down
            # must not log every user out. Tokens with new kids wait for the next allowed fetch.
            logger.warning("JWKS refresh failed: %s", exc)
            return False
        self._keys = keys
        self._fresh_until = now + self.cache_seconds
        self._unknown.clear()
        return True


@lru_cache(maxsize=4)
def jwks_keys(url: str) -> JwksKeys:
    """The process's one key store for `url` (tests clear this cache after changing settings)."""
    return JwksKeys(
        url,
        cache_seconds=settings.AUTEUR_JWKS_CACHE_SECONDS,
        min_refetch_seconds=settings.AUTEUR_JWKS_MIN_REFETCH_SECONDS,
        unknown_kid_ttl_seconds=settings.AUTEUR_JWKS_UNKNOWN_KID_TTL_SECONDS,
    )

"""JWKS abuse: random kids cannot make the API hammer the identity provider, a key verifies only
the algorithms of its type, an external email never names an account, and every failure is a
401 with the error envelope, never a 500."""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from rest_framework.test import APIClient

from auteur.users import authentication
from auteur.users.jwks import JwksKeys
from auteur.users.models import User
from devstack.ports import free_port
from tests.auteur.conftest import claims, jwk_of
from tests.auteur.test_authentication import b64, hand_signed

VERIFY = "/api/v1/auth/verify"


def post_verify(token: str) -> tuple[int, dict]:
    response = APIClient(raise_request_exception=False).post(VERIFY, HTTP_AUTHORIZATION=f"Bearer {token}")
    return response.status_code, response.json()


def assert_401(token: str) -> None:
    status, body = post_verify(token)
    assert status == 401, body
    assert body["error"]["code"] == "invalid_token"


def verified(**overrides: object) -> dict[str, object]:
    return claims(email_verified=True, **overrides)


# ---------------------------------------------------------------- unknown kids and refetches


@pytest.mark.django_db
def test_a_thousand_random_kids_cause_one_jwks_fetch(jwks_server, rsa_key, settings):
    settings.AUTEUR_JWKS_MIN_REFETCH_SECONDS = 3600
    settings.AUTEUR_RATE_LIMIT_ANON_PER_MINUTE = 10_000
    tokens = [jwt.encode(verified(), rsa_key, algorithm="RS256", headers={"kid": uuid.uuid4().hex})
              for _ in range(1000)]
    for token in tokens[:20]:  # through the API: each one a 401 with the envelope
        assert_401(token)
    for token in tokens[20:]:
        with pytest.raises(jwt.PyJWTError):
            authentication.decode_token(token)
    assert jwks_server.fetches == 1
    # The keys that are there still work, without another fetch.
    assert post_verify(jwt.encode(verified(), rsa_key, algorithm="RS256", headers={"kid": "rsa-1"}))[0] == 200
    assert jwks_server.fetches == 1


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_unknown_kids_are_remembered_and_refetches_bounded(rsa_key, ec_key):
    """Fetches happen at most once per interval; a kid a fresh fetch lacked is refused for its TTL;
    a key rotated in is found at the next allowed fetch."""
    clock, fetched = FakeClock(), []
    published = [jwk_of(rsa_key, "rsa-1")]

    def fetch(url: str) -> bytes:
        fetched.append(clock.now)
        return json.dumps({"keys": published}).encode()

    keys = JwksKeys("http://127.0.0.1:1/jwks", cache_seconds=300, min_refetch_seconds=30,
                    unknown_kid_ttl_seconds=120, fetch=fetch, clock=clock)
    assert keys.signing_key("rsa-1").kid == "rsa-1"
    assert len(fetched) == 1
    for kid in ("x", "y", "z"):  # within the interval: refused, no fetch
        with pytest.raises(jwt.PyJWKClientError):
            keys.signing_key(kid)
    assert len(fetched) == 1

    clock.now += 31
    with pytest.raises(jwt.PyJWKClientError):
        keys.signing_key("ec-1")  # not published yet: fetched once, then remembered
    assert len(fetched) == 2
    published.append(jwk_of(ec_key, "ec-1"))
    clock.now += 31
    with pytest.raises(jwt.PyJWKClientError, match="remembered"):
        keys.signing_key("ec-1")
    assert len(fetched) == 2, "a remembered unknown kid never causes a fetch"

    clock.now += 120  # its TTL has passed: the next allowed fetch finds the rotated key
    assert keys.signing_key("ec-1").kid == "ec-1"
    assert len(fetched) == 3
    clock.now += 10_000  # the cached set expired: a known kid refetches once
    keys.signing_key("rsa-1")
    keys.signing_key("rsa-1")
    assert len(fetched) == 4


@pytest.mark.django_db
def test_a_failing_jwks_is_fetched_once_per_interval_whatever_tokens_arrive(jwks_server, rsa_key, settings):
    """A provider outage must not turn into one fetch (and one timeout) per request."""
    settings.AUTEUR_JWKS_MIN_REFETCH_SECONDS = 3600
    jwks_server.status, jwks_server.body = 500, b"upstream error"
    tokens = [jwt.encode(verified(), rsa_key, algorithm="RS256", headers={"kid": kid})
              for kid in ["rsa-1"] * 500 + [uuid.uuid4().hex for _ in range(500)]]
    for token in tokens[:10]:
        assert_401(token)
    for token in tokens[10:]:
        with pytest.raises(jwt.PyJWTError):
            authentication.decode_token(token)
    assert jwks_server.fetches == 1


@pytest.mark.django_db
def test_an_unreachable_jwks_is_a_401(settings, rsa_key):
    from auteur.users.jwks import jwks_keys

    settings.AUTEUR_JWKS_URL = f"http://127.0.0.1:{free_port()}/jwks.json"
    jwks_keys.cache_clear()
    try:
        assert_401(jwt.encode(verified(), rsa_key, algorithm="RS256", headers={"kid": "rsa-1"}))
    finally:
        jwks_keys.cache_clear()


@pytest.mark.django_db
@pytest.mark.parametrize("status, body, length", [
    (500, b"oops", None),
    (200, b"<html>", None),
    (200, b'{"keys": 3}', None),
    (200, b'{"keys": [{"kty": "RSA", "kid": "rsa-1", "n": "x"}]}', None),
    (200, b'{"keys": []}', 4096),  # cut short
    (200, b'{"keys": [' + b" " * (1024 * 1024) + b"]}", None),  # over the 1 MiB cap
], ids=["500", "html", "keys-not-a-list", "bad-key", "truncated", "oversize"])
def test_a_broken_jwks_answer_is_a_401(jwks_server, rsa_key, status, body, length):
    jwks_server.status, jwks_server.body, jwks_server.announced_length = status, body, length
    assert_401(jwt.encode(verified(), rsa_key, algorithm="RS256", headers={"kid": "rsa-1"}))


# ---------------------------------------------------------------- the algorithm follows the key


@pytest.mark.django_db
def test_each_key_type_verifies_its_own_algorithms(jwks_server, rsa_key, ec_key, ed_key):
    for alg in ("RS256", "RS512", "PS256"):
        assert post_verify(jwt.encode(verified(), rsa_key, algorithm=alg, headers={"kid": "rsa-1"}))[0] == 200, alg
    assert post_verify(jwt.encode(verified(), ec_key, algorithm="ES256", headers={"kid": "ec-1"}))[0] == 200
    assert post_verify(jwt.encode(verified(), ed_key, algorithm="EdDSA", headers={"kid": "ed-1"}))[0] == 200


@pytest.mark.django_db
def test_an_algorithm_of_another_key_type_is_refused(jwks_server, rsa_key, ec_key, ed_key):
    # Each token is correctly signed by some key of the JWKS, but names a key of another type.
    assert_401(jwt.encode(verified(), ec_key, algorithm="ES256", headers={"kid": "rsa-1"}))
    assert_401(jwt.encode(verified(), rsa_key, algorithm="RS256", headers={"kid": "ec-1"}))
    assert_401(jwt.encode(verified(), rsa_key, algorithm="RS256", headers={"kid": "ed-1"}))
    assert_401(jwt.encode(verified(), ed_key, algorithm="EdDSA", headers={"kid": "rsa-1"}))
    es256 = jwt.encode(verified(), ec_key, algorithm="ES256", headers={"kid": "ec-1"})
    _header, body, signature = es256.split(".")
    relabeled = b64(json.dumps({"alg": "ES384", "typ": "JWT", "kid": "ec-1"}).encode())
    assert_401(f"{relabeled}.{body}.{signature}")  # a P-256 key verifies ES256 only


@pytest.mark.django_db
def test_a_jwk_that_declares_its_algorithm_verifies_only_that_one(jwks_server, rsa_key):
    jwks_server.keys = [jwk_of(rsa_key, "rsa-1", alg="RS256")]
    assert post_verify(jwt.encode(verified(), rsa_key, algorithm="RS256", headers={"kid": "rsa-1"}))[0] == 200
    assert_401(jwt.encode(verified(), rsa_key, algorithm="PS256", headers={"kid": "rsa-1"}))


@pytest.mark.django_db
def test_hs256_is_never_verified_against_a_jwks_key(jwks_server, rsa_key):
    """Algorithm confusion: the public key as an HMAC secret, in every form an attacker could pick."""
    public = rsa_key.public_key()
    pem = public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    jwk_json = json.dumps(jwk_of(rsa_key, "rsa-1")).encode()
    for secret in (pem, jwk_json, pem.strip()):
        for alg in ("HS256", "HS384", "HS512"):
            assert_401(hand_signed({"alg": alg, "typ": "JWT", "kid": "rsa-1"}, verified(), key=secret))


@pytest.mark.django_db
def test_a_shared_secret_published_in_the_jwks_signs_nothing(jwks_server):
    secret = b"published-oct-key-0123456789abcdef"
    jwks_server.keys = [{"kty": "oct", "kid": "oct-1", "k": b64(secret), "alg": "HS256"}]
    body = verified()
    header = {"alg": "HS256", "typ": "JWT", "kid": "oct-1"}
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(body).encode())}"
    token = f"{signing_input}.{b64(hmac.new(secret, signing_input.encode(), hashlib.sha256).digest())}"
    assert_401(token)


@pytest.mark.django_db
@pytest.mark.parametrize("header", [
    {"alg": "none", "kid": "rsa-1"},
    {"alg": ["RS256"], "kid": "rsa-1"},
    {"alg": {"RS256": 1}, "kid": "rsa-1"},
    {"alg": "RS256", "kid": ["rsa-1"]},
    {"alg": "RS256", "kid": {"a": 1}},
    {"alg": "RS256"},
    {"alg": "RS256", "kid": ""},
], ids=["none", "alg-list", "alg-dict", "kid-list", "kid-dict", "no-kid", "empty-kid"])
def test_odd_headers_are_a_401_never_a_500(jwks_server, rsa_key, header):
    signing_input = f"{b64(json.dumps({**header, 'typ': 'JWT'}).encode())}.{b64(json.dumps(verified()).encode())}"
    assert_401(f"{signing_input}.{b64(b'x' * 256)}")


@pytest.mark.django_db
def test_hs256_can_be_turned_off_once_the_jwks_is_used(jwks_server, rsa_key, settings, make_token):
    hs256 = make_token()
    assert post_verify(hs256)[0] == 200
    settings.AUTEUR_JWT_HS256_ENABLED = False
    assert_401(make_token())
    assert post_verify(jwt.encode(verified(), rsa_key, algorithm="RS256", headers={"kid": "rsa-1"}))[0] == 200


# ---------------------------------------------------------------- an email names no account


@pytest.mark.django_db
@pytest.mark.parametrize("email_verified", [True, False, None, "true", 1],
                         ids=["true", "false", "missing", "string", "one"])
def test_an_external_email_never_gets_the_account_that_has_it(jwks_server, rsa_key, make_user, email_verified):
    """Verified or not, a token's email creates a separate account for its own `sub`."""
    victim = make_user(email="victim@example.com")
    attacker_sub = str(uuid.uuid4())
    token = jwt.encode(claims(sub=attacker_sub, email="Victim@Example.com", email_verified=email_verified),
                       rsa_key, algorithm="RS256", headers={"kid": "rsa-1"})
    assert post_verify(token) == (200, {"valid": True, "user_id": attacker_sub})
    attacker = User.objects.get(pk=attacker_sub)
    assert attacker.pk != victim.pk and attacker.email_verified is (email_verified is True)
    assert User.objects.get(pk=victim.pk).email == "victim@example.com"


@pytest.mark.django_db
def test_an_existing_account_signs_in_without_a_verified_email(jwks_server, rsa_key, make_user):
    user = make_user()
    token = jwt.encode(claims(sub=str(user.pk), email=user.email, email_verified=False), rsa_key,
                       algorithm="RS256", headers={"kid": "rsa-1"})
    assert post_verify(token) == (200, {"valid": True, "user_id": str(user.pk)})

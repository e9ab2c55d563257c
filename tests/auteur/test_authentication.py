"""JWTs are verified strictly: every forgery below gets 401 `invalid_token`; valid ones work."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from datetime import UTC, datetime, timedelta

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from rest_framework.test import APIClient

from auteur.users import authentication
from auteur.users.models import User
from tests.auteur.conftest import claims

VERIFY = "/api/v1/auth/verify"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hand_signed(header: dict[str, object], body: dict[str, object], key: bytes | None) -> str:
    """A token built by hand, as an attacker would: any header, any HMAC key, or no signature."""
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(body).encode())}"
    signature = b64(hmac.new(key, signing_input.encode(), hashlib.sha256).digest()) if key else ""
    return f"{signing_input}.{signature}"


def verify(token: str) -> tuple[int, dict]:
    client = APIClient(raise_request_exception=False)
    response = client.post(VERIFY, HTTP_AUTHORIZATION=f"Bearer {token}")
    return response.status_code, response.json()


def assert_rejected(token: str) -> None:
    status, body = verify(token)
    assert status == 401, body
    assert body["error"]["code"] == "invalid_token"


# ---------------------------------------------------------------- valid tokens


@pytest.mark.django_db
def test_a_valid_token_authenticates_and_the_first_one_creates_the_user(settings):
    body = claims()
    token = jwt.encode(body, settings.AUTEUR_JWT_SECRET, algorithm="HS256")
    status, response = verify(token)
    assert status == 200
    assert response == {"valid": True, "user_id": body["sub"]}
    user = User.objects.get(pk=str(body["sub"]))
    assert user.email == body["email"]
    assert not user.has_usable_password()

    assert verify(token)[0] == 200
    assert User.objects.filter(pk=str(body["sub"])).count() == 1


@pytest.mark.django_db
def test_rs256_and_es256_tokens_verify_against_the_jwks(jwks_server, rsa_key, ec_key):
    rs = jwt.encode(claims(email_verified=True), rsa_key, algorithm="RS256", headers={"kid": "rsa-1"})
    es = jwt.encode(claims(email_verified=True), ec_key, algorithm="ES256", headers={"kid": "ec-1"})
    assert verify(rs)[0] == 200
    assert verify(es)[0] == 200


# ---------------------------------------------------------------- attacks


@pytest.mark.django_db
def test_alg_none_is_rejected(settings):
    assert_rejected(hand_signed({"alg": "none", "typ": "JWT"}, claims(), key=None))
    assert_rejected(hand_signed({"alg": "None", "typ": "JWT"}, claims(), key=None))


@pytest.mark.django_db
def test_hs256_signed_with_the_public_key_is_rejected(jwks_server, rsa_key):
    """Algorithm confusion: the RSA public key (public by definition) used as an HMAC secret."""
    public_pem = rsa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert_rejected(hand_signed({"alg": "HS256", "typ": "JWT", "kid": "rsa-1"}, claims(), key=public_pem))


@pytest.mark.django_db
def test_rs256_is_rejected_when_no_jwks_is_configured(settings, rsa_key):
    settings.AUTEUR_JWKS_URL = ""
    assert_rejected(jwt.encode(claims(), rsa_key, algorithm="RS256", headers={"kid": "rsa-1"}))


@pytest.mark.django_db
def test_rs256_signed_by_a_key_not_in_the_jwks_is_rejected(jwks_server):
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    assert_rejected(jwt.encode(claims(), stranger, algorithm="RS256", headers={"kid": "rsa-1"}))
    assert_rejected(jwt.encode(claims(), stranger, algorithm="RS256", headers={"kid": "unknown"}))


@pytest.mark.django_db
def test_an_algorithm_outside_the_configured_list_is_rejected(settings):
    assert_rejected(jwt.encode(claims(), settings.AUTEUR_JWT_SECRET, algorithm="HS512"))
    assert_rejected(jwt.encode(claims(), settings.AUTEUR_JWT_SECRET, algorithm="HS384"))


@pytest.mark.django_db
def test_a_bad_signature_is_rejected(settings):
    assert_rejected(jwt.encode(claims(), "not-the-secret-at-all-0123456789abcdef", algorithm="HS256"))
    good = jwt.encode(claims(), settings.AUTEUR_JWT_SECRET, algorithm="HS256")
    header, _body, sig = good.split(".")
    tampered_body = b64(json.dumps(claims(sub=str(uuid.uuid4()))).encode())
    assert_rejected(f"{header}.{tampered_body}.{sig}")


@pytest.mark.django_db
@pytest.mark.parametrize(
    "overrides",
    [
        {"aud": "anon"},
        {"aud": None},
        {"exp": int((datetime.now(UTC) - timedelta(minutes=5)).timestamp())},
        {"exp": None},
        {"sub": None},
        {"sub": "not-a-uuid"},
        {"iss": "https://another-project.supabase.co/auth/v1"},
        {"iss": None},
    ],
    ids=["wrong-aud", "no-aud", "expired", "no-exp", "no-sub", "sub-not-uuid", "wrong-iss", "no-iss"],
)
def test_invalid_claims_are_rejected(settings, overrides):
    assert_rejected(jwt.encode(claims(**overrides), settings.AUTEUR_JWT_SECRET, algorithm="HS256"))
    assert User.objects.count() == 0


@pytest.mark.django_db
def test_garbage_and_wrong_schemes_are_rejected():
    assert_rejected("not.a.jwt")
    assert_rejected("x" * 10000)
    client = APIClient(raise_request_exception=False)
    response = client.post(VERIFY, HTTP_AUTHORIZATION="Basic dXNlcjpwYXNz")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_token"


@pytest.mark.django_db
@pytest.mark.parametrize("header", ["", "e30", b64(b"[1]"), b64(b'{"alg": "HS256"'), b64(b"\xff\xfe"), "!!!!"])
def test_a_header_that_is_no_json_object_is_rejected(settings, header):
    _header, body, sig = jwt.encode(claims(), settings.AUTEUR_JWT_SECRET, algorithm="HS256").split(".")
    assert_rejected(f"{header}.{body}.{sig}")


@pytest.mark.django_db
def test_a_token_verified_earlier_is_refused_once_it_expires(settings):
    """Verified tokens are remembered for a while, but never past their exp (+ the leeway)."""
    import time

    exp = int(time.time()) - authentication.LEEWAY_SECONDS + 3  # 2 to 3 seconds left, leeway included
    token = jwt.encode(claims(exp=exp), settings.AUTEUR_JWT_SECRET, algorithm="HS256")
    assert verify(token)[0] == 200
    assert verify(token)[0] == 200
    time.sleep(max(0.0, exp + authentication.LEEWAY_SECONDS - time.time()) + 0.1)
    assert_rejected(token)


@pytest.mark.django_db
def test_a_disabled_account_is_rejected(settings, make_user):
    user = make_user(is_active=False)
    token = jwt.encode(claims(sub=str(user.pk), email=user.email), settings.AUTEUR_JWT_SECRET, algorithm="HS256")
    status, body = verify(token)
    assert status == 401
    assert body["error"]["code"] == "invalid_token"


@pytest.mark.django_db
def test_issue_token_command_prints_a_working_token(capsys):
    from django.core.management import call_command

    call_command("issue_token", "Script@Example.com", "--days", "1")
    token = capsys.readouterr().out.strip()
    status, body = verify(token)
    assert status == 200
    assert User.objects.get(pk=body["user_id"]).email == "script@example.com"


@pytest.mark.django_db
def test_issue_token_refuses_a_non_email():
    from django.core.management import CommandError, call_command

    with pytest.raises(CommandError):
        call_command("issue_token", "not-an-email")
    assert User.objects.count() == 0


# ---------------------------------------------------------------- rate limits


@pytest.mark.django_db
def test_the_101st_request_in_a_minute_is_refused_with_retry_after(auth_client, client_for, make_user):
    for i in range(100):
        assert auth_client.post(VERIFY).status_code == 200, i
    response = auth_client.post(VERIFY)
    assert response.status_code == 429
    assert response.json()["error"]["code"] == "rate_limited"
    assert 1 <= int(response["Retry-After"]) <= 60
    assert response.json()["error"]["details"]["retry_after_seconds"] >= 1
    # Limits are per user: someone else is not affected.
    assert client_for(make_user()).post(VERIFY).status_code == 200


@pytest.mark.django_db
def test_anonymous_and_forged_requests_are_limited_per_ip(settings):
    settings.AUTEUR_RATE_LIMIT_ANON_PER_MINUTE = 5
    client = APIClient(raise_request_exception=False)
    statuses = [client.post(VERIFY).status_code for _ in range(3)]
    statuses += [client.post(VERIFY, HTTP_AUTHORIZATION="Bearer forged.token.here").status_code for _ in range(3)]
    assert statuses == [401] * 5 + [429]
    # A spoofed X-Forwarded-For does not buy a fresh limit (no trusted proxy configured).
    assert client.post(VERIFY, HTTP_X_FORWARDED_FOR="203.0.113.9").status_code == 429


@pytest.mark.django_db
def test_rate_limit_holds_across_processes_through_redis(auth_client, user):
    """The window lives in Redis, so what another API process admitted counts here too."""
    from auteur.core.throttling import hit

    for _ in range(100):
        assert hit(f"rl:u:{user.pk}", limit=100, window_seconds=60) == 0
    assert auth_client.post(VERIFY).status_code == 429


@pytest.mark.django_db
def test_an_expired_token_is_told_it_expired_and_a_forged_one_is_not(settings):
    """RFC 6750: an expired token's challenge says so (`error_description`), and the answer names the
    reason, so a client refreshes instead of signing the user out. The reason is given only once the
    signature holds: an expired token signed with another key is just invalid."""
    past = int((datetime.now(UTC) - timedelta(minutes=5)).timestamp())
    client = APIClient(raise_request_exception=False)
    expired = client.post(VERIFY, HTTP_AUTHORIZATION="Bearer " + jwt.encode(
        claims(exp=past), settings.AUTEUR_JWT_SECRET, algorithm="HS256"))
    assert expired.status_code == 401
    assert expired.json()["error"] == {"code": "invalid_token", "details": {"reason": "expired"},
                                       "message": "The token has expired: sign in again for a new one."}
    assert expired["WWW-Authenticate"] == ('Bearer realm="api", error="invalid_token", '
                                           'error_description="The token expired"')
    forged = client.post(VERIFY, HTTP_AUTHORIZATION="Bearer " + jwt.encode(
        claims(exp=past), "not-the-secret-at-all-0123456789abcdef", algorithm="HS256"))
    assert forged.status_code == 401
    assert forged.json()["error"]["details"] == {} and "expired" not in forged.json()["error"]["message"]
    assert "error_description" not in forged["WWW-Authenticate"]
    assert User.objects.count() == 0

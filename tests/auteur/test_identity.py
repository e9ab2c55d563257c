"""An account is its token's `sub`; an email never finds, links or takes over an account.

The tokens here are shaped exactly as Supabase's access tokens are (asymmetric signing keys: no
top-level `email_verified`; `user_metadata` is written by the user), served from a real JWKS on
loopback (tests/auteur/conftest.py).
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from django.core.management import CommandError, call_command
from django.db import IntegrityError, transaction
from django.test import Client
from rest_framework.test import APIClient

from auteur.users.models import User
from projects.models import Project


def supabase_claims(settings: Any, **overrides: Any) -> dict[str, Any]:
    """The claims of a Supabase access token for a user who signed up with email and password."""
    now = int(time.time())
    sub = str(uuid.uuid4())
    email = f"sb-{uuid.uuid4().hex[:8]}@example.com"
    body: dict[str, Any] = {
        "iss": settings.AUTEUR_JWT_ISSUER,
        "aud": "authenticated",
        "exp": now + 3600,
        "iat": now,
        "sub": sub,
        "email": email,
        "phone": "",
        "app_metadata": {"provider": "email", "providers": ["email"]},
        # Written by the user (supabase.auth.updateUser({data})): never trusted.
        "user_metadata": {"email": email, "email_verified": True, "phone_verified": False, "sub": sub},
        "role": "authenticated",
        "aal": "aal1",
        "amr": [{"method": "password", "timestamp": now}],
        "session_id": str(uuid.uuid4()),
        "is_anonymous": False,
    }
    body.update(overrides)
    return {k: v for k, v in body.items() if v is not None}


def sign(body: dict[str, Any], key: Any, alg: str = "RS256", kid: str = "rsa-1") -> str:
    return jwt.encode(body, key, algorithm=alg, headers={"kid": kid, "typ": "JWT"})


def client(token: str) -> APIClient:
    api = APIClient(raise_request_exception=False)
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return api


def me(token: str) -> tuple[int, dict[str, Any]]:
    response = client(token).get("/api/v1/users/me")
    return response.status_code, response.json()


@pytest.fixture
def supabase(settings: Any) -> Any:
    settings.AUTEUR_JWT_ISSUER = "https://project-ref.supabase.co/auth/v1"
    return lambda **overrides: supabase_claims(settings, **overrides)


@pytest.mark.django_db
@pytest.mark.parametrize(("alg", "kid", "key_name"), [("RS256", "rsa-1", "rsa_key"), ("ES256", "ec-1", "ec_key")])
def test_a_supabase_access_token_creates_the_account(jwks_server, supabase, request, alg, kid, key_name):
    body = supabase()
    status, profile = me(sign(body, request.getfixturevalue(key_name), alg, kid))
    assert status == 200, profile
    assert profile["id"] == body["sub"]
    assert profile["email"] == body["email"]
    # Only a top-level claim counts; the user-written metadata's `email_verified` does not.
    assert profile["email_verified"] is False
    user = User.objects.get(pk=body["sub"])
    assert (user.email, user.email_verified, user.is_staff, user.has_usable_password()) == (
        body["email"], False, False, False)


@pytest.mark.django_db
def test_a_provider_that_verifies_the_email_is_recorded_as_such(jwks_server, supabase, rsa_key):
    body = supabase(email="Mixed.Case@Example.com", email_verified=True)
    assert me(sign(body, rsa_key))[0] == 200
    user = User.objects.get(pk=body["sub"])
    assert (user.email, user.email_verified) == ("Mixed.Case@Example.com", True)  # as the provider gave it


@pytest.mark.django_db
def test_another_sub_with_the_same_email_is_another_account_and_sees_nothing_of_the_first(
    jwks_server, supabase, rsa_key
):
    first_body = supabase()
    first = sign(first_body, rsa_key)
    created = client(first).post("/api/v1/projects", {"name": "mine"}, format="json")
    assert created.status_code == 201, created.json()
    project_id = created.json()["id"]

    # The same address, as another identity (another provider, or one that lets anyone claim it).
    second_body = supabase(email=first_body["email"].upper())
    second = sign(second_body, rsa_key)
    status, profile = me(second)
    assert status == 200 and profile["id"] == second_body["sub"] != first_body["sub"]

    intruder = client(second)
    assert intruder.get(f"/api/v1/projects/{project_id}").status_code == 404
    assert intruder.patch(f"/api/v1/projects/{project_id}", {"name": "taken"}, format="json").status_code == 404
    assert intruder.delete(f"/api/v1/projects/{project_id}").status_code == 404
    assert intruder.get("/api/v1/projects").json()["count"] == 0
    assert User.objects.filter(email__iexact=first_body["email"]).count() == 2
    project = Project.objects.get(pk=project_id)
    assert (str(project.user_id), project.name) == (first_body["sub"], "mine")
    # The first account is untouched, and still its own.
    assert client(first).get(f"/api/v1/projects/{project_id}").status_code == 200
    assert User.objects.get(pk=first_body["sub"]).email == first_body["email"]


@pytest.mark.django_db
def test_a_staff_members_email_in_a_token_neither_takes_nor_blocks_the_staff_account(
    jwks_server, supabase, rsa_key, make_user
):
    password = "correct horse battery staple 42"
    staff = make_user(email="boss@example.com", is_staff=True, password=password)
    body = supabase(email="Boss@Example.com", email_verified=True)
    status, profile = me(sign(body, rsa_key))
    assert status == 200 and profile["id"] == body["sub"] != str(staff.pk)
    assert User.objects.get(pk=body["sub"]).is_staff is False
    # The admin's password login by email still finds the staff account alone (no ambiguity, no 500).
    browser = Client()
    login = browser.post("/admin/login/", {"username": "boss@example.com", "password": password, "next": "/admin/"})
    assert login.status_code == 302, login.content[:300]
    assert browser.get("/admin/").status_code == 200
    assert str(browser.session["_auth_user_id"]) == str(staff.pk)


@pytest.mark.django_db
@pytest.mark.parametrize("overrides", [
    {"email": "", "phone": "15555550123", "app_metadata": {"provider": "phone", "providers": ["phone"]},
     "user_metadata": {}},
    {"email": None, "phone": None, "is_anonymous": True, "app_metadata": {}, "user_metadata": {}},
], ids=["phone", "anonymous"])
def test_a_token_without_an_email_gets_an_account_keyed_by_its_sub(jwks_server, supabase, rsa_key, overrides):
    bodies = [supabase(**overrides) for _ in range(2)]
    for body in bodies:
        status, profile = me(sign(body, rsa_key))
        assert status == 200, profile
        assert (profile["id"], profile["email"], profile["email_verified"]) == (body["sub"], None, False)
    assert User.objects.filter(email="").count() == 2


@pytest.mark.django_db
@pytest.mark.parametrize("email", ["x" * 250 + "@example.com", "not an address", 42, ["a@example.com"]],
                         ids=["too-long", "not-an-address", "number", "list"])
def test_an_email_claim_that_is_no_address_is_not_recorded(jwks_server, supabase, rsa_key, email):
    body = supabase(email=email, email_verified=True)
    status, profile = me(sign(body, rsa_key))
    assert status == 200, profile
    assert (profile["email"], profile["email_verified"]) == (None, False)


@pytest.mark.django_db
def test_an_existing_account_is_found_by_its_sub_whatever_email_the_token_carries(
    jwks_server, supabase, rsa_key, make_user, make_token
):
    user = make_user(email="before@example.com")
    for token in (
        sign(supabase(sub=str(user.pk), email="after@example.com"), rsa_key),
        sign(supabase(sub=str(user.pk), email=None), rsa_key),
        make_token(sub=str(user.pk), email="other@example.com"),  # HS256, the shared secret
    ):
        status, profile = me(token)
        assert status == 200 and profile["id"] == str(user.pk)
    assert User.objects.count() == 1
    assert User.objects.get(pk=user.pk).email == "before@example.com"


@pytest.mark.django_db
@pytest.mark.parametrize("overrides", [
    {"aud": "anon"},
    {"aud": None},
    {"iss": "https://another-project.supabase.co/auth/v1"},
    {"iss": None},
    {"exp": int(time.time()) - 600},
    {"sub": "not-a-uuid"},
], ids=["wrong-aud", "no-aud", "wrong-iss", "no-iss", "expired", "sub-not-uuid"])
def test_strict_verification_still_refuses_and_creates_nothing(jwks_server, supabase, rsa_key, overrides):
    status, body = me(sign(supabase(**overrides), rsa_key))
    assert status == 401 and body["error"]["code"] == "invalid_token"
    assert not User.objects.exists()


@pytest.mark.django_db
def test_a_supabase_shaped_token_with_the_wrong_algorithm_or_key_is_refused(jwks_server, supabase, rsa_key, ec_key):
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    for token in (
        sign(supabase(), ec_key, "ES256", "rsa-1"),  # an EC signature under the RSA key's kid
        sign(supabase(), rsa_key, "RS256", "ec-1"),
        sign(supabase(), stranger, "RS256", "rsa-1"),
        ".".join([*sign(supabase(), rsa_key).split(".")[:2], ""]),  # its signature stripped
    ):
        status, body = me(token)
        assert status == 401 and body["error"]["code"] == "invalid_token", body
    assert not User.objects.exists()


@pytest.mark.django_db
def test_an_email_is_unique_among_staff_only(make_user):
    make_user(email="ops@example.com", is_staff=True)
    make_user(email="ops@example.com")  # anyone may carry it
    with pytest.raises(IntegrityError), transaction.atomic():
        make_user(email="OPS@example.com", is_staff=True)  # but it names one staff login
    assert User.objects.filter(is_staff=True).count() == 1


@pytest.mark.django_db
def test_issue_token_refuses_an_email_two_accounts_have(make_user, capsys):
    make_user(email="twice@example.com")
    make_user(email="twice@example.com")
    with pytest.raises(CommandError, match="Several accounts"):
        call_command("issue_token", "twice@example.com")
    assert capsys.readouterr().out == "" and User.objects.count() == 2


@pytest.mark.django_db
def test_the_providers_name_and_avatar_fill_a_new_accounts_profile(jwks_server, supabase, rsa_key):
    """As Supabase fills `user_metadata` from Google or GitHub: `full_name` (or `name`) and
    `avatar_url` (or `picture`)."""
    body = supabase()
    body["user_metadata"] |= {"full_name": "  Ada\tLovelace\u0007 ", "avatar_url": "https://cdn.example.com/ada.png"}
    status, profile = me(sign(body, rsa_key))
    assert status == 200
    assert (profile["name"], profile["avatar_url"]) == ("Ada Lovelace", "https://cdn.example.com/ada.png")
    other = supabase()
    other["user_metadata"] |= {"name": "Grace", "picture": "javascript:alert(1)"}  # not an https address: dropped
    profile = me(sign(other, rsa_key))[1]
    assert (profile["name"], profile["avatar_url"]) == ("Grace", None)


@pytest.mark.django_db
def test_an_account_without_a_profile_takes_the_tokens_once_and_never_over_the_users_own(
    jwks_server, supabase, rsa_key
):
    body = supabase()
    assert me(sign(body, rsa_key))[1]["name"] == ""  # a token with no profile: none
    body["user_metadata"] |= {"full_name": "Ada Lovelace"}
    assert me(sign(body, rsa_key))[1]["name"] == "Ada Lovelace"  # the provider added one later
    api = client(sign(body, rsa_key))
    response = api.patch("/api/v1/users/me", {"name": "", "avatar_url": None}, format="json")
    assert response.status_code == 200 and response.json()["name"] == ""
    # Cleared by the user: the token's profile does not come back.
    assert me(sign(body, rsa_key))[1]["name"] == ""

"""The admin login: repeated wrong passwords lock the address and the account out (django-axes),
and staff with a confirmed TOTP device (all staff, when required) must give its code (django-otp)."""

from __future__ import annotations

import re

import pytest
from django.core.management import CommandError, call_command
from django.test import Client
from django_otp.oath import totp
from django_otp.plugins.otp_totp.models import TOTPDevice

pytestmark = pytest.mark.django_db

LOGIN = "/admin/login/"
PASSWORD = "correct horse battery staple 42"


@pytest.fixture(autouse=True)
def _quick_hasher(settings):
    """What these tests check is the lockout and the second factor, not the hash: each wrong guess
    would otherwise cost the production hasher's full work factor."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def staff(make_user):
    def make(email: str, **extra):
        user = make_user(email=email, is_staff=True, **extra)
        user.set_password(PASSWORD)
        user.save()
        return user

    return make


def log_in(client: Client, email: str, password: str = PASSWORD, **extra):
    data = {"username": email, "password": password, "next": "/admin/", **extra.pop("data", {})}
    return client.post(LOGIN, data, **extra)


def signed_in(client: Client) -> bool:
    return client.get("/admin/").status_code == 200


def code_of(device: TOTPDevice) -> str:
    return str(totp(device.bin_key, device.step, device.t0, device.digits, device.drift)).zfill(device.digits)


# ---------------------------------------------------------------- lockout


def test_five_wrong_passwords_lock_the_address_out_even_with_the_right_one(staff, settings):
    settings.AXES_FAILURE_LIMIT = 5
    staff("boss@example.com")
    attacker = Client()
    statuses = [log_in(attacker, "boss@example.com", f"guess-{i}").status_code for i in range(5)]
    assert statuses == [200] * 4 + [429]
    locked = log_in(attacker, "boss@example.com")
    assert locked.status_code == 429
    assert not signed_in(attacker)
    # Guessing other accounts from the same address is refused too.
    staff("other@example.com")
    assert log_in(attacker, "other@example.com").status_code == 429


def test_the_account_is_locked_against_guesses_from_many_addresses(staff, settings):
    settings.AXES_FAILURE_LIMIT = 5
    staff("boss@example.com")
    for i in range(5):
        log_in(Client(), "boss@example.com", f"guess-{i}", REMOTE_ADDR=f"198.51.100.{i + 1}")
    owner = Client()
    assert log_in(owner, "boss@example.com", REMOTE_ADDR="203.0.113.50").status_code == 429
    assert not signed_in(owner)


def test_behind_the_proxy_one_locked_client_does_not_lock_out_the_others(staff, settings):
    """Caddy is every client's REMOTE_ADDR: the lockout must key on the forwarded address."""
    settings.AXES_FAILURE_LIMIT = 3
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": 1}
    settings.FORWARDED_ALLOW_IPS = ["10.0.0.2"]
    staff("boss@example.com")
    staff("colleague@example.com")
    caddy = {"REMOTE_ADDR": "10.0.0.2"}
    attacker = Client()
    for i in range(3):
        log_in(attacker, "boss@example.com", f"guess-{i}", HTTP_X_FORWARDED_FOR="203.0.113.66", **caddy)
    assert log_in(attacker, "colleague@example.com", HTTP_X_FORWARDED_FOR="203.0.113.66", **caddy).status_code == 429
    colleague = Client()
    assert log_in(colleague, "colleague@example.com", HTTP_X_FORWARDED_FOR="198.51.100.7", **caddy).status_code == 302
    assert signed_in(colleague)


def test_a_right_password_before_the_limit_resets_the_count(staff, settings):
    settings.AXES_FAILURE_LIMIT = 3
    staff("boss@example.com")
    client = Client()
    for _ in range(2):
        log_in(client, "boss@example.com", "wrong")
    assert log_in(client, "boss@example.com").status_code == 302
    client.logout()
    for _ in range(2):
        log_in(client, "boss@example.com", "wrong")
    assert log_in(client, "boss@example.com").status_code == 302


# ---------------------------------------------------------------- TOTP


@pytest.fixture
def device_of():
    def make(user, confirmed: bool = True) -> TOTPDevice:
        return TOTPDevice.objects.create(user=user, name="phone", confirmed=confirmed)

    return make


def test_staff_with_a_confirmed_device_must_give_its_code(staff, device_of):
    user = staff("boss@example.com")
    device = device_of(user)
    client = Client()
    answer = log_in(client, user.email)
    assert answer.status_code == 200 and not signed_in(client), "a password alone is not enough"
    assert "OTP token" in answer.content.decode()
    log_in(client, user.email, data={"otp_token": "000000" if code_of(device) != "000000" else "111111"})
    assert not signed_in(client), "a wrong code is refused"
    device.refresh_from_db()
    device.throttle_reset()
    assert log_in(client, user.email, data={"otp_token": code_of(device)}).status_code == 302
    assert signed_in(client)


def test_a_password_only_session_is_not_let_in_once_the_user_has_a_device(staff, device_of):
    user = staff("boss@example.com")
    client = Client()
    assert log_in(client, user.email).status_code == 302 and signed_in(client)
    device_of(user)
    assert client.get("/admin/").status_code == 302, "sign in again, with the code"
    client.force_login(user)
    assert not signed_in(client)


def test_an_unconfirmed_device_is_not_asked_for(staff, device_of):
    user = staff("boss@example.com")
    device_of(user, confirmed=False)
    client = Client()
    assert log_in(client, user.email).status_code == 302 and signed_in(client)


def test_requiring_totp_for_all_staff_refuses_those_without_a_device(staff, settings):
    settings.AUTEUR_ADMIN_REQUIRE_OTP = True
    user = staff("boss@example.com", is_superuser=True)
    client = Client()
    assert log_in(client, user.email).status_code == 200
    assert not signed_in(client)
    client.force_login(user)
    assert not signed_in(client)


def test_totp_enroll_command_enrols_a_device_once_a_code_confirms_it(staff, capsys):
    user = staff("boss@example.com")
    call_command("totp_enroll", "Boss@Example.com")
    out = capsys.readouterr().out
    assert re.search(r"otpauth://totp/[^\s]*secret=", out)
    device = TOTPDevice.objects.get(user=user)
    assert not device.confirmed
    assert signed_in(client := Client()) is False and log_in(client, user.email).status_code == 302

    with pytest.raises(CommandError, match="does not match"):
        call_command("totp_enroll", user.email, "--confirm", "000000" if code_of(device) != "000000" else "111111")
    device.refresh_from_db()
    device.throttle_reset()
    assert not device.confirmed
    call_command("totp_enroll", user.email, "--confirm", code_of(device))
    device.refresh_from_db()
    assert device.confirmed
    fresh = Client()
    assert log_in(fresh, user.email).status_code == 200 and not signed_in(fresh)


def test_totp_enroll_refuses_a_non_staff_account_and_a_confirm_without_enrolment(staff, make_user):
    make_user(email="customer@example.com")
    with pytest.raises(CommandError, match="no staff account"):
        call_command("totp_enroll", "customer@example.com")
    staff("boss@example.com")
    with pytest.raises(CommandError, match="No enrolment"):
        call_command("totp_enroll", "boss@example.com", "--confirm", "123456")
    assert not TOTPDevice.objects.exists()


def test_totp_devices_are_managed_by_superusers_only(staff, device_of):
    from django.contrib.auth.models import Permission

    helper = staff("helper@example.com")
    helper.user_permissions.set(Permission.objects.filter(content_type__app_label="otp_totp"))
    boss = staff("boss@example.com", is_superuser=True)
    device = device_of(boss)
    client = Client()
    client.force_login(helper)
    assert client.get("/admin/otp_totp/totpdevice/").status_code == 403
    assert client.post(f"/admin/otp_totp/totpdevice/{device.pk}/delete/", {"post": "yes"}).status_code == 403
    assert TOTPDevice.objects.filter(pk=device.pk).exists()


@pytest.mark.django_db
def test_the_login_page_names_the_site_and_says_what_the_code_is(client):
    page = client.get(LOGIN).content.decode()
    assert "Auteur staff" in page and "Django administration" not in page
    assert "Authenticator code" in page and "OTP Token" not in page
    assert "6-digit code your authenticator app shows" in page

"""Only a superuser grants power: a staff member allowed to change accounts cannot make anyone
(themselves included) a superuser, give permissions or groups, or take over a superuser's account."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import Group, Permission
from django.test import Client

from auteur.users.models import User

pytestmark = pytest.mark.django_db


def change_url(user: User) -> str:
    return f"/admin/users/user/{user.pk}/change/"


def form_data(response: Any) -> dict[str, Any]:
    """What the browser would post back: the change form's fields and its inline formsets."""
    forms = [response.context["adminform"].form]
    for inline in response.context["inline_admin_formsets"]:
        forms += [inline.formset.management_form, *inline.formset.forms]
    data: dict[str, Any] = {"_save": "Save"}
    for form in forms:
        for field in form:
            value = field.value()
            if value is None or value is False or field.field.disabled:
                continue
            data[field.html_name] = "on" if value is True else value
    return data


@pytest.fixture
def helper(make_user) -> User:
    """Staff with permission to view and change accounts, and nothing else."""
    user = make_user(email="helper@example.com", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(codename__in=["view_user", "change_user"]))
    return user


@pytest.fixture
def helper_client(helper: User) -> Client:
    client = Client()
    client.force_login(helper)
    return client


def test_a_staff_member_cannot_make_themselves_superuser_or_grant_permissions(helper, helper_client):
    page = helper_client.get(change_url(helper))
    assert page.status_code == 200
    every_permission = list(Permission.objects.values_list("pk", flat=True))
    admins = Group.objects.create(name="admins")
    admins.permissions.set(every_permission)
    data = {**form_data(page), "name": "Helpful", "is_superuser": "on",
            "user_permissions": every_permission, "groups": [admins.pk]}
    response = helper_client.post(change_url(helper), data)
    assert response.status_code == 302, response.content.decode()[:2000]
    helper.refresh_from_db()
    assert helper.name == "Helpful", "the other fields were saved"
    assert not helper.is_superuser
    assert set(helper.user_permissions.values_list("codename", flat=True)) == {"view_user", "change_user"}
    assert not helper.groups.exists()


def test_a_staff_member_cannot_grant_superuser_to_another_account(helper_client, make_user):
    other = make_user(email="friend@example.com", is_staff=True)
    data = {**form_data(helper_client.get(change_url(other))), "is_superuser": "on"}
    assert helper_client.post(change_url(other), data).status_code == 302
    other.refresh_from_db()
    assert not other.is_superuser


def test_a_staff_member_cannot_change_or_delete_a_superusers_account(helper_client, make_user):
    boss = make_user(email="boss@example.com", is_staff=True, is_superuser=True)
    original_password = boss.password
    data = {"email": "helper-controls@example.com", "is_active": "on", "is_staff": "on", "_save": "Save"}
    assert helper_client.post(change_url(boss), data).status_code == 403
    password_url = f"/admin/users/user/{boss.pk}/password/"
    taken = {"password1": "Taken-Over-123456", "password2": "Taken-Over-123456", "usable_password": "true"}
    assert helper_client.post(password_url, taken).status_code == 403
    assert helper_client.post(f"/admin/users/user/{boss.pk}/delete/", {"post": "yes"}).status_code == 403
    boss.refresh_from_db()
    assert boss.email == "boss@example.com" and boss.password == original_password and boss.is_superuser


def test_a_superuser_can_grant_superuser(make_user):
    boss = make_user(email="boss@example.com", is_staff=True, is_superuser=True)
    other = make_user(email="deputy@example.com", is_staff=True)
    client = Client()
    client.force_login(boss)
    data = {**form_data(client.get(change_url(other))), "is_superuser": "on"}
    response = client.post(change_url(other), data)
    assert response.status_code == 302, (response.context["errors"], data)
    other.refresh_from_db()
    assert other.is_superuser

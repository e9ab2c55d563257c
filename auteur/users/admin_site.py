"""The staff site's login: a password (django-axes locks an address or account out after repeated
failures) and, for staff with a confirmed TOTP device or for all staff when
AUTEUR_ADMIN_REQUIRE_OTP is on, a one-time code (django-otp).

A session that signed in before its user got a device, or with a password alone, is not let into
the site once a code is required: it signs in again with the code.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import update_wrapper
from typing import Any, TypeVar, cast

from django.conf import settings
from django.contrib.admin import AdminSite
from django.contrib.admin.forms import AdminAuthenticationForm
from django.http import HttpRequest, HttpResponseBase
from django_otp import devices_for_user, user_has_device
from django_otp.admin import OTPAdminAuthenticationForm
from django_otp.models import Device
from rest_framework.throttling import BaseThrottle

from auteur.users.workspace_context import show_balances

_ViewType = TypeVar("_ViewType", bound=Callable[..., HttpResponseBase])


def client_ip(request: HttpRequest) -> str | None:
    """The client address for lockouts, by the API's rule (AUTEUR_NUM_PROXIES trusted proxies):
    behind Caddy, REMOTE_ADDR is Caddy's, and locking it would lock every staff member out."""
    ident: str | None = BaseThrottle().get_ident(request)  # type: ignore[arg-type]  # reads META only
    return ident


def otp_required_for(user: Any) -> bool:
    return bool(settings.AUTEUR_ADMIN_REQUIRE_OTP) or user_has_device(user, confirmed=True)


class AdminLoginForm(OTPAdminAuthenticationForm):
    """The password, then the code when this user needs one (django-otp's form asks everyone)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        code = self.fields["otp_token"]
        code.label = "Authenticator code"
        code.help_text = ("The 6-digit code your authenticator app shows for Auteur. Leave it empty if you have "
                          "not enrolled one (manage.py totp_enroll), unless every login needs one here.")

    def clean(self) -> dict[str, Any]:
        self.cleaned_data = AdminAuthenticationForm.clean(self)
        user = self.get_user()
        if user is not None and otp_required_for(user):
            self.clean_otp(user)
        return self.cleaned_data

    def _chosen_device(self, user: Any) -> Device | None:
        # One confirmed device needs no choosing; with several, the user picks one (so that a
        # wrong code counts against that device only).
        device: Device | None = super()._chosen_device(user)
        if device is None:
            devices = list(devices_for_user(user, confirmed=True, for_verify=True))
            if len(devices) == 1:
                device = devices[0]
        return device


class AuteurAdminSite(AdminSite):
    site_header = "Auteur staff"
    site_title = "Auteur staff"
    index_title = "Jobs, credits, users and projects"
    login_form = AdminLoginForm
    login_template = "admin/auteur_login.html"
    # No app list beside every page: it took a fifth of a 1400 px screen from the lists, which then
    # scrolled sideways. The home page and the breadcrumbs lead everywhere.
    enable_nav_sidebar = False

    def has_permission(self, request: HttpRequest) -> bool:
        if not super().has_permission(request):
            return False
        user: Any = request.user
        return bool(user.is_verified()) or not otp_required_for(user)

    def admin_view(self, view: _ViewType, cacheable: bool = False) -> _ViewType:
        def staff_view(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
            # Staff see every account's credits (a refused adjustment names the balance). Decided
            # for each request: a thread's earlier request (an API call's seat) never lends its own.
            show_balances(self.has_permission(request))
            return view(request, *args, **kwargs)

        return super().admin_view(cast(_ViewType, update_wrapper(staff_view, view)), cacheable)

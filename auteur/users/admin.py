"""Staff views of accounts, and who may change the powers of an account.

Only a superuser grants power: for anyone else `is_superuser`, `groups` and `user_permissions`
are read-only (a form posted with them changes nothing), and a superuser's account can be
neither changed nor deleted (its email or password would hand it over). TOTP devices are
managed by superusers only: a device decides who gets past the admin's second factor.
"""

from __future__ import annotations

from typing import Any, ClassVar

from django.contrib import admin
from django.contrib.admin.utils import flatten_fieldsets
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.db import transaction
from django.db.models import Exists, OuterRef
from django.http import HttpRequest
from django_otp.plugins.otp_totp.admin import TOTPDeviceAdmin as BaseTOTPDeviceAdmin
from django_otp.plugins.otp_totp.models import TOTPDevice

from auteur.users.key_services import api_keys_revoke_by_staff
from auteur.users.models import ApiKey, Invitation, Membership, User, Workspace
from auteur.users.roles import Role
from auteur.users.services import user_delete, user_disable

POWER_FIELDS = ("is_superuser", "groups", "user_permissions")


@admin.register(User)
class UserAdmin(BaseUserAdmin):
    ordering = ("-created_at",)
    list_display = ("__str__", "email_verified", "name", "is_staff", "is_active", "created_at")
    list_filter = ("is_staff", "is_active", "is_team")
    search_fields = ("email", "name", "id")
    # Whether the provider verified the email is its word, not staff's.
    readonly_fields = ("id", "email_verified", "is_team", "created_at", "updated_at", "last_login")
    fieldsets = (
        (None, {"fields": ("id", "email", "email_verified", "password")}),
        ("Profile", {"fields": ("name", "avatar_url")}),
        ("Permissions", {"fields": ("is_active", "is_team", "is_staff", "is_superuser", "groups",
                                    "user_permissions")}),
        ("Dates", {"fields": ("last_login", "created_at", "updated_at")}),
    )
    add_fieldsets = ((None, {"classes": ("wide",), "fields": ("email", "password1", "password2")}),)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        if obj is not None and obj.is_team:
            # A team workspace's account signs nobody in: staff may only suspend it (is_active).
            return tuple(f for f in flatten_fieldsets(self.get_fieldsets(request, obj)) if f != "is_active")
        fields = tuple(super().get_readonly_fields(request, obj))
        user: Any = request.user
        return fields if user.is_superuser else (*fields, *POWER_FIELDS)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return super().has_change_permission(request, obj) and _may_touch(request, obj)

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        # Disabling goes through the service that revokes the account's keys with it (the admin's
        # change view is one transaction: the form's other fields are saved with them).
        disabling = change and "is_active" in form.changed_data and not obj.is_active
        super().save_model(request, obj, form, change)
        if disabling:
            user_disable(user=obj, staff_id=request.user.pk)

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        user_delete(user=obj, staff_id=request.user.pk)

    def delete_queryset(self, request: HttpRequest, queryset: Any) -> None:
        with transaction.atomic():
            for user in queryset:
                user_delete(user=user, staff_id=request.user.pk)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # A team workspace's account goes only with its workspace, which its owners end.
        return (super().has_delete_permission(request, obj) and _may_touch(request, obj)
                and (obj is None or not (obj.is_team or _sole_owner_of_a_team(obj))))


def _sole_owner_of_a_team(user: User) -> bool:
    """Whether deleting the account would leave a team workspace with members but no owner: its
    seats go with it, and a workspace always keeps an owner (make another member one first)."""
    owned = Membership.objects.filter(user=user, role=Role.OWNER, workspace__personal=False).values("workspace_id")
    other_owners = Membership.objects.filter(workspace_id=OuterRef("workspace_id"), role=Role.OWNER).exclude(user=user)
    return Membership.objects.filter(workspace_id__in=owned).exclude(user=user).filter(~Exists(other_owners)).exists()


class MembershipInline(admin.TabularInline):
    model = Membership
    fields = ("user", "role", "created_at")
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class InvitationInline(admin.TabularInline):
    model = Invitation
    fields = ("id", "role", "invited_by", "created_at", "expires_at", "accepted_by", "accepted_at", "revoked_at")
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class ReadOnlyAdmin(admin.ModelAdmin):
    """Rows staff look at and never change here."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Workspace)
class WorkspaceAdmin(ReadOnlyAdmin):
    """Workspaces and their members, to look at: members change through the workspace's own owners."""

    list_display = ("name", "id", "personal", "created_by", "created_at")
    list_filter = ("personal",)
    search_fields = ("name", "id", "created_by__email")
    fields: ClassVar[tuple[str, ...]] = ("id", "name", "personal", "created_by", "created_at", "updated_at")
    readonly_fields: ClassVar[tuple[str, ...]] = fields
    inlines = (MembershipInline, InvitationInline)


@admin.register(ApiKey)
class ApiKeyAdmin(ReadOnlyAdmin):
    """Workspaces' API keys, to look at and, for a leaked one, to revoke (never their secret, which
    is not kept)."""

    list_display = ("name", "prefix", "user", "scopes", "state", "last_used_at", "last_used_ip", "created_at")
    list_filter = (("revoked_at", admin.EmptyFieldListFilter), ("expires_at", admin.EmptyFieldListFilter))
    search_fields = ("prefix", "name", "id", "user__id")
    list_select_related = ("user",)
    fields: ClassVar[tuple[str, ...]] = (
        "id", "name", "prefix", "user", "scopes", "created_by", "created_at", "expires_at", "revoked_at",
        "revoked_by", "last_used_at", "last_used_ip", "rate_limit_per_minute")
    readonly_fields: ClassVar[tuple[str, ...]] = fields
    actions = ("revoke",)

    @admin.action(description="Revoke the selected keys (their next request is refused)", permissions=["change"])
    def revoke(self, request: HttpRequest, queryset: Any) -> None:
        revoked = api_keys_revoke_by_staff(keys=queryset, staff_id=getattr(request.user, "pk"))  # noqa: B009
        self.message_user(request, f"{revoked} key(s) revoked.")

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Revoking is the one change, and it is staff's who may change accounts.
        return bool(request.user.has_perm("users.change_user"))


def _may_touch(request: HttpRequest, obj: Any) -> bool:
    """A superuser's account is changed or deleted by superusers only."""
    user: Any = request.user
    return obj is None or not obj.is_superuser or user.is_superuser


class SuperuserOnlyMixin:
    def has_module_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.is_active and request.user.is_superuser)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self.has_module_permission(request)

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self.has_module_permission(request)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self.has_module_permission(request)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self.has_module_permission(request)


# django-otp registers its own TOTP device admin; this one is for superusers only: to list the
# devices and delete a lost one. A device's secret is never shown here once saved
# (OTP_ADMIN_HIDE_SENSITIVE_DATA); `manage.py totp_enroll` shows it once, to the person enrolling.
admin.site.unregister(TOTPDevice)


@admin.register(TOTPDevice)
class TOTPDeviceAdmin(SuperuserOnlyMixin, BaseTOTPDeviceAdmin):
    pass

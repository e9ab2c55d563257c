from __future__ import annotations

import uuid
from typing import Any, ClassVar

from django.contrib.auth.models import AbstractBaseUser, BaseUserManager, PermissionsMixin
from django.db import models
from django.db.models.functions import Lower


class UserManager(BaseUserManager["User"]):
    use_in_migrations = True

    def create_user(self, email: str, password: str | None = None, **extra: Any) -> User:
        if not email:
            raise ValueError("a user needs an email")
        user = self.model(email=self.normalize_email(email).lower(), **extra)
        if password:
            user.set_password(password)
        else:
            # Users sign in with tokens from the identity provider, not with a password here.
            user.set_unusable_password()
        user.save(using=self._db)
        return user

    def create_superuser(self, email: str, password: str | None = None, **extra: Any) -> User:
        extra.setdefault("is_staff", True)
        extra.setdefault("is_superuser", True)
        return self.create_user(email, password, **extra)

    def get_by_natural_key(self, username: str | None) -> User:
        # The admin's password login (and createsuperuser's "already taken" check) by email. Only
        # staff sign in with a password, and only among staff is an email unique: anyone can
        # create an account that carries a staff member's address, which must neither be found
        # here nor make the lookup ambiguous.
        return self.get(email__iexact=(username or "").strip(), is_staff=True)


class User(AbstractBaseUser, PermissionsMixin):
    """An account. Its id is the identity provider's subject (Supabase `sub`), a UUID.

    An account is its subject and nothing else: the email is what the provider's token carried
    when the account was created (none for a phone or anonymous sign-in), kept for receipts and
    staff, never a key. Two subjects with one email are two accounts, and an email never finds,
    links or takes over an account. `email_verified` records whether the provider said it had
    verified the address.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    email = models.EmailField(max_length=255, blank=True, default="")
    email_verified = models.BooleanField(default=False)
    name = models.CharField(max_length=255, blank=True, default="")
    avatar_url = models.URLField(max_length=2000, blank=True, default="")
    # When the user last set their name or avatar (PATCH /users/me); until then both are taken from
    # the identity token's profile (auteur.users.services.token_profile).
    profile_edited_at = models.DateTimeField(null=True, blank=True)
    is_active = models.BooleanField(default=True)
    is_staff = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects: ClassVar[UserManager] = UserManager()

    USERNAME_FIELD = "email"
    EMAIL_FIELD = "email"
    REQUIRED_FIELDS: ClassVar[list[str]] = []

    class Meta:
        db_table = "users"
        ordering = ("-created_at",)
        constraints = [
            # A staff member's email is their admin login name (UserManager.get_by_natural_key).
            models.UniqueConstraint(
                Lower("email"), condition=models.Q(is_staff=True) & ~models.Q(email=""),
                name="users_staff_email_unique",
                violation_error_message="Another staff account has this email.",
            ),
        ]

    def __str__(self) -> str:
        return self.email or str(self.id)

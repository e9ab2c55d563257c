from __future__ import annotations

import uuid
from typing import Any, ClassVar

from django.contrib.auth.models import AbstractBaseUser, BaseUserManager, PermissionsMixin
from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.db.models.functions import Lower
from django.utils import timezone

from auteur.users.roles import SCOPES, Role


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
    """An account: a person's, whose id is the identity provider's subject (Supabase `sub`), a UUID;
    or a team workspace's (`is_team`), which owns the team's work and signs nobody in.

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
    # The account of a team workspace (of the same id): the owner of the team's work and the payer
    # of its credits, which no token signs in as. A person's account is its own workspace's.
    is_team = models.BooleanField(default=False, db_default=False)
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


WORKSPACE_NAME_MAX_LENGTH = 100


class ContentPolicy(models.TextChoices):
    """How strictly the content policy screens a workspace's requests and outputs: `standard`, the
    platform's policy, which every workspace has at least; `strict`, the same categories refused at
    lower scores, and a negative prompt screened in every category. Nothing can relax the
    platform's policy."""

    STANDARD = "standard"
    STRICT = "strict"


class LikenessPolicy(models.TextChoices):
    """What may stand for a person's consent to the use of their face in a workspace's jobs (lip
    sync, performance cloning, gaze redirection): `verified`, only a consent video the server checked
    (the person reads an issued phrase on camera, and their face matches the media's); `attested`,
    also an owner's or admin's written attestation that they hold the person's consent."""

    VERIFIED = "verified"
    ATTESTED = "attested"


class Workspace(models.Model):
    """Who owns work and pays for it: a team, or one person's own.

    A workspace's id is the id of its account (`users`), the owner of its work: every person's
    account has a personal workspace named "Personal", whose only member is that person (its
    owner), which the database makes in the statement that inserts the account (a trigger on
    `users`, users.0008); a team workspace has an account of its own (`User.is_team`), made with it.
    A workspace goes with its account (a foreign key of the database, users.0009). A person may
    create team workspaces and be a member of several. Members and their roles are Membership rows;
    what each role may do is auteur/users/roles.py.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=WORKSPACE_NAME_MAX_LENGTH)
    personal = models.BooleanField(default=False)
    created_by = models.ForeignKey(User, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    # Set by an owner (auteur/users/roles.py `workspace.likeness_policy`). A default in the database
    # too: the trigger that makes an account's personal workspace names no policy.
    likeness_policy = models.CharField(max_length=16, choices=LikenessPolicy.choices,
                                       default=LikenessPolicy.VERIFIED, db_default=LikenessPolicy.VERIFIED)
    # Set by an owner (auteur/users/roles.py `workspace.content_policy`): at least the platform's.
    content_policy = models.CharField(max_length=16, choices=ContentPolicy.choices,
                                      default=ContentPolicy.STANDARD, db_default=ContentPolicy.STANDARD)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "workspaces"
        ordering = ("created_at",)
        constraints = [
            # One person's own workspace has nobody to attest for them: only verified consents there.
            models.CheckConstraint(condition=models.Q(personal=False) | models.Q(likeness_policy="verified"),
                                   name="workspace_personal_likeness_verified"),
            models.CheckConstraint(condition=models.Q(likeness_policy__in=["verified", "attested"]),
                                   name="workspace_likeness_policy_known"),
            models.CheckConstraint(condition=models.Q(content_policy__in=["standard", "strict"]),
                                   name="workspace_content_policy_known"),
        ]

    def __str__(self) -> str:
        return self.name


class Membership(models.Model):
    """A member of a workspace, with a role (auteur.users.roles.Role)."""

    id = models.BigAutoField(primary_key=True)
    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "workspace_members"
        ordering = ("created_at", "id")
        constraints = [
            models.UniqueConstraint(fields=("workspace", "user"), name="workspace_member_once"),
            models.CheckConstraint(condition=models.Q(role__in=Role.values), name="workspace_member_role"),
        ]

    def __str__(self) -> str:
        return f"{self.user_id} ({self.role}) in {self.workspace_id}"


class Invitation(models.Model):
    """A seat offered in a team workspace, taken once by whichever signed-in account presents its
    token (a signed, expiring reference to this row: auteur/users/workspace_services.py) first.
    An email never decides who may take it."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="invitations")
    role = models.CharField(max_length=16, choices=Role.choices)
    invited_by = models.ForeignKey(User, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    accepted_by = models.ForeignKey(User, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    accepted_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "workspace_invitations"
        ordering = ("-created_at",)
        indexes = [models.Index(fields=("workspace", "-created_at"), name="invitations_by_workspace")]
        constraints = [
            models.CheckConstraint(condition=models.Q(role__in=Role.values), name="workspace_invitation_role"),
        ]

    def __str__(self) -> str:
        return f"{self.role} in {self.workspace_id}"


class ApiKey(models.Model):
    """A workspace's API key: a program acting in the workspace with the key's scopes, as a service
    member whose id is the key's (auteur/users/keys.py).

    The secret is shown once, when the key is made; this row keeps its SHA-256 (a 256-bit random
    secret needs no slower hash) and its first characters (`prefix`), which is how people tell
    their keys apart. A key is never deleted, so that what it spent stays attributable: revoking
    it, or its expiry, ends it.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # The workspace's account: what the key acts as.
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="+", db_index=False)
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=20)
    secret_hash = models.CharField(max_length=64, unique=True)
    scopes = ArrayField(models.CharField(max_length=20), default=list)
    created_by = models.ForeignKey(User, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_by = models.ForeignKey(User, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    last_used_at = models.DateTimeField(null=True, blank=True)
    last_used_ip = models.GenericIPAddressField(null=True, blank=True)
    # Requests per minute (None: AUTEUR_RATE_LIMIT_KEY_PER_MINUTE).
    rate_limit_per_minute = models.PositiveIntegerField(null=True, blank=True)

    class Meta:
        db_table = "api_keys"
        ordering = ("-created_at", "id")
        indexes = [models.Index(fields=("user", "-created_at"), name="api_keys_by_workspace")]
        constraints = [
            models.CheckConstraint(condition=models.Q(scopes__contained_by=list(SCOPES)), name="api_key_scopes_known"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def state(self) -> str:
        """`active`, `expired` or `revoked`."""
        if self.revoked_at is not None:
            return "revoked"
        return "expired" if self.expires_at is not None and self.expires_at <= timezone.now() else "active"

    @staticmethod
    def usable(now: Any = None) -> models.Q:
        """The keys that work now: neither revoked nor expired."""
        now = now or timezone.now()
        return models.Q(revoked_at__isnull=True) & (models.Q(expires_at__isnull=True) | models.Q(expires_at__gt=now))

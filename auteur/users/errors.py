from __future__ import annotations

from auteur.core.errors import ApplicationError


class TotpEnrollmentMissing(ApplicationError):
    code = "totp_enrollment_missing"


class TotpTokenInvalid(ApplicationError):
    code = "totp_token_invalid"


class AmbiguousEmail(ApplicationError):
    """Staff tools name an account by email only where exactly one account has it."""

    code = "ambiguous_email"


class WorkspaceNotFound(ApplicationError):
    """No such workspace, or one the caller is not a member of (indistinguishable)."""

    code = "workspace_not_found"


class PermissionDenied(ApplicationError):
    """A member whose role does not allow the action (details: action, role)."""

    code = "permission_denied"

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


class MemberNotFound(ApplicationError):
    code = "member_not_found"


class InvitationNotFound(ApplicationError):
    """A token that is not one of ours (forged, altered, truncated), or an invitation revoked."""

    code = "invitation_not_found"


class InvitationExpired(ApplicationError):
    code = "invitation_expired"


class InvitationUsed(ApplicationError):
    code = "invitation_used"


class AlreadyMember(ApplicationError):
    code = "already_member"


class LastOwner(ApplicationError):
    """A workspace always keeps an owner: its last one can neither leave nor be removed or demoted."""

    code = "last_owner"


class PersonalWorkspace(ApplicationError):
    """A personal workspace has one member, its account: nobody is invited into it."""

    code = "personal_workspace"


class KeyNotFound(ApplicationError):
    """No such API key in the workspace (another workspace's is indistinguishable)."""

    code = "key_not_found"


class KeyLimitReached(ApplicationError):
    code = "key_limit_reached"

"""Every domain failure the projects app raises, with the status and code the API renders."""

from __future__ import annotations

from auteur.errors import ApplicationError


class ProjectNotFound(ApplicationError):
    status_code = 404
    code = "project_not_found"


class EdlInvalid(ApplicationError):
    status_code = 422
    code = "edl_invalid"


class EdlTooLarge(ApplicationError):
    status_code = 413
    code = "edl_too_large"


class EdlConflict(ApplicationError):
    status_code = 409
    code = "edl_conflict"


class NothingToUndo(ApplicationError):
    status_code = 409
    code = "nothing_to_undo"


class NothingToRedo(ApplicationError):
    status_code = 409
    code = "nothing_to_redo"


class EdlUnavailable(ApplicationError):
    status_code = 503
    code = "edl_unavailable"

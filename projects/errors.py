"""Every domain failure the projects app raises, each with its code (auteur/core/errors.py maps codes
to HTTP statuses)."""

from __future__ import annotations

from auteur.core.errors import ApplicationError


class ProjectNotFound(ApplicationError):
    code = "project_not_found"


class EdlInvalid(ApplicationError):
    code = "edl_invalid"


class EdlTooLarge(ApplicationError):
    code = "edl_too_large"


class EdlLimitExceeded(ApplicationError):
    """A timeline holds more of something than the limits allow (details: `limit`, `max`, `count`)."""

    code = "edl_limit_exceeded"


class EdlConflict(ApplicationError):
    code = "edl_conflict"


class NothingToUndo(ApplicationError):
    code = "nothing_to_undo"


class NothingToRedo(ApplicationError):
    code = "nothing_to_redo"


class EdlUnavailable(ApplicationError):
    code = "edl_unavailable"


class CaptionsNotFound(ApplicationError):
    code = "captions_not_found"


class MediaTooShort(ApplicationError):
    """A replacement file ends before a clip of the file it replaces (details: the clip, the lengths)."""

    code = "media_too_short"


class InterchangeInvalid(ApplicationError):
    """An editor's timeline file that cannot be read (or a format that cannot be imported)."""

    code = "interchange_invalid"


class MediaUnmatched(ApplicationError):
    """An imported timeline names media that matches no file of the project (details: `unmatched`)."""

    code = "media_unmatched"


class CommentNotFound(ApplicationError):
    code = "comment_not_found"


class NotTheAuthor(ApplicationError):
    """A comment's text is changed, and the comment deleted, by its author only."""

    code = "permission_denied"

"""Every exception of the media app.

Domain failures a client sees are ``ApplicationError``s (rendered by the API's error handler
with their ``code``, whose HTTP status auteur/core/errors.py gives); the others are raised by storage and handled inside
the app (retried, or turned into a 403/400 by the local backend's views).
"""

from __future__ import annotations

from auteur.core.errors import ApplicationError

# ----------------------------------------------------------------------------- storage


class StorageError(Exception):
    """The storage could not be reached or failed on its side: worth retrying later."""


class InvalidKey(ValueError):
    """Not a key this application would make: refused before it reaches a path or a bucket."""


class SignatureInvalid(Exception):
    """A local signed URL that was tampered with, forged or has expired (answered with 403)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class ObjectChanged(Exception):
    """The object is no longer the version a conditional operation named (its ETag changed)."""


class IncompleteUploadBody(Exception):
    """A PUT body ended before its Content-Length: the upload is aborted and nothing is kept."""


# ----------------------------------------------------------------------------- API


class MediaNotFound(ApplicationError):
    code = "media_not_found"


class VoiceNotFound(ApplicationError):
    code = "voice_not_found"


class UnsupportedMediaType(ApplicationError):
    code = "unsupported_media_type"


class FileTooLarge(ApplicationError):
    code = "file_too_large"


class MediaValidationError(ApplicationError):
    code = "invalid_media"


class MediaInUse(ApplicationError):
    code = "media_in_use"


class InvalidVoiceSample(ApplicationError):
    code = "invalid_voice_sample"


class MediaNotReady(ApplicationError):
    code = "media_not_ready"


class TooManyPublications(ApplicationError):
    """The user's publications in progress are at their limit: each is a copy a worker makes."""

    code = "too_many_publications"


class PublicationEnding(ApplicationError):
    """The file was unpublished while its copy was being made: it may be published again once that
    copy has ended (and been deleted)."""

    code = "publication_ending"


class PublishingUnavailable(ApplicationError):
    code = "publishing_unavailable"

    def __init__(self) -> None:
        super().__init__("Publishing is not configured on this server (AUTEUR_CDN_BASE_URL is not set, or, with "
                         "an S3/R2 bucket, AUTEUR_PUBLIC_BUCKET_NAME).")


class ChallengeNotFound(ApplicationError):
    code = "challenge_not_found"


class ChallengeExpired(ApplicationError):
    code = "challenge_expired"


class ChallengeUsed(ApplicationError):
    code = "challenge_used"


class ConsentNotFound(ApplicationError):
    code = "consent_not_found"


class ConsentRequired(ApplicationError):
    code = "consent_required"


class TooManyConsentAttempts(ApplicationError):
    code = "too_many_consent_attempts"


class SubjectNotReady(ApplicationError):
    """A file named to be covered by a likeness consent that is not ready (its bytes unknown)."""

    code = "media_not_ready"

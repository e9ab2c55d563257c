"""Every domain failure of the jobs app, each with its machine-readable code."""

from __future__ import annotations

from rest_framework import status as http

from auteur.errors import ApplicationError


class JobNotFound(ApplicationError):
    status_code = http.HTTP_404_NOT_FOUND
    code = "job_not_found"


class UnknownJobType(ApplicationError):
    status_code = http.HTTP_404_NOT_FOUND
    code = "unknown_job_type"


class FeatureUnavailable(ApplicationError):
    status_code = http.HTTP_503_SERVICE_UNAVAILABLE
    code = "feature_unavailable"


class InvalidIdempotencyKey(ApplicationError):
    status_code = http.HTTP_400_BAD_REQUEST
    code = "invalid_idempotency_key"


class IdempotencyKeyReused(ApplicationError):
    status_code = http.HTTP_422_UNPROCESSABLE_ENTITY
    code = "idempotency_key_reused"


class MediaNotReady(ApplicationError):
    status_code = http.HTTP_422_UNPROCESSABLE_ENTITY
    code = "media_not_ready"


class WrongMediaType(ApplicationError):
    status_code = http.HTTP_422_UNPROCESSABLE_ENTITY
    code = "wrong_media_type"


class MediaDurationUnknown(ApplicationError):
    status_code = http.HTTP_422_UNPROCESSABLE_ENTITY
    code = "media_duration_unknown"


class EmptyTimeline(ApplicationError):
    status_code = http.HTTP_422_UNPROCESSABLE_ENTITY
    code = "empty_timeline"


class JobNotCancelable(ApplicationError):
    status_code = http.HTTP_409_CONFLICT
    code = "job_not_cancelable"


class JobNotRetryable(ApplicationError):
    status_code = http.HTTP_409_CONFLICT
    code = "job_not_retryable"

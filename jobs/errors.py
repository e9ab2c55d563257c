"""Every domain failure of the jobs app, each with its machine-readable code (auteur/core/errors.py
maps codes to HTTP statuses)."""

from __future__ import annotations

from auteur.core.errors import ApplicationError


class JobNotFound(ApplicationError):
    code = "job_not_found"


class UnknownJobType(ApplicationError):
    code = "unknown_job_type"


class FeatureUnavailable(ApplicationError):
    code = "feature_unavailable"


class InvalidIdempotencyKey(ApplicationError):
    code = "invalid_idempotency_key"


class IdempotencyKeyReused(ApplicationError):
    code = "idempotency_key_reused"


class LanguageUnsupported(ApplicationError):
    code = "language_unsupported"


class ContentPolicyViolation(ApplicationError):
    """A text the request asks a model to act on is refused by the content policy: details name
    every flagged field with its categories (`flagged`), never the text or a score. `job_type` and
    `model_version` (the screener that decided) are for the refusal's record, not the answer."""

    code = "content_policy_violation"
    job_type: str = ""
    model_version: str = ""


class AccountUnderReview(ApplicationError):
    """The account is held for staff review (jobs.life.standing): its generative requests are
    refused until staff lift the hold; details say since when (`held_since`) and why (`reason`)."""

    code = "account_under_review"


class MediaUnscreenable(ApplicationError):
    """An input file whose pictures the content policy screens could not be decoded for it within
    the probe's limits: refused, as nothing unscreened reaches a generative model; details name the
    field and the file."""

    code = "media_unscreenable"


class MediaNotReady(ApplicationError):
    code = "media_not_ready"


class MediaProjectsDiffer(ApplicationError):
    code = "media_projects_differ"


class RecordingRequired(ApplicationError):
    code = "recording_required"


class WrongMediaType(ApplicationError):
    code = "wrong_media_type"


class MediaDurationUnknown(ApplicationError):
    code = "media_duration_unknown"


class InputLimitExceeded(ApplicationError):
    """A media input past what the type's engine takes (its length, its frames): details name the
    field, the file, the `limit` (`max_seconds`, `max_frames`), its `max` and the file's `value`."""

    code = "input_limit_exceeded"


class EmptyTimeline(ApplicationError):
    code = "empty_timeline"


class NoCaptions(ApplicationError):
    code = "no_captions"


class JobNotCancelable(ApplicationError):
    code = "job_not_cancelable"


class JobNotRetryable(ApplicationError):
    code = "job_not_retryable"


class QuoteNotFound(ApplicationError):
    code = "quote_not_found"


class QuoteExpired(ApplicationError):
    code = "quote_expired"


class QuoteMismatch(ApplicationError):
    code = "quote_mismatch"


class QuoteUsed(ApplicationError):
    code = "quote_used"


class BatchNotFound(ApplicationError):
    code = "batch_not_found"

"""One error type for domain failures and one renderer for every error the API returns.

Every error body is ``{"error": {"code": "...", "message": "...", "details": {...}}}``: clients
branch on ``code``, show ``message``, and find field paths or amounts in ``details``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig
from django.db import InterfaceError, OperationalError
from django.http import Http404, JsonResponse
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

logger = logging.getLogger(__name__)


class ApplicationError(Exception):
    """A domain failure with a machine-readable code, raised by services and rendered by the API.

    Services know nothing of HTTP: the status a code is answered with is in `HTTP_STATUS` below.
    What a client is told is `public()`: for a refusal of its request (4xx), the message and
    details; for a failure on the server's side (5xx), a fixed sentence per code (`SERVER_FAILURES`).
    """

    code: str = "bad_request"

    def __init__(self, message: str, *, code: str | None = None, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.details = details or {}

    @property
    def status_code(self) -> int:
        return http_status(self.code)

    def public(self) -> tuple[str, dict[str, Any]]:
        """(message, details) as a client may see them, wherever it sees them (an API answer, a
        record it can read). A server-side failure's own message is for operators: it may name a
        path, a host, a setting or the command that fixes it, so it goes to the log instead."""
        if self.status_code < 500:
            return self.message, self.details
        failure = SERVER_FAILURES.get(self.code, UNLISTED_SERVER_FAILURE)
        return failure.message, {name: value for name, value in self.details.items() if name in failure.details}


# The HTTP status of every domain error code that is not a 400, in one table.
HTTP_STATUS: Mapping[str, int] = {
    # 402: the balance does not cover the cost
    "insufficient_credits": status.HTTP_402_PAYMENT_REQUIRED,
    # a limit on spending (the workspace's, a member's or an API key's): details name the cap
    "spend_cap_reached": status.HTTP_402_PAYMENT_REQUIRED,
    # 403: not allowed for this caller
    "plan_required": status.HTTP_403_FORBIDDEN,
    "payment_required": status.HTTP_403_FORBIDDEN,  # the plan's renewal payment failed (past due)
    "permission_denied": status.HTTP_403_FORBIDDEN,
    "quota_exceeded": status.HTTP_403_FORBIDDEN,  # auteur/core/quotas.py: details name the quota and limit
    "own_budget": status.HTTP_403_FORBIDDEN,  # an admin sets no budget of their own: an owner sets it
    "budget_above_own": status.HTTP_403_FORBIDDEN,  # an admin gives at most what remains of their own budget
    # a voice without its speaker's verified consent, or a face no usable likeness consent covers: details
    # name the field, the voice or the file, and the reason
    "consent_required": status.HTTP_403_FORBIDDEN,
    # the account's generative requests are held for staff review (repeated content policy refusals):
    # details say since when and why
    "account_under_review": status.HTTP_403_FORBIDDEN,
    # 404: no such object, or another user's (indistinguishable)
    "project_not_found": status.HTTP_404_NOT_FOUND,
    "media_not_found": status.HTTP_404_NOT_FOUND,
    "voice_not_found": status.HTTP_404_NOT_FOUND,
    "job_not_found": status.HTTP_404_NOT_FOUND,
    "batch_not_found": status.HTTP_404_NOT_FOUND,
    "unknown_job_type": status.HTTP_404_NOT_FOUND,
    "webhook_not_found": status.HTTP_404_NOT_FOUND,
    "captions_not_found": status.HTTP_404_NOT_FOUND,
    "quote_not_found": status.HTTP_404_NOT_FOUND,
    "workspace_not_found": status.HTTP_404_NOT_FOUND,  # or one the caller is not a member of
    "member_not_found": status.HTTP_404_NOT_FOUND,
    "comment_not_found": status.HTTP_404_NOT_FOUND,
    "invitation_not_found": status.HTTP_404_NOT_FOUND,  # a token not signed here, or revoked
    "key_not_found": status.HTTP_404_NOT_FOUND,
    "challenge_not_found": status.HTTP_404_NOT_FOUND,  # a consent challenge not issued to this caller
    "consent_not_found": status.HTTP_404_NOT_FOUND,  # or a revocation link not signed here
    # 409: the object's state forbids it now
    "edl_conflict": status.HTTP_409_CONFLICT,
    "nothing_to_undo": status.HTTP_409_CONFLICT,
    "nothing_to_redo": status.HTTP_409_CONFLICT,
    "media_in_use": status.HTTP_409_CONFLICT,
    "publication_ending": status.HTTP_409_CONFLICT,  # unpublished while its copy is being made
    "not_multipart": status.HTTP_409_CONFLICT,  # parts asked of a file uploaded with one PUT
    "upload_closed": status.HTTP_409_CONFLICT,  # parts asked of an upload already completed
    "upload_changed": status.HTTP_409_CONFLICT,  # PUT again while confirm moved it (S3): confirm again
    "job_not_cancelable": status.HTTP_409_CONFLICT,
    "job_not_retryable": status.HTTP_409_CONFLICT,
    "job_not_charged": status.HTTP_409_CONFLICT,
    "idempotency_conflict": status.HTTP_409_CONFLICT,
    "subscription_exists": status.HTTP_409_CONFLICT,
    "subscription_inactive": status.HTTP_409_CONFLICT,
    "webhook_limit_reached": status.HTTP_409_CONFLICT,
    "key_limit_reached": status.HTTP_409_CONFLICT,  # keys in use: a workspace's or its paying account's (details.scope)
    "plan_active": status.HTTP_409_CONFLICT,  # change or cancel a running plan in the billing portal
    "no_billing_account": status.HTTP_409_CONFLICT,
    "quote_used": status.HTTP_409_CONFLICT,  # a quote pays for one job
    "challenge_used": status.HTTP_409_CONFLICT,  # a consent challenge is read in one recording
    "invitation_used": status.HTTP_409_CONFLICT,  # an invitation seats one account
    "already_member": status.HTTP_409_CONFLICT,
    "last_owner": status.HTTP_409_CONFLICT,  # a workspace keeps at least one owner
    "personal_workspace": status.HTTP_409_CONFLICT,  # a personal workspace has no other member
    "quote_mismatch": status.HTTP_409_CONFLICT,  # the body or the work differs from what was quoted
    # 410: it was valid once, and is no more
    "quote_expired": status.HTTP_410_GONE,
    "invitation_expired": status.HTTP_410_GONE,
    "challenge_expired": status.HTTP_410_GONE,
    # 413, 415: the body or file itself is refused
    "edl_too_large": status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
    "file_too_large": status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
    "unsupported_media_type": status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
    # 422: well-formed, but not something that can be done
    "edl_invalid": status.HTTP_422_UNPROCESSABLE_ENTITY,
    "edl_limit_exceeded": status.HTTP_422_UNPROCESSABLE_ENTITY,  # details name the limit, its max and the count
    "invalid_size": status.HTTP_422_UNPROCESSABLE_ENTITY,
    "invalid_filename": status.HTTP_422_UNPROCESSABLE_ENTITY,
    "extension_mismatch": status.HTTP_422_UNPROCESSABLE_ENTITY,
    "size_mismatch": status.HTTP_422_UNPROCESSABLE_ENTITY,
    "upload_incomplete": status.HTTP_422_UNPROCESSABLE_ENTITY,  # details name the parts still to send
    "invalid_part": status.HTTP_422_UNPROCESSABLE_ENTITY,
    "invalid_checksum": status.HTTP_422_UNPROCESSABLE_ENTITY,
    "invalid_media": status.HTTP_422_UNPROCESSABLE_ENTITY,
    "output_not_decodable": status.HTTP_422_UNPROCESSABLE_ENTITY,
    "invalid_voice_sample": status.HTTP_422_UNPROCESSABLE_ENTITY,
    "media_not_ready": status.HTTP_422_UNPROCESSABLE_ENTITY,
    "wrong_media_type": status.HTTP_422_UNPROCESSABLE_ENTITY,
    "recording_required": status.HTTP_422_UNPROCESSABLE_ENTITY,  # a consent's files: a person's, not a job's output
    "media_too_short": status.HTTP_422_UNPROCESSABLE_ENTITY,
    "interchange_invalid": status.HTTP_422_UNPROCESSABLE_ENTITY,  # an editor's file that cannot be read
    # a document that would take more memory, CPU or time to read than a request may use (details: cause)
    "input_too_complex": status.HTTP_422_UNPROCESSABLE_ENTITY,
    "media_unmatched": status.HTTP_422_UNPROCESSABLE_ENTITY,  # details list the names no file matches
    "media_duration_unknown": status.HTTP_422_UNPROCESSABLE_ENTITY,
    "input_limit_exceeded": status.HTTP_422_UNPROCESSABLE_ENTITY,  # details name the field, limit, max, value
    "empty_timeline": status.HTTP_422_UNPROCESSABLE_ENTITY,
    "no_captions": status.HTTP_422_UNPROCESSABLE_ENTITY,
    "idempotency_key_reused": status.HTTP_422_UNPROCESSABLE_ENTITY,
    "language_unsupported": status.HTTP_422_UNPROCESSABLE_ENTITY,
    # a text a model would act on is refused by the content policy: details.flagged names each field and its categories
    "content_policy_violation": status.HTTP_422_UNPROCESSABLE_ENTITY,
    # an input file the content policy screens could not be decoded for it within the probe's limits
    "media_unscreenable": status.HTTP_422_UNPROCESSABLE_ENTITY,
    "media_projects_differ": status.HTTP_422_UNPROCESSABLE_ENTITY,
    "plan_not_for_sale": status.HTTP_422_UNPROCESSABLE_ENTITY,
    "unknown_credit_pack": status.HTTP_422_UNPROCESSABLE_ENTITY,
    # 428: a write must say which version it was made from
    "version_required": status.HTTP_428_PRECONDITION_REQUIRED,
    # 429: too much of something is already under way for this caller
    "webhook_backlog_full": status.HTTP_429_TOO_MANY_REQUESTS,
    "too_many_publications": status.HTTP_429_TOO_MANY_REQUESTS,
    "too_many_consent_attempts": status.HTTP_429_TOO_MANY_REQUESTS,  # failed verifications in the last day
    # 503: a part of the service is unavailable; nothing was done
    "feature_unavailable": status.HTTP_503_SERVICE_UNAVAILABLE,
    "edl_unavailable": status.HTTP_503_SERVICE_UNAVAILABLE,
    "billing_unavailable": status.HTTP_503_SERVICE_UNAVAILABLE,
    "publishing_unavailable": status.HTTP_503_SERVICE_UNAVAILABLE,  # no CDN configured: nothing is public
    # 500: a Stripe event failed while being processed; rolled back and retried by Stripe
    "event_processing_failed": status.HTTP_500_INTERNAL_SERVER_ERROR,
}


@dataclass(frozen=True)
class ServerFailure:
    """What a client is told of a server-side failure: a sentence, and the details it may see."""

    message: str
    details: tuple[str, ...] = ()


# Every 5xx domain error code, as clients see it (ApplicationError.public).
SERVER_FAILURES: Mapping[str, ServerFailure] = {
    "feature_unavailable": ServerFailure(
        "This feature is not available on this server: its GPU backend does not run it. An operator can enable it.",
        ("type", "backend")),
    "edl_unavailable": ServerFailure("The timeline store is unavailable. Try again shortly."),
    "billing_unavailable": ServerFailure("Billing is not available on this server."),
    "publishing_unavailable": ServerFailure("Publishing files is not available on this server."),
    "event_processing_failed": ServerFailure("The event could not be processed; it will be retried.", ("event_id",)),
}
UNLISTED_SERVER_FAILURE = ServerFailure("The service could not complete the request. Try again later.")


def http_status(code: str) -> int:
    """The status a domain error code is answered with (400 unless the table says otherwise)."""
    return HTTP_STATUS.get(code, status.HTTP_400_BAD_REQUEST)


def error_body(code: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details or {}}}


def error_response(status_code: int, code: str, message: str, details: dict[str, Any] | None = None) -> JsonResponse:
    return JsonResponse(error_body(code, message, details), status=status_code)


# DRF exception -> our code. Anything not listed keeps DRF's own default_code.
_DRF_CODES: dict[type[exceptions.APIException], str] = {
    exceptions.ParseError: "malformed_request",
    exceptions.ValidationError: "validation_error",
    exceptions.NotAuthenticated: "not_authenticated",
    exceptions.AuthenticationFailed: "invalid_token",
    exceptions.PermissionDenied: "permission_denied",
    exceptions.NotFound: "not_found",
    exceptions.MethodNotAllowed: "method_not_allowed",
    exceptions.NotAcceptable: "not_acceptable",
    exceptions.UnsupportedMediaType: "unsupported_media_type",
    exceptions.Throttled: "rate_limited",
}


def _fields_message(fields: dict[str, list[str]]) -> str:
    """A validation error's sentence: the field's own where one field is wrong, else which ones."""
    if len(fields) == 1:
        [(name, messages)] = fields.items()
        return messages[0] if name == "non_field_errors" else f"{name}: {messages[0]}"
    return f"{len(fields)} fields are invalid: {', '.join(list(fields)[:10])}."


def _flatten(detail: Any, path: str = "") -> dict[str, list[str]]:
    """DRF's nested error detail as {"field.path": [messages]}, so clients see where it failed."""
    out: dict[str, list[str]] = {}
    if isinstance(detail, dict):
        for key, value in detail.items():
            sub = f"{path}.{key}" if path else str(key)
            out.update(_flatten(value, sub))
    elif isinstance(detail, list) and detail and all(not isinstance(d, (dict, list)) for d in detail):
        out[path or "non_field_errors"] = [str(d) for d in detail]
    elif isinstance(detail, list):
        for i, value in enumerate(detail):
            if value:
                out.update(_flatten(value, f"{path}[{i}]" if path else f"[{i}]"))
    else:
        out[path or "non_field_errors"] = [str(detail)]
    return out


DATABASE_RETRY_AFTER_SECONDS = 5


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, ApplicationError):
        if exc.status_code >= 500:
            logger.warning("answered %d %s: %s", exc.status_code, exc.code, exc.message)
        retry_after = exc.details.get("retry_after_seconds")
        headers = {"Retry-After": str(retry_after)} if isinstance(retry_after, int) else None
        return Response(error_body(exc.code, *exc.public()), status=exc.status_code, headers=headers)
    if isinstance(exc, (OperationalError, InterfaceError)):
        # The database is away (a restart, a failover): the request's transaction was rolled
        # back, so nothing half-done remains, and the client may simply try again.
        logger.warning("database unavailable: %s", exc)
        return Response(
            error_body("service_unavailable", "The service is briefly unavailable; try again shortly.",
                       {"retry_after_seconds": DATABASE_RETRY_AFTER_SECONDS}),
            status=status.HTTP_503_SERVICE_UNAVAILABLE,
            headers={"Retry-After": str(DATABASE_RETRY_AFTER_SECONDS)},
        )
    if isinstance(exc, RequestDataTooBig):
        # Django refuses a body over DATA_UPLOAD_MAX_MEMORY_SIZE when DRF reads it; it is the
        # body that is refused (413), not a malformed request.
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        return Response(
            error_body("payload_too_large", f"The request body is over the limit of {limit} bytes.",
                       {"max_bytes": limit}),
            status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
        )
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()

    response = drf_exception_handler(exc, context)
    if response is None:
        # Not an API exception: let it propagate, so that it is logged with its traceback and
        # ApiErrorMiddleware answers 500 with the envelope (never a stack trace to the client).
        return None
    assert isinstance(exc, exceptions.APIException)
    code = next((c for cls, c in _DRF_CODES.items() if isinstance(exc, cls)), exc.default_code)
    details: dict[str, Any] = {}
    if isinstance(exc, exceptions.ValidationError):
        details = {"fields": _flatten(exc.detail)}
        message = _fields_message(details["fields"])
    elif isinstance(exc.detail, (list, dict)):
        message = str(exc.default_detail)
        details = {"fields": _flatten(exc.detail)}
    else:
        message = str(exc.detail)
    if isinstance(exc, exceptions.UnsupportedMediaType) and context.get("view") is not None:
        # What to send instead: the types this operation reads (JSON, or a form where it takes a file).
        accepted = [parser.media_type for parser in context["view"].get_parsers()]
        message = f"{message} Send the body as {' or '.join(accepted)} (its Content-Type header)."
        details["accepted"] = accepted
    reason = getattr(exc, "reason", None)  # why a verified token is refused (auteur.users: "expired")
    if isinstance(exc, exceptions.AuthenticationFailed) and reason == "expired":
        details["reason"] = reason
        # RFC 6750: the challenge says the token is refused, and why.
        response["WWW-Authenticate"] = ('Bearer realm="api", error="invalid_token", '
                                        'error_description="The token expired"')
    wait = getattr(exc, "wait", None)  # Throttled sets it; the stubs don't know
    if isinstance(exc, exceptions.Throttled) and wait is not None:
        details["retry_after_seconds"] = int(wait + 0.999)
    response.data = error_body(code, message, details)
    return response

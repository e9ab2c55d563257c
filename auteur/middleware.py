from __future__ import annotations

import logging
import uuid
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from auteur.errors import error_response
from auteur.logging import request_id_var, user_id_var

logger = logging.getLogger("auteur.request")

_STATUS_CODES = {
    400: ("bad_request", "The request is malformed."),
    403: ("forbidden", "You are not allowed to do this."),
    404: ("not_found", "No such resource."),
    405: ("method_not_allowed", "This method is not allowed here."),
    413: ("payload_too_large", "The request body is too large."),
    415: ("unsupported_media_type", "Unsupported media type."),
    500: ("internal_error", "Something went wrong on our side; it has been logged."),
}


class RequestContextMiddleware:
    """Gives each request an id (or keeps the proxy's X-Request-ID) for logs and the response."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        incoming = request.headers.get("X-Request-ID", "")
        request_id = incoming if 0 < len(incoming) <= 64 and incoming.isprintable() else uuid.uuid4().hex
        token = request_id_var.set(request_id)
        user_token = user_id_var.set(None)
        try:
            response = self.get_response(request)
        finally:
            request_id_var.reset(token)
            user_id_var.reset(user_token)
        response["X-Request-ID"] = request_id
        return response


class ApiErrorMiddleware:
    """Under /api/ every error is the JSON envelope, whoever produced it.

    DRF's exception handler covers errors raised in API views; this covers the rest: unknown
    routes, errors Django raises before a view runs (oversize bodies, bad hosts), and unhandled
    exceptions, which Django turns into HTML pages (the technical pages in debug).
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if (
            request.path.startswith("/api/")
            and response.status_code >= 400
            and not response.get("Content-Type", "").startswith("application/json")
        ):
            code, message = _STATUS_CODES.get(
                response.status_code, ("error", f"The request failed with status {response.status_code}.")
            )
            json_response = error_response(response.status_code, code, message)
            for header in ("Allow", "Retry-After"):
                if header in response:
                    json_response[header] = response[header]
            return json_response
        return response

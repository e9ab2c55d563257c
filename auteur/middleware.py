from __future__ import annotations

import base64
import hashlib
import logging
import re
import uuid
from collections.abc import Callable
from functools import lru_cache

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.template.loader import get_template

from auteur.core.errors import error_response
from auteur.core.logging import request_id_var, user_id_var

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


# The inline <style> blocks of the pages the policy covers, in templates that are not ours. Their
# hashes are computed from the installed templates (the blocks hold no template tags, so what is
# rendered is byte for byte what is read), so an upgrade of either package cannot break them.
INLINE_STYLE_TEMPLATES = ("drf_spectacular/swagger_ui.html", "admin/change_list.html")


@lru_cache(maxsize=1)
def inline_style_hashes() -> tuple[str, ...]:
    hashes = []
    for name in INLINE_STYLE_TEMPLATES:
        source: str = get_template(name).template.source  # type: ignore[attr-defined]
        for block in re.findall(r"<style>(.*?)</style>", source, re.DOTALL):
            digest = base64.b64encode(hashlib.sha256(block.encode()).digest()).decode()
            hashes.append(f"'sha256-{digest}'")
    return tuple(hashes)


@lru_cache(maxsize=1)
def content_security_policy() -> str:
    """No inline script, no eval, nothing from another origin, no framing, no foreign form targets.

    The docs page loads drf-spectacular-sidecar's self-hosted Swagger UI and its initialisation
    script from URLs of this site (the split view); its icons are data: images in its stylesheet.
    """
    directives = {
        "default-src": "'self'",
        "script-src": "'self'",
        "style-src": " ".join(("'self'", *inline_style_hashes())),
        "img-src": "'self' data:",
        "font-src": "'self'",
        "connect-src": "'self'",
        "object-src": "'none'",
        "base-uri": "'none'",
        "form-action": "'self'",
        "frame-ancestors": "'none'",
    }
    return "; ".join(f"{name} {value}" for name, value in directives.items())


class ContentSecurityPolicyMiddleware:
    """A strict Content-Security-Policy on the HTML pages of the site: the admin and the API docs.

    An injected script (a stored value rendered in the admin, a crafted docs URL) does not run
    there: only script files served by this site do.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if request.path.startswith(settings.AUTEUR_CSP_PATH_PREFIXES):
            response.setdefault("Content-Security-Policy", content_security_policy())
        return response

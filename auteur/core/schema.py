"""The OpenAPI schema's error answers, derived from each view so that they cannot drift from it.

Every operation lists each error status it can answer, with the one envelope every error has
(`Error`: `{"error": {"code", "message", "details"}}`) and, in the status's description, the
`code`s it carries. Most of them follow from what the operation is:

- 401 when it authenticates, 429 when it is throttled (DRF answers both before the view runs);
- 503 `service_unavailable` everywhere (the database briefly away, auteur/core/errors.py);
- 404 when its path names an object, or when it is a paginated list (a page past the end);
- 400 when it validates a query string or a body, and 413/415 when it parses a body.

What its services refuse is declared on the view with `@raises("code", ...)` (on the class for
every method, or on one method): the status of each code is read from `HTTP_STATUS`, so a code
and its status are written in one place each.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import drf_spectacular.openapi
from drf_spectacular.plumbing import get_doc
from drf_spectacular.utils import OpenApiParameter
from rest_framework import serializers, status

from auteur.core.api import StrictSerializer
from auteur.core.errors import http_status
from auteur.users.workspace_context import WORKSPACE_HEADER

_Target = TypeVar("_Target")

# The code a missing (or another user's) object named by a path parameter is answered with.
NOT_FOUND_CODES = {
    "project_id": "project_not_found",
    "media_id": "media_not_found",
    "voice_id": "voice_not_found",
    "job_id": "job_not_found",
    "webhook_id": "webhook_not_found",
}
AUTHENTICATION_CODES = ("not_authenticated", "invalid_token")
RETRY_AFTER = {"schema": {"type": "integer"}, "description": "Seconds to wait before trying again."}
BODY_CODES = ((status.HTTP_400_BAD_REQUEST, "malformed_request"), (status.HTTP_400_BAD_REQUEST, "validation_error"),
              (status.HTTP_413_REQUEST_ENTITY_TOO_LARGE, "payload_too_large"),
              (status.HTTP_415_UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type"))


def raises(*codes: str) -> Callable[[_Target], _Target]:
    """Declare the domain error codes a view answers: on the class for all its methods, or on one
    method. Each is documented under its status from `HTTP_STATUS` (400 when it has none)."""

    def mark(target: _Target) -> _Target:
        declared = getattr(target, "api_error_codes", ())
        # setattr: neither a view class nor a function declares the attribute for the type checker.
        setattr(target, "api_error_codes", (*declared, *(c for c in codes if c not in declared)))  # noqa: B010
        return target

    return mark


WORKSPACE_PARAMETER = OpenApiParameter(
    WORKSPACE_HEADER, str, OpenApiParameter.HEADER, required=False,
    description="The team workspace to act in (its id), whose member the caller is; without it, the caller's "
                "personal workspace. 404 `workspace_not_found` for any other value; 403 `permission_denied` when the "
                "caller's role there does not allow the operation.",
)


class ErrorDetailSerializer(serializers.Serializer):
    code = serializers.CharField(help_text="Machine-readable; branch on it.")
    message = serializers.CharField(help_text="A sentence for people.")
    details = serializers.DictField(
        help_text="Where it failed and by how much: `fields` (field path -> messages) for invalid input, "
                  "the limit where there is one, `retry_after_seconds` for 429 and 503."
    )

    class Meta:
        ref_name = "ErrorDetail"


class ErrorSerializer(serializers.Serializer):
    """Every error answer's body."""

    error = ErrorDetailSerializer()

    class Meta:
        ref_name = "Error"


class ErrorResponses:
    """The error statuses of one operation, each with the codes it carries, in declaration order."""

    def __init__(self) -> None:
        self.codes: dict[int, list[str]] = {}

    def add(self, status_code: int, code: str) -> None:
        codes = self.codes.setdefault(status_code, [])
        if code not in codes:
            codes.append(code)

    def add_domain(self, codes: Iterable[str]) -> None:
        for code in codes:
            self.add(http_status(code), code)


class AutoSchema(drf_spectacular.openapi.AutoSchema):
    """Every operation with the error responses described above; components named after views."""

    def get_description(self) -> str:  # type: ignore[override]
        """The method's docstring, else the view's own: never one its class inherits (a base view's
        notes on how it works are for this code's readers, not the API's)."""
        method = getattr(self.view, getattr(self.view, "action", (self.method or "").lower()), None)
        own = type(self.view).__dict__.get("__doc__")
        return get_doc(method) or (inspect.cleandoc(own) if isinstance(own, str) else "")

    def get_serializer_name(self, serializer: serializers.Serializer, direction: Any) -> str:
        """A view's nested serializers are named after the view: `CreditBalanceApi.OutputSerializer`
        is the component `CreditBalanceOutput`, not one of many clashing `Output`s (HackSoft layout)."""
        qualname = type(serializer).__qualname__
        if "." not in qualname:
            return super().get_serializer_name(serializer, direction)
        outer, _, inner = qualname.rpartition(".")
        return "".join(part.removesuffix("Api") for part in outer.split(".")) + inner

    def _get_serializer_name(self, serializer: Any, direction: Any, bypass_extensions: bool = False) -> str:
        # Request components get a `Request` suffix; a serializer already named so gets one only.
        name: str = super()._get_serializer_name(serializer, direction, bypass_extensions)
        return name.removesuffix("Request") if name.endswith("RequestRequest") else name

    def _map_basic_serializer(self, serializer: Any, direction: Any) -> dict[str, Any]:
        """A strict input serializer refuses fields it does not know (400): the schema says so."""
        schema: dict[str, Any] = super()._map_basic_serializer(serializer, direction)
        if direction == "request" and isinstance(serializer, StrictSerializer):
            schema["additionalProperties"] = False
        return schema

    def get_operation(self, *args: Any, **kwargs: Any) -> dict[str, Any] | None:
        operation = super().get_operation(*args, **kwargs)
        if operation is None:
            return None
        envelope = self.resolve_serializer(ErrorSerializer, "response").ref
        responses: dict[str, Any] = operation["responses"]
        for status_code, codes in sorted(self.error_responses(operation).codes.items()):
            response = responses.setdefault(str(status_code), {})
            response.setdefault("content", {"application/json": {"schema": envelope}})
            listed = ", ".join(f"`{code}`" for code in codes)
            described = response.get("description", "")
            response["description"] = f"{described} Codes: {listed}." if described else f"Codes: {listed}."
            if status_code == status.HTTP_429_TOO_MANY_REQUESTS:
                response.setdefault("headers", {})["Retry-After"] = RETRY_AFTER
        return operation

    def get_override_parameters(self) -> list[Any]:
        parameters = list(super().get_override_parameters())
        if self.view.get_authenticators() and getattr(self.view, "acts_in_workspace", True):
            parameters.append(WORKSPACE_PARAMETER)
        return parameters

    def error_responses(self, operation: dict[str, Any]) -> ErrorResponses:
        errors = ErrorResponses()
        parameters = operation.get("parameters", [])
        paginated = bool(self._get_pagination_parameters())
        if paginated or any(p["in"] == "query" for p in parameters):
            errors.add(status.HTTP_400_BAD_REQUEST, "validation_error")
        if "requestBody" in operation or (self.method in ("POST", "PUT", "PATCH") and self.get_request_serializer()):
            for status_code, code in BODY_CODES:
                errors.add(status_code, code)
        if self.view.get_authenticators():
            for code in AUTHENTICATION_CODES:
                errors.add(status.HTTP_401_UNAUTHORIZED, code)
        for parameter in parameters:
            if parameter["in"] == "path":
                errors.add(status.HTTP_404_NOT_FOUND, NOT_FOUND_CODES.get(parameter["name"], "not_found"))
        if paginated or any(p["in"] == "path" for p in parameters):
            errors.add(status.HTTP_404_NOT_FOUND, "not_found")
        if self.view.get_authenticators() and getattr(self.view, "acts_in_workspace", True):
            errors.add(status.HTTP_404_NOT_FOUND, "workspace_not_found")  # the Auteur-Workspace header's
            errors.add(status.HTTP_403_FORBIDDEN, "permission_denied")  # the caller's role there
        elif self.view.get_authenticators():
            errors.add(status.HTTP_403_FORBIDDEN, "permission_denied")  # an API key: this is a person's
        errors.add_domain(getattr(type(self.view), "api_error_codes", ()))
        errors.add_domain(getattr(getattr(self.view, self.method.lower(), None), "api_error_codes", ()))
        if self.view.get_throttles():
            errors.add(status.HTTP_429_TOO_MANY_REQUESTS, "rate_limited")
        errors.add(status.HTTP_503_SERVICE_UNAVAILABLE, "service_unavailable")
        return errors

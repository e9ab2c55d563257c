"""The OpenAPI document itself: every error answer is listed with the envelope, lists are pages.

tests/contract/test_openapi.py checks that the API answers what the document says; these check
what the document says where fuzzing cannot reach (the 401, 429 and 503 that a healthy test stack
with a valid token never gives) and that a view's `@raises` lands in it.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.urls import path
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from auteur.core.api import ApiView, KeyedPagination, StrictSerializer
from auteur.core.errors import HTTP_STATUS
from auteur.core.schema import raises
from tests.contract.support import operations, resolve, served_schema

SCHEMA = served_schema()
OPERATIONS = operations(SCHEMA)
ERROR_REF = "#/components/schemas/Error"
PAGES = {
    "/api/v1/projects": "projects",
    "/api/v1/credits/history": "transactions",
    "/api/v1/jobs": "jobs",
    "/api/v1/jobs/{job_id}/events": "events",
    "/api/v1/projects/{project_id}/media": "media",
    "/api/v1/voices": "voices",
}


def error_codes(operation: dict[str, Any], status: int) -> str:
    return str(operation["responses"][str(status)]["description"])


def test_the_error_envelope_is_a_component_of_the_exact_shape_the_handler_writes():
    envelope = SCHEMA["components"]["schemas"]["Error"]
    assert envelope["required"] == ["error"]
    detail = resolve(SCHEMA, envelope["properties"]["error"])
    assert set(detail["required"]) == {"code", "message", "details"}
    assert detail["properties"]["details"]["type"] == "object"


# The operations a caller reaches without credentials (each is throttled as anonymous traffic).
UNAUTHENTICATED = {"/api/v1/consents/revoke"}


@pytest.mark.parametrize(("method", "path", "operation"), OPERATIONS, ids=[f"{m} {p}" for m, p, _ in OPERATIONS])
def test_every_operation_lists_401_429_and_503_and_each_error_has_the_envelope(method, path, operation):
    responses = operation["responses"]
    # An operation that takes no credentials (its body is its authority: a signed token) says so by
    # naming no security scheme, and cannot answer 401.
    signed_in = bool(operation.get("security"))
    assert {"429", "503"} | ({"401"} if signed_in else set()) <= set(responses)
    assert signed_in or ("401" not in responses and path in UNAUTHENTICATED)
    assert "`service_unavailable`" in error_codes(operation, 503)
    for status, response in responses.items():
        if int(status) >= 400:
            assert response["content"]["application/json"]["schema"] == {"$ref": ERROR_REF}, status
            assert "Codes: `" in response["description"], status


@pytest.mark.parametrize(("method", "path", "operation"), OPERATIONS, ids=[f"{m} {p}" for m, p, _ in OPERATIONS])
def test_an_operation_on_an_object_or_with_a_body_lists_404_or_400_413_415(method, path, operation):
    responses = operation["responses"]
    if "{" in path:
        assert "404" in responses
    if "requestBody" in operation:
        assert {"400", "413", "415"} <= set(responses)
        assert "`validation_error`" in error_codes(operation, 400)


@pytest.mark.parametrize(("path", "key"), PAGES.items())
def test_a_list_is_documented_as_the_keyed_page_it_answers(path, key):
    operation = SCHEMA["paths"][path]["get"]
    page = resolve(SCHEMA, operation["responses"]["200"]["content"]["application/json"]["schema"])
    assert page["type"] == "object"
    assert set(page["required"]) == {key, "count", "next", "previous"}
    assert page["properties"][key]["type"] == "array"
    assert page["properties"]["next"]["nullable"] is True
    # A page past the end is a 404, a page below 1 a 400.
    assert "`not_found`" in error_codes(operation, 404)
    assert "`validation_error`" in error_codes(operation, 400)
    assert {p["name"] for p in operation["parameters"]} >= {"page", "page_size"}


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("POST", "/api/v1/jobs/tts", 402, "insufficient_credits"),
        ("POST", "/api/v1/jobs/video-generation", 403, "plan_required"),
        ("POST", "/api/v1/jobs/transcription", 422, "media_not_ready"),
        ("POST", "/api/v1/jobs/render", 422, "empty_timeline"),
        ("POST", "/api/v1/jobs/tts", 503, "feature_unavailable"),
        ("POST", "/api/v1/jobs/tts", 400, "invalid_idempotency_key"),
        ("POST", "/api/v1/jobs/{job_id}/cancel", 409, "job_not_cancelable"),
        ("DELETE", "/api/v1/projects/{project_id}/media/{media_id}", 409, "media_in_use"),
        ("POST", "/api/v1/projects/{project_id}/media/upload-url", 413, "file_too_large"),
        ("POST", "/api/v1/projects/{project_id}/media/upload-url", 415, "unsupported_media_type"),
        ("PUT", "/api/v1/projects/{project_id}/edl", 428, "version_required"),
        ("GET", "/api/v1/projects/{project_id}/media/{media_id}", 404, "media_not_found"),
    ],
)
def test_what_a_service_refuses_is_listed_under_its_status(method, path, status, code):
    assert f"`{code}`" in error_codes(SCHEMA["paths"][path][method.lower()], status)


# Codes with a status that no operation of the schema answers: who raises them instead.
NOT_ANSWERED_BY_THE_API = {
    "idempotency_conflict": "the ledger, for a replayed charge key (jobs charge under fresh keys)",
    "invalid_media": "a job's output step, stored as the failed job's error_code",
    "output_not_decodable": "the same step, before it is stored as invalid_media",
    "job_not_charged": "the refund of a job (tasks, admin)",
    "subscription_exists": "subscription management (admin, commands)",
    "subscription_inactive": "subscription management (admin, commands)",
    "unknown_job_type": "POST /jobs/<anything else>, a path outside the schema",
    "event_processing_failed": "the Stripe webhook, which is not in the public schema",
}


def test_every_error_code_with_a_status_is_documented_on_an_operation():
    """A code added to HTTP_STATUS is declared with @raises on the views that answer it (or listed
    above): otherwise a client could meet a status and code the schema never mentions."""
    documented = {code for _, _, operation in OPERATIONS for response in operation["responses"].values()
                  for code in re.findall(r"`(\w+)`", response["description"])}
    assert set(HTTP_STATUS) - documented - set(NOT_ANSWERED_BY_THE_API) == set()
    assert set(NOT_ANSWERED_BY_THE_API) <= set(HTTP_STATUS) - documented  # none stale


def test_a_request_body_that_refuses_unknown_fields_says_so():
    body = SCHEMA["paths"]["/api/v1/projects"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert resolve(SCHEMA, body)["additionalProperties"] is False


# ----------------------------------------------------------------------------- the mechanism


class _GadgetApi(ApiView):
    pagination_class = KeyedPagination.of("gadgets")

    class InputSerializer(StrictSerializer):
        name = serializers.CharField()

    class OutputSerializer(serializers.Serializer):
        name = serializers.CharField()

    @extend_schema(responses=OutputSerializer(many=True))
    def get(self, request: Request) -> Response:
        raise NotImplementedError

    @extend_schema(request=InputSerializer, responses={201: OutputSerializer})
    @raises("media_in_use", "a_code_the_table_does_not_know")
    def post(self, request: Request) -> Response:
        raise NotImplementedError


@raises("insufficient_credits")
class _GadgetDetailApi(_GadgetApi):
    pass


def gadget_schema() -> dict[str, Any]:
    patterns = [path("api/v1/gadgets", _GadgetApi.as_view()),
                path("api/v1/gadgets/<uuid:gadget_id>", _GadgetDetailApi.as_view())]
    return SchemaGenerator(patterns=patterns).get_schema(request=None, public=True)


def test_raises_puts_each_code_under_its_status_from_the_table_and_400_for_an_unknown_one():
    post = gadget_schema()["paths"]["/api/v1/gadgets"]["post"]["responses"]
    assert "`media_in_use`" in post["409"]["description"]
    assert "`a_code_the_table_does_not_know`" in post["400"]["description"]
    assert "402" not in post  # declared on the other view only


def test_raises_on_a_class_covers_its_methods_and_adds_to_what_its_base_declares():
    detail = gadget_schema()["paths"]["/api/v1/gadgets/{gadget_id}"]
    assert "`insufficient_credits`" in detail["get"]["responses"]["402"]["description"]
    assert "`media_in_use`" in detail["post"]["responses"]["409"]["description"]
    assert "`not_found`" in detail["get"]["responses"]["404"]["description"]


def test_a_view_with_a_keyed_pagination_is_documented_as_its_page():
    schema = gadget_schema()
    ok = schema["paths"]["/api/v1/gadgets"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    page = schema["components"]["schemas"][ok["$ref"].rsplit("/", 1)[1]]
    assert set(page["properties"]) == {"gadgets", "count", "next", "previous"}

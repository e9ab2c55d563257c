"""Every error under /api/ is the JSON envelope, with the right status and a machine code."""

from __future__ import annotations

import pytest

from projects.models import Project


def assert_envelope(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == code
    assert body["error"]["message"]
    return body["error"]


@pytest.mark.django_db
def test_malformed_json_is_a_400_envelope(auth_client):
    response = auth_client.generic("POST", "/api/v1/auth/verify", b'{"broken": ', content_type="application/json")
    assert_envelope(response, 400, "malformed_request")


@pytest.mark.django_db
def test_unknown_api_route_is_a_404_envelope_not_html(auth_client):
    error = assert_envelope(auth_client.get("/api/v1/no-such-thing"), 404, "not_found")
    assert "<html" not in error["message"].lower()


@pytest.mark.django_db
def test_unknown_route_outside_any_app_is_json_too(api_client):
    assert_envelope(api_client.get("/api/nothing/here"), 404, "not_found")


@pytest.mark.django_db
def test_wrong_method_is_a_405_envelope_with_allow(auth_client):
    response = auth_client.get("/api/v1/auth/verify")
    assert_envelope(response, 405, "method_not_allowed")
    assert "POST" in response["Allow"]


@pytest.mark.django_db
def test_unsupported_content_type_is_a_415_envelope(auth_client):
    response = auth_client.generic(
        "POST", "/api/v1/auth/verify", b"a=b", content_type="application/x-www-form-urlencoded"
    )
    assert_envelope(response, 415, "unsupported_media_type")


@pytest.mark.django_db
def test_missing_token_is_a_401_envelope_with_challenge(api_client):
    response = api_client.post("/api/v1/auth/verify")
    assert_envelope(response, 401, "not_authenticated")
    assert response["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.django_db
@pytest.mark.urls("tests.auteur.urls_boom")
def test_unhandled_exception_is_a_500_envelope_without_internals(api_client, caplog):
    response = api_client.get("/api/v1/boom")
    error = assert_envelope(response, 500, "internal_error")
    assert "secret internal detail" not in response.content.decode()
    assert "Traceback" not in response.content.decode()
    assert error["details"] == {}


@pytest.mark.django_db
@pytest.mark.urls("tests.auteur.urls_boom")
def test_a_lost_database_is_a_503_to_retry_not_a_500(api_client):
    response = api_client.get("/api/v1/database-away")
    error = assert_envelope(response, 503, "service_unavailable")
    assert response["Retry-After"] == "5" and error["details"] == {"retry_after_seconds": 5}
    assert "secret" not in response.content.decode()


@pytest.mark.django_db
def test_oversize_body_is_refused_with_an_envelope(auth_client, settings, user):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    body = b'{"name": "' + b"a" * 5000 + b'"}'
    response = auth_client.generic("POST", "/api/v1/projects", body, content_type="application/json")
    error = assert_envelope(response, 413, "payload_too_large")
    assert error["details"] == {"max_bytes": 1000}
    assert not Project.objects.filter(user=user).exists()


@pytest.mark.django_db
def test_a_body_within_the_cap_is_parsed(auth_client, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    response = auth_client.post("/api/v1/projects", {"name": "a" * 200}, format="json")
    assert response.status_code == 201, response.json()


def test_every_response_carries_a_request_id(client):
    response = client.get("/healthz")
    assert len(response["X-Request-ID"]) == 32


def test_a_sane_incoming_request_id_is_kept(client):
    assert client.get("/healthz", HTTP_X_REQUEST_ID="abc-123")["X-Request-ID"] == "abc-123"


@pytest.mark.django_db
def test_deeply_nested_json_is_a_400_not_a_500(auth_client):
    response = auth_client.generic("POST", "/api/v1/projects", b"[" * 100_000, content_type="application/json")
    assert_envelope(response, 400, "malformed_request")

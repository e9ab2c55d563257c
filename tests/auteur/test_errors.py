"""Every error under /api/ is the JSON envelope, with the right status and a machine code."""

from __future__ import annotations

import logging

import pytest
from django.test import override_settings

from auteur.core.errors import HTTP_STATUS, SERVER_FAILURES
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
def test_a_415_says_what_to_send(auth_client, user):
    """A body sent as a form where JSON is read is told to send JSON (and its Content-Type)."""
    response = auth_client.generic("POST", "/api/v1/projects", b"name=x", content_type="text/plain")
    assert response.status_code == 415
    error = response.json()["error"]
    assert error["message"] == ('Unsupported media type "text/plain" in request. Send the body as '
                                "application/json (its Content-Type header).")
    assert error["details"] == {"accepted": ["application/json"]}


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


@pytest.mark.django_db
def test_a_body_of_more_objects_than_allowed_is_refused_before_it_is_read(auth_client, monkeypatch):
    import msgspec

    built: list[object] = []

    def load(*args: object, **kwargs: object) -> dict[str, object]:
        built.append(args)
        return {}

    monkeypatch.setattr(msgspec.json, "decode", load)
    body = b'{"name": "x", "a": [' + b"[]," * 200_000 + b"[]]}"
    with override_settings(AUTEUR_JSON_MAX_CONTAINERS=100_000):
        response = auth_client.generic("POST", "/api/v1/projects", body, content_type="application/json")
    assert_envelope(response, 400, "malformed_request")
    assert "more than 100000 objects and arrays" in response.json()["error"]["message"]
    assert built == []  # refused before the JSON reader ran
    assert not Project.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("body", [
    rb'{"name": "\ud800 half an emoji"}',  # a lone surrogate: no UTF-8 text (nor Postgres) holds one
    rb'{"name": "\udfac"}',
    rb'{"name": "x", "n": NaN}',
    rb'{"name": "x", "n": 1e400}',
    rb'{"name": "x"} {}',
    b'{"name": "\xff"}',  # not UTF-8
])
def test_json_that_no_strict_reader_takes_is_a_400(auth_client, body):
    response = auth_client.generic("POST", "/api/v1/projects", body, content_type="application/json")
    assert_envelope(response, 400, "malformed_request")
    assert response.json()["error"]["message"].startswith("JSON parse error - ")
    assert not Project.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("charset", ["latin-1", "us-ascii", "utf-8-sig"])
@pytest.mark.parametrize("body", [rb'{"name": "\ud800"}', rb'{"name": "x", "n": 1e400}'])
def test_a_body_in_another_charset_is_read_as_strictly(auth_client, charset, body):
    response = auth_client.generic("POST", "/api/v1/projects", body,
                                   content_type=f"application/json; charset={charset}")
    assert_envelope(response, 400, "malformed_request")
    assert not Project.objects.exists()


@pytest.mark.django_db
def test_a_body_is_read_in_its_declared_charset(auth_client):
    body = '{"name": "Vidéo ☃"}'
    for charset in ("utf-16", "latin-1"):
        text = body if charset == "utf-16" else body.replace(" ☃", "")
        response = auth_client.generic("POST", "/api/v1/projects", text.encode(charset),
                                       content_type=f"application/json; charset={charset}")
        assert response.status_code == 201, response.json()
        assert response.json()["name"] == text[10:-2]
    # A charset Python does not know is ignored (Django's request): the body is read as UTF-8.
    unknown = auth_client.generic("POST", "/api/v1/projects", b'{"name": "x"}',
                                  content_type="application/json; charset=no-such-charset")
    assert unknown.status_code == 201, unknown.json()


@pytest.mark.django_db
def test_an_escaped_surrogate_pair_is_the_character_it_encodes(auth_client):
    response = auth_client.generic("POST", "/api/v1/projects", rb'{"name": "take \ud83c\udfac 2"}',
                                   content_type="application/json")
    assert response.status_code == 201, response.json()
    assert Project.objects.get().name == "take \U0001f3ac 2"


# ---------------------------------------------------------------- what a client is told


SERVER_INTERNALS = ("/srv/auteur", "db.internal", "manage.py", "5432", "private")


@pytest.mark.django_db
@pytest.mark.urls("tests.auteur.urls_boom")
@pytest.mark.parametrize("code", ["feature_unavailable", "edl_unavailable", "billing_unavailable", "a_new_5xx_code"])
def test_a_server_side_failure_tells_the_client_its_sentence_and_the_log_the_rest(
    api_client, caplog, monkeypatch, code
):
    if code == "a_new_5xx_code":  # one added to the status table without a sentence of its own
        monkeypatch.setitem(HTTP_STATUS, code, 503)
    with caplog.at_level(logging.WARNING, logger="auteur.core.errors"):
        response = api_client.get("/api/v1/server-side-failure", {"code": code})
    error = assert_envelope(response, 503, code)
    text = response.content.decode()
    for internal in SERVER_INTERNALS:
        assert internal not in text, internal
    expected = SERVER_FAILURES.get(code)
    assert error["message"] == (expected.message if expected else "The service could not complete the request. "
                                                                   "Try again later.")
    assert error["details"] == ({"type": "tts"} if code == "feature_unavailable" else {})
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "/srv/auteur/var/private" in logged and "manage.py cleanup" in logged


def test_every_server_side_code_has_its_sentence():
    assert {code for code, status in HTTP_STATUS.items() if status >= 500} <= set(SERVER_FAILURES)
    for failure in SERVER_FAILURES.values():
        assert failure.message.endswith(".") and "_" not in failure.message


@pytest.mark.django_db
@pytest.mark.parametrize("authenticated", [False, True], ids=["anonymous", "signed-in"])
@pytest.mark.parametrize(("method", "path"), [
    ("TRACE", "/api/v1/billing"), ("PUT", "/api/v1/billing"), ("DELETE", "/api/v1/billing/checkout"),
    ("TRACE", "/api/v1/billing/stripe-webhook"), ("TRACE", "/api/v1/jobs/types"),
])
def test_an_unsupported_method_is_a_405_before_any_configuration_check(
    api_client, auth_client, settings, authenticated, method, path
):
    settings.STRIPE_SECRET_KEY = ""  # billing not configured: its endpoints answer 503 to their methods
    client = auth_client if authenticated else api_client
    response = client.generic(method, path)
    assert_envelope(response, 405, "method_not_allowed")
    assert method not in response["Allow"]
    # The methods the view has still meet the configuration check, told as a sentence.
    if authenticated and path == "/api/v1/billing":
        error = assert_envelope(client.get(path), 503, "billing_unavailable")
        assert error["message"] == "Billing is not available on this server."
        assert "STRIPE" not in client.get(path).content.decode()


@pytest.mark.django_db
def test_the_apis_address_says_where_everything_is(api_client):
    """`make run`'s banner names /api/v1/ first: it answers, without an account, with links that work."""
    response = api_client.get("/api/v1/")
    assert response.status_code == 200
    index = response.json()
    for link in ("docs", "schema", "events_schema", "health"):
        assert api_client.get(index[link]).status_code == 200, link
    assert api_client.get(index["job_types"]).status_code == 401  # with a token, as the index says
    assert api_client.post("/api/v1/").status_code == 405

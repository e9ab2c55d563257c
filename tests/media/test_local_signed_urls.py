"""The local backend's signed URLs: expiry, tampering, and the limits bound into an upload URL."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest
from django.core.handlers.wsgi import WSGIRequest
from django.core.signing import b64_decode, b64_encode
from django.test import Client, RequestFactory

from media.storage import get_storage
from media.storage import local_views as local_storage_views
from media.storage.local import LocalStorage
from tests.factories import MediaFileFactory
from tests.media.conftest import body_of, free_port, local_get, local_put, use_s3

pytestmark = pytest.mark.django_db

KEY = "projects/0b4a4b0e-6a59-4c59-9c1b-0d7b8d0d0f00/media/6c3a3f1e-1111-4c59-9c1b-0d7b8d0d0f00/clip.mp4"
BODY = b"\x00\x00\x00\x18ftypmp42" + b"x" * 1000


@pytest.fixture(autouse=True)
def _open_upload() -> None:
    """The file KEY's upload URLs are for, still ``uploading``: a PUT may write it."""
    MediaFileFactory.create(type="video", status="uploading", duration_ms=None, storage_key=KEY)


def storage() -> LocalStorage:
    s = get_storage()
    assert isinstance(s, LocalStorage)
    return s


def with_query(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    query.update(changes)
    return f"{parts.scheme}://{parts.netloc}{parts.path}?{urlencode(query)}"


def token_parts(url: str) -> tuple[str, str]:
    """(payload, signature) of the URL's signed token."""
    payload, signature = dict(parse_qsl(urlsplit(url).query))["token"].rsplit(":", 1)
    return payload, signature


def fields_of(url: str) -> dict:
    return json.loads(b64_decode(token_parts(url)[0].encode()))


def with_signature(url: str, signature: str) -> str:
    """The URL with its token's signature replaced (its signed fields kept)."""
    return with_query(url, token=f"{token_parts(url)[0]}:{signature}")


def with_fields(url: str, **changes: object) -> str:
    """The URL with signed fields changed and the original signature kept: a forgery."""
    forged = b64_encode(json.dumps({**fields_of(url), **changes}, separators=(",", ":")).encode()).decode()
    return with_query(url, token=f"{forged}:{token_parts(url)[1]}")


def with_path(url: str, path: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{path}?{parts.query}"


def nothing_written(root: Path) -> bool:
    return not root.exists() or not any(p.is_file() for p in root.rglob("*"))


def assert_error(response, status: int, code: str) -> None:
    assert response.status_code == status, body_of(response)
    assert response["Content-Type"] == "application/json"
    error = json.loads(body_of(response))["error"]
    assert error["code"] == code
    assert error["message"]


def test_a_valid_signed_put_writes_the_object(local_storage):
    url = storage().presign_put(KEY, "video/mp4", len(BODY)).url
    assert local_put(url, BODY, "video/mp4").status_code == 200
    assert (local_storage / KEY).read_bytes() == BODY
    assert storage().content_type(KEY) == "video/mp4"


def test_expired_upload_url_is_403_url_expired(local_storage):
    url = storage().presign_put(KEY, "video/mp4", len(BODY), expires_in=-1).url
    assert_error(local_put(url, BODY, "video/mp4"), 403, "url_expired")
    assert nothing_written(local_storage)


@pytest.mark.parametrize(
    ("tamper", "content_type"),
    [
        pytest.param(lambda url: with_path(url, urlsplit(url).path.replace("clip.mp4", "other.mp4")), "video/mp4",
                     id="key"),
        pytest.param(lambda url: with_fields(url, max=len(BODY) * 10), "video/mp4", id="size-limit"),
        pytest.param(lambda url: with_fields(url, ct="video/webm"), "video/webm", id="content-type"),
        pytest.param(lambda url: with_fields(url, k=KEY.replace("clip.mp4", "other.mp4")), "video/mp4",
                     id="signed-key"),
        pytest.param(lambda url: with_signature(url, "0" * 64), "video/mp4", id="signature"),
        pytest.param(lambda url: with_signature(url, ""), "video/mp4", id="no-signature"),
        pytest.param(lambda url: with_query(url, token=""), "video/mp4", id="no-token"),
        pytest.param(lambda url: with_signature(url, "\u00e9" * 64), "video/mp4", id="non-ascii-signature"),
        pytest.param(lambda url: with_fields(url, exp=fields_of(url)["exp"] + 3600), "video/mp4",
                     id="expiry-extended"),
    ],
)
def test_tampered_upload_url_is_403_invalid_signature(local_storage, tamper, content_type):
    url = tamper(storage().presign_put(KEY, "video/mp4", len(BODY)).url)
    assert_error(local_put(url, BODY, content_type), 403, "invalid_signature")
    assert nothing_written(local_storage)


def test_tampered_expired_url_is_invalid_signature_not_expired(local_storage):
    url = storage().presign_put(KEY, "video/mp4", len(BODY), expires_in=-1).url
    assert_error(local_put(with_signature(url, "f" * 64), BODY, "video/mp4"), 403, "invalid_signature")


def test_a_different_content_type_is_refused(local_storage):
    url = storage().presign_put(KEY, "video/mp4", len(BODY)).url
    assert_error(local_put(url, BODY, "text/html"), 403, "content_type_mismatch")
    assert nothing_written(local_storage)


def test_a_body_larger_than_signed_is_refused_and_nothing_written(local_storage):
    url = storage().presign_put(KEY, "video/mp4", len(BODY)).url
    assert_error(local_put(url, BODY + b"more", "video/mp4"), 413, "body_too_large")
    assert nothing_written(local_storage)


def test_a_body_shorter_than_its_content_length_leaves_nothing(local_storage):
    url = storage().presign_put(KEY, "video/mp4", len(BODY)).url
    parts = urlsplit(url)
    # The client announces the full size, then the connection drops after 100 bytes. (The test
    # client refuses to send a short body, so the request is built as a WSGI server would.)
    # A private helper of Django's that django-stubs leave out: the environ a WSGI server builds.
    environ = RequestFactory()._base_environ(  # type: ignore[attr-defined]
        PATH_INFO=parts.path, QUERY_STRING=parts.query, REQUEST_METHOD="PUT", CONTENT_TYPE="video/mp4",
        CONTENT_LENGTH=str(len(BODY)), **{"wsgi.input": io.BytesIO(BODY[:100])},
    )
    response = local_storage_views.upload(WSGIRequest(environ), KEY)
    assert_error(response, 400, "incomplete_body")
    assert nothing_written(local_storage)


def test_the_upload_is_not_bound_by_the_request_body_memory_limit(local_storage, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 100  # the API's JSON limit; uploads stream past it
    url = storage().presign_put(KEY, "video/mp4", len(BODY)).url
    assert local_put(url, BODY, "video/mp4").status_code == 200
    assert (local_storage / KEY).read_bytes() == BODY


def test_a_key_outside_the_storage_root_is_refused(local_storage):
    url = storage().presign_put(KEY, "video/mp4", len(BODY)).url
    evil = with_path(url, "/storage/upload/projects/%2e%2e/%2e%2e/%2e%2e/etc/passwd")
    assert local_put(evil, BODY, "video/mp4").status_code in (403, 404)
    assert nothing_written(local_storage)


def test_upload_url_refuses_get_and_download_url_refuses_put(local_storage):
    put_url = storage().presign_put(KEY, "video/mp4", len(BODY)).url
    assert_error(local_get(put_url), 405, "method_not_allowed")
    local_put(put_url, BODY, "video/mp4")
    get_url = storage().presign_get(KEY).url
    assert_error(local_put(get_url, BODY, "video/mp4"), 405, "method_not_allowed")
    # A PUT signature is not a GET signature.
    as_download = with_path(put_url, urlsplit(put_url).path.replace("/upload/", "/download/"))
    assert_error(local_get(as_download), 403, "invalid_signature")


def test_download_url_rules(local_storage):
    local_put(storage().presign_put(KEY, "video/mp4", len(BODY)).url, BODY, "video/mp4")
    url = storage().presign_get(KEY, filename="Été 2024.mp4").url
    ok = local_get(url)
    assert ok.status_code == 200 and body_of(ok) == BODY
    assert ok["Content-Type"] == "video/mp4"
    assert "filename*=UTF-8''%C3%89t%C3%A9%202024.mp4" in ok["Content-Disposition"]
    assert "no-store" in ok["Cache-Control"]

    assert_error(local_get(storage().presign_get(KEY, expires_in=-1).url), 403, "url_expired")
    assert_error(local_get(with_fields(url, name="evil.html")), 403, "invalid_signature")
    assert_error(local_get(with_signature(url, "a" * 64)), 403, "invalid_signature")
    other = KEY.replace("clip.mp4", "other.mp4")
    assert_error(local_get(with_path(url, f"/storage/download/{other}")), 403, "invalid_signature")
    missing = storage().presign_get(other).url
    assert_error(local_get(missing), 404, "not_found")
    assert_error(local_get(url, HTTP_RANGE=f"bytes={len(BODY) + 5}-"), 416, "range_not_satisfiable")
    head = Client().head(f"{urlsplit(url).path}?{urlsplit(url).query}")
    assert head.status_code == 200 and head["Content-Length"] == str(len(BODY))


def test_local_urls_are_off_when_s3_is_configured(local_storage, settings):
    url = storage().presign_put(KEY, "video/mp4", len(BODY)).url
    use_s3(settings, bucket="some-bucket", endpoint_url=f"http://127.0.0.1:{free_port()}")
    assert_error(local_put(url, BODY, "video/mp4"), 404, "not_found")
    assert nothing_written(local_storage)


def test_signatures_depend_on_the_secret_key(local_storage, settings):
    url = storage().presign_put(KEY, "video/mp4", len(BODY)).url
    settings.SECRET_KEY = "another-deployment-secret"
    assert_error(local_put(url, BODY, "video/mp4"), 403, "invalid_signature")


def test_urls_signed_before_a_secret_key_rotation_still_work(local_storage, settings):
    url = storage().presign_put(KEY, "video/mp4", len(BODY)).url
    settings.SECRET_KEY_FALLBACKS = [settings.SECRET_KEY]
    settings.SECRET_KEY = "the-rotated-deployment-secret"
    assert local_put(url, BODY, "video/mp4").status_code == 200


def test_refused_urls_are_logged_without_their_signature(local_storage, caplog):
    caplog.set_level(logging.DEBUG)
    url = storage().presign_put(KEY, "video/mp4", len(BODY)).url
    local_put(with_signature(url, "b" * 64), BODY, "video/mp4")
    local_put(url, BODY, "text/plain")
    local_get(storage().presign_get(KEY, expires_in=-1).url)
    assert caplog.records  # Django logs the 4xx responses...
    for record in caplog.records:
        message = record.getMessage()
        assert "token=" not in message and "sig=" not in message and "exp=" not in message, message  # by path only

"""Both storage backends through the one interface the apps use: the local FileSystemStorage and
django-storages' S3Storage (moto's server on loopback, over real HTTP). An object uploaded with a
presigned PUT is read back through the Django storage; a delete leaves nothing; a missing object
is reported as missing; a GET URL is signed for its lifetime; no signed URL or secret is logged."""

from __future__ import annotations

import json
import logging
import time
from datetime import UTC, datetime
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from django.core.files.storage import FileSystemStorage, storages
from storages.backends.s3 import S3Storage

from media.storage import get_local_storage, get_storage
from media.storage.base import ObjectStorage
from tests.auteur.test_settings import PROD_ENV, load_settings
from tests.factories import MediaFileFactory
from tests.media.conftest import S3_TEST_ACCESS_KEY, S3_TEST_SECRET_KEY, body_of, local_get, local_put

pytestmark = pytest.mark.django_db

KEY = "projects/p1/media/m1/upload/clip.wav"
BODY = b"RIFF" + bytes(range(256)) * 40


@pytest.fixture(autouse=True)
def _open_upload() -> None:
    """The file KEY's upload URL is for, still ``uploading``: the local view lets a PUT write it."""
    MediaFileFactory.create(type="audio", status="uploading", duration_ms=None, storage_key=KEY)


@pytest.fixture(params=["local_storage", "s3_storage"])
def backend(request: pytest.FixtureRequest) -> str:
    request.getfixturevalue(request.param)
    return "local" if request.param == "local_storage" else "s3"


def put(url: str, body: bytes, headers: dict[str, str]) -> int:
    """The client's PUT to a presigned URL: through Django for the local view, over HTTP to moto."""
    if url.startswith("http://testserver/"):
        return int(local_put(url, body, headers["Content-Type"]).status_code)
    return requests.put(url, data=body, headers=headers, timeout=30).status_code


def get(url: str) -> tuple[int, bytes, dict[str, str]]:
    if url.startswith("http://testserver/"):
        response = local_get(url)
        return response.status_code, body_of(response), dict(response.headers)
    answer = requests.get(url, timeout=30)
    return answer.status_code, answer.content, dict(answer.headers)


def upload(storage: ObjectStorage, key: str = KEY, body: bytes = BODY) -> None:
    ticket = storage.presign_put(key, "audio/wav", len(body))
    assert put(ticket.url, body, ticket.headers) == 200


def raw_object_exists(storage: ObjectStorage, key: str) -> bool:
    """Asked of the store itself, not of the code under test."""
    local = get_local_storage()
    if local is not None:
        return local.path(key).exists()
    import boto3

    client = boto3.client(
        "s3", endpoint_url=storage.backend.endpoint_url, region_name="us-east-1",  # type: ignore[attr-defined]
        aws_access_key_id=S3_TEST_ACCESS_KEY, aws_secret_access_key=S3_TEST_SECRET_KEY,
    )
    listed = client.list_objects_v2(Bucket=storage.backend.bucket_name, Prefix=key)  # type: ignore[attr-defined]
    return any(o["Key"] == key for o in listed.get("Contents", []))


def test_the_storage_is_the_django_storage_configured_in_storages(backend, settings):
    storage = get_storage()
    assert storage.backend is storages[settings.MEDIA_STORAGE_ALIAS]
    assert isinstance(storage.backend, FileSystemStorage if backend == "local" else S3Storage)
    assert "staticfiles" in settings.STORAGES


def test_an_upload_through_a_presigned_put_is_read_through_the_storage(backend):
    storage = get_storage()
    assert not storage.exists(KEY)
    upload(storage)
    assert storage.exists(KEY)
    assert storage.head(KEY) == len(BODY)
    assert storage.content_type(KEY) == "audio/wav"
    with storage.open(KEY) as fh:
        assert fh.read() == BODY
    with storage.local_path(KEY) as path:
        assert path.read_bytes() == BODY
    storage.move(KEY, "projects/p1/media/m1/clip.wav")
    assert storage.head(KEY) is None and not raw_object_exists(storage, KEY)
    with storage.open("projects/p1/media/m1/clip.wav") as fh:
        assert fh.read() == BODY


def test_a_put_url_binds_the_content_type_and_size(backend):
    storage = get_storage()
    ticket = storage.presign_put(KEY, "audio/wav", len(BODY))
    if backend == "local":
        assert put(ticket.url, BODY, {"Content-Type": "text/html"}) == 403
        assert put(ticket.url, BODY + b"x", ticket.headers) == 413
        assert storage.head(KEY) is None and not raw_object_exists(storage, KEY)
    else:
        # S3 refuses any other type or length, as both are signed headers (moto checks no
        # signature, so what is signed is checked here).
        query = parse_qs(urlsplit(ticket.url).query)
        assert query["X-Amz-SignedHeaders"] == ["content-length;content-type;host"]
        assert ticket.headers == {"Content-Type": "audio/wav"}


def test_delete_removes_the_object_and_is_quiet_when_it_is_gone(backend):
    storage = get_storage()
    upload(storage)
    url = storage.presign_get(KEY).url
    storage.delete(KEY)
    assert not storage.exists(KEY) and storage.head(KEY) is None
    assert not raw_object_exists(storage, KEY)
    assert get(url)[0] == 404  # an unexpired URL finds nothing
    storage.delete(KEY)  # absent: not an error
    if backend == "local":
        # Nor is its Content-Type sidecar left behind.
        assert storage.content_type(KEY) is None
        assert not any(p.is_file() for p in get_local_storage().root.rglob("*"))  # type: ignore[union-attr]


def test_a_missing_object_is_reported_missing(backend):
    storage = get_storage()
    missing = "projects/p1/media/nothing/here.wav"
    assert storage.head(missing) is None and not storage.exists(missing)
    assert storage.content_type(missing) is None
    with pytest.raises(FileNotFoundError):
        storage.open(missing)
    with pytest.raises(FileNotFoundError), storage.local_path(missing):
        pass
    with pytest.raises(FileNotFoundError):
        storage.move(missing, "projects/p1/media/nothing/moved.wav")
    assert not storage.exists("projects/p1/media/nothing/moved.wav")
    assert storage.delete_prefix("projects/p1") == 0
    assert list(storage.list_folders("projects")) == []
    assert get(storage.presign_get(missing).url)[0] == 404


def test_a_signed_get_url_serves_the_object_until_it_expires(backend):
    storage = get_storage()
    upload(storage)
    before = int(time.time())
    signed = storage.presign_get(KEY, filename="My clip.wav", expires_in=120)
    assert before + 120 <= signed.expires_at.timestamp() <= int(time.time()) + 120
    status, body, headers = get(signed.url)
    assert status == 200 and body == BODY
    assert headers["Content-Disposition"].startswith('attachment; filename="My clip.wav"')
    if backend == "local":
        expired = storage.presign_get(KEY, expires_in=-1).url
        refused = local_get(expired)
        assert refused.status_code == 403 and b"url_expired" in body_of(refused)
    else:
        # The URL is the backend's url() with querystring auth: SigV4, valid exactly that long
        # from its signing time (moto does not enforce expiry, so the signed fields are checked).
        query = parse_qs(urlsplit(signed.url).query)
        assert query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"]
        assert query["X-Amz-Expires"] == ["120"]
        signed_at = datetime.strptime(query["X-Amz-Date"][0], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        assert abs(signed_at.timestamp() + 120 - signed.expires_at.timestamp()) <= 2
        assert query["X-Amz-Credential"][0].startswith(f"{S3_TEST_ACCESS_KEY}/")
        assert "X-Amz-Signature" in query
        default = parse_qs(urlsplit(storage.presign_get(KEY).url).query)
        assert default["X-Amz-Expires"] == ["900"]  # AUTEUR_SIGNED_URL_TTL_SECONDS


def test_no_signed_url_or_secret_reaches_a_log_line(backend, caplog):
    caplog.set_level(logging.DEBUG)
    storage = get_storage()
    ticket = storage.presign_put(KEY, "audio/wav", len(BODY))
    assert put(ticket.url, BODY, ticket.headers) == 200
    download = storage.presign_get(KEY, filename="clip.wav").url
    assert get(download)[0] == 200
    with storage.open(KEY) as fh:
        fh.read()
    storage.copy(KEY, "projects/p1/media/m1/copy.wav")
    storage.delete_prefix("projects/p1")
    get(download)  # a 404 is logged too

    secrets = [urlsplit(ticket.url).query, urlsplit(download).query, S3_TEST_SECRET_KEY, S3_TEST_ACCESS_KEY]
    for name in ("token", "X-Amz-Signature", "X-Amz-Credential"):
        for url in (ticket.url, download):
            secrets += parse_qs(urlsplit(url).query).get(name, [])
    # moto's server is the test's stand-in for S3, not this application: its own records are its own.
    ours = [r for r in caplog.records if not r.name.startswith(("moto", "werkzeug"))]
    assert ours  # the flow logs (storage access, the requests), so the check is not vacuous
    for record in ours:
        line = record.getMessage() + " " + str(record.args or "")
        for secret in secrets:
            assert secret not in line, (record.name, line[:200])


def settings_storage(env: dict[str, str]) -> list[str]:
    show = (
        "__import__('json').dumps((lambda s: [type(s.backend).__name__, str(getattr(s.backend, 'bucket_name', '')),"
        " str(getattr(s.backend, 'location', '')), str(getattr(s.backend, 'endpoint_url', ''))])"
        "(__import__('media.storage', fromlist=['get_storage']).get_storage()))"
    )
    result = load_settings(env, show=show)
    assert result.returncode == 0, result.stderr
    return list(json.loads(result.stdout.strip().splitlines()[-1]))


def test_settings_configure_s3_when_a_bucket_is_set_and_local_files_otherwise(tmp_path):
    local = settings_storage({**PROD_ENV, "AUTEUR_VAR_DIR": str(tmp_path)})
    assert local[0] == "FileSystemStorage" and local[2] == str(tmp_path / "storage")
    s3 = settings_storage({
        **PROD_ENV, "AWS_STORAGE_BUCKET_NAME": "media-bucket", "AWS_S3_ENDPOINT_URL": "http://127.0.0.1:9",
        "AWS_ACCESS_KEY_ID": "AKIAEXAMPLE", "AWS_SECRET_ACCESS_KEY": "example-secret",
    })
    assert s3[0] == "S3Storage" and s3[1] == "media-bucket" and s3[3] == "http://127.0.0.1:9"


def test_settings_refuse_a_bucket_without_credentials_in_production():
    result = load_settings({**PROD_ENV, "AWS_STORAGE_BUCKET_NAME": "media-bucket"})
    assert result.returncode != 0 and "AWS_ACCESS_KEY_ID is not set" in result.stderr

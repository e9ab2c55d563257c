"""What upload-url refuses, and that a refusal creates nothing."""

from __future__ import annotations

import pytest

from media.models import MediaFile
from media.services.keys import safe_filename
from tests.media.conftest import upload_url_path

pytestmark = pytest.mark.django_db


def ask(client, project, **body):
    payload = {"filename": "clip.mp4", "content_type": "video/mp4", "size_bytes": 1000, **body}
    return client.post(upload_url_path(project.pk), payload, format="json")


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"content_type": "text/plain", "filename": "notes.txt"}, 415, "unsupported_media_type"),
        ({"content_type": "application/x-msdownload", "filename": "x.exe"}, 415, "unsupported_media_type"),
        ({"content_type": "image/gif", "filename": "x.gif"}, 415, "unsupported_media_type"),
        ({"size_bytes": 0}, 422, "invalid_size"),
        ({"size_bytes": -5}, 422, "invalid_size"),
        ({"filename": "clip.mov"}, 422, "extension_mismatch"),
        ({"filename": "clip"}, 422, "extension_mismatch"),
        ({"filename": "clip.mp4.exe"}, 422, "extension_mismatch"),
        ({"filename": "song.wav", "content_type": "audio/mpeg"}, 422, "extension_mismatch"),
        ({"filename": "bad\nname.mp4"}, 422, "invalid_filename"),
        ({"surprise": 1}, 400, "validation_error"),
        ({"size_bytes": "lots"}, 400, "validation_error"),
        ({"filename": None}, 400, "validation_error"),
        ({"filename": "x" * 300 + ".mp4"}, 400, "validation_error"),
    ],
)
def test_invalid_upload_requests_create_nothing(auth_client, project, local_storage, body, status, code):
    response = ask(auth_client, project, **body)
    assert response.status_code == status, response.json()
    assert response.json()["error"]["code"] == code
    assert MediaFile.objects.count() == 0
    assert not local_storage.exists() or not any(local_storage.rglob("*"))


def test_size_over_the_limit_is_413(auth_client, project, local_storage, settings):
    settings.AUTEUR_MAX_UPLOAD_BYTES = 10_000
    assert ask(auth_client, project, size_bytes=10_000).status_code == 201
    response = ask(auth_client, project, size_bytes=10_001)
    assert response.status_code == 413
    error = response.json()["error"]
    assert error["code"] == "file_too_large"
    assert error["details"]["max_bytes"] == 10_000
    assert MediaFile.objects.count() == 1


def test_default_limit_is_50_gib(auth_client, project, local_storage, settings):
    settings.AUTEUR_QUOTA_STORAGE_BYTES = 100 * 1024**3
    assert ask(auth_client, project, size_bytes=50 * 1024**3).status_code == 201
    assert ask(auth_client, project, size_bytes=50 * 1024**3 + 1).status_code == 413


@pytest.mark.parametrize(
    ("filename", "content_type", "media_type"),
    [
        ("a.MP4", "video/mp4", "video"),
        ("a.mov", "video/quicktime", "video"),
        ("a.webm", "video/webm", "video"),
        ("a.mkv", "video/x-matroska", "video"),
        ("a.wav", "audio/wav", "audio"),
        ("a.wav", "audio/x-wav", "audio"),
        ("a.wav", "audio/wave", "audio"),
        ("a.mp3", "audio/mpeg", "audio"),
        ("a.m4a", "audio/mp4", "audio"),
        ("a.m4a", "audio/x-m4a", "audio"),
        ("a.aac", "audio/aac", "audio"),
        ("a.flac", "audio/flac", "audio"),
        ("a.flac", "audio/x-flac", "audio"),
        ("a.ogg", "audio/ogg", "audio"),
        ("a.png", "image/png", "image"),
        ("a.jpg", "image/jpeg", "image"),
        ("a.jpeg", "image/jpeg", "image"),
        ("a.webp", "image/webp", "image"),
        ("a.mp4", "Video/MP4; codecs=avc1", "video"),
    ],
)
def test_every_allowed_type(auth_client, project, local_storage, filename, content_type, media_type):
    response = ask(auth_client, project, filename=filename, content_type=content_type)
    assert response.status_code == 201, response.json()
    media = MediaFile.objects.get(pk=response.json()["media_id"])
    assert media.type == media_type
    assert media.mime_type == content_type.split(";")[0].lower()
    assert response.json()["headers"]["Content-Type"] == media.mime_type


@pytest.mark.parametrize(
    ("given", "safe"),
    [
        ("../../etc/passwd.mp4", "passwd.mp4"),
        ("C:\\Users\\me\\clip.MP4", "clip.mp4"),
        (".hidden.mp4", "hidden.mp4"),
        ("Été à Paris.mp4", "Ete_a_Paris.mp4"),
        ("日本語.mp4", "file.mp4"),
        ("a" * 200 + ".mp4", "a" * 80 + ".mp4"),
        ("-rf .mp4", "rf.mp4"),
    ],
)
def test_storage_names_never_trust_the_client(given, safe):
    assert safe_filename(given) == safe


def test_client_filename_cannot_escape_its_key(auth_client, project, local_storage):
    response = ask(auth_client, project, filename="../../../other/secret.mp4")
    assert response.status_code == 201
    media = MediaFile.objects.get(pk=response.json()["media_id"])
    assert media.storage_key == f"projects/{project.pk}/media/{media.pk}/upload/secret.mp4"
    assert media.name == "../../../other/secret.mp4"  # shown as given, never used as a path


def test_malformed_json_and_oversize_body(auth_client, project, local_storage, settings):
    bad = auth_client.post(upload_url_path(project.pk), "{not json", content_type="application/json")
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "malformed_request"
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    big = auth_client.post(upload_url_path(project.pk), {"filename": "x" * 5000}, format="json")
    assert big.status_code in (400, 413) and "error" in big.json()
    assert MediaFile.objects.count() == 0

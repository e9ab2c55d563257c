"""Multipart uploads: a large file PUT in parts, resumed after a dropped connection from the parts
listed, completed by confirm once every part is there; on the local backend and on S3 (moto)."""

from __future__ import annotations

import base64
import hashlib
import wave
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from media.models import MediaFile
from media.services.uploads import MultipartUpload
from media.storage import get_storage
from media.storage.local import LocalStorage
from media.storage.s3 import S3ObjectStorage
from tests.media.conftest import local_put, media_path, run_probe, upload_url_path

pytestmark = pytest.mark.django_db

PART = 5 * 1024**2  # S3's smallest part


@pytest.fixture(autouse=True)
def small_parts(settings: Any) -> None:
    settings.AUTEUR_MULTIPART_PART_BYTES = PART
    settings.AUTEUR_MULTIPART_THRESHOLD_BYTES = PART


@pytest.fixture(params=["local_storage", "s3_storage"])
def backend(request: pytest.FixtureRequest) -> str:
    request.getfixturevalue(request.param)
    return "local" if request.param == "local_storage" else "s3"


@pytest.fixture(scope="module")
def long_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """About 12 MiB of 16-bit stereo 44.1 kHz audio (a tone): three parts of 5 MiB, the last shorter."""
    path = tmp_path_factory.mktemp("multipart") / "interview.wav"
    size = 3 * PART - 2 * 1024**2  # whole stereo frames of 4 bytes
    with wave.open(str(path), "wb") as out:
        out.setnchannels(2)
        out.setsampwidth(2)
        out.setframerate(44_100)
        out.writeframes((bytes(range(251)) * (size // 251 + 1))[:size])
    return path


def sha256_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def put(url: str, body: bytes, headers: dict[str, str]) -> int:
    """A part's PUT: through Django for the local view, over HTTP to moto."""
    if url.startswith("http://testserver/"):
        extra = {f"HTTP_{name.upper().replace('-', '_')}": value for name, value in headers.items()}
        return int(local_put(url, body, "application/octet-stream", **extra).status_code)
    return requests.put(url, data=body, headers=headers, timeout=30).status_code


def start(client: Any, project: Any, path: Path) -> dict[str, Any]:
    response = client.post(upload_url_path(project.pk), {
        "filename": path.name, "content_type": "audio/wav", "size_bytes": path.stat().st_size}, format="json")
    assert response.status_code == 201, response.json()
    return dict(response.json())


def sign(client: Any, project: Any, media_id: str, parts: dict[int, bytes]) -> dict[int, dict[str, Any]]:
    response = client.post(media_path(project.pk, media_id, "/parts"),
                           {"parts": [{"number": n, "sha256": sha256_b64(body)} for n, body in parts.items()]},
                           format="json")
    assert response.status_code == 200, response.json()
    return {p["number"]: p for p in response.json()["parts"]}


def cut(data: bytes, part_size: int) -> dict[int, bytes]:
    return {i // part_size + 1: data[i:i + part_size] for i in range(0, len(data), part_size)}


def test_a_file_uploaded_in_parts_resumes_after_a_dropped_connection(auth_client, project, long_wav, backend):
    data = long_wav.read_bytes()
    ticket = start(auth_client, project, long_wav)
    assert ticket["upload_url"] is None
    multipart = ticket["multipart"]
    assert (multipart["part_size"], multipart["part_count"]) == (PART, 3)
    assert multipart["parts_url"] == f"/api/v1/projects/{project.pk}/media/{ticket['media_id']}/parts"
    parts = cut(data, PART)
    media_id = ticket["media_id"]

    # The first client sends parts 1 and 2, then its connection drops.
    for number, signed in sign(auth_client, project, media_id, {1: parts[1], 2: parts[2]}).items():
        assert put(signed["url"], parts[number], signed["headers"]) == 200
    # Confirming now is refused: part 3 is missing.
    refused = auth_client.post(media_path(project.pk, media_id, "/confirm"), {}, format="json")
    assert refused.status_code == 422 and refused.json()["error"]["code"] == "upload_incomplete"
    assert refused.json()["error"]["details"]["missing_parts"] == [3]

    # A restarted client asks what is stored and sends only the rest.
    listed = auth_client.get(media_path(project.pk, media_id, "/parts")).json()
    assert (listed["part_size"], listed["part_count"]) == (PART, 3)
    assert [(p["number"], p["size"]) for p in listed["parts"]] == [(1, PART), (2, PART)]
    last = sign(auth_client, project, media_id, {3: parts[3]})[3]
    assert put(last["url"], parts[3], last["headers"]) == 200

    confirm = auth_client.post(media_path(project.pk, media_id, "/confirm"), {}, format="json")
    assert confirm.status_code == 202, confirm.json()
    assert run_probe(media_id) == "ready"
    media = MediaFile.objects.get(pk=media_id)
    assert media.content_sha256 == hashlib.sha256(data).hexdigest()
    assert (media.file_size_bytes, media.upload_id) == (len(data), "")
    with get_storage().open(media.storage_key) as fh:
        assert hashlib.sha256(fh.read()).hexdigest() == media.content_sha256

    # Completed: nothing more goes in, and no part's URL changes the file.
    closed = auth_client.get(media_path(project.pk, media_id, "/parts"))
    assert closed.status_code == 409 and closed.json()["error"]["code"] == "upload_closed"
    # (local: 409 upload_closed; S3: 404 NoSuchUpload, which moto answers as a 500)
    assert put(last["url"], parts[3], last["headers"]) != 200
    with get_storage().open(media.storage_key) as fh:
        assert hashlib.sha256(fh.read()).hexdigest() == media.content_sha256


def test_a_part_that_does_not_match_its_checksum_is_refused_and_not_kept(auth_client, project, long_wav,
                                                                         local_storage):
    """The local backend checks the bytes against the signed SHA-256. S3 does the same with the
    signed x-amz-checksum-sha256 (BadDigest); moto does not, so S3's side is shown by what its URL signs
    (test below)."""
    data = long_wav.read_bytes()
    ticket = start(auth_client, project, long_wav)
    parts = cut(data, PART)
    signed = sign(auth_client, project, ticket["media_id"], {1: parts[1]})[1]
    tampered = bytes([parts[1][0] ^ 1]) + parts[1][1:]
    response = local_put(signed["url"], tampered, "application/octet-stream",
                         HTTP_X_AMZ_CHECKSUM_SHA256=signed["headers"]["x-amz-checksum-sha256"])
    assert response.status_code == 400 and response.json()["error"]["code"] == "checksum_mismatch"
    # Another checksum header than the one signed, or another size, is refused before a byte is read.
    other = local_put(signed["url"], parts[1], "application/octet-stream",
                      HTTP_X_AMZ_CHECKSUM_SHA256=sha256_b64(tampered))
    assert other.status_code == 403 and other.json()["error"]["code"] == "checksum_header_mismatch"
    short = local_put(signed["url"], parts[1][:-1], "application/octet-stream",
                      HTTP_X_AMZ_CHECKSUM_SHA256=signed["headers"]["x-amz-checksum-sha256"])
    assert short.status_code == 400 and short.json()["error"]["code"] == "part_size_mismatch"
    assert auth_client.get(media_path(project.pk, ticket["media_id"], "/parts")).json()["parts"] == []
    # A part stored, then sent again with bad bytes, is no longer stored: it must be sent again.
    checksum = {"HTTP_X_AMZ_CHECKSUM_SHA256": signed["headers"]["x-amz-checksum-sha256"]}

    def stored() -> list[int]:
        listed = auth_client.get(media_path(project.pk, ticket["media_id"], "/parts")).json()["parts"]
        return [p["number"] for p in listed]

    assert local_put(signed["url"], parts[1], "application/octet-stream", **checksum).status_code == 200
    assert stored() == [1]
    assert local_put(signed["url"], tampered, "application/octet-stream", **checksum).status_code == 400
    assert stored() == []


def test_an_s3_part_url_signs_its_length_and_checksum(auth_client, project, long_wav, s3_storage):
    ticket = start(auth_client, project, long_wav)
    parts = cut(long_wav.read_bytes(), PART)
    signed = sign(auth_client, project, ticket["media_id"], {2: parts[2]})[2]
    query = parse_qs(urlsplit(signed["url"]).query)
    assert {"content-length", "x-amz-checksum-sha256"} <= set(query["X-Amz-SignedHeaders"][0].split(";"))
    assert query["partNumber"] == ["2"] and signed["headers"] == {"x-amz-checksum-sha256": sha256_b64(parts[2])}


def test_bad_part_requests_are_refused(auth_client, project, long_wav, local_storage, samples):
    ticket = start(auth_client, project, long_wav)
    url = media_path(project.pk, ticket["media_id"], "/parts")
    good = sha256_b64(b"x")
    for parts, code in (
        ([{"number": 4, "sha256": good}], "invalid_part"),  # there are 3
        ([{"number": 1, "sha256": good}, {"number": 1, "sha256": good}], "invalid_part"),
        ([{"number": 1, "sha256": "not base64 of 32 bytes"}], "invalid_checksum"),
    ):
        response = auth_client.post(url, {"parts": parts}, format="json")
        assert response.status_code == 422 and response.json()["error"]["code"] == code, response.json()
    assert auth_client.post(url, {"parts": []}, format="json").status_code == 400
    # A file uploaded with one PUT has no parts.
    single = auth_client.post(upload_url_path(project.pk), {
        "filename": "short.wav", "content_type": "audio/wav", "size_bytes": samples.wav.stat().st_size},
        format="json").json()
    assert single["multipart"] is None and single["upload_url"]
    refused = auth_client.get(media_path(project.pk, single["media_id"], "/parts"))
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "not_multipart"


def test_another_users_upload_is_not_found(auth_client, client_for, make_user, make_project, long_wav,
                                           local_storage):
    other = make_user()
    theirs = make_project(other)
    ticket = start(client_for(other), theirs, long_wav)
    assert auth_client.get(media_path(theirs.pk, ticket["media_id"], "/parts")).status_code == 404
    response = auth_client.post(media_path(theirs.pk, ticket["media_id"], "/parts"),
                                {"parts": [{"number": 1, "sha256": sha256_b64(b"x")}]}, format="json")
    assert response.status_code == 404


def test_deleting_an_unfinished_upload_aborts_it(auth_client, project, long_wav, backend,
                                                django_capture_on_commit_callbacks):
    ticket = start(auth_client, project, long_wav)
    parts = cut(long_wav.read_bytes(), PART)
    signed = sign(auth_client, project, ticket["media_id"], {1: parts[1]})[1]
    assert put(signed["url"], parts[1], signed["headers"]) == 200
    media = MediaFile.objects.get(pk=ticket["media_id"])
    with django_capture_on_commit_callbacks(execute=True):
        assert auth_client.delete(media_path(project.pk, media.pk)).status_code == 204
    with pytest.raises(FileNotFoundError):
        get_storage().multipart_parts(media.storage_key, media.upload_id)


def test_the_part_size_grows_so_no_file_needs_more_than_10000_parts(settings):
    settings.AUTEUR_MULTIPART_PART_BYTES = 64 * 1024**2
    assert MultipartUpload.of(50 * 1024**3).part_size == 64 * 1024**2
    huge = MultipartUpload.of(1024**4)  # 1 TiB
    assert huge.part_count <= 10_000 and huge.part_size % 1024**2 == 0
    plan = MultipartUpload.of(10 * 1024**2 + 7)
    assert [plan.part_bytes(n) for n in range(1, plan.part_count + 1)] == [10 * 1024**2 + 7]


def test_an_abandoned_upload_is_aborted_by_the_sweep(auth_client, project, long_wav, backend,
                                                   django_capture_on_commit_callbacks):
    from datetime import timedelta

    from django.utils import timezone

    from media.services.sweep import media_sweep

    ticket = start(auth_client, project, long_wav)
    media = MediaFile.objects.get(pk=ticket["media_id"])
    with django_capture_on_commit_callbacks(execute=True):
        media_sweep(now=timezone.now() + timedelta(days=2))
    assert not MediaFile.objects.filter(pk=media.pk).exists()
    with pytest.raises(FileNotFoundError):
        get_storage().multipart_parts(media.storage_key, media.upload_id)


def test_an_upload_over_the_quota_is_refused_and_begins_nothing(auth_client, project, long_wav, backend, settings):
    settings.AUTEUR_QUOTA_STORAGE_BYTES = PART
    response = auth_client.post(upload_url_path(project.pk), {
        "filename": long_wav.name, "content_type": "audio/wav", "size_bytes": long_wav.stat().st_size},
        format="json")
    assert response.status_code == 403 and response.json()["error"]["code"] == "quota_exceeded"
    assert not MediaFile.objects.exists()
    storage = get_storage()
    if isinstance(storage, S3ObjectStorage):
        assert storage.client.list_multipart_uploads(Bucket=storage.bucket).get("Uploads", []) == []
    else:
        assert isinstance(storage, LocalStorage) and not list(storage.root.rglob(".multipart-*"))


def test_parts_have_a_rate_limit_of_their_own(auth_client, project, long_wav, local_storage, settings):
    """A large file's parts come fast: they are counted apart from the other storage requests."""
    settings.AUTEUR_RATE_LIMIT_STORAGE_PARTS_PER_MINUTE = 2
    settings.AUTEUR_RATE_LIMIT_STORAGE_PER_MINUTE = 100
    ticket = start(auth_client, project, long_wav)
    parts = cut(long_wav.read_bytes(), PART)
    signed = sign(auth_client, project, ticket["media_id"], parts)
    answers = [put(signed[n]["url"], parts[n], signed[n]["headers"]) for n in (1, 2, 3)]
    assert answers == [200, 200, 429]
    media = MediaFile.objects.get(pk=ticket["media_id"])
    assert local_put(get_storage().presign_put("projects/x/media/y/z.wav", "audio/wav", 1).url, b"0",
                     "audio/wav").status_code != 429, "other storage requests have their own window"
    assert [p.number for p in get_storage().multipart_parts(media.storage_key, media.upload_id)] == [1, 2]

"""A second PUT through a still-valid upload URL, landing between confirm's size check and its
move, cannot store more than the row and the quota count.

The PUT is made by the test, through the real signed URL (the local backend's view; S3's moto
server over HTTP), from inside the storage's `move`, which confirm calls right after its checks.
On local storage the moved object is sized again and checked as any upload is: its size is what
the row records and the quota counts, or the confirm is refused and nothing is left. On S3 the
move copies only the version that was sized (CopySourceIfMatch on its ETag): 409
`upload_changed`, nothing moved, and the next confirm sizes the new object."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import requests

from media.models import MediaFile, MediaStatus
from media.selectors import media_bytes_used
from media.services.keys import media_prefix
from media.storage import get_storage
from media.storage.base import ObjectStorage
from media.storage.local import LocalStorage
from media.storage.s3 import S3ObjectStorage
from tests.media.conftest import local_put, media_path, upload_url_path

pytestmark = pytest.mark.django_db

SMALL = b"RIFF" + b"\x01" * 996  # what was PUT, sized and checked: 1,000 bytes
LARGE = b"RIFF" + b"\x02" * 4996  # what a second PUT slips in before the move: 5,000 bytes


def ask(client: Any, project: Any, size: int | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"filename": "take.wav", "content_type": "audio/wav"}
    if size is not None:
        body["size_bytes"] = size
    response = client.post(upload_url_path(project.pk), body, format="json")
    assert response.status_code == 201, response.json()
    return dict(response.json())


def confirm(client: Any, project: Any, media_id: Any) -> Any:
    return client.post(media_path(project.pk, media_id, "/confirm"), {}, format="json")


def put_during_move(monkeypatch: pytest.MonkeyPatch, cls: type[ObjectStorage], put: Any) -> list[int]:
    """The storage's move, preceded (once) by `put()`: the PUT lands after confirm's checks."""
    original = cls.move
    answers: list[int] = []

    def move(self: Any, src: str, dst: str, **kwargs: Any) -> None:
        if not answers:
            answers.append(put())
        original(self, src, dst, **kwargs)

    monkeypatch.setattr(cls, "move", move)
    return answers


def objects_of(root: Path, media: MediaFile) -> list[str]:
    folder = root / media_prefix(project_id=media.project_id, media_id=media.pk)
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def test_on_local_storage_the_row_and_the_quota_count_the_object_that_was_moved(
    auth_client, user, project, local_storage, monkeypatch
):
    ticket = ask(auth_client, project)
    assert local_put(ticket["upload_url"], SMALL, "audio/wav").status_code == 200
    answers = put_during_move(monkeypatch, LocalStorage,
                              lambda: local_put(ticket["upload_url"], LARGE, "audio/wav").status_code)
    response = confirm(auth_client, project, ticket["media_id"])
    assert answers == [200], "the second PUT was taken, between the size check and the move"
    assert response.status_code == 202, response.json()
    media = MediaFile.objects.get(pk=ticket["media_id"])
    assert media.status == MediaStatus.PROCESSING
    stored = get_storage().head(media.storage_key)
    assert stored == media.file_size_bytes == media_bytes_used(user_id=user.pk) == len(LARGE)
    with get_storage().open(media.storage_key) as fh:
        assert fh.read() == LARGE, "what is probed is what is counted"


@pytest.mark.parametrize(("limit", "expected"), [
    ("quota", (403, "quota_exceeded")),
    ("maximum size", (413, "file_too_large")),
    ("declared size", (422, "size_mismatch")),
])
def test_on_local_storage_an_object_refused_once_moved_is_deleted_with_its_file(
    limit, expected, auth_client, user, project, local_storage, monkeypatch, settings,
    django_capture_on_commit_callbacks, eager_celery,
):
    declared = limit == "declared size"
    first, second = (LARGE, SMALL) if declared else (SMALL, LARGE)  # a declared URL takes less than its size
    ticket = ask(auth_client, project, len(first) if declared else None)
    assert local_put(ticket["upload_url"], first, "audio/wav").status_code == 200
    if limit == "quota":
        settings.AUTEUR_QUOTA_STORAGE_BYTES = len(first) + 10
    elif limit == "maximum size":
        settings.AUTEUR_MAX_UPLOAD_BYTES = len(first) + 10  # lowered after the URL was issued
    put_during_move(monkeypatch, LocalStorage, lambda: local_put(ticket["upload_url"], second, "audio/wav").status_code)
    media = MediaFile.objects.get(pk=ticket["media_id"])
    with django_capture_on_commit_callbacks(execute=True):  # the objects go after commit, by a task
        response = confirm(auth_client, project, ticket["media_id"])
    assert (response.status_code, response.json()["error"]["code"]) == expected, response.json()
    assert not MediaFile.objects.filter(pk=media.pk).exists()
    assert objects_of(local_storage, media) == [], "neither the moved object nor the upload is left"
    assert media_bytes_used(user_id=user.pk) == 0


def test_on_s3_the_move_copies_only_the_version_that_was_sized(auth_client, user, project, s3_storage, monkeypatch):
    ticket = ask(auth_client, project)

    def put(body: bytes) -> int:
        return requests.put(ticket["upload_url"], data=body, headers=ticket["headers"], timeout=30).status_code

    assert put(SMALL) == 200
    storage = get_storage()
    assert isinstance(storage, S3ObjectStorage)
    sent: list[tuple[str, dict[str, Any]]] = []

    def record(params: dict[str, Any], model: Any, **kwargs: Any) -> None:
        sent.append((model.name, dict(params)))

    storage.client.meta.events.register("provide-client-params.s3.*", record)
    media = MediaFile.objects.get(pk=ticket["media_id"])
    upload_key = media.storage_key
    small = storage.stat(upload_key)
    assert small is not None and small.size == len(SMALL) and small.etag
    answers = put_during_move(monkeypatch, S3ObjectStorage, lambda: put(LARGE))

    response = confirm(auth_client, project, media.pk)
    assert answers == [200], "the second PUT was taken, between the size check and the move"
    assert response.status_code == 409 and response.json()["error"]["code"] == "upload_changed", response.json()
    # The copy's HEAD of its source (s3transfer's, which moto answers 412) named the sized ETag, and
    # nothing reached the final key.
    reads = [(name, params) for name, params in sent if name in ("CopyObject", "UploadPartCopy") or "IfMatch" in params]
    assert reads == [("HeadObject", {"Bucket": s3_storage, "Key": upload_key, "IfMatch": small.etag})], reads
    media.refresh_from_db()
    assert (media.status, media.storage_key, media.file_size_bytes) == (MediaStatus.UPLOADING, upload_key, 0)
    assert storage.head(upload_key) == len(LARGE), "the new upload stays where the URL put it, unmoved"
    assert media_bytes_used(user_id=user.pk) == 0

    # Confirming again sizes and moves the object as it is now, on its own ETag.
    sent.clear()
    large = storage.stat(upload_key)
    assert large is not None
    assert confirm(auth_client, project, media.pk).status_code == 202
    media.refresh_from_db()
    assert storage.head(media.storage_key) == media.file_size_bytes == media_bytes_used(user_id=user.pk) == len(LARGE)
    [copy] = [params for name, params in sent if name == "CopyObject"]
    assert copy["CopySourceIfMatch"] == large.etag and copy["Key"] == media.storage_key

"""Publishing a file through the CDN: a public copy under a random key, served with cache headers,
gone again when the file is unpublished or deleted; everything else stays behind signed URLs.

The local backend's public folder is served by the API at /public/, as a CDN in front of a public
bucket would serve it, and fetched here through Django's test client with no credential at all.
The S3 path runs against moto's server: a server-side copy into a second, public bucket.
"""

from __future__ import annotations

import io
import re
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3
import pytest
from django.test import Client
from django.utils import timezone

from auteur.core.storage_settings import local_media_storage, s3_media_storage
from media import tasks as media_tasks
from media.errors import StorageError
from media.models import MediaFile, PendingObjectDeletion
from media.services.keys import public_folder
from media.services.outputs import media_delete_job_outputs
from media.services.publishing import media_publication_copy
from media.services.sweep import media_sweep
from media.storage import get_public_storage, get_storage
from media.storage.base import KEY_RE, MAX_KEY_LENGTH
from tests.auteur.test_settings import PROD_ENV, load_settings
from tests.factories import MediaFileFactory
from tests.media.conftest import (
    S3_TEST_ACCESS_KEY,
    S3_TEST_SECRET_KEY,
    body_of,
    local_get,
    media_path,
    upload_local,
)

pytestmark = pytest.mark.django_db

CDN = "http://testserver/public"


@pytest.fixture
def cdn(settings: Any, local_storage: Path, tmp_path: Path) -> Path:
    """Publishing on, with the local backend: the public folder served at /public/; returns it."""
    root = tmp_path / "public"
    settings.STORAGES = {**settings.STORAGES, settings.PUBLIC_STORAGE_ALIAS: local_media_storage(str(root))}
    settings.AUTEUR_CDN_BASE_URL = CDN
    settings.AUTEUR_CDN_CACHE_MAX_AGE_SECONDS = 3600
    return root


def publish_path(media: MediaFile) -> str:
    return media_path(media.project_id, media.pk, "/publish")


UNPUBLISHED = {"public_url": None, "public_thumbnail_url": None, "published_at": None}


@pytest.fixture
def publish(eager_celery: None, django_capture_on_commit_callbacks: Any) -> Any:
    """POST .../publish as a client does: 202 while a worker copies (run here when the request's
    transaction commits), then the same POST answers 200 with the URLs; returns that answer."""
    def run(client: Client, media: MediaFile) -> dict[str, Any]:
        with django_capture_on_commit_callbacks(execute=True):
            accepted = client.post(publish_path(media))
        assert accepted.status_code == 202, accepted.json()
        assert accepted.json() == {"publication": "publishing", **UNPUBLISHED}
        answer = client.post(publish_path(media))
        assert answer.status_code == 200, answer.json()
        assert answer.json()["publication"] == "published"
        return dict(answer.json())
    return run


def public_get(url: str, **extra: Any) -> Any:
    """A GET of a public URL as anyone makes it: no token, no signature."""
    assert url.startswith(f"{CDN}/"), url
    return Client().get(urlsplit(url).path, **extra)


def published_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith("."))


def error_code(response: Any) -> str:
    return str(response.json()["error"]["code"])


def test_a_published_file_is_served_publicly_with_cache_headers_and_nothing_of_its_private_key(
    auth_client, user, project, samples, cdn, publish
):
    media = upload_local(auth_client, project, samples.video, "video/mp4", filename="My Clip (final).mp4")
    body = publish(auth_client, media)
    url, thumbnail_url = body["public_url"], body["public_thumbnail_url"]
    for private in (str(project.pk), str(media.pk), str(user.pk), media.storage_key, "projects/"):
        assert private not in url and private not in thumbnail_url
    assert re.fullmatch(rf"{CDN}/pub/[A-Za-z0-9_-]{{32}}/My_Clip_final\.mp4", url), url

    served = public_get(url)
    assert served.status_code == 200
    assert body_of(served) == samples.video.read_bytes()
    assert served["Content-Type"] == "video/mp4"
    assert served["Cache-Control"] == "public, max-age=3600"
    assert served["ETag"] and served["Last-Modified"] and served["Accept-Ranges"] == "bytes"
    assert served.get("Content-Disposition", "inline").startswith("inline")  # played in the page, not saved

    thumbnail = public_get(thumbnail_url)
    assert thumbnail.status_code == 200 and thumbnail["Content-Type"] == "image/jpeg"
    assert body_of(thumbnail)[:2] == b"\xff\xd8"
    assert thumbnail["Cache-Control"] == "public, max-age=3600"

    # A player seeks with ranges; a cache revalidates with the ETag.
    data = samples.video.read_bytes()
    ranged = public_get(url, HTTP_RANGE="bytes=10-19")
    assert ranged.status_code == 206 and body_of(ranged) == data[10:20]
    assert ranged["Content-Range"] == f"bytes 10-19/{len(data)}"
    assert public_get(url, HTTP_IF_NONE_MATCH=served["ETag"]).status_code == 304
    assert public_get(url, HTTP_RANGE="bytes=10-19", HTTP_IF_RANGE='"another"').status_code == 200
    assert public_get(url, HTTP_RANGE="bytes=10-19", HTTP_IF_RANGE=served["ETag"]).status_code == 206

    detail = auth_client.get(media_path(project.pk, media.pk)).json()["media"]
    assert detail["publication"] == "published"
    assert detail["public_url"] == url and detail["public_thumbnail_url"] == thumbnail_url
    assert detail["published_at"] == body["published_at"]
    listed = auth_client.get(media_path(project.pk)).json()["media"]
    assert [m["public_url"] for m in listed] == [url]


def test_publishing_again_answers_the_same_url_and_copies_nothing_more(auth_client, project, samples, cdn, publish):
    media = upload_local(auth_client, project, samples.wav, "audio/wav")
    first = publish(auth_client, media)
    second = auth_client.post(publish_path(media))
    assert second.status_code == 200 and first == second.json()
    assert first["public_thumbnail_url"] is None  # audio has no thumbnail
    assert len(published_files(cdn)) == 1


def test_an_unpublished_file_is_gone_from_the_public_url_and_still_downloads_signed(
    auth_client, project, samples, cdn, eager_celery, django_capture_on_commit_callbacks, publish
):
    media = upload_local(auth_client, project, samples.video, "video/mp4")
    published = publish(auth_client, media)
    with django_capture_on_commit_callbacks(execute=True):
        response = auth_client.delete(publish_path(media))
    assert response.status_code == 204
    assert public_get(published["public_url"]).status_code == 404
    assert public_get(published["public_thumbnail_url"]).status_code == 404
    assert published_files(cdn) == [] and list((cdn / "pub").iterdir()) == []

    detail = auth_client.get(media_path(project.pk, media.pk)).json()["media"]
    assert detail["public_url"] is None and detail["public_thumbnail_url"] is None and detail["published_at"] is None
    download = local_get(detail["download_url"])
    assert download.status_code == 200 and body_of(download) == samples.video.read_bytes()
    assert download["Cache-Control"] == "private, max-age=0, no-store"

    # Unpublishing again is no error; publishing again makes a new URL.
    assert auth_client.delete(publish_path(media)).status_code == 204
    again = publish(auth_client, media)
    assert again["public_url"] != published["public_url"]
    assert public_get(again["public_url"]).status_code == 200


def test_deleting_a_published_file_deletes_its_public_copies(
    auth_client, project, samples, cdn, eager_celery, django_capture_on_commit_callbacks, publish
):
    media = upload_local(auth_client, project, samples.video, "video/mp4")
    url = publish(auth_client, media)["public_url"]
    assert len(published_files(cdn)) == 2
    with django_capture_on_commit_callbacks(execute=True):
        assert auth_client.delete(media_path(project.pk, media.pk)).status_code == 204
    assert public_get(url).status_code == 404
    assert published_files(cdn) == []


def test_deleting_a_project_deletes_its_files_public_copies(
    auth_client, project, samples, cdn, eager_celery, django_capture_on_commit_callbacks, publish
):
    media = upload_local(auth_client, project, samples.wav, "audio/wav")
    url = publish(auth_client, media)["public_url"]
    # Another file's copy under way when the project goes: its folder goes too, and the copy,
    # finished after, finds no row and deletes what it wrote.
    racing = upload_local(auth_client, project, samples.wav, "audio/wav")
    key = publishing_started(auth_client, racing)
    public_store().save(key, io.BytesIO(b"partial"), "audio/wav")
    with django_capture_on_commit_callbacks(execute=True):
        assert auth_client.delete(f"/api/v1/projects/{project.pk}").status_code == 204
    assert public_get(url).status_code == 404
    assert published_files(cdn) == []
    with django_capture_on_commit_callbacks(execute=True):
        assert media_publication_copy(media_id=racing.pk, key=key) is None
    assert published_files(cdn) == []


def public_store() -> Any:
    store = get_public_storage()
    assert store is not None
    return store


def publishing_started(client: Client, media: MediaFile) -> str:
    """POST .../publish without running the copy it sends (a worker has yet to take it); its key."""
    assert client.post(publish_path(media)).status_code == 202
    row = MediaFile.objects.get(pk=media.pk)
    assert row.publishing_key and row.publishing_since and not row.public_key
    return row.publishing_key


def test_a_publication_that_loses_a_race_leaves_no_copy_behind(
    auth_client, project, samples, cdn, eager_celery, django_capture_on_commit_callbacks, monkeypatch
):
    # Unpublished while its copy was waiting for a worker: the file reads unpublished at once, the
    # copy is still counted until it ends, and then it is deleted; publishing again meanwhile waits.
    media = upload_local(auth_client, project, samples.video, "video/mp4")
    first = publishing_started(auth_client, media)
    with django_capture_on_commit_callbacks(execute=True):
        assert auth_client.delete(publish_path(media)).status_code == 204
    assert auth_client.get(media_path(project.pk, media.pk)).json()["media"]["publication"] == "unpublished"
    row = MediaFile.objects.get(pk=media.pk)
    assert row.publishing_key == first and row.publishing_canceled
    ending = auth_client.post(publish_path(media))
    assert ending.status_code == 409 and error_code(ending) == "publication_ending"
    with django_capture_on_commit_callbacks(execute=True):
        assert media_publication_copy(media_id=media.pk, key=first) is None
    assert published_files(cdn) == []
    row = MediaFile.objects.get(pk=media.pk)
    assert (row.publishing_key, row.publishing_since, row.publishing_canceled, row.public_key) == ("", None, False, "")

    # Unpublished while its copy was being made: the copy, once made, is deleted, not recorded.
    second = publishing_started(auth_client, media)
    real_copy = type(get_storage()).copy_public

    def unpublished_meanwhile(self: Any, *args: Any, **kwargs: Any) -> None:
        real_copy(self, *args, **kwargs)
        assert auth_client.delete(publish_path(media)).status_code == 204

    monkeypatch.setattr(type(get_storage()), "copy_public", unpublished_meanwhile)
    with django_capture_on_commit_callbacks(execute=True):
        assert media_publication_copy(media_id=media.pk, key=second) is None
    monkeypatch.undo()
    assert published_files(cdn) == [] and MediaFile.objects.get(pk=media.pk).publishing_key == ""

    # Published again: a new key, and the publication.
    third = publishing_started(auth_client, media)
    assert third not in (first, second)
    with django_capture_on_commit_callbacks(execute=True):
        assert media_publication_copy(media_id=media.pk, key=third) is not None
    second = third
    row = MediaFile.objects.get(pk=media.pk)
    assert row.public_key == second and row.publishing_key == "" and row.publishing_since is None
    assert len(published_files(cdn)) == 2  # the file and its thumbnail, under the third key

    # A redelivered copy of a publication that is done copies nothing and deletes nothing.
    with django_capture_on_commit_callbacks(execute=True):
        assert media_publication_copy(media_id=media.pk, key=second) is None
    assert len(published_files(cdn)) == 2 and public_get(f"{CDN}/{second}").status_code == 200
    # Nor does one that was copying when the other delivery recorded the publication.
    third = publishing_started(auth_client, other := upload_local(auth_client, project, samples.wav, "audio/wav"))
    recorded = MediaFile.objects.filter(pk=other.pk).update
    real_copy = type(get_storage()).copy_public

    def copy_then_lose(self: Any, *args: Any, **kwargs: Any) -> None:
        real_copy(self, *args, **kwargs)
        recorded(public_key=third, published_at=timezone.now(), publishing_key="", publishing_since=None)

    monkeypatch.setattr(type(get_storage()), "copy_public", copy_then_lose)
    with django_capture_on_commit_callbacks(execute=True):
        assert media_publication_copy(media_id=other.pk, key=third) is None
    monkeypatch.undo()
    assert public_get(f"{CDN}/{third}").status_code == 200

    # The file deleted while its copy was waiting: no copy stays.
    gone = upload_local(auth_client, project, samples.wav, "audio/wav")
    key = publishing_started(auth_client, gone)
    with django_capture_on_commit_callbacks(execute=True):
        assert auth_client.delete(media_path(project.pk, gone.pk)).status_code == 204
        assert media_publication_copy(media_id=gone.pk, key=key) is None
    assert len(published_files(cdn)) == 3


def test_a_failed_jobs_outputs_take_their_public_copies_with_them(
    auth_client, project, samples, cdn, eager_celery, django_capture_on_commit_callbacks, publish
):
    job_id = uuid.uuid4()
    published, publishing = (upload_local(auth_client, project, samples.wav, "audio/wav") for _ in range(2))
    for output, name in ((published, "first.wav"), (publishing, "second.wav")):  # (job, name) is unique
        MediaFile.objects.filter(pk=output.pk).update(source_job_id=job_id, name=name)
    url = publish(auth_client, published)["public_url"]
    key = publishing_started(auth_client, publishing)
    public_store().save(key, io.BytesIO(b"partial"), "audio/wav")  # a copy under way
    with django_capture_on_commit_callbacks(execute=True):
        assert media_delete_job_outputs(job_id=job_id) == 2
    assert public_get(url).status_code == 404 and published_files(cdn) == []
    # The copy under way may write after this: its folder is deleted again once it must have ended.
    late = PendingObjectDeletion.objects.get(key=public_folder(key) + "/")
    assert late.due_at > timezone.now() + timedelta(minutes=25)


def test_a_second_delivery_of_a_publication_does_not_copy_while_the_first_does(
    auth_client, project, samples, cdn, django_capture_on_commit_callbacks, monkeypatch
):
    media = upload_local(auth_client, project, samples.wav, "audio/wav")
    key = publishing_started(auth_client, media)
    copies: list[str] = []
    real_copy = type(get_storage()).copy_public

    def copy_and_meanwhile(self: Any, public: Any, src: str, dst: str, **kwargs: Any) -> None:
        copies.append(dst)
        if len(copies) == 1:  # a sweep's resend arrives while this delivery copies
            assert media_publication_copy(media_id=media.pk, key=key) is None
        real_copy(self, public, src, dst, **kwargs)

    monkeypatch.setattr(type(get_storage()), "copy_public", copy_and_meanwhile)
    with django_capture_on_commit_callbacks(execute=True):
        assert media_publication_copy(media_id=media.pk, key=key) is not None
    assert copies == [key] and MediaFile.objects.get(pk=media.pk).public_key == key


def test_a_user_has_a_few_publications_in_progress_at_most(auth_client, project, samples, cdn, settings, publish):
    settings.AUTEUR_MEDIA_PUBLISHING_PER_USER = 2
    files = [upload_local(auth_client, project, samples.wav, "audio/wav") for _ in range(3)]
    publishing_started(auth_client, files[0])
    publishing_started(auth_client, files[1])
    refused = auth_client.post(publish_path(files[2]))
    assert refused.status_code == 429 and error_code(refused) == "too_many_publications"
    assert refused.json()["error"]["details"] == {"limit": 2, "in_progress": 2}
    assert MediaFile.objects.get(pk=files[2].pk).publishing_key == ""
    # Asking again about one in progress is no new publication: answered as it is.
    again = auth_client.post(publish_path(files[0]))
    assert again.status_code == 202 and again.json()["publication"] == "publishing"
    # Unpublishing one whose copy is under way frees no place: publish-unpublish in turn cannot
    # run more copies at once than the limit.
    assert auth_client.delete(publish_path(files[0])).status_code == 204
    refused = auth_client.post(publish_path(files[2]))
    assert refused.status_code == 429 and refused.json()["error"]["details"]["in_progress"] == 2


def test_publish_requests_are_rate_limited_per_user(auth_client, project, samples, cdn, settings):
    settings.AUTEUR_RATE_LIMIT_PUBLISHES_PER_MINUTE = 2
    media = upload_local(auth_client, project, samples.wav, "audio/wav")
    publishing_started(auth_client, media)
    assert auth_client.post(publish_path(media)).status_code == 202
    limited = auth_client.post(publish_path(media))
    assert limited.status_code == 429 and error_code(limited) == "rate_limited" and limited["Retry-After"]
    # Unpublishing is not counted: a takedown is never refused.
    assert auth_client.delete(publish_path(media)).status_code == 204


def test_the_sweep_sends_a_stale_publication_again_and_gives_an_abandoned_one_up(
    auth_client, project, samples, cdn, eager_celery, django_capture_on_commit_callbacks, settings
):
    settings.AUTEUR_MEDIA_PUBLISH_RETRY_SECONDS, settings.AUTEUR_MEDIA_PUBLISH_DEADLINE_SECONDS = 60, 600
    lost, abandoned = (upload_local(auth_client, project, samples.wav, "audio/wav") for _ in range(2))
    lost_key, abandoned_key = publishing_started(auth_client, lost), publishing_started(auth_client, abandoned)
    # What a worker that died mid-copy left of the abandoned one's copy.
    public_store().save(abandoned_key, io.BytesIO(b"partial"), "audio/wav")
    now = timezone.now()
    MediaFile.objects.filter(pk=lost.pk).update(publishing_since=now - timedelta(seconds=120))
    MediaFile.objects.filter(pk=abandoned.pk).update(publishing_since=now - timedelta(seconds=900))
    with django_capture_on_commit_callbacks(execute=True):
        counts = media_sweep(now=now)
    assert counts["publications_resent"] == 1 and counts["publications_given_up"] == 1
    assert MediaFile.objects.get(pk=lost.pk).public_key == lost_key
    row = MediaFile.objects.get(pk=abandoned.pk)
    assert row.publishing_key == "" and row.public_key == "" and row.publishing_since is None
    assert [p.relative_to(cdn).as_posix() for p in published_files(cdn)] == [lost_key]


def test_a_copy_that_keeps_failing_gives_the_publication_up(
    auth_client, project, samples, cdn, eager_celery, django_capture_on_commit_callbacks, monkeypatch
):
    media = upload_local(auth_client, project, samples.wav, "audio/wav")

    def broken(*args: Any, **kwargs: Any) -> None:
        raise StorageError("the store is down")

    monkeypatch.setattr(type(get_storage()), "copy_public", broken)
    monkeypatch.setattr(media_tasks.publish, "max_retries", 0)
    with django_capture_on_commit_callbacks(execute=True):
        assert auth_client.post(publish_path(media)).status_code == 202
    row = MediaFile.objects.get(pk=media.pk)
    assert row.publishing_key == "" and row.public_key == ""
    assert published_files(cdn) == []


def test_another_users_file_cannot_be_published_or_unpublished(
    make_user, client_for, make_project, samples, cdn, django_capture_on_commit_callbacks, publish
):
    owner, intruder = make_user(), make_user()
    project = make_project(owner)
    media = upload_local(client_for(owner), project, samples.wav, "audio/wav")
    own_project = make_project(intruder)
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        through_owners = client_for(intruder).post(publish_path(media))
        through_own = client_for(intruder).post(media_path(own_project.pk, media.pk, "/publish"))
    assert through_owners.status_code == 404 and error_code(through_owners) == "project_not_found"
    assert through_own.status_code == 404 and error_code(through_own) == "media_not_found"
    assert published_files(cdn) == [] and callbacks == []

    url = publish(client_for(owner), media)["public_url"]
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        refused = client_for(intruder).delete(media_path(own_project.pk, media.pk, "/publish"))
    assert refused.status_code == 404 and error_code(refused) == "media_not_found"
    assert callbacks == []
    assert MediaFile.objects.get(pk=media.pk).public_key
    assert public_get(url).status_code == 200


@pytest.mark.parametrize("status", ["uploading", "processing", "rejected"])
def test_a_file_that_is_not_ready_is_not_published(auth_client, project, cdn, status):
    media = MediaFileFactory.create(project=project, status=status)
    response = auth_client.post(publish_path(media))
    assert response.status_code == 422 and error_code(response) == "media_not_ready"
    assert response.json()["error"]["details"] == {"status": status}
    assert published_files(cdn) == []
    assert MediaFile.objects.get(pk=media.pk).public_key == ""


def test_without_a_cdn_publishing_is_unavailable_and_nothing_is_copied(
    auth_client, project, samples, cdn, settings
):
    settings.AUTEUR_CDN_BASE_URL = ""
    media = upload_local(auth_client, project, samples.wav, "audio/wav")
    response = auth_client.post(publish_path(media))
    assert response.status_code == 503 and error_code(response) == "publishing_unavailable"
    assert response.json()["error"]["message"] == "Publishing files is not available on this server."
    assert published_files(cdn) == []
    assert auth_client.get(media_path(project.pk, media.pk)).json()["media"]["public_url"] is None
    # Taking a file down needs no CDN.
    assert auth_client.delete(publish_path(media)).status_code == 204


def test_a_hostile_name_makes_a_safe_public_key(auth_client, project, cdn, publish):
    name = "../../etc/" + "pässwörd ☃ <script>" * 12 + ".MP4"  # 242 characters of 255
    media = MediaFileFactory.create(project=project, type="video", name=name,
                                    storage_key=f"projects/{project.pk}/media/{uuid.uuid4()}/x.mp4")
    get_storage().save(media.storage_key, io.BytesIO(b"not really a video"), "video/mp4")
    url = publish(auth_client, media)["public_url"]
    key = MediaFile.objects.get(pk=media.pk).public_key
    assert url == f"{CDN}/{key}"
    assert KEY_RE.match(key) and len(key) <= MAX_KEY_LENGTH and ".." not in key
    assert re.fullmatch(r"pub/[A-Za-z0-9_-]{32}/[A-Za-z0-9._-]{1,91}", key), key
    assert key.endswith(".mp4")
    assert body_of(public_get(url)) == b"not really a video"


def test_the_public_folder_serves_nothing_else(auth_client, project, samples, cdn, local_storage, publish):
    media = upload_local(auth_client, project, samples.wav, "audio/wav")
    url = publish(auth_client, media)["public_url"]
    key = urlsplit(url).path.removeprefix("/public/")
    client = Client()
    # Not the private store's keys, no dot-named sidecar, no way out of the folder, GET and HEAD only.
    assert client.get(f"/public/{media.storage_key}").status_code == 404
    assert client.get(f"/public/{key.rsplit('/', 1)[0]}/.{key.rsplit('/', 1)[1]}.meta.json").status_code == 404
    assert client.get("/public/pub/../../storage/" + media.storage_key).status_code == 404
    assert client.get("/public/pub").status_code == 404
    assert client.head(f"/public/{key}").status_code == 200
    refused = client.delete(f"/public/{key}")
    assert refused.status_code == 405 and error_code(refused) == "method_not_allowed"


@pytest.mark.parametrize(("mime_type", "served_as"), [
    ("text/html", None), ("image/svg+xml", None), ("application/xhtml+xml", None), ("text/javascript", None),
    ("video/mp4; codecs=avc1", "video/mp4"), ("Audio/WAV", "audio/wav"), ("image/png", "image/png"),
])
def test_only_plain_media_is_served_as_itself_and_nothing_public_can_run(
    auth_client, project, cdn, publish, mime_type, served_as
):
    media = MediaFileFactory.create(project=project, name="page.html", mime_type=mime_type,
                                    storage_key=f"projects/{project.pk}/media/{uuid.uuid4()}/page.html")
    get_storage().save(media.storage_key, io.BytesIO(b"<script>alert(document.cookie)</script>"), mime_type)
    served = public_get(publish(auth_client, media)["public_url"])
    assert served.status_code == 200
    assert served["Content-Type"] == (served_as or "application/octet-stream")
    assert served["X-Content-Type-Options"] == "nosniff"
    assert "sandbox" in served["Content-Security-Policy"] and "default-src 'none'" in served["Content-Security-Policy"]
    assert served.get("Content-Disposition", "inline").split(";")[0] == ("inline" if served_as else "attachment")
    # The copy was stored with that type too (what a CDN in front of a bucket would serve).
    public = get_public_storage()
    assert public is not None
    stored_as = public.content_type(MediaFile.objects.get(pk=media.pk).public_key)
    assert stored_as == (served_as or "application/octet-stream")


def test_the_public_folder_is_not_served_with_an_s3_bucket(settings, s3_storage, tmp_path):
    root = tmp_path / "public"
    (root / "pub" / "t").mkdir(parents=True)
    (root / "pub" / "t" / "x.txt").write_text("x")
    settings.STORAGES = {**settings.STORAGES, settings.PUBLIC_STORAGE_ALIAS: local_media_storage(str(root))}
    assert Client().get("/public/pub/t/x.txt").status_code == 404


def test_staff_take_a_published_file_down_through_the_same_service(
    auth_client, make_user, project, samples, cdn, eager_celery, django_capture_on_commit_callbacks, publish
):
    media = upload_local(auth_client, project, samples.video, "video/mp4")
    other = upload_local(auth_client, project, samples.wav, "audio/wav")  # not published: untouched
    url = publish(auth_client, media)["public_url"]
    staff = Client()
    staff.force_login(make_user(is_staff=True, is_superuser=True))
    page = staff.get(f"/admin/media/mediafile/{media.pk}/change/")
    assert page.status_code == 200 and url in page.content.decode()
    with django_capture_on_commit_callbacks(execute=True):
        response = staff.post("/admin/media/mediafile/", {"action": "unpublish_selected_media",
                                                           "_selected_action": [str(media.pk), str(other.pk)]})
    assert response.status_code == 302
    assert public_get(url).status_code == 404 and published_files(cdn) == []
    assert MediaFile.objects.get(pk=media.pk).public_key == "" and MediaFile.objects.filter(pk=other.pk).exists()


# ----------------------------------------------------------------------------- S3/R2


@pytest.fixture
def public_bucket(settings: Any, s3_storage: str, moto_endpoint: str) -> Any:
    """A second bucket, the public one, on the same endpoint and credentials; returns its client."""
    bucket = f"auteur-public-{uuid.uuid4().hex[:12]}"
    client = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1",
                          aws_access_key_id=S3_TEST_ACCESS_KEY, aws_secret_access_key=S3_TEST_SECRET_KEY)
    client.create_bucket(Bucket=bucket)
    settings.AUTEUR_PUBLIC_BUCKET_NAME = bucket
    settings.STORAGES = {**settings.STORAGES, settings.PUBLIC_STORAGE_ALIAS: s3_media_storage(
        bucket=bucket, endpoint_url=moto_endpoint, region="us-east-1", access_key=S3_TEST_ACCESS_KEY,
        secret_key=S3_TEST_SECRET_KEY, addressing_style="path", url_ttl_seconds=settings.AUTEUR_SIGNED_URL_TTL_SECONDS,
    )}
    settings.AUTEUR_CDN_BASE_URL = "https://cdn.example.test"
    settings.AUTEUR_CDN_CACHE_MAX_AGE_SECONDS = 600
    client.bucket = bucket
    return client


@pytest.mark.parametrize("size", [4096, 9 * 1024 * 1024], ids=["one-copy", "multipart-copy"])
def test_s3_publishes_by_a_server_side_copy_into_the_public_bucket_with_its_headers(
    auth_client, project, public_bucket, s3_storage, size, eager_celery, django_capture_on_commit_callbacks, publish
):
    media = MediaFileFactory.create(project=project, type="video", name="render.mp4",
                                    storage_key=f"projects/{project.pk}/media/{uuid.uuid4()}/render.mp4",
                                    thumbnail_key=f"projects/{project.pk}/media/{uuid.uuid4()}/thumbnails/thumbnail.jpg")
    data = bytes(range(256)) * (size // 256)
    storage = get_storage()
    storage.save(media.storage_key, io.BytesIO(data), "application/octet-stream")
    storage.save(media.thumbnail_key, io.BytesIO(b"\xff\xd8jpeg"), "image/jpeg")

    body = publish(auth_client, media)
    key = MediaFile.objects.get(pk=media.pk).public_key
    assert body["public_url"] == f"https://cdn.example.test/{key}" and key.startswith("pub/")
    head = public_bucket.head_object(Bucket=public_bucket.bucket, Key=key)
    # The file's own type, not the private object's metadata, which REPLACE leaves behind.
    assert head["ContentType"] == "video/mp4"
    assert head["CacheControl"] == "public, max-age=600"
    assert head["ContentLength"] == size
    if size > 8 * 1024 * 1024:  # past the transfer's multipart threshold: copied in parts by the store
        assert head["ETag"].endswith('-2"'), head["ETag"]
    assert public_bucket.get_object(Bucket=public_bucket.bucket, Key=key)["Body"].read() == data
    thumb_key = MediaFile.objects.get(pk=media.pk).public_thumbnail_key
    thumb = public_bucket.head_object(Bucket=public_bucket.bucket, Key=thumb_key)
    assert thumb["ContentType"] == "image/jpeg" and thumb["CacheControl"] == "public, max-age=600"
    # The private bucket keeps its object, as it was.
    assert storage.head(media.storage_key) == size and storage.content_type(media.storage_key) == (
        "application/octet-stream")

    with django_capture_on_commit_callbacks(execute=True):
        assert auth_client.delete(publish_path(media)).status_code == 204
    assert public_bucket.list_objects_v2(Bucket=public_bucket.bucket).get("KeyCount") == 0
    assert storage.head(media.storage_key) == size


def test_s3_deleting_a_published_file_empties_its_public_folder(
    auth_client, project, public_bucket, eager_celery, django_capture_on_commit_callbacks, publish
):
    media = MediaFileFactory.create(project=project, storage_key=f"projects/{project.pk}/media/{uuid.uuid4()}/a.wav")
    get_storage().save(media.storage_key, io.BytesIO(b"RIFF"), "audio/wav")
    publish(auth_client, media)
    public = get_public_storage()
    assert public is not None and public.head(MediaFile.objects.get(pk=media.pk).public_key) == 4
    with django_capture_on_commit_callbacks(execute=True):
        assert auth_client.delete(media_path(project.pk, media.pk)).status_code == 204
    assert public_bucket.list_objects_v2(Bucket=public_bucket.bucket).get("KeyCount") == 0


def test_s3_without_a_public_bucket_publishing_is_unavailable(auth_client, project, settings, s3_storage):
    settings.AUTEUR_CDN_BASE_URL = "https://cdn.example.test"
    settings.STORAGES = {k: v for k, v in settings.STORAGES.items() if k != settings.PUBLIC_STORAGE_ALIAS}
    media = MediaFileFactory.create(project=project)
    response = auth_client.post(publish_path(media))
    assert response.status_code == 503 and error_code(response) == "publishing_unavailable"


# ----------------------------------------------------------------------------- settings


S3_ENV = {**PROD_ENV, "AWS_STORAGE_BUCKET_NAME": "media-bucket", "AWS_S3_ENDPOINT_URL": "https://r2.example.test",
          "AWS_ACCESS_KEY_ID": "AKIAEXAMPLE", "AWS_SECRET_ACCESS_KEY": "example-secret"}
SHOW = ("(settings.AUTEUR_CDN_BASE_URL, settings.STORAGES.get('public', {}).get('OPTIONS', {}).get('bucket_name') "
        "or settings.STORAGES.get('public', {}).get('OPTIONS', {}).get('location'))")


@pytest.mark.parametrize(("env", "shown"), [
    ({"AUTEUR_CDN_BASE_URL": "https://cdn.example.com/"}, "('https://cdn.example.com', '{var}/public')"),
    ({}, "('', '{var}/public')"),
    ({**S3_ENV, "AUTEUR_CDN_BASE_URL": "https://cdn.example.com/media//", "AUTEUR_PUBLIC_BUCKET_NAME": "pub-bucket"},
     "('https://cdn.example.com/media', 'pub-bucket')"),
    ({**S3_ENV}, "('', None)"),
], ids=["local", "off", "s3", "s3-off"])
def test_settings_keep_the_cdn_base_without_a_trailing_slash(tmp_path, env, shown):
    result = load_settings({**PROD_ENV, "AUTEUR_VAR_DIR": str(tmp_path), **env}, show=SHOW)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == shown.format(var=tmp_path)


@pytest.mark.parametrize(("env", "said"), [
    ({"AUTEUR_CDN_BASE_URL": "http://cdn.example.com"}, "must be https when DJANGO_DEBUG is off"),
    ({"AUTEUR_CDN_BASE_URL": "cdn.example.com"}, "must be an absolute http(s) URL"),
    ({"AUTEUR_CDN_BASE_URL": "https://cdn.example.com/?v=1"}, "must not have a query or a fragment"),
    ({"AUTEUR_CDN_BASE_URL": "https://user:pw@cdn.example.com"}, "must not carry credentials"),
    ({"AUTEUR_CDN_CACHE_MAX_AGE_SECONDS": "-1"}, "AUTEUR_CDN_CACHE_MAX_AGE_SECONDS must be 0 to"),
    ({**S3_ENV, "AUTEUR_CDN_BASE_URL": "https://cdn.example.com"}, "AUTEUR_PUBLIC_BUCKET_NAME is not set"),
    ({**S3_ENV, "AUTEUR_PUBLIC_BUCKET_NAME": "media-bucket"}, "must not be AWS_STORAGE_BUCKET_NAME"),
], ids=["http", "relative", "query", "credentials", "max-age", "no-public-bucket", "same-bucket"])
def test_settings_refuse_a_cdn_configuration_that_would_not_work(env, said):
    result = load_settings({**PROD_ENV, **env})
    assert result.returncode != 0 and said in result.stderr, result.stderr[-2000:]


def test_debug_takes_a_plain_http_base_for_make_run(tmp_path):
    env = {**PROD_ENV, "DJANGO_DEBUG": "1", "AUTEUR_VAR_DIR": str(tmp_path),
           "AUTEUR_CDN_BASE_URL": "http://localhost:8000/public/"}
    result = load_settings(env, show="settings.AUTEUR_CDN_BASE_URL")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "http://localhost:8000/public"

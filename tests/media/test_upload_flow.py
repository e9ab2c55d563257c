"""The whole upload flow through the HTTP API, against both storage backends, with real media."""

from __future__ import annotations

import io
import logging
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import av
import pytest
import requests
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from media.models import MediaFile, PendingObjectDeletion
from media.signals import media_ready
from media.storage import get_storage
from tests.media.conftest import (
    body_of,
    local_get,
    local_put,
    media_path,
    request_upload,
    run_probe,
    stored,
    upload_local,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def ready_signals() -> Any:
    received: list[Any] = []

    def receiver(sender: Any, media_id: Any, **kwargs: Any) -> None:
        received.append(media_id)

    media_ready.connect(receiver, dispatch_uid="test-media-ready")
    yield received
    media_ready.disconnect(dispatch_uid="test-media-ready")


def assert_video_probed(media: MediaFile) -> None:
    assert media.status == "ready", media.rejection_reason
    assert media.rejection_reason == ""
    assert media.duration_ms is not None and 1900 <= media.duration_ms <= 2100
    meta = media.metadata
    assert meta["width"] == 320 and meta["height"] == 240
    assert meta["video_codec"] == "h264"
    assert meta["audio_codec"] == "aac"
    assert meta["sample_rate"] == 44100
    assert meta["channels"] == 1
    assert meta["fps"] == 25.0
    assert meta["format"].startswith("mov,mp4")
    assert meta["bit_rate"] > 0
    assert media.thumbnail_key.endswith("/thumbnails/thumbnail.jpg")


def assert_is_jpeg_thumbnail(data: bytes) -> None:
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "mjpeg"
        assert stream.codec_context.width == 320


def test_full_upload_flow_against_local_storage(
    auth_client, project, samples, local_storage, django_capture_on_commit_callbacks, ready_signals, caplog
):
    caplog.set_level(logging.DEBUG)
    data = samples.video.read_bytes()

    ticket = request_upload(auth_client, project, samples.video, "video/mp4", "My Clip (final).mp4")
    assert set(ticket) == {"upload_url", "media_id", "expires_at", "method", "headers", "multipart"}
    assert ticket["method"] == "PUT"
    assert ticket["headers"] == {"Content-Type": "video/mp4"}
    expires_at = parse_datetime(ticket["expires_at"])
    assert expires_at is not None
    assert timedelta(minutes=14) < expires_at - timezone.now() <= timedelta(minutes=15)
    assert ticket["upload_url"].startswith("http://testserver/storage/upload/projects/")
    media = MediaFile.objects.get(pk=ticket["media_id"])
    assert media.status == "uploading"
    assert media.name == "My Clip (final).mp4"
    assert media.storage_key == f"projects/{project.pk}/media/{media.pk}/upload/My_Clip_final.mp4"
    assert media.user_id == project.user_id and media.type == "video"

    put = local_put(ticket["upload_url"], data, "video/mp4")
    assert put.status_code == 200
    assert (local_storage / media.storage_key).read_bytes() == data
    # Atomic write: no temp file is left beside it.
    assert sorted(p.name for p in (local_storage / media.storage_key).parent.iterdir() if not p.name.startswith(".")) \
        == ["My_Clip_final.mp4"]

    with django_capture_on_commit_callbacks() as callbacks:
        confirm = auth_client.post(media_path(project.pk, media.pk, "/confirm"), {}, format="json")
    assert confirm.status_code == 202
    assert confirm.json()["media"]["status"] == "processing"
    # The probe after commit; the upload key's deletion is due once its URL has expired.
    assert len(callbacks) == 1
    upload_key = media.storage_key
    [pending] = PendingObjectDeletion.objects.all()
    assert pending.key == upload_key and pending.due_at > expires_at
    media.refresh_from_db()
    assert media.storage_key == f"projects/{project.pk}/media/{media.pk}/My_Clip_final.mp4"
    assert (local_storage / media.storage_key).read_bytes() == data and not stored(upload_key)

    # The task body, as the media worker would run it.
    assert run_probe(media.pk) == "ready"
    media.refresh_from_db()
    assert_video_probed(media)
    assert stored(media.thumbnail_key)
    assert ready_signals == [media.pk]

    detail = auth_client.get(media_path(project.pk, media.pk))
    assert detail.status_code == 200
    body = detail.json()["media"]
    assert body["status"] == "ready" and body["duration_ms"] == media.duration_ms
    assert body["has_thumbnail"] is True and body["metadata"]["width"] == 320
    urls_expire_at = parse_datetime(body["urls_expire_at"])
    assert urls_expire_at is not None
    assert timedelta(minutes=14) < urls_expire_at - timezone.now() <= timedelta(minutes=15)
    download = local_get(body["download_url"])
    assert download.status_code == 200
    assert download["Content-Type"] == "video/mp4"
    assert "My Clip (final).mp4" in download["Content-Disposition"] or "My%20Clip" in download["Content-Disposition"]
    assert body_of(download) == data
    thumb = local_get(body["thumbnail_url"])
    assert thumb.status_code == 200 and thumb["Content-Type"] == "image/jpeg"
    assert_is_jpeg_thumbnail(body_of(thumb))

    # A range request (players seek this way).
    ranged = local_get(body["download_url"], HTTP_RANGE="bytes=10-19")
    assert ranged.status_code == 206
    assert ranged["Content-Range"] == f"bytes 10-19/{len(data)}"
    assert body_of(ranged) == data[10:20]

    # Confirming again is harmless: same state, nothing enqueued, no second signal.
    with django_capture_on_commit_callbacks() as callbacks:
        again = auth_client.post(media_path(project.pk, media.pk, "/confirm"), format="json")
    assert again.status_code == 200
    assert again.json()["media"]["status"] == "ready"
    assert callbacks == []
    assert run_probe(media.pk) == "ready"  # a redelivered probe changes nothing either
    assert ready_signals == [media.pk]

    listing = auth_client.get(media_path(project.pk))
    assert listing.status_code == 200
    assert listing.json()["count"] == 1
    assert listing.json()["media"][0]["id"] == str(media.pk)

    # No signed URL reached a log line.
    for record in caplog.records:
        message = record.getMessage()
        assert "token=" not in message and "X-Amz-Signature" not in message, message


def test_full_upload_flow_against_s3(auth_client, project, samples, s3_storage, ready_signals):
    data = samples.video.read_bytes()
    ticket = request_upload(auth_client, project, samples.video, "video/mp4")
    url = ticket["upload_url"]
    query = parse_qs(urlsplit(url).query)
    assert urlsplit(url).path.startswith(f"/{s3_storage}/projects/{project.pk}/media/")
    # The presigned PUT is bound to the declared type and size.
    signed_headers = query["X-Amz-SignedHeaders"][0].split(";")
    assert "content-type" in signed_headers and "content-length" in signed_headers
    assert query["X-Amz-Expires"] == ["900"]

    put = requests.put(url, data=data, headers=ticket["headers"], timeout=30)
    assert put.status_code == 200, put.text

    confirm = auth_client.post(media_path(project.pk, ticket["media_id"], "/confirm"), {}, format="json")
    assert confirm.status_code == 202
    assert run_probe(ticket["media_id"]) == "ready"
    media = MediaFile.objects.get(pk=ticket["media_id"])
    assert_video_probed(media)
    assert ready_signals == [media.pk]
    thumbnail_size = get_storage().head(media.thumbnail_key)
    assert thumbnail_size is not None and thumbnail_size > 0

    body = auth_client.get(media_path(project.pk, media.pk)).json()["media"]
    assert "X-Amz-Signature=" in body["download_url"]
    download = requests.get(body["download_url"], timeout=30)
    assert download.status_code == 200
    assert download.content == data
    assert download.headers["Content-Type"] == "video/mp4"
    thumb = requests.get(body["thumbnail_url"], timeout=30)
    assert thumb.status_code == 200
    assert_is_jpeg_thumbnail(thumb.content)


def test_s3_confirm_before_upload_and_size_mismatch(auth_client, project, samples, s3_storage):
    ticket = request_upload(auth_client, project, samples.wav, "audio/wav")
    confirm_path = media_path(project.pk, ticket["media_id"], "/confirm")
    early = auth_client.post(confirm_path, {}, format="json")
    assert early.status_code == 422
    assert early.json()["error"]["code"] == "upload_incomplete"
    assert MediaFile.objects.get(pk=ticket["media_id"]).status == "uploading"


def test_wav_and_png_are_probed(auth_client, project, samples, local_storage):
    wav = upload_local(auth_client, project, samples.wav, "audio/wav")
    assert wav.status == "ready"
    assert wav.duration_ms is not None and 3990 <= wav.duration_ms <= 4010
    assert wav.metadata["audio_codec"] == "pcm_s16le"
    assert wav.metadata["sample_rate"] == 44100 and wav.metadata["channels"] == 1
    assert wav.metadata["video_codec"] is None and wav.metadata["width"] is None
    assert wav.thumbnail_key == ""  # no picture, no thumbnail

    png = upload_local(auth_client, project, samples.png, "image/png")
    assert png.status == "ready"
    assert png.duration_ms is None
    assert png.metadata["width"] == 64 and png.metadata["height"] == 48
    assert png.metadata["video_codec"] == "png"
    assert stored(png.thumbnail_key)
    with get_storage().open(png.thumbnail_key) as fh, av.open(fh) as container:
        assert container.streams.video[0].codec_context.width == 64  # never upscaled


def test_a_text_file_claiming_to_be_video_is_rejected(auth_client, project, samples, local_storage, ready_signals):
    media = upload_local(auth_client, project, samples.text, "video/mp4", "holiday.mp4")
    assert media.status == "rejected"
    assert media.rejection_reason == "not a decodable media file"
    assert media.thumbnail_key == "" and media.duration_ms is None
    assert ready_signals == []
    body = auth_client.get(media_path(project.pk, media.pk)).json()["media"]
    assert body["status"] == "rejected" and body["rejection_reason"] == "not a decodable media file"


def test_audio_declared_as_video_is_a_type_mismatch(auth_client, project, samples, local_storage):
    media = upload_local(auth_client, project, samples.wav, "video/mp4", "tone.mp4")
    assert media.status == "rejected"
    assert media.rejection_reason == "type mismatch: declared video but the file has no video stream"


def test_image_declared_as_video_and_video_declared_as_audio(auth_client, project, samples, local_storage):
    still = upload_local(auth_client, project, samples.png, "video/webm", "pattern.webm")
    assert still.rejection_reason == "type mismatch: declared video but the file is a still image"
    # A video with a sound track is a fine audio file: its audio is what is used.
    audio = upload_local(auth_client, project, samples.video, "audio/mp4", "clip.m4a")
    assert audio.status == "ready" and audio.metadata["audio_codec"] == "aac"
    image = upload_local(auth_client, project, samples.wav, "image/png", "tone.png")
    assert image.rejection_reason == "type mismatch: declared image but the file has no image"


def test_confirm_before_upload_is_422_and_stays_uploading(
    auth_client, project, samples, local_storage, django_capture_on_commit_callbacks
):
    ticket = request_upload(auth_client, project, samples.wav, "audio/wav")
    with django_capture_on_commit_callbacks() as callbacks:
        response = auth_client.post(media_path(project.pk, ticket["media_id"], "/confirm"), {}, format="json")
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "upload_incomplete"
    assert MediaFile.objects.get(pk=ticket["media_id"]).status == "uploading"
    assert callbacks == []


def test_confirm_of_a_short_upload_is_size_mismatch(auth_client, project, samples, local_storage):
    ticket = request_upload(auth_client, project, samples.wav, "audio/wav")
    data = samples.wav.read_bytes()
    assert local_put(ticket["upload_url"], data[:-100], "audio/wav").status_code == 200
    response = auth_client.post(media_path(project.pk, ticket["media_id"], "/confirm"), {}, format="json")
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "size_mismatch"
    assert error["details"] == {"declared_bytes": len(data), "uploaded_bytes": len(data) - 100}
    assert MediaFile.objects.get(pk=ticket["media_id"]).status == "uploading"
    # The client can PUT again (the URL is still valid) and confirm.
    assert local_put(ticket["upload_url"], data, "audio/wav").status_code == 200
    assert auth_client.post(media_path(project.pk, ticket["media_id"], "/confirm")).status_code == 202


def test_confirm_with_an_unknown_field_is_400(auth_client, project, samples, local_storage):
    ticket = request_upload(auth_client, project, samples.wav, "audio/wav")
    local_put(ticket["upload_url"], samples.wav.read_bytes(), "audio/wav")
    response = auth_client.post(media_path(project.pk, ticket["media_id"], "/confirm"), {"force": True}, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["details"]["fields"] == {"force": ["Unknown field."]}
    assert MediaFile.objects.get(pk=ticket["media_id"]).status == "uploading"


def test_list_filters_and_paginates(auth_client, project, samples, local_storage):
    upload_local(auth_client, project, samples.wav, "audio/wav")
    upload_local(auth_client, project, samples.text, "video/mp4", "x.mp4")
    request_upload(auth_client, project, samples.png, "image/png")

    everything = auth_client.get(media_path(project.pk)).json()
    assert everything["count"] == 3
    assert [m["type"] for m in everything["media"]] == ["image", "video", "audio"]  # newest first
    ready = auth_client.get(media_path(project.pk), {"status": "ready"}).json()
    assert [m["type"] for m in ready["media"]] == ["audio"]
    videos = auth_client.get(media_path(project.pk), {"type": "video"}).json()
    assert [m["status"] for m in videos["media"]] == ["rejected"]
    page = auth_client.get(media_path(project.pk), {"page_size": 2, "page": 2}).json()
    assert page["count"] == 3 and len(page["media"]) == 1 and page["next"] is None and page["previous"]
    bad = auth_client.get(media_path(project.pk), {"status": "lost"})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "validation_error"
    beyond = auth_client.get(media_path(project.pk), {"page": 9})
    assert beyond.status_code == 404 and "error" in beyond.json()


def test_uploading_media_has_no_download_url(auth_client, project, samples, local_storage):
    ticket = request_upload(auth_client, project, samples.wav, "audio/wav")
    body = auth_client.get(media_path(project.pk, ticket["media_id"])).json()["media"]
    assert body["status"] == "uploading"
    assert body["download_url"] is None and body["thumbnail_url"] is None


@pytest.mark.parametrize(
    "content",
    [
        b"#EXTM3U\n#EXT-X-MEDIA-SEQUENCE:0\n#EXTINF:10.0,\nfile:///etc/passwd\n#EXT-X-ENDLIST\n",
        b"ffconcat version 1.0\nfile /etc/passwd\n",
        b"\x1b[31mANSI art\x1b[0m\n" * 200,
    ],
    ids=["hls-playlist", "concat-script", "ansi-text"],
)
def test_files_that_would_make_ffmpeg_read_elsewhere_are_rejected(
    auth_client, project, local_storage, tmp_path, content
):
    path = tmp_path / "innocent.mp4"
    path.write_bytes(content)
    media = upload_local(auth_client, project, path, "video/mp4")
    assert media.status == "rejected"
    assert media.rejection_reason == "not a decodable media file"
    assert media.thumbnail_key == ""

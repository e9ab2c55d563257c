"""Swap after confirm: a signed PUT URL, still unexpired after confirm, cannot change what was
probed and priced. The local backend refuses the PUT; on S3 (which cannot revoke a presigned
URL) the PUT lands under the upload key, which confirm has moved the object away from."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
import requests
from django.utils import timezone

from media.models import MediaFile, PendingObjectDeletion
from media.services.sweep import media_sweep
from media.storage import get_storage
from tests.media.conftest import body_of, local_put, media_path, request_upload, run_probe, stored

pytestmark = pytest.mark.django_db


def read(key: str) -> bytes:
    with get_storage().open(key) as fh:
        return bytes(fh.read())


def test_local_put_after_confirm_is_refused_and_changes_nothing(
    auth_client, project, samples, local_storage, django_capture_on_commit_callbacks
):
    original = samples.wav.read_bytes()
    ticket = request_upload(auth_client, project, samples.wav, "audio/wav")
    upload_key = MediaFile.objects.get(pk=ticket["media_id"]).storage_key
    assert local_put(ticket["upload_url"], original, "audio/wav").status_code == 200
    with django_capture_on_commit_callbacks():
        confirm = auth_client.post(media_path(project.pk, ticket["media_id"], "/confirm"), {}, format="json")
    assert confirm.status_code == 202

    swapped = b"RIFF" + b"\x00" * (len(original) - 4)  # same size: it would pass the size check
    again = local_put(ticket["upload_url"], swapped, "audio/wav")
    assert again.status_code == 409
    assert json.loads(body_of(again))["error"]["code"] == "upload_closed"

    media = MediaFile.objects.get(pk=ticket["media_id"])
    assert media.storage_key != upload_key and not stored(upload_key)
    assert read(media.storage_key) == original
    # What the probe (and every job after it) reads is what was uploaded before confirm.
    assert run_probe(media.pk) == "ready"
    media.refresh_from_db()
    assert media.duration_ms is not None and 3990 <= media.duration_ms <= 4010


def test_local_put_to_a_deleted_upload_is_refused(auth_client, project, samples, local_storage):
    ticket = request_upload(auth_client, project, samples.wav, "audio/wav")
    assert auth_client.delete(media_path(project.pk, ticket["media_id"])).status_code == 204
    refused = local_put(ticket["upload_url"], samples.wav.read_bytes(), "audio/wav")
    assert refused.status_code == 409 and json.loads(body_of(refused))["error"]["code"] == "upload_closed"
    assert not local_storage.exists() or not any(p.is_file() for p in local_storage.rglob("*"))


def test_s3_put_after_confirm_does_not_change_the_object_that_is_read(
    auth_client, project, samples, s3_storage, eager_celery, django_capture_on_commit_callbacks
):
    original = samples.wav.read_bytes()
    ticket = request_upload(auth_client, project, samples.wav, "audio/wav")
    upload_key = MediaFile.objects.get(pk=ticket["media_id"]).storage_key
    put = requests.put(ticket["upload_url"], data=original, headers=ticket["headers"], timeout=30)
    assert put.status_code == 200, put.text
    with django_capture_on_commit_callbacks() as after_confirm:
        confirm = auth_client.post(media_path(project.pk, ticket["media_id"], "/confirm"), {}, format="json")
    assert confirm.status_code == 202

    # The presigned URL cannot be revoked: S3 accepts this PUT...
    swapped = b"RIFF" + b"\x00" * (len(original) - 4)
    late = requests.put(ticket["upload_url"], data=swapped, headers=ticket["headers"], timeout=30)
    assert late.status_code == 200, late.text

    # ...but under the upload key, which nothing reads any more.
    media = MediaFile.objects.get(pk=ticket["media_id"])
    assert media.storage_key != upload_key
    assert read(media.storage_key) == original
    assert get_storage().content_type(media.storage_key) == "audio/wav"

    # After commit: the probe reads the final key; once the URL has expired the sweep deletes
    # the upload key.
    for callback in after_confirm:
        callback()
    media.refresh_from_db()
    assert media.status == "ready", media.rejection_reason
    assert media.duration_ms is not None and 3990 <= media.duration_ms <= 4010
    assert read(media.storage_key) == original
    media_sweep(now=timezone.now() + timedelta(days=1))
    assert not stored(upload_key)


def test_s3_put_after_delete_leaves_nothing_once_the_url_expires(
    auth_client, project, samples, s3_storage, settings, django_capture_on_commit_callbacks
):
    ticket = request_upload(auth_client, project, samples.wav, "audio/wav")
    upload_key = MediaFile.objects.get(pk=ticket["media_id"]).storage_key
    with django_capture_on_commit_callbacks(execute=True):
        assert auth_client.delete(media_path(project.pk, ticket["media_id"])).status_code == 204

    # The URL still works on S3 after the delete and its clean-up...
    late = requests.put(ticket["upload_url"], data=samples.wav.read_bytes(), headers=ticket["headers"], timeout=30)
    assert late.status_code == 200 and stored(upload_key)
    # ...so the upload key is deleted again by the sweep once the URL has expired, not before.
    expiry = timezone.now() + timedelta(seconds=settings.AUTEUR_SIGNED_URL_TTL_SECONDS)
    assert media_sweep(now=expiry - timedelta(seconds=1))["upload_keys_deleted"] == 0
    assert stored(upload_key)
    assert media_sweep(now=expiry + timedelta(minutes=2))["upload_keys_deleted"] == 1
    assert not stored(upload_key)
    assert not PendingObjectDeletion.objects.exists()

"""Deleting media: the record now, the objects after commit, never while in use or for a stranger."""

from __future__ import annotations

import io

import pytest

from media.hooks import register_in_use_check, unregister_in_use_check
from media.models import MediaFile
from media.services.deletion import media_delete_project_objects
from media.storage import get_storage
from tests.media.conftest import local_put, media_path, request_upload, stored, upload_local

pytestmark = pytest.mark.django_db


def test_delete_removes_the_record_and_after_commit_the_objects(
    auth_client, project, samples, local_storage, eager_celery, django_capture_on_commit_callbacks
):
    media = upload_local(auth_client, project, samples.video, "video/mp4")
    keys = [media.storage_key, media.thumbnail_key]
    assert all(stored(k) for k in keys)

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = auth_client.delete(media_path(project.pk, media.pk))
        assert response.status_code == 204
        assert not MediaFile.objects.filter(pk=media.pk).exists()
        # Not before the commit: a rolled-back delete must not have lost the file.
        assert all(stored(k) for k in keys)
    assert len(callbacks) == 1
    callbacks[0]()  # the commit happens
    assert not any(stored(k) for k in keys)
    assert not (local_storage / f"projects/{project.pk}/media/{media.pk}").exists()

    again = auth_client.delete(media_path(project.pk, media.pk))
    assert again.status_code == 404 and again.json()["error"]["code"] == "media_not_found"


def test_delete_against_s3(auth_client, project, samples, s3_storage, eager_celery, django_capture_on_commit_callbacks):
    import requests

    ticket = request_upload(auth_client, project, samples.wav, "audio/wav")
    assert requests.put(ticket["upload_url"], data=samples.wav.read_bytes(), headers=ticket["headers"],
                        timeout=30).status_code == 200
    key = MediaFile.objects.get(pk=ticket["media_id"]).storage_key
    assert get_storage().head(key) == samples.wav.stat().st_size
    with django_capture_on_commit_callbacks(execute=True):
        assert auth_client.delete(media_path(project.pk, ticket["media_id"])).status_code == 204
    assert get_storage().head(key) is None


def test_another_users_media_cannot_be_deleted(
    make_user, client_for, make_project, samples, local_storage, eager_celery, django_capture_on_commit_callbacks
):
    owner, intruder = make_user(), make_user()
    project = make_project(owner)
    media = upload_local(client_for(owner), project, samples.wav, "audio/wav")
    own_project = make_project(intruder)
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        # Through the owner's project id, and through the intruder's own project.
        first = client_for(intruder).delete(media_path(project.pk, media.pk))
        second = client_for(intruder).delete(media_path(own_project.pk, media.pk))
    assert first.status_code == 404 and first.json()["error"]["code"] == "project_not_found"
    assert second.status_code == 404 and second.json()["error"]["code"] == "media_not_found"
    assert callbacks == []
    assert MediaFile.objects.filter(pk=media.pk).exists()
    assert stored(media.storage_key)


def test_media_in_use_is_not_deleted(
    auth_client, project, samples, local_storage, eager_celery, django_capture_on_commit_callbacks
):
    media = upload_local(auth_client, project, samples.wav, "audio/wav")

    def used_by_a_running_job(candidate: MediaFile) -> str | None:
        return "used by running job 42" if candidate.pk == media.pk else None

    register_in_use_check(used_by_a_running_job)
    try:
        with django_capture_on_commit_callbacks(execute=True) as callbacks:
            response = auth_client.delete(media_path(project.pk, media.pk))
    finally:
        unregister_in_use_check(used_by_a_running_job)
    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "media_in_use"
    assert error["details"]["reasons"] == ["used by running job 42"]
    assert callbacks == []
    assert MediaFile.objects.filter(pk=media.pk).exists() and stored(media.storage_key)

    assert auth_client.delete(media_path(project.pk, media.pk)).status_code == 204  # once it is free


def test_project_objects_are_all_scheduled_for_deletion(
    auth_client, project, make_project, user, samples, local_storage, eager_celery, django_capture_on_commit_callbacks
):
    ready = upload_local(auth_client, project, samples.video, "video/mp4")
    # Uploaded but never confirmed, and an object no row names (a late PUT): both go too.
    pending = request_upload(auth_client, project, samples.wav, "audio/wav")
    local_put(pending["upload_url"], samples.wav.read_bytes(), "audio/wav")
    pending_key = MediaFile.objects.get(pk=pending["media_id"]).storage_key
    get_storage().save(f"projects/{project.pk}/media/orphan/late.wav", samples.wav.open("rb"), "audio/wav")
    other = make_project(user)
    kept = upload_local(auth_client, other, samples.wav, "audio/wav")

    with django_capture_on_commit_callbacks(execute=True):
        keys = media_delete_project_objects(project_id=project.pk)
        project.delete()
    assert set(keys) == {ready.storage_key, ready.thumbnail_key, pending_key}
    assert not (local_storage / f"projects/{project.pk}").exists()
    assert stored(kept.storage_key)


def test_object_deletion_retries_storage_errors_with_a_bounded_backoff(monkeypatch):
    from celeryconfig import LONGEST_COUNTDOWN_SECONDS
    from media import tasks
    from media.errors import StorageError

    calls = []

    def flaky(*, keys, prefixes):
        calls.append(list(keys))
        if len(calls) < 3:
            raise StorageError("object storage failed: EndpointConnectionError")
        return len(calls[-1])

    monkeypatch.setattr(tasks, "media_delete_objects", flaky)
    result = tasks.delete_objects.apply(args=(["projects/p/media/m/a.mp4"], []))
    assert result.successful() and result.result == 1
    assert len(calls) == 3  # two failures retried, then done
    assert tasks.delete_objects.max_retries == 12
    task = tasks.delete_objects
    # Celery sets the autoretry options as task attributes at runtime; celery-types does not declare them.
    assert task.retry_backoff_max == LONGEST_COUNTDOWN_SECONDS  # type: ignore[attr-defined]
    assert task.retry_jitter  # type: ignore[attr-defined]


def test_objects_whose_deletion_spent_its_retries_are_deleted_by_the_sweep(monkeypatch, local_storage, project):
    from media import tasks
    from media.errors import StorageError
    from media.models import PendingObjectDeletion
    from media.services.sweep import media_sweep

    key, folder = f"projects/{project.pk}/media/a/a.mp4", f"projects/{project.pk}/media/b"
    for k in (key, f"{folder}/b.mp4"):
        get_storage().save(k, io.BytesIO(b"x"), "video/mp4")

    def down(*, keys, prefixes):
        raise StorageError("object storage failed: EndpointConnectionError")

    monkeypatch.setattr(tasks, "media_delete_objects", down)
    result = tasks.delete_objects.apply(args=([key], [folder]))
    assert result.successful() and result.result == 0
    assert set(PendingObjectDeletion.objects.values_list("key", flat=True)) == {key, f"{folder}/"}
    assert stored(key)

    assert media_sweep()["upload_keys_deleted"] == 2
    assert not stored(key) and not stored(f"{folder}/b.mp4")
    assert not PendingObjectDeletion.objects.exists()

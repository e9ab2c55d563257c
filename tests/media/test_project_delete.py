"""Deleting a project deletes its media objects in storage (after commit) and its records."""

from __future__ import annotations

import pytest

from media.models import MediaFile
from projects.models import Project
from tests.media.conftest import stored, upload_local

pytestmark = pytest.mark.django_db


def test_project_deletion_removes_every_storage_object(
    auth_client, project, samples, local_storage, eager_celery, django_capture_on_commit_callbacks
):
    video = upload_local(auth_client, project, samples.video, "video/mp4")
    audio = upload_local(auth_client, project, samples.wav, "audio/wav")
    keys = [video.storage_key, video.thumbnail_key, audio.storage_key]
    assert video.thumbnail_key, "a video gets a thumbnail"
    assert all(stored(k) for k in keys)

    with django_capture_on_commit_callbacks(execute=True):
        assert auth_client.delete(f"/api/v1/projects/{project.pk}").status_code == 204

    assert not Project.objects.filter(pk=project.pk).exists()
    assert not MediaFile.objects.filter(project_id=project.pk).exists()
    assert not any(stored(k) for k in keys)


def test_a_stranger_cannot_delete_the_project_or_its_objects(
    auth_client,
    client_for,
    make_user,
    project,
    samples,
    local_storage,
    eager_celery,
    django_capture_on_commit_callbacks,
):
    video = upload_local(auth_client, project, samples.video, "video/mp4")
    with django_capture_on_commit_callbacks(execute=True):
        assert client_for(make_user()).delete(f"/api/v1/projects/{project.pk}").status_code == 404
    assert Project.objects.filter(pk=project.pk).exists()
    assert stored(video.storage_key)

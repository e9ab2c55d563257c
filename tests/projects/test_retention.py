"""Retention: the storage a deleted project left behind is purged, and nothing else."""

from __future__ import annotations

import io
import uuid
from typing import Any

import pytest

from auteur.retention import run_sweep
from media.storage import get_storage
from projects.models import Project
from projects.services import project_delete
from tests.factories import MediaFileFactory, ProjectFactory
from tests.media.conftest import local_storage, moto_endpoint, s3_storage, stored  # noqa: F401 - fixtures

pytestmark = pytest.mark.django_db


@pytest.fixture(params=["local_storage", "s3_storage"])
def storage(request: pytest.FixtureRequest) -> Any:
    request.getfixturevalue(request.param)
    return get_storage()


def put(key: str) -> str:
    get_storage().save(key, io.BytesIO(b"bytes"), "application/octet-stream")
    return key


def folder_of(project_id: Any) -> str:
    return put(f"projects/{project_id}/media/{uuid.uuid4()}/clip.mp4")


def test_only_folders_of_projects_that_no_longer_exist_are_purged(storage, make_user):
    mine, theirs = ProjectFactory.create(), ProjectFactory.create(user=make_user())
    kept = [folder_of(mine.pk), folder_of(theirs.pk), put("projects/not-a-project/readme.txt"), put("voices/v.wav")]
    orphans = [folder_of(uuid.uuid4()), folder_of(uuid.uuid4())]

    result = run_sweep("deleted_project_objects")

    assert (result.count, result.details["objects"]) == (2, 2)
    assert not any(stored(key) for key in orphans)
    assert all(stored(key) for key in kept)


def test_what_a_project_deletion_left_behind_is_purged(storage, django_capture_on_commit_callbacks):
    project = ProjectFactory.create()
    media = MediaFileFactory.create(project=project, storage_key=folder_of(project.pk))
    other = folder_of(ProjectFactory.create(user=project.user).pk)
    # The deletion commits, but its after-commit object deletion never runs (a worker that gave up).
    project_delete(project=Project.objects.get(pk=project.pk))
    assert stored(media.storage_key)

    assert run_sweep("deleted_project_objects").count == 1

    assert not stored(media.storage_key) and stored(other)


def test_project_folders_are_swept_in_batches(storage):
    orphans = [folder_of(uuid.uuid4()) for _ in range(5)]

    result = run_sweep("deleted_project_objects", batch_size=2)

    assert (result.count, result.batches) == (5, 3)
    assert not any(stored(key) for key in orphans)


def test_a_dry_run_counts_the_folders_and_deletes_nothing(storage):
    orphans = [folder_of(uuid.uuid4()) for _ in range(3)]
    kept = folder_of(ProjectFactory.create().pk)

    result = run_sweep("deleted_project_objects", dry_run=True, batch_size=2)

    assert (result.count, result.batches, result.dry_run) == (3, 2, True)
    assert all(stored(key) for key in [*orphans, kept])

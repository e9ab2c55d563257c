"""Retention: the storage and the EDL documents a deleted project left behind are purged, and
nothing else."""

from __future__ import annotations

import contextlib
import io
import socket
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.core.management import call_command
from django.utils import timezone

from auteur.core.retention import run_sweep
from media.storage import get_storage
from projects.edl import store
from projects.edl.services import edl_create, edl_replace
from projects.models import Project
from projects.retention import EDL_ORPHAN_GRACE
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


# ----------------------------------------------------------------------------------- EDL documents

LATER = EDL_ORPHAN_GRACE + timedelta(minutes=1)


def timeline(project: Project, *, saves: int = 1) -> None:
    """The project's EDL document, saved `saves` times over: `saves + 1` history entries (every
    version's content is kept there)."""
    doc = edl_create(project=project)
    for _ in range(saves):
        doc = edl_replace(project=project, expected_version=doc["version"], data=doc)


def documents_of(project_id: Any) -> tuple[int, int]:
    key = str(project_id)
    return (store.edl_collection().count_documents({"project_id": key}),
            store.history_collection().count_documents({"project_id": key}))


def edl_sweep(**context: Any) -> Any:
    return run_sweep("deleted_project_edls", now=timezone.now() + LATER, **context)


@contextlib.contextmanager
def mongodb_unreachable(settings: Any) -> Iterator[None]:
    """The EDL store's address pointed at a port nothing listens on, then back."""
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    original = settings.MONGODB_URI
    store.disconnect()
    settings.MONGODB_URI = f"mongodb://127.0.0.1:{port}/auteur"
    try:
        yield
    finally:
        store.disconnect()
        settings.MONGODB_URI = original


def test_an_edl_whose_delete_failed_after_commit_is_removed_by_the_sweep(
    clean_edl_store, make_user, settings, django_capture_on_commit_callbacks, caplog
):
    gone, live, theirs = ProjectFactory.create(), ProjectFactory.create(), ProjectFactory.create(user=make_user())
    for project in (gone, live, theirs):
        timeline(project, saves=2)
    assert documents_of(gone.pk) == (1, 3)
    with django_capture_on_commit_callbacks() as after_commit:
        project_delete(project=Project.objects.get(pk=gone.pk))
    with mongodb_unreachable(settings):
        for callback in after_commit:
            callback()  # the after-commit EDL delete, against a MongoDB that does not answer
    assert f"could not delete the EDL of deleted project {gone.pk}" in caplog.text
    assert documents_of(gone.pk) == (1, 3)

    result = edl_sweep()

    assert (result.count, result.details) == (4, {"edl": 1, "history": 3})
    assert documents_of(gone.pk) == (0, 0)
    assert documents_of(live.pk) == (1, 3) and documents_of(theirs.pk) == (1, 3)
    assert edl_sweep().count == 0


def test_a_document_younger_than_the_grace_is_left_alone(clean_edl_store):
    """A project's document is written inside the transaction that creates the project: until
    that commits, the document has no row to be found by."""
    project = ProjectFactory.create()
    timeline(project, saves=1)
    Project.objects.filter(pk=project.pk).delete()  # as the sweep sees a project not yet committed

    assert run_sweep("deleted_project_edls").count == 0
    assert documents_of(project.pk) == (1, 2)
    assert run_sweep("deleted_project_edls", now=timezone.now() + LATER).count == 3
    assert documents_of(project.pk) == (0, 0)


def test_documents_are_walked_in_batches_and_foreign_ones_are_left(clean_edl_store):
    orphans = [ProjectFactory.create() for _ in range(3)]
    for project in orphans:
        timeline(project, saves=1)
    Project.objects.filter(pk__in=[p.pk for p in orphans]).delete()
    store.edl_collection().insert_one({"project_id": "not-a-project", "created_at": timezone.now() - LATER})

    result = edl_sweep(batch_size=2)

    # edl: 4 documents in 2 batches; history: 6 in 3.
    assert (result.count, result.batches, result.details) == (9, 5, {"edl": 3, "history": 6})
    assert all(documents_of(p.pk) == (0, 0) for p in orphans)
    assert documents_of("not-a-project") == (1, 0)


def test_a_dry_run_counts_the_orphans_and_deletes_nothing(clean_edl_store, capsys):
    orphan, live = ProjectFactory.create(), ProjectFactory.create()
    timeline(orphan, saves=1)
    timeline(live, saves=1)
    Project.objects.filter(pk=orphan.pk).delete()
    for collection in (store.edl_collection(), store.history_collection()):  # written long ago
        for doc in collection.find():  # deleted and inserted: the embedded server replaces no binary data
            collection.delete_one({"_id": doc["_id"]})
            collection.insert_one({**doc, "created_at": timezone.now() - LATER})

    call_command("retention", "--dry-run", "--only", "deleted_project_edls", "--batch-size", "1")

    assert "deleted_project_edls: would delete 3 in 6 batch(es), edl=1, history=2" in capsys.readouterr().out
    assert documents_of(orphan.pk) == (1, 2) and documents_of(live.pk) == (1, 2)
    assert run_sweep("deleted_project_edls").details == {"edl": 1, "history": 2}
    assert documents_of(orphan.pk) == (0, 0) and documents_of(live.pk) == (1, 2)

"""EDL documents are found by their project AND their owner: a query made for one user never reads
or writes another user's timeline, even given that user's project id."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

import pytest
from django.apps import apps

from auteur.users.models import User
from media.models import MediaFile
from projects.edl import store
from projects.edl.history import edl_undo
from projects.edl.selectors import edl_get
from projects.edl.services import edl_delete, edl_replace
from projects.errors import EdlConflict, NothingToUndo
from projects.models import Project
from tests.projects.test_edl_support import timeline_with

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("clean_edl_store")]


def stored(project_id: Any) -> dict[str, Any] | None:
    """The stored document, as any MongoDB client reads it."""
    return store.edl_collection().find_one({"project_id": str(project_id)})


@pytest.fixture
def bobs_project(make_user: Callable[..., User], make_project: Callable[..., Project],
                 make_media: Callable[..., MediaFile]) -> Project:
    """Bob's project, with a saved timeline and one undo step in its history."""
    project = make_project(make_user())
    edl_replace(project=project, expected_version=1, data=timeline_with(edl_get(project=project), make_media(project)))
    return project


def test_another_users_project_id_reads_and_writes_nothing_of_theirs(
    bobs_project: Project, make_user: Callable[..., User], make_media: Callable[..., MediaFile]
):
    before = stored(bobs_project.pk)
    history_before = list(store.history_collection().find({"project_id": str(bobs_project.pk)}))
    # Bob's project id, on Alice's behalf: what code gets that takes the id from a request (or a
    # job's input) and the owner from the caller.
    alice = make_user()
    as_alice = Project(pk=bobs_project.pk, user=alice, name="Bob's, named by Alice")

    with pytest.raises(EdlConflict):
        edl_get(project=as_alice)
    with pytest.raises(EdlConflict):
        edl_replace(project=as_alice, expected_version=2, data={"settings": {}, "tracks": [], "transcript": {}})
    with pytest.raises(EdlConflict):
        edl_undo(project=as_alice)
    edl_delete(project_id=bobs_project.pk, user_id=alice.pk)

    assert stored(bobs_project.pk) == before
    assert list(store.history_collection().find({"project_id": str(bobs_project.pk)})) == history_before
    assert store.edl_collection().count_documents({"user_id": str(alice.pk)}) == 0
    assert edl_get(project=bobs_project)["version"] == 2  # Bob's own requests are unaffected


def test_every_document_records_its_owner_and_both_collections_are_indexed_by_it(bobs_project: Project):
    owner = str(bobs_project.user_id)
    assert (stored(bobs_project.pk) or {})["user_id"] == owner
    assert {d["user_id"] for d in store.history_collection().find({"project_id": str(bobs_project.pk)})} == {owner}
    assert ["user_id", "project_id"] in [
        [name for name, _ in index["key"]] for index in store.edl_collection().index_information().values()
    ]
    assert ["user_id", "project_id", "version"] in [
        [name for name, _ in index["key"]] for index in store.history_collection().index_information().values()
    ]


def test_the_backfill_gives_older_snapshots_their_owner_from_their_edl(bobs_project: Project):
    history = store.history_collection()
    key = str(bobs_project.pk)
    history.update_many({"project_id": key}, {"$unset": {"user_id": ""}})  # as written before
    orphan = {"project_id": "f" * 8 + "-0000-0000-0000-" + "0" * 12, "version": 1, "snapshot": {}}
    history.insert_one(dict(orphan))  # its EDL (and project) deleted: left to the retention sweep
    with pytest.raises(NothingToUndo):  # a snapshot without its owner is found by no query
        edl_undo(project=bobs_project)

    importlib.import_module("projects.migrations.0005_edl_history_owner").record_owners(apps, None)

    assert {d.get("user_id") for d in history.find({"project_id": key})} == {str(bobs_project.user_id)}
    assert "user_id" not in (history.find_one({"project_id": orphan["project_id"]}) or {"user_id": "?"})
    assert edl_undo(project=bobs_project)["version"] == 3  # the snapshot is found by its owner again

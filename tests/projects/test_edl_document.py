"""The EDL as a MongoDB document: its stored shape as any client reads it, the media_ids index and the
query that finds the projects playing a file (used by media deletion and the admin), and the data
migration of documents of every earlier vintage to that shape."""

from __future__ import annotations

import importlib
import threading
from datetime import UTC, datetime
from typing import Any

import pymongo
import pytest
from django.conf import settings
from django.db import connections, transaction
from django.test import Client
from django.utils.html import escape

from media.models import MediaFile
from projects.edl import store
from projects.edl.documents import PACKED, media_ids_of
from projects.edl.media_use import MEDIA_IDS_FIELD, edl_projects_using_media, media_use_filter
from projects.edl.selectors import edl_get
from projects.edl.services import edl_replace
from projects.edl.structuring import edl_structure_all, structure_one
from projects.errors import EdlInvalid
from tests.projects.test_edl_support import clip, editable, legacy_packed, saved_then_packed, segment, timeline_with

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("clean_edl_store")]


def edl_url(project) -> str:
    return f"/api/v1/projects/{project.pk}/edl"


def media_url(project, media) -> str:
    return f"/api/v1/projects/{project.pk}/media/{media.pk}"


@pytest.fixture
def plain_client():
    """A MongoDB client of its own, as Compass or mongosh would be: nothing of the app's store."""
    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(settings.MONGODB_URI, tz_aware=True)
    yield client.get_default_database()
    client.close()


# ----------------------------------------------------------------------------- the stored shape


def test_a_saved_timeline_reads_in_a_plain_mongodb_client_as_the_api_answers(
    auth_client, project, make_media, plain_client
):
    video, audio = make_media(project), make_media(project, type="audio", name="voice.wav")
    doc = timeline_with(auth_client.get(edl_url(project)).json(), video, clips=3)
    doc["tracks"][1]["clips"] = [clip(audio, doc["tracks"][1], start=0, out=2000, id="voice")]
    doc["tracks"][0]["clips"][2]["effects"] = [{"type": "fade_in", "duration_ms": 200}]
    doc["transcript"]["segments"][0]["words"][0]["deleted"] = True
    saved = auth_client.put(edl_url(project), doc, format="json", HTTP_IF_MATCH='"1"')
    assert saved.status_code == 200, saved.json()
    answer = auth_client.get(edl_url(project)).json()

    raw = plain_client["edl"].find_one({"project_id": str(project.pk)})
    assert raw is not None and PACKED not in raw
    # Field for field what the API answers: subdocuments, not a blob.
    assert {k: raw[k] for k in ("project_id", "user_id", "version", "settings", "tracks")} == {
        k: answer[k] for k in ("project_id", "user_id", "version", "settings", "tracks")}
    assert str(raw["_id"]) == answer["id"]
    assert raw["transcript"]["generated_at"] == datetime(2026, 1, 31, 12, 0, tzinfo=UTC)  # a BSON date
    assert {**raw["transcript"], "generated_at": "2026-01-31T12:00:00.000Z"} == answer["transcript"]
    assert raw["created_at"].isoformat(timespec="milliseconds").replace("+00:00", "Z") == answer["created_at"]
    assert raw["undo_versions"] == answer["undo_stack"] and raw["redo_versions"] == answer["redo_stack"]
    assert raw["media_ids"] == sorted([str(video.pk), str(audio.pk)])
    # The stored document is the seed's shape: a clip and a word are where a MongoDB query finds them.
    first = raw["tracks"][0]["clips"][0]
    assert set(first) >= {"id", "media_file_id", "track_id", "start_ms", "duration_ms", "in_point_ms",
                          "out_point_ms", "effects", "deleted"}
    assert raw["transcript"]["segments"][0]["words"][0] == answer["transcript"]["segments"][0]["words"][0]
    assert plain_client["edl"].find_one({"settings.frame_rate": answer["settings"]["frame_rate"],
                                         "project_id": str(project.pk)}, {"_id": 1}) is not None


def test_media_ids_are_the_files_non_deleted_clips_play_each_once():
    doc = {"tracks": [
        {"clips": [{"media_file_id": "b", "deleted": False}, {"media_file_id": "a"}, {"media_file_id": "b"}]},
        {"clips": [{"media_file_id": "gone", "deleted": True}]},
        {"clips": []},
    ], "transcript": {"segments": [{"media_file_id": "heard"}]}}
    assert media_ids_of(doc) == ["a", "b"]


# ----------------------------------------------------------------------------- the media index and query


def test_the_projects_using_a_file_are_found_on_the_media_ids_index(project, make_media, make_project, user):
    info = store.edl_collection().index_information()
    assert [(MEDIA_IDS_FIELD, 1)] in [spec["key"] for spec in info.values()]
    # The lookup filters on the indexed field alone, so the index answers it (multikey on MongoDB).
    assert list(media_use_filter("x")) == [MEDIA_IDS_FIELD]

    media, unused = make_media(project), make_media(project)
    edl_replace(project=project, expected_version=1, data=timeline_with(edl_get(project=project), media))
    other = make_project(user)
    edl_get(project=other)  # a timeline that plays nothing
    assert edl_projects_using_media(media_id=media.pk) == [str(project.pk)]
    assert edl_projects_using_media(media_id=unused.pk) == []


def test_deleting_a_file_a_timeline_plays_is_409_naming_the_project_and_nothing_is_deleted(
    auth_client, project, make_media, django_capture_on_commit_callbacks
):
    media = make_media(project)
    edl_replace(project=project, expected_version=1, data=timeline_with(edl_get(project=project), media))
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = auth_client.delete(media_url(project, media))
    assert response.status_code == 409, response.json()
    error = response.json()["error"]
    assert error["code"] == "media_in_use"
    assert error["details"]["reasons"] == [f"the timeline of project {project.name!r} ({project.pk}) plays it"]
    assert MediaFile.objects.filter(pk=media.pk).exists() and callbacks == []


@pytest.mark.parametrize("how", ["clip deleted", "clip removed", "only in the transcript"])
def test_a_file_no_clip_plays_any_more_can_be_deleted(auth_client, project, make_media, how,
                                                     django_capture_on_commit_callbacks):
    media = make_media(project)
    saved = edl_replace(project=project, expected_version=1, data=timeline_with(edl_get(project=project), media))
    doc = editable(saved)
    if how == "clip deleted":
        for c in doc["tracks"][0]["clips"]:
            c["deleted"] = True
    else:
        doc["tracks"][0]["clips"] = []
    if how == "only in the transcript":
        doc["transcript"]["segments"] = [segment(0, 1000, id="heard", media_file_id=str(media.pk))]
    edl_replace(project=project, expected_version=saved["version"], data=doc)
    with django_capture_on_commit_callbacks(execute=False):
        response = auth_client.delete(media_url(project, media))
    assert response.status_code == 204, response.json()
    assert not MediaFile.objects.filter(pk=media.pk).exists()


def test_a_deletion_is_refused_when_the_timeline_store_cannot_tell(auth_client, project, make_media, settings):
    from devstack.ports import free_port

    media = make_media(project)
    settings.MONGODB_URI = f"mongodb://127.0.0.1:{free_port()}/auteur"
    store.disconnect()
    try:
        response = auth_client.delete(media_url(project, media))
    finally:
        store.disconnect()
    assert response.status_code == 503 and response.json()["error"]["code"] == "edl_unavailable"
    assert MediaFile.objects.filter(pk=media.pk).exists()


@pytest.mark.django_db(transaction=True)
def test_a_save_waits_for_a_deletion_in_progress_and_then_refuses_the_deleted_file(project, make_media):
    """A deletion holds the file's row FOR UPDATE while it checks the timelines; a save that would
    play the file reads it FOR SHARE, so it waits, then finds it gone: 422, nothing written."""
    media = make_media(project)
    doc = timeline_with(edl_get(project=project), media)
    locked, release, outcome = threading.Event(), threading.Event(), {}

    def deletion() -> None:
        try:
            with transaction.atomic():
                MediaFile.objects.select_for_update().get(pk=media.pk)
                assert edl_projects_using_media(media_id=media.pk) == []  # as media_delete checks
                locked.set()
                release.wait(10)
                MediaFile.objects.filter(pk=media.pk).delete()
        finally:
            connections.close_all()

    def save() -> None:
        try:
            edl_replace(project=project, expected_version=1, data=doc)
            outcome["saved"] = True
        except EdlInvalid as exc:
            outcome["error"] = exc.details["errors"][0]["message"]
        finally:
            connections.close_all()

    deleter = threading.Thread(target=deletion)
    deleter.start()
    assert locked.wait(10)
    saver = threading.Thread(target=save)
    saver.start()
    saver.join(0.5)
    assert saver.is_alive()  # waiting for the deletion's row lock, not past it
    release.set()
    deleter.join(10)
    saver.join(10)
    assert outcome == {"error": "No media file with this id in this project."}
    assert edl_get(project=project)["version"] == 1


def test_the_admin_media_page_names_the_projects_whose_timeline_plays_it(project, make_media, make_user):
    media, unused = make_media(project), make_media(project)
    edl_replace(project=project, expected_version=1, data=timeline_with(edl_get(project=project), media))
    staff = Client()
    staff.force_login(make_user(is_staff=True, is_superuser=True))
    page = staff.get(f"/admin/media/mediafile/{media.pk}/change/").content.decode()
    assert "In use by" in page and escape(f"the timeline of project {project.name!r} ({project.pk}) plays it") in page
    assert "plays it" not in staff.get(f"/admin/media/mediafile/{unused.pk}/change/").content.decode()
    refused = staff.post(f"/admin/media/mediafile/{media.pk}/delete/", {"post": "yes"}, follow=True)
    assert "Not deleted: in use" in refused.content.decode() and MediaFile.objects.filter(pk=media.pk).exists()


# ----------------------------------------------------------------------------- the data migration


def _vintages(project, make_project, make_media, user) -> dict[str, tuple[Any, dict[str, Any]]]:
    """One document of each earlier form, with what GET answered for it when it was saved."""
    made = {}
    for vintage in ("packed", "before packing", "structured"):
        p = project if vintage == "packed" else make_project(user)
        media = make_media(p)
        saved = edl_replace(project=p, expected_version=1, data=timeline_with(edl_get(project=p), media, clips=3))
        key = {"project_id": str(p.pk)}
        raw = store.edl_collection().find_one(key)
        assert raw is not None
        if vintage == "packed":
            store.edl_collection().replace_one(key, legacy_packed(raw))
        elif vintage == "before packing":  # the content as fields, no media_ids
            store.edl_collection().update_one(key, {"$unset": {"media_ids": ""}})
        made[vintage] = (p, saved)
    return made


def _assert_structured(p, saved: dict[str, Any]) -> None:
    raw = store.edl_collection().find_one({"project_id": str(p.pk)})
    assert raw is not None and PACKED not in raw
    assert raw["tracks"] == saved["tracks"] and raw["version"] == saved["version"]
    assert raw["media_ids"] == media_ids_of(saved)
    assert edl_get(project=p) == saved


def test_the_migration_structures_documents_of_every_vintage_and_reads_them_before(
    project, make_project, make_media, user
):
    made = _vintages(project, make_project, make_media, user)
    for p, saved in made.values():
        assert edl_get(project=p) == saved  # read in either form until the migration has run
    assert edl_projects_using_media(media_id=made["packed"][1]["tracks"][0]["clips"][0]["media_file_id"]) == []

    migration = importlib.import_module("projects.migrations.0009_edl_structured")
    migration.structure(None, None)
    for p, saved in made.values():
        _assert_structured(p, saved)
    media_id = made["packed"][1]["tracks"][0]["clips"][0]["media_file_id"]
    assert edl_projects_using_media(media_id=media_id) == [str(project.pk)]
    again = edl_structure_all()  # a second run finds nothing to do
    assert (again.converted, again.batches) == (0, 0)


def test_a_migration_cut_short_carries_on_with_what_is_left(project, make_project, make_media, user):
    made = _vintages(project, make_project, make_media, user)
    first = edl_structure_all(batch=1, max_batches=1)  # the process dies after one batch
    assert (first.converted, first.batches) == (1, 1)
    rest = edl_structure_all(batch=1)
    assert rest.converted == 1  # the other unstructured one; the structured one is never read
    for p, saved in made.values():
        _assert_structured(p, saved)


def test_a_save_between_the_migrations_read_and_write_is_not_lost(project, make_media):
    media = make_media(project)
    saved, key, _raw = saved_then_packed(project, media)
    read_by_migration = store.edl_collection().find_one(key)
    assert read_by_migration is not None
    newer = edl_replace(project=project, expected_version=saved["version"],
                        data=timeline_with(edl_get(project=project), media, clips=5))
    assert structure_one(read_by_migration) is False  # its guarded write matched nothing
    assert edl_get(project=project) == newer
    assert edl_structure_all().converted == 0  # the save wrote it structured already

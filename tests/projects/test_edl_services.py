"""EDL services against the embedded MongoDB-protocol server: round-trips, versions, undo/redo."""

from __future__ import annotations

import json
import multiprocessing
import multiprocessing.queues
import os
import threading
import zlib
from datetime import UTC, datetime
from typing import Any

import bson
import pytest
from mongoengine import ValidationError as MongoValidationError

from projects.edl import store
from projects.edl.documents import CLIENT_FIELDS, EDL
from projects.edl.history import edl_redo, edl_undo
from projects.edl.selectors import edl_get, edl_snapshot
from projects.edl.services import edl_create, edl_delete, edl_replace
from projects.edl.versions import snapshot_unpack
from projects.errors import EdlConflict, EdlUnavailable, NothingToRedo, NothingToUndo
from tests.projects.test_edl_support import (
    clip,
    content,
    editable,
    saved_then_packed,
    timeline_with,
)

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("clean_edl_store")]


def stored(project) -> dict[str, Any] | None:
    """The stored document, as any MongoDB client reads it."""
    return store.edl_collection().find_one({"project_id": str(project.pk)})


def stored_undo(project) -> list[int]:
    doc = stored(project)
    assert doc is not None
    return list(doc["undo_versions"])


def history_versions(project) -> list[int]:
    return sorted(d["version"] for d in store.history_collection().find({"project_id": str(project.pk)}))


# ----------------------------------------------------------------------------- create / get


def test_create_makes_an_empty_video_and_audio_timeline_from_the_project_settings(make_project, user):
    project = make_project(user, resolution="1280x720", frame_rate="25.00")
    doc = edl_create(project=project)
    assert doc["version"] == 1
    assert doc["project_id"] == str(project.pk)
    assert doc["user_id"] == str(user.pk)
    assert doc["settings"] == {"resolution": {"width": 1280, "height": 720}, "frame_rate": 25.0, "duration_ms": 0}
    assert [(t["type"], t["name"], t["clips"]) for t in doc["tracks"]] == [
        ("video", "Video 1", []),
        ("audio", "Audio 1", []),
    ]
    assert doc["transcript"] == {"generated_at": None, "segments": []}
    assert doc["history"] == {"undo": 0, "redo": 0}
    assert doc["id"]
    # What was stored is a valid document by the mongoengine schema itself.
    EDL._from_son(stored(project)).validate()


def test_create_is_idempotent_and_get_creates_a_missing_document(project):
    first = edl_get(project=project)
    again = edl_create(project=project)
    assert again == first
    assert store.edl_collection().count_documents({"project_id": str(project.pk)}) == 1


def test_delete_removes_the_document_and_its_history_and_is_idempotent(project, make_media):
    media = make_media(project)
    doc = edl_get(project=project)
    edl_replace(project=project, expected_version=1, data=timeline_with(doc, media))
    assert history_versions(project) == [1, 2]
    edl_delete(project_id=str(project.pk).upper(), user_id=project.user_id)
    edl_delete(project_id=project.pk, user_id=project.user_id)
    assert stored(project) is None
    assert history_versions(project) == []


def test_snapshot_is_a_json_safe_deep_copy(project, make_media):
    media = make_media(project)
    edl_replace(project=project, expected_version=1, data=timeline_with(edl_get(project=project), media))
    snap = edl_snapshot(project=project)
    assert json.loads(json.dumps(snap)) == snap
    snap["tracks"][0]["clips"].clear()
    assert len(edl_get(project=project)["tracks"][0]["clips"]) == 2
    assert snap["version"] == 2


# ----------------------------------------------------------------------------- round-trips


def save(project, doc):
    return edl_replace(project=project, expected_version=doc["version"], data=doc)


def test_nested_edits_round_trip_exactly_on_the_embedded_server(project, make_media):
    """Each edit is deep inside lists: exactly what partial $set paths would lose on nx-27017."""
    video_media = make_media(project)
    audio_media = make_media(project, type="audio", mime_type="audio/wav", duration_ms=60_000)
    doc = save(project, timeline_with(edl_get(project=project), video_media, clips=3))

    steps = []

    def trim(d):
        c = d["tracks"][0]["clips"][2]
        c.update(in_point_ms=250, out_point_ms=900, duration_ms=650)

    def word(d):
        d["transcript"]["segments"][1]["words"][0]["word"] = "goodbye"
        d["transcript"]["segments"][1]["words"][0]["confidence"] = 0.5

    def segment_deleted(d):
        d["transcript"]["segments"][0]["deleted"] = True
        d["transcript"]["segments"][0]["edited_text"] = "hi"

    def add_clip_and_track(d):
        audio: dict[str, Any] = {"id": "a2", "type": "audio", "name": "Music", "clips": []}
        audio["clips"].append(clip(audio_media, audio, start=500, inp=1000, out=31_000, id="music"))
        audio["clips"][0]["effects"] = [{"type": "fade_in", "duration_ms": 200, "target": "audio"},
                                        {"type": "volume", "gain_db": -6.5}]
        d["tracks"].append(audio)

    def remove_clip_and_track(d):
        del d["tracks"][0]["clips"][0]
        del d["tracks"][1]

    def soft_delete_clip(d):
        d["tracks"][0]["clips"][0]["deleted"] = True

    for edit in (trim, word, segment_deleted, add_clip_and_track, remove_clip_and_track, soft_delete_clip):
        sent = editable(doc)
        edit(sent)
        doc = save(project, sent)
        read = edl_get(project=project)
        assert read == doc
        expected = content(sent)
        expected["settings"]["duration_ms"] = read["settings"]["duration_ms"]
        assert content(read) == expected, edit.__name__
        EDL._from_son(stored(project)).validate()
        steps.append(read["version"])
    assert steps == [3, 4, 5, 6, 7, 8]

    final = edl_get(project=project)
    assert [t["id"] for t in final["tracks"]] == [final["tracks"][0]["id"], "a2"]
    assert final["tracks"][1]["clips"][0]["effects"] == [
        {"type": "fade_in", "duration_ms": 200, "target": "audio"}, {"type": "volume", "gain_db": -6.5}
    ]
    assert final["transcript"]["segments"][1]["words"][0] == {
        "word": "goodbye", "start_ms": 1000, "end_ms": 1500, "confidence": 0.5, "deleted": False,
    }
    assert final["transcript"]["segments"][0]["deleted"] is True
    assert final["transcript"]["generated_at"] == "2026-01-31T12:00:00.000Z"


def test_duration_is_computed_from_the_last_non_deleted_clip(project, make_media):
    media = make_media(project)
    doc = timeline_with(edl_get(project=project), media, clips=3)  # clips end at 1, 2, 3 s
    doc["settings"]["duration_ms"] = 999_999
    doc["tracks"][0]["clips"][2]["deleted"] = True
    assert save(project, doc)["settings"]["duration_ms"] == 2000


def test_omitted_defaults_are_filled(project, make_media):
    media = make_media(project)
    doc = edl_get(project=project)
    sent = editable(doc)
    video = sent["tracks"][0]
    c = clip(media, video, id="c")
    for key in ("track_id", "effects", "deleted"):
        del c[key]
    video["clips"] = [c]
    saved = save(project, sent)
    assert saved["tracks"][0]["clips"][0] == {**c, "track_id": video["id"], "effects": [], "deleted": False}


# ----------------------------------------------------------------------------- versions


def test_second_writer_from_a_stale_version_gets_a_conflict_and_nothing_is_written(project, make_media):
    media = make_media(project)
    base = edl_get(project=project)
    first, second = timeline_with(base, media, clips=1), timeline_with(base, media, clips=2)
    assert save(project, first)["version"] == 2
    before = stored(project)
    with pytest.raises(EdlConflict) as exc:
        save(project, second)
    assert exc.value.details == {"current_version": 2}
    assert stored(project) == before
    assert len(edl_get(project=project)["tracks"][0]["clips"]) == 1


def test_a_future_version_is_a_conflict_too(project):
    doc = edl_get(project=project)
    with pytest.raises(EdlConflict):
        edl_replace(project=project, expected_version=7, data=doc)
    assert edl_get(project=project)["version"] == 1


def test_concurrent_writers_of_one_version_exactly_one_wins(project):
    """Eight saves over v1 at once, each renaming the video track: one lands, seven get 409."""
    base = edl_get(project=project)
    barrier = threading.Barrier(8)
    outcomes: list[str | int | None] = [None] * 8

    def write(i: int) -> None:
        doc = editable(base)
        doc["tracks"][0]["name"] = f"writer {i}"
        barrier.wait()
        try:
            outcomes[i] = edl_replace(project=project, expected_version=1, data=doc)["tracks"][0]["name"]
        except EdlConflict as exc:
            outcomes[i] = exc.details["current_version"]

    threads = [threading.Thread(target=write, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    winners = [o for o in outcomes if isinstance(o, str)]
    assert len(winners) == 1, outcomes
    assert sorted(o for o in outcomes if isinstance(o, int)) == [2] * 7, outcomes
    final = edl_get(project=project)
    assert (final["version"], final["tracks"][0]["name"]) == (2, winners[0])
    assert history_versions(project) == [1, 2]
    assert content(edl_undo(project=project)) == content(base)


def _read_in_forked_child(project_id: str, out: multiprocessing.queues.Queue) -> None:
    try:
        doc = store.edl_collection().find_one({"project_id": project_id}, {"version": 1})
        assert doc is not None
        out.put((doc["version"], store._connected_pid == os.getpid()))
    except BaseException as exc:
        out.put(repr(exc))


def test_a_forked_child_opens_its_own_connection(project):
    edl_get(project=project)  # the parent is connected
    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    child = ctx.Process(target=_read_in_forked_child, args=(str(project.pk), out))
    child.start()
    result = out.get(timeout=30)
    child.join(30)
    assert result == (1, True)
    assert edl_get(project=project)["version"] == 1  # and the parent's connection still works


# ----------------------------------------------------------------------------- undo / redo


def saved_versions(project, media, count: int) -> list[dict]:
    """Save `count` versions after v1, each with one more clip; returns [v1, v2, ...]."""
    docs = [edl_get(project=project)]
    for n in range(1, count + 1):
        docs.append(save(project, timeline_with(docs[-1], media, clips=n)))
    return docs


def test_undo_and_redo_each_write_a_new_version_with_the_older_or_newer_content(project, make_media):
    v1, v2, v3 = saved_versions(project, make_media(project), 2)
    v4 = edl_undo(project=project)
    assert v4["version"] == 4
    assert content(v4) == content(v2)
    assert v4["history"] == {"undo": 1, "redo": 1}
    v5 = edl_redo(project=project)
    assert v5["version"] == 5
    assert content(v5) == content(v3)
    assert edl_get(project=project) == v5

    assert content(edl_undo(project=project)) == content(v2)
    assert content(edl_undo(project=project)) == content(v1)
    before = stored(project)
    with pytest.raises(NothingToUndo):
        edl_undo(project=project)
    assert stored(project) == before
    assert content(edl_redo(project=project)) == content(v2)
    assert content(edl_redo(project=project)) == content(v3)
    with pytest.raises(NothingToRedo):
        edl_redo(project=project)


def test_a_save_after_undo_clears_the_redo_side(project, make_media):
    media = make_media(project)
    _, v2, _ = saved_versions(project, media, 2)
    v4 = edl_undo(project=project)
    v5 = save(project, timeline_with(v4, media, clips=5))
    assert v5["history"] == {"undo": 2, "redo": 0}
    with pytest.raises(NothingToRedo):
        edl_redo(project=project)
    assert content(edl_undo(project=project)) == content(v2)


def test_nothing_to_undo_on_a_new_timeline(project):
    with pytest.raises(NothingToUndo):
        edl_undo(project=project)
    with pytest.raises(NothingToRedo):
        edl_redo(project=project)
    assert edl_get(project=project)["version"] == 1


def test_history_is_bounded_to_the_last_n_versions(project, make_media, settings):
    settings.AUTEUR_EDL_HISTORY = 3
    docs = saved_versions(project, make_media(project), 6)  # v1..v7
    assert history_versions(project) == [4, 5, 6, 7]  # the 3 undo can return to, and the current one
    assert [content(edl_undo(project=project)) for _ in range(3)] == [content(d) for d in (docs[5], docs[4], docs[3])]
    with pytest.raises(NothingToUndo):
        edl_undo(project=project)
    assert len(history_versions(project)) <= 4
    assert [content(edl_redo(project=project)) for _ in range(3)] == [content(d) for d in (docs[4], docs[5], docs[6])]
    with pytest.raises(NothingToRedo):
        edl_redo(project=project)
    assert len(history_versions(project)) <= 4


def test_a_save_whose_snapshot_fails_ends_only_after_its_pruning(project, make_media, settings, monkeypatch):
    """The snapshot and the pruning are written side by side: a failed snapshot (the store gone) is
    the save's 503 only once the pruning, slower here, has ended too; nothing is pruned that the
    stored stacks still name."""
    import time

    from pymongo.collection import Collection
    from pymongo.errors import AutoReconnect

    from projects.edl import versions

    settings.AUTEUR_EDL_HISTORY = 2
    media = make_media(project)
    docs = saved_versions(project, media, 3)  # v1..v4: the next save drops a snapshot
    ended: list[float] = []
    delete_many = Collection.delete_many

    def slow_delete_many(self, *args, **kwargs):
        time.sleep(0.3)
        result = delete_many(self, *args, **kwargs)
        ended.append(time.monotonic())
        return result

    def snapshot_lost(*args, **kwargs):
        raise AutoReconnect("the store went away")

    monkeypatch.setattr(Collection, "delete_many", slow_delete_many)
    monkeypatch.setattr(versions, "snapshot_put", snapshot_lost)
    with pytest.raises(EdlUnavailable):
        edl_replace(project=project, expected_version=4, data=timeline_with(docs[-1], media, clips=4))
    assert ended and ended[0] <= time.monotonic()  # the pruning had ended when the save did
    doc = stored(project)
    assert doc is not None and doc["version"] == 5
    assert set(history_versions(project)) >= set(stored_undo(project))


def test_undo_with_a_stale_expected_version_is_a_conflict(project, make_media):
    saved_versions(project, make_media(project), 2)
    with pytest.raises(EdlConflict):
        edl_undo(project=project, expected_version=2)
    assert edl_undo(project=project, expected_version=3)["version"] == 4


def test_undo_steps_over_a_lost_snapshot(project, make_media):
    _, v2, _ = saved_versions(project, make_media(project), 3)[:3]
    store.history_collection().delete_one({"project_id": str(project.pk), "version": 3})  # a crash lost it
    assert content(edl_undo(project=project)) == content(v2)


def test_undo_restores_a_transcript_exactly(project, make_media):
    media = make_media(project)
    v1 = edl_get(project=project)
    v2 = save(project, timeline_with(v1, media))
    edited = editable(v2)
    edited["transcript"]["segments"][0]["words"][1]["word"] = "there"
    save(project, edited)
    assert edl_undo(project=project)["transcript"] == v2["transcript"]


def test_snapshots_are_stored_compressed_and_restore_exactly(project, make_media):
    _, v2, _ = saved_versions(project, make_media(project), 2)
    stored_v2 = store.history_collection().find_one({"project_id": str(project.pk), "version": 2})
    assert stored_v2 is not None
    assert set(stored_v2) == {"_id", "project_id", "user_id", "version", "settings", "content_z", "created_at"}
    # Packed: far smaller than its JSON.
    assert len(stored_v2["content_z"]) < len(json.dumps(content(v2))) / 2
    assert content(edl_undo(project=project)) == content(v2)


def snapshot_pack(content: dict[str, Any]) -> bson.Binary:
    """A snapshot's content as the store kept it before it shared the live document's packing."""
    return bson.Binary(zlib.compress(bson.encode({name: content[name] for name in CLIENT_FIELDS}), 1))


@pytest.mark.parametrize("form", ["snapshot_z", "snapshot"], ids=["compressed-bson", "plain"])
def test_a_snapshot_stored_in_an_earlier_form_is_still_restored(project, make_media, form):
    _, v2, _ = saved_versions(project, make_media(project), 2)
    history = store.history_collection()
    key = {"project_id": str(project.pk), "version": 2}
    old = history.find_one(key)
    assert old is not None
    history.delete_one(key)
    held = snapshot_unpack(old)  # the stored content, as such a snapshot held it
    history.insert_one({**{k: old[k] for k in ("project_id", "user_id", "version", "created_at")},
                        form: snapshot_pack(held) if form == "snapshot_z" else held})
    assert content(edl_undo(project=project)) == content(v2)


def test_a_snapshot_left_at_the_same_version_is_replaced_by_the_new_one(project, make_media):
    """A crash between deleting a project's EDL and its history leaves snapshots behind; the
    next timeline of that project id writes its own over them, and undo finds its own."""
    media = make_media(project)
    v1 = edl_get(project=project)
    stale = {"project_id": str(project.pk), "user_id": str(project.user_id), "version": 2,
             "snapshot": {"settings": {}, "tracks": [], "transcript": {}}, "created_at": datetime.now(UTC)}
    store.history_collection().insert_one(stale)
    v2 = save(project, timeline_with(v1, media, clips=2))
    save(project, timeline_with(v2, media, clips=3))
    assert history_versions(project) == [1, 2, 3]
    assert content(edl_undo(project=project)) == content(v2)


# ----------------------------------------------------------------------------- remembered head


@pytest.fixture
def head_reads(monkeypatch):
    """Counts the reads of the stored head that saves make."""
    from projects.edl import services, versions

    calls: list[int] = []
    real = versions.head_get

    def counted(*, project):
        calls.append(1)
        return real(project=project)

    monkeypatch.setattr(services, "head_get", counted)
    return calls


def test_a_save_over_the_version_just_saved_reads_no_stored_head(project, make_media, head_reads):
    media = make_media(project)
    doc = save(project, timeline_with(edl_get(project=project), media, clips=1))
    assert len(head_reads) == 1  # version 1 was written by the first read, not by a save
    previous = doc
    for n in range(2, 4):
        previous, doc = doc, save(project, timeline_with(doc, media, clips=n))
    assert len(head_reads) == 1
    assert doc["version"] == 4 and doc["history"] == {"undo": 3, "redo": 0}
    assert stored_undo(project) == [1, 2, 3]
    assert content(edl_undo(project=project)) == content(previous)


def test_a_remembered_head_of_a_replaced_document_is_retried_on_the_stored_one(project, make_media, head_reads):
    """The EDL deleted and written again up to the same version: same number, another document."""
    from django.core.cache import cache

    from projects.edl.store import owned_by
    from projects.edl.versions import _head_key

    media = make_media(project)
    doc = save(project, timeline_with(edl_get(project=project), media, clips=1))
    remembered = cache.get(_head_key(owned_by(project)))
    store.edl_collection().delete_many({"project_id": str(project.pk)})  # behind the service's back
    store.history_collection().delete_many({"project_id": str(project.pk)})
    again = save(project, timeline_with(edl_get(project=project), media, clips=2))
    assert again["version"] == doc["version"] == 2 and again["id"] != doc["id"]
    cache.set(_head_key(owned_by(project)), remembered)  # the old document's version 2
    reads = len(head_reads)
    third = save(project, timeline_with(again, media, clips=3))
    assert len(head_reads) == reads + 1  # the guarded replace missed, the stored head was read
    assert third["version"] == 3 and third["id"] == again["id"]
    assert stored_undo(project) == [1, 2]
    assert content(edl_undo(project=project)) == content(again)


def test_a_stale_remembered_head_never_writes_a_wrong_version(project, make_media, head_reads):
    """The cache says version 2 while the store is at 3 (a late write of the cache, say)."""
    from django.core.cache import cache

    from projects.edl.store import owned_by
    from projects.edl.versions import _head_key

    media = make_media(project)
    v2 = save(project, timeline_with(edl_get(project=project), media, clips=1))
    remembered = cache.get(_head_key(owned_by(project)))
    v3 = save(project, timeline_with(v2, media, clips=2))
    cache.set(_head_key(owned_by(project)), remembered)
    before, reads = stored(project), len(head_reads)
    with pytest.raises(EdlConflict) as exc:
        save(project, timeline_with(v2, media, clips=5))  # over version 2, as the cache has it
    assert exc.value.details == {"current_version": 3}
    assert len(head_reads) == reads + 1  # the miss was checked against the stored head
    assert stored(project) == before
    saved = save(project, timeline_with(v3, media, clips=4))  # over 3: the cache's 2 is not used
    assert saved["version"] == 4 and stored_undo(project) == [1, 2, 3]


def test_an_invalid_save_over_a_stale_version_is_a_conflict_first(project, make_media):
    from projects.errors import EdlInvalid

    media = make_media(project)
    v2 = save(project, timeline_with(edl_get(project=project), media, clips=1))
    save(project, timeline_with(v2, media, clips=2))
    from django.core.cache import cache

    from projects.edl.store import owned_by
    from projects.edl.versions import _head_key

    raw = stored(project)
    assert raw is not None
    # The head of version 2, as a late write to the cache would leave it.
    cache.set(_head_key(owned_by(project)), {"id": raw["_id"], "version": 2, "created_at": raw["created_at"],
                                             "undo": [1], "redo": []})
    broken = timeline_with(v2, media, clips=1)
    broken["tracks"][0]["clips"][0]["duration_ms"] = -5
    with pytest.raises(EdlConflict):
        save(project, broken)
    with pytest.raises(EdlInvalid):  # over the current version it is what it is: invalid
        edl_replace(project=project, expected_version=3, data=broken)


def test_saves_go_on_when_the_cache_fails(project, make_media, monkeypatch, head_reads):
    from django.core.cache import cache
    from redis.exceptions import ConnectionError as RedisConnectionError

    def down(*args, **kwargs):
        raise RedisConnectionError("Redis is down")

    monkeypatch.setattr(cache, "get", down)
    monkeypatch.setattr(cache, "set", down)
    media = make_media(project)
    doc = edl_get(project=project)
    for n in range(1, 4):
        doc = save(project, timeline_with(doc, media, clips=n))
    assert doc["version"] == 4 and len(head_reads) == 3
    monkeypatch.setattr(cache, "delete", down)
    edl_delete(project_id=project.pk, user_id=project.user_id)
    assert stored(project) is None


# ----------------------------------------------------------------------------- store down


@pytest.fixture
def unreachable_store(settings):
    from devstack.ports import free_port

    settings.MONGODB_URI = f"mongodb://127.0.0.1:{free_port()}/auteur"
    store.disconnect()
    yield
    store.disconnect()


def test_an_unreachable_store_is_a_503(project, unreachable_store):
    with pytest.raises(EdlUnavailable):
        edl_get(project=project)


def test_schema_and_service_agree_on_a_written_document(project, make_media):
    """The service checks against the mongoengine schema; mongoengine itself accepts the result."""
    media = make_media(project)
    save(project, timeline_with(edl_get(project=project), media, clips=4))
    raw = stored(project)
    assert raw is not None
    EDL._from_son(raw).validate()
    raw["tracks"][0]["clips"][0]["start_ms"] = -1
    with pytest.raises(MongoValidationError):
        EDL._from_son(raw).validate()


def test_the_content_is_stored_as_subdocuments_and_reads_back_as_it_was_saved(project, make_media):
    """Tracks, clips, segments and words are plain subdocuments of the stored document, with the
    media the timeline plays beside them; what a GET answers is what was saved (the transcript's
    time as a date, to the millisecond)."""
    media = make_media(project)
    data = timeline_with(edl_get(project=project), media, clips=200)
    data["tracks"][0]["clips"][0]["deleted"] = True
    saved = edl_replace(project=project, expected_version=1, data=data)
    raw = store.edl_collection().find_one({"project_id": str(project.pk)})
    assert raw is not None and "content_z" not in raw
    assert raw["tracks"] == saved["tracks"] and raw["settings"] == saved["settings"]
    assert raw["transcript"]["generated_at"] == datetime(2026, 1, 31, 12, 0, tzinfo=UTC)
    assert raw["transcript"]["segments"] == saved["transcript"]["segments"]
    assert raw["media_ids"] == [str(media.pk)]
    assert edl_get(project=project) == saved
    assert saved["transcript"]["generated_at"] == "2026-01-31T12:00:00.000Z"
    assert len(saved["tracks"][0]["clips"]) == 200


def test_a_document_stored_packed_is_read_and_stored_structured_by_its_next_save(project, make_media):
    media = make_media(project)
    saved, key, _before = saved_then_packed(project, media)
    assert "tracks" not in (store.edl_collection().find_one(key) or {})
    assert edl_get(project=project) == saved
    again = edl_replace(project=project, expected_version=saved["version"],
                        data=timeline_with(edl_get(project=project), media, clips=3))
    raw = store.edl_collection().find_one(key)
    assert raw is not None and "content_z" not in raw and len(raw["tracks"][0]["clips"]) == 3
    assert raw["media_ids"] == [str(media.pk)]
    assert edl_get(project=project) == again


def test_a_document_stored_before_media_ids_reads_and_gets_them_by_its_next_save(project, make_media):
    media = make_media(project)
    saved = edl_replace(project=project, expected_version=1, data=timeline_with(edl_get(project=project), media))
    key = {"project_id": str(project.pk)}
    store.edl_collection().update_one(key, {"$unset": {"media_ids": ""}})
    assert "media_ids" not in (store.edl_collection().find_one(key) or {})
    assert edl_get(project=project) == saved
    edl_replace(project=project, expected_version=saved["version"], data=editable(saved))
    assert (store.edl_collection().find_one(key) or {})["media_ids"] == [str(media.pk)]

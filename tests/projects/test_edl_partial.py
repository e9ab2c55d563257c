"""Partial writes of an EDL version ($set of the changed parts): the stored document they give is the
one a whole replace gives. Applied here to the old document by MongoDB's rules for every kind of
change; run on the embedded server, which applies them as MongoDB does (its wrapper,
devstack/nx_server.py)."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import bson
import pytest

from projects.edl import partial, store, versions
from projects.edl.documents import stored_form
from projects.edl.partial import MAX_PATHS, content_digest, numeric_paths_applied
from projects.edl.selectors import edl_get
from projects.edl.services import edl_replace
from projects.edl.versions import Head, version_update
from projects.errors import EdlUnavailable
from tests.projects.test_edl_support import editable, segment, timeline_with

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("clean_edl_store")]


def apply_set(doc: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """``update`` ({"$set": {path: value}}) applied as MongoDB applies it: a numeric part of a
    path indexes an array, the value replaces what is there (a new field goes last)."""
    assert set(update) == {"$set"}
    result = copy.deepcopy(doc)
    for path, value in update["$set"].items():
        *parents, last = path.split(".")
        target: Any = result
        for part in parents:
            target = target[int(part)] if isinstance(target, list) else target[part]
        if isinstance(target, list):
            target[int(last)] = copy.deepcopy(value)
        else:
            target[last] = copy.deepcopy(value)
    return result


def _content(clips: int = 40, segments: int = 6) -> dict[str, Any]:
    tracks = [{"id": f"t{t}", "type": "video" if t < 2 else "audio", "name": f"T{t}", "clips": [
        {"id": f"c{t}-{n}", "media_file_id": f"00000000-0000-4000-8000-{n % 7:012d}", "track_id": f"t{t}",
         "start_ms": n * 2000, "duration_ms": 1500, "in_point_ms": 500, "out_point_ms": 2000, "effects": [],
         "deleted": False} for n in range(clips // 4)]} for t in range(4)]
    segs = [segment(s * 1000, s * 1000 + 900, id=f"s{s}") for s in range(segments)]
    return {"settings": {"resolution": {"width": 1920, "height": 1080}, "frame_rate": 30.0, "duration_ms": 0},
            "tracks": tracks,
            "transcript": {"generated_at": datetime(2026, 1, 31, tzinfo=UTC), "segments": segs, "pauses": []}}


def _stored(content: dict[str, Any], version: int) -> dict[str, Any]:
    return stored_form({"_id": "doc", "project_id": "p", "user_id": "u", "version": version,
                        "created_at": datetime(2026, 1, 1, tzinfo=UTC),
                        "updated_at": datetime(2026, 1, version, tzinfo=UTC), **copy.deepcopy(content),
                        "undo_versions": list(range(1, version)), "redo_versions": []})


def _head(old: dict[str, Any]) -> Head:
    return Head(id="doc", version=1, created_at=datetime(2026, 1, 1, tzinfo=UTC), undo=[], redo=[], remembered=True,
                digest=content_digest(old))


def _change(name: str, doc: dict[str, Any]) -> None:
    tracks, transcript = doc["tracks"], doc["transcript"]
    if name == "one clip moved":
        tracks[1]["clips"][3]["start_ms"] += 100
    elif name == "two clips on two tracks":
        tracks[0]["clips"][0]["deleted"] = True
        tracks[3]["clips"][9]["effects"] = [{"type": "fade_in", "duration_ms": 200}]
    elif name == "a clip added":
        tracks[2]["clips"].append({**tracks[2]["clips"][-1], "id": "new", "start_ms": 99_000})
    elif name == "a track renamed":
        tracks[0]["name"] = "Picture"
    elif name == "a track added":
        tracks.append({"id": "t9", "type": "audio", "name": "Music", "clips": []})
    elif name == "a word corrected":
        transcript["segments"][2]["words"][0]["word"] = "hallo"
    elif name == "a segment added":
        transcript["segments"].append(segment(9000, 9500, id="s-new"))
    elif name == "transcribed again":
        transcript["generated_at"] = datetime(2026, 2, 1, tzinfo=UTC)
    elif name == "frame rate":
        doc["settings"]["frame_rate"] = 25.0
    elif name == "nothing":
        pass
    else:
        raise AssertionError(name)


CHANGES = ["one clip moved", "two clips on two tracks", "a clip added", "a track renamed", "a track added",
           "a word corrected", "a segment added", "transcribed again", "frame rate", "nothing"]


def _versions_and_set(change: str) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """The stored version 1, version 2 after ``change``, and the $set that turns one into the other."""
    old_content = _content()
    new_content = copy.deepcopy(old_content)
    _change(change, new_content)
    old, new = _stored(old_content, 1), _stored(new_content, 2)
    update = version_update(_head(old_content), content_digest(new_content), new)
    assert update is not None
    return old, new, update


@pytest.mark.parametrize("change", CHANGES)
def test_the_set_applied_to_the_old_version_gives_the_new_one(change):
    old, new, update = _versions_and_set(change)
    assert apply_set(old, update) == new
    assert list(apply_set(old, update)) == list(new)  # the same fields in the same order
    if change in ("one clip moved", "a word corrected"):
        assert [p for p in update["$set"] if "." in p] == (
            ["tracks.1.clips.3"] if change == "one clip moved" else ["transcript.segments.2"])


@pytest.mark.parametrize("change", CHANGES)
def test_the_set_run_on_the_embedded_server_stores_the_new_version(change):
    """The same $sets, sent to the embedded server with plain pymongo: what it stores is the new
    version, field for field and in order (dates as dates)."""
    old, new, update = _versions_and_set(change)
    scratch = store.edl_collection().database["edl_partial_check"]
    scratch.delete_many({})
    scratch.insert_one(old)
    assert scratch.update_one({"_id": "doc", "version": 1}, update).modified_count == 1
    stored = scratch.find_one({"_id": "doc"})
    scratch.delete_many({})
    assert stored == new
    assert stored is not None and list(stored) == list(new)


def test_an_autosave_of_a_2000_clip_timeline_sends_kilobytes():
    old_content = _content(clips=2000, segments=300)
    new_content = copy.deepcopy(old_content)
    _change("one clip moved", new_content)
    new = _stored(new_content, 2)
    update = version_update(_head(old_content), content_digest(new_content), new)
    assert update is not None
    assert len(bson.encode(update)) < 2_000 < len(bson.encode(new)) // 100


def test_a_save_that_changes_most_clips_replaces_the_document():
    old_content = _content(clips=4 * (MAX_PATHS + 1))
    new_content = copy.deepcopy(old_content)
    for track in new_content["tracks"]:
        for c in track["clips"]:
            c["start_ms"] += 1
    assert version_update(_head(old_content), content_digest(new_content), _stored(new_content, 2)) is None


def test_without_a_digest_of_the_stored_version_the_document_is_replaced():
    content = _content()
    head = Head(id="doc", version=1, created_at=datetime(2026, 1, 1, tzinfo=UTC), undo=[], redo=[])
    assert version_update(head, content_digest(content), _stored(content, 2)) is None
    assert version_update(_head(content), None, _stored(content, 2)) is None


# ----------------------------------------------------------------------------- on the embedded server


def test_the_embedded_server_applies_partial_writes_and_an_autosave_sets_only_the_changed_clip(
        project, make_media, monkeypatch):
    """The probe finds numeric-index paths applied and dates kept dates on the embedded server (its
    wrapper applies `$set` by MongoDB's rules), leaving nothing behind; an autosave then sends a $set
    of the one clip it changed, and the stored document is the old one with that $set applied."""
    store.disconnect()
    database = store.edl_collection().database
    assert numeric_paths_applied(database) is True
    assert database[partial.PROBE_COLLECTION].count_documents({}) == 0
    media = make_media(project)
    first = edl_replace(project=project, expected_version=1, data=timeline_with(edl_get(project=project), media))
    head = versions.head_remembered(project=project)
    assert head is not None and head.digest is not None
    key = {"project_id": str(project.pk)}
    old = store.edl_collection().find_one(key)
    assert old is not None
    sent: list[dict[str, Any] | None] = []

    def recorded(*args: Any) -> dict[str, Any] | None:
        sent.append(versions_update(*args))
        return sent[-1]

    versions_update = versions.version_update
    monkeypatch.setattr(versions, "version_update", recorded)
    doc = editable(first)
    doc["tracks"][0]["clips"][0]["deleted"] = True
    saved = edl_replace(project=project, expected_version=first["version"], data=doc)
    [update] = sent
    assert update is not None
    assert [path for path in update["$set"] if "." in path] == ["tracks.0.clips.0"]
    stored = store.edl_collection().find_one(key)
    assert stored == apply_set(old, update)
    assert saved == edl_get(project=project) and saved["tracks"] == doc["tracks"]


def test_the_top_level_paths_the_embedded_server_applies_give_the_replaced_content(project, make_media):
    """The content paths a partial write sends when a track or segment is added (whole `tracks`,
    `transcript`, `settings`), run on the embedded server: the same content as a replace stores."""
    media = make_media(project)
    first = edl_replace(project=project, expected_version=1, data=timeline_with(edl_get(project=project), media))
    key = {"project_id": str(project.pk)}
    old = store.edl_collection().find_one(key)
    assert old is not None
    doc = editable(first)
    doc["tracks"].append({"id": "music", "type": "audio", "name": "Music", "clips": []})
    doc["settings"]["frame_rate"] = 25.0
    doc["transcript"]["segments"].append(segment(5000, 6000, id="s-new"))
    doc["transcript"]["generated_at"] = datetime(2026, 2, 1, tzinfo=UTC)  # a date in a $set stays a date
    new = stored_form({**old, **{k: doc[k] for k in ("settings", "tracks", "transcript")}})
    paths = partial.content_set(content_digest(old), content_digest(new), new)
    assert paths is not None and sorted(paths) == ["settings", "tracks", "transcript"]
    store.edl_collection().update_one({"_id": old["_id"], "version": old["version"]}, {"$set": paths})
    assert store.edl_collection().find_one(key) == apply_set(old, {"$set": paths})


def test_an_unreachable_store_at_the_first_save_is_a_503_and_the_next_save_asks_again(project, settings):
    from devstack.ports import free_port

    real = settings.MONGODB_URI
    settings.MONGODB_URI = f"mongodb://127.0.0.1:{free_port()}/auteur"
    store.disconnect()
    try:
        with pytest.raises(EdlUnavailable):
            edl_get(project=project)
        with pytest.raises(EdlUnavailable), store.store_errors():
            numeric_paths_applied(store.edl_collection().database)
        assert partial._probed == {}  # nothing concluded from a server out of reach
    finally:
        settings.MONGODB_URI = real
        store.disconnect()
    assert numeric_paths_applied(store.edl_collection().database) is True  # asked, and answered


def test_values_digested_together_digest_as_each_alone():
    values = [{"id": "a\nb", "text": "é\u2028\"", "n": [1, 2.5, None]}, {"id": "c", "effects": []}, "x\n", 0]
    assert partial._digests(values) == tuple(partial._digest(v) for v in values)
    assert len(set(partial._digests(values))) == len(values)
    assert partial._digests([]) == ()

"""The embedded MongoDB-protocol server's cheaper value walks give what nx-27017's own give, and it applies
`$set` by MongoDB's rules."""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import msgspec
import pytest
from bson import ObjectId as BsonObjectId
from bson.int64 import Int64
from neosqlite.collection.json_helpers import NeoSQLiteJSONEncoder, neosqlite_json_loads
from neosqlite.objectid import ObjectId as NeoObjectId
from pymongo import MongoClient, UpdateOne
from pymongo.collection import Collection
from pymongo.errors import WriteError

from devstack import nx_server


class Tagged(dict):  # a dict subclass: the original walks it into a plain dict
    pass


def _value(rng: random.Random, depth: int, neo: bool) -> Any:
    leaves = [lambda: rng.choice(["", "a", "id", "é\u2028"]), lambda: rng.randint(-3, 3), lambda: rng.random(),
              lambda: rng.choice([True, False]), lambda: None, lambda: datetime(2026, 1, 1, tzinfo=UTC),
              lambda: Int64(rng.randint(0, 2)), lambda: Decimal("1.10"), lambda: b"\x00\x01",
              lambda: NeoObjectId() if neo else BsonObjectId()]
    if depth <= 0 or rng.random() < 0.4:
        return rng.choice(leaves)()
    if rng.random() < 0.5:
        return [_value(rng, depth - 1, neo) for _ in range(rng.randint(0, 4))]
    doc = {rng.choice(["id", "x", "_id", "clips"]) + str(i % 2 if i else ""): _value(rng, depth - 1, neo)
           for i in range(rng.randint(0, 4))}
    if rng.random() < 0.3:
        doc["id"] = rng.choice([0, False, 0.0, 1, "0", Int64(0)])
    return Tagged(doc) if rng.random() < 0.1 else doc


def _same(a: Any, b: Any) -> bool:
    """Equal, and of the same types all the way down (an Int64 is not an int here)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, (BsonObjectId, NeoObjectId)):
        return a.binary == b.binary
    return bool(a == b)


def test_the_walks_give_what_the_originals_give_on_random_documents():
    rng = random.Random(7)
    for _ in range(2000):
        doc = {"_id": BsonObjectId(), "body": _value(rng, 5, neo=False)}
        assert _same(nx_server.bson_to_neo(doc), nx_server._original_in(doc))
        assert _same(nx_server.bson_to_neo(doc["body"]), nx_server._original_in(doc["body"]))
        without = {"body": _value(rng, 5, neo=True)}  # no BSON ObjectId: often nothing to convert
        assert _same(nx_server.bson_to_neo(without), nx_server._original_in(without))
        out = {"_id": NeoObjectId(), "body": _value(rng, 5, neo=True)}
        assert _same(nx_server.neo_to_bson(out), nx_server._original_out(out))
    for top in ([BsonObjectId(), 1], BsonObjectId(), "x", None, Tagged(a=[BsonObjectId()])):
        assert _same(nx_server.bson_to_neo(top), nx_server._original_in(top))


def test_a_document_with_nothing_to_convert_is_given_back_as_it_is_and_one_with_something_is_walked():
    plain = {"tracks": [{"clips": [{"n": 1, "at": datetime(2026, 1, 1, tzinfo=UTC), "big": Int64(2)}]}], "x": None}
    assert nx_server.bson_to_neo(plain) is plain
    for nested in (BsonObjectId(), Tagged(a=1), [1]):
        doc = {"tracks": [{"clips": [{"n": 1, "v": [nested]}]}]}
        assert nx_server.nothing_to_convert(doc) is (type(nested) is list)
    found = {"tracks": [{"clips": [{"media": BsonObjectId()}]}]}
    converted = nx_server.bson_to_neo(found)
    assert type(converted["tracks"][0]["clips"][0]["media"]) is NeoObjectId


def test_the_comparison_tells_a_walk_that_differs():
    """The check above can fail: a walk that left ObjectIds as they were is caught."""
    doc = {"_id": BsonObjectId(), "clips": [{"media": BsonObjectId()}]}
    assert not _same({**doc}, nx_server._original_in(doc))


# ----------------------------------------------------------------------------- the stored JSON


def _neo_text(doc: Any) -> str:
    return json.dumps(doc, cls=NeoSQLiteJSONEncoder, check_circular=False)


def _same_read(a: str, b: str) -> bool:
    """The two texts read back alike (NaN equal to NaN), types included."""
    def canonical(text: str) -> Any:
        return neosqlite_json_loads(text.replace("NaN", '"nan"'))  # a string NaN never occurs below
    return _same(canonical(a), canonical(b))


def _stored_json_or_error(doc: Any) -> str | type[Exception]:
    try:
        return nx_server.stored_json(doc)
    except (TypeError, ValueError) as exc:
        return type(exc)


def _neo_text_or_error(doc: Any) -> str | type[Exception]:
    try:
        return _neo_text(doc)
    except (TypeError, ValueError) as exc:
        return type(exc)


def test_the_stored_json_reads_back_as_neosqlites_own_on_random_documents():
    rng = random.Random(11)
    extra = [float("nan"), float("inf"), -float("inf"), {1, 2}, b"", "G\x7f\U0001f600", (1, "a"), 10**30]
    fast = 0
    for _ in range(3000):
        doc = {"_id": NeoObjectId(), "at": datetime(2026, 1, 1, tzinfo=UTC), "body": _value(rng, 5, neo=True)}
        if rng.random() < 0.2:
            doc["odd"] = [rng.choice(extra)]
        ours, theirs = _stored_json_or_error(doc), _neo_text_or_error(doc)
        if isinstance(theirs, str):
            assert isinstance(ours, str) and _same_read(ours, theirs), (doc, ours, theirs)
            fast += ", " not in ours and ": " not in ours  # msgspec's compact text
        else:
            assert ours is theirs, (doc, ours, theirs)  # refused alike
    assert fast > 300  # the msgspec way is taken, not only the JSON module's


def test_a_timeline_is_written_by_msgspec_and_any_value_msgspec_would_write_otherwise_is_not():
    clip = {"id": "c1", "start_ms": 0, "effects": [{"type": "fade_in", "duration_ms": 100}], "gain": 0.5}
    when = datetime(2026, 1, 1, tzinfo=UTC)
    timeline = {"_id": NeoObjectId(), "version": 3, "updated_at": when, "tracks": [{"id": "v0", "clips": [clip]}],
                "transcript": {"generated_at": when, "segments": [{"text": "é \u2028"}]}}
    text = nx_server.stored_json(timeline)
    date = {"$date": "2026-01-01T00:00:00+00:00"}
    assert text == msgspec.json.encode({**timeline, "_id": timeline["_id"].encode_for_storage(), "updated_at": date,
                                        "transcript": {**timeline["transcript"], "generated_at": date}}).decode()
    assert _same_read(text, _neo_text(timeline))
    # Dates and ObjectIds anywhere are swapped for what neosqlite stores; the values msgspec would
    # write otherwise (NaN as null, an Int64 the JSON module writes as an int too but the probe
    # cannot tell from a subclass it would not) send the document to the JSON module.
    for swapped in (when, NeoObjectId()):
        doc = {**timeline, "tracks": [{"id": "v0", "clips": [{**clip, "odd": [swapped]}]}]}
        text = nx_server.stored_json(doc)
        assert ", " not in text and _same_read(text, _neo_text(doc))
    for odd in (float("nan"), float("inf"), -float("inf"), Int64(2)):
        for where in ([{**clip, "odd": odd}], [{**clip, "odd": [odd]}]):
            doc = {**timeline, "tracks": [{"id": "v0", "clips": where}]}
            assert nx_server.stored_json(doc) == _neo_text(doc), odd
    refused: Any
    for refused in (b"\x00", {1}, frozenset(), Decimal("1.10")):
        with pytest.raises(TypeError):
            nx_server.stored_json({**timeline, "odd": [refused]})


def test_what_msgspec_cannot_write_and_a_dict_subclass_go_to_the_json_module():
    from collections import OrderedDict

    for doc in ({"a": {None: 1}}, {"a": [{True: 1}]}, {"a": "\ud800"}, OrderedDict(x=1, y=[2])):
        assert nx_server.stored_json(doc) == _neo_text(doc)


def test_a_document_with_dates_in_more_places_than_the_probes_allow_goes_to_the_json_module():
    clips = [{"id": i, "at": datetime(2026, 1, 1, tzinfo=UTC)} for i in range(nx_server.PROBES + 1)]
    many = {"tracks": [{"clips": clips}]}
    assert nx_server.stored_json(many) == _neo_text(many)
    few = {"tracks": [{"clips": clips[: nx_server.PROBES - 4]}]}
    text = nx_server.stored_json(few)
    assert ", " not in text and _same_read(text, _neo_text(few))


def test_a_replaced_timeline_reads_back_whole_with_its_dates(scratch):
    when = datetime(2026, 5, 1, 12, 0, 0, 123000, tzinfo=UTC)
    scratch.insert_one({"_id": "t", "v": 1})
    doc = {"updated_at": when, "name": "ü \u2028", "tracks": [{"clips": [{"n": i, "gain": 0.25} for i in range(50)]}]}
    assert scratch.replace_one({"_id": "t"}, doc).modified_count == 1
    assert scratch.find_one({"_id": "t"}) == {"_id": "t", **doc}
    assert scratch.find_one({"name": "ü \u2028"}, {"_id": 1}) == {"_id": "t"}  # SQLite reads the UTF-8 text


# ----------------------------------------------------------------------------- $set by MongoDB's rules, on the server
# Plain pymongo against the embedded server the tests run on (started through devstack/nx_server.py).


@pytest.fixture
def scratch() -> Iterator[Collection[dict[str, Any]]]:
    from django.conf import settings

    client: MongoClient[dict[str, Any]] = MongoClient(settings.MONGODB_URI, tz_aware=True,
                                                       uuidRepresentation="standard")
    collection = client.get_database()[f"nx_set_{uuid.uuid4().hex}"]
    try:
        yield collection
    finally:
        collection.drop()
        client.close()


def _after(collection: Collection[dict[str, Any]], doc: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    collection.insert_one(doc)
    result = collection.update_one({"_id": doc["_id"]}, update)
    assert (result.matched_count, result.modified_count) == (1, 1)
    found = collection.find_one({"_id": doc["_id"]})
    assert found is not None
    return found


AT = datetime(2026, 3, 4, 5, 6, 7, 8000, tzinfo=UTC)


def test_a_numeric_path_sets_one_subdocument_of_an_array_and_keeps_its_date_a_date(scratch):
    doc = {"_id": "t", "version": 1, "tracks": [{"id": "v", "clips": [{"n": 0}, {"n": 1, "e": [1, 2]}, {"n": 2}]},
                                                {"id": "a", "clips": []}]}
    found = _after(scratch, doc, {"$set": {"tracks.0.clips.1": {"n": 9, "at": AT}, "tracks.0.clips.2.n": 7,
                                           "tracks.1.id": "music", "version": 2, "updated_at": AT}})
    assert found == {"_id": "t", "version": 2, "updated_at": AT, "tracks": [
        {"id": "v", "clips": [{"n": 0}, {"n": 9, "at": AT}, {"n": 7}]}, {"id": "music", "clips": []}]}
    assert list(found) == ["_id", "version", "tracks", "updated_at"]  # a new field goes last
    assert isinstance(found["updated_at"], datetime) and isinstance(found["tracks"][0]["clips"][1]["at"], datetime)
    assert scratch.find_one({"updated_at": AT}, {"_id": 1}) == {"_id": "t"}  # found by the date it holds


@pytest.mark.parametrize("count", [nx_server.SQL_SET_PATHS, nx_server.SQL_SET_PATHS + 1, 200])
def test_a_set_of_more_paths_than_one_sql_function_call_takes_is_applied_whole(scratch, count):
    doc = {"_id": f"many-{count}", "clips": [{"n": i, "at": AT} for i in range(count)]}
    found = _after(scratch, doc, {"$set": {f"clips.{i}": {"n": -i, "at": AT} for i in range(count)}})
    assert found == {"_id": f"many-{count}", "clips": [{"n": -i, "at": AT} for i in range(count)]}


def test_an_index_past_the_end_pads_the_array_with_nulls(scratch):
    found = _after(scratch, {"_id": "p", "items": [1], "rows": []}, {"$set": {"items.3": "x", "rows.1.n": 1}})
    assert found == {"_id": "p", "items": [1, None, None, "x"], "rows": [None, {"n": 1}]}


def test_missing_fields_become_embedded_documents_and_a_number_names_an_objects_field(scratch):
    found = _after(scratch, {"_id": "m", "settings": {"fps": 30}},
                   {"$set": {"a.b.c": 1, "m.0": "zero", "settings.0": True, "settings.fps": 25}})
    assert found == {"_id": "m", "settings": {"fps": 25, "0": True}, "a": {"b": {"c": 1}}, "m": {"0": "zero"}}


def test_new_fields_are_added_in_mongodbs_order_not_the_order_sent(scratch):
    found = _after(scratch, {"_id": "o", "z": 0, "list": [{}]},
                   {"$set": {"b": 1, "a": 1, "list.0.y": 1, "list.0.x": 1}})
    assert list(found) == ["_id", "z", "list", "a", "b"] and list(found["list"][0]) == ["x", "y"]


@pytest.mark.parametrize(("update", "code"), [
    ({"$set": {"version.n": 1}}, 28),  # through a number
    ({"$set": {"tracks.name": "x"}}, 28),  # a name into an array
    ({"$set": {"tracks.0.clips.0.n.deep": 1}}, 28),  # through a number inside an array element
    ({"$set": {"tracks.0": {}, "tracks.0.clips": []}}, 40),  # one path a prefix of another
    ({"$set": {"tracks.0.clips.5000000": 1}}, 2),  # padding beyond MongoDB's bound
    ({"$set": {"tracks.0.clips.99999999999999999999999": 1}}, 2),  # and far beyond what SQLite binds
])
def test_a_set_mongodb_refuses_is_a_write_error_and_changes_nothing(scratch, update, code):
    doc = {"_id": "r", "version": 1, "tracks": [{"clips": [{"n": 1}]}]}
    scratch.insert_one(doc)
    with pytest.raises(WriteError) as refused:
        scratch.update_one({"_id": "r"}, update)
    assert refused.value.code == code
    assert scratch.find_one({"_id": "r"}) == doc


def test_a_set_of_what_is_stored_modifies_nothing_and_a_guard_that_misses_writes_nothing(scratch):
    doc = {"_id": "g", "version": 3, "tracks": [{"clips": [{"n": 1, "at": AT}]}]}
    scratch.insert_one(doc)
    same = scratch.update_one({"_id": "g"}, {"$set": {"tracks.0.clips.0": {"n": 1, "at": AT}, "version": 3}})
    assert (same.matched_count, same.modified_count) == (1, 0)
    missed = scratch.update_one({"_id": "g", "version": 2}, {"$set": {"tracks.0.clips.0.n": 5, "version": 3}})
    assert (missed.matched_count, missed.modified_count) == (0, 0)
    assert scratch.find_one({"_id": "g"}) == doc
    # A field that is not there, set to null: a change (it is added), though both read as null.
    added = scratch.update_one({"_id": "g"}, {"$set": {"tracks.0.clips.0.gone": None, "version": 3}})
    assert (added.matched_count, added.modified_count) == (1, 1)
    assert scratch.find_one({"_id": "g"}) == {**doc, "tracks": [{"clips": [{"n": 1, "at": AT, "gone": None}]}]}
    single = scratch.update_one({"_id": "g"}, {"$set": {"version": 3}})
    assert (single.matched_count, single.modified_count) == (1, 0)


def test_a_set_in_a_bulk_write_follows_the_same_rules(scratch):
    scratch.insert_many([{"_id": 1, "a": [{"n": 0}]}, {"_id": 2, "a": []}])
    scratch.bulk_write([UpdateOne({"_id": 1}, {"$set": {"a.0.n": 5}}), UpdateOne({"_id": 2}, {"$set": {"a.1": AT}})])
    assert list(scratch.find({}, sort=[("_id", 1)])) == [{"_id": 1, "a": [{"n": 5}]}, {"_id": 2, "a": [None, AT]}]


def test_other_operators_keep_the_servers_own_handling(scratch):
    scratch.insert_one({"_id": "i", "n": 1, "tags": ["a"]})
    scratch.update_one({"_id": "i"}, {"$inc": {"n": 2}, "$push": {"tags": "b"}})
    assert scratch.find_one({"_id": "i"}) == {"_id": "i", "n": 3, "tags": ["a", "b"]}


def test_a_replace_without_an_id_keeps_the_stored_one(scratch):
    inserted = scratch.insert_one({"v": 1, "clips": [{"n": 1}]}).inserted_id
    assert scratch.replace_one({"_id": inserted}, {"v": 2, "clips": [], "at": AT}).modified_count == 1
    assert scratch.find_one({"v": 2}) == {"_id": inserted, "v": 2, "clips": [], "at": AT}
    assert scratch.replace_one({"_id": inserted, "v": 1}, {"v": 9}).matched_count == 0  # a guard that misses
    assert scratch.find_one_and_replace({"v": 2}, {"v": 3}) == {"_id": inserted, "v": 2, "clips": [], "at": AT}
    assert list(scratch.find({})) == [{"_id": inserted, "v": 3}]
    upserted = scratch.replace_one({"v": 7}, {"v": 8}, upsert=True).upserted_id
    assert upserted is not None and scratch.find_one({"_id": upserted}) == {"_id": upserted, "v": 8}


def test_a_delete_many_sql_cannot_translate_deletes_exactly_the_matching_documents(scratch):
    """The EDL history's pruning: {$lt, $nin} on a version, within one project (read field by field)."""
    docs: list[dict[str, Any]] = [
        {"_id": i, "project_id": "p" if i < 8 else "q", "version": i, "a": {"b": i % 3}, "content_z": "x" * 1000}
        for i in range(1, 11)]
    docs += [{"_id": 20, "project_id": "p"}, {"_id": 21, "project_id": "p", "version": None}]
    scratch.insert_many(docs)
    gone = scratch.delete_many({"project_id": "p", "version": {"$lt": 7, "$nin": [2, 4]}})
    assert gone.deleted_count == 4
    assert sorted(d["_id"] for d in scratch.find({}, {"_id": 1})) == [2, 4, 7, 8, 9, 10, 20, 21]
    assert scratch.delete_many({"a.b": {"$nin": [0, 1, 2]}, "project_id": "q"}).deleted_count == 0
    assert scratch.delete_many({"a.b": {"$nin": [0, 1]}, "project_id": "q"}).deleted_count == 1  # 8: a.b is 2
    assert scratch.delete_many({"version": {"$nin": [2, 4, 7, 9, 10]}}).deleted_count == 2  # no version, null
    assert sorted(d["_id"] for d in scratch.find({}, {"_id": 1})) == [2, 4, 7, 9, 10]
    assert scratch.delete_many({"project_id": "z", "version": {"$nin": [1]}}).deleted_count == 0


# ----------------------------------------------------------------------------- WAL checkpoints


@pytest.fixture
def wal_files(monkeypatch: pytest.MonkeyPatch) -> set[str]:
    """The server's connection setup, in this process, with a registry of its own."""
    from neosqlite.connection import Connection

    files: set[str] = set()
    monkeypatch.setattr(nx_server, "_wal_files", files)
    monkeypatch.setattr(Connection, "_configure_connection", nx_server._configure_connection)
    return files


def test_a_database_file_leaves_its_checkpoints_to_the_checkpointer_which_copies_the_whole_log(wal_files, tmp_path):
    from neosqlite.connection import Connection

    path = tmp_path / "edl.db"
    conn = Connection(str(path))
    try:
        assert conn.db.execute("PRAGMA wal_autocheckpoint").fetchone() == (0,)
        assert wal_files == {str(path)}
        docs = conn["timelines"]
        # 6 MiB, past the 4 MiB at which a commit would have checkpointed on its own.
        docs.insert_many([{"n": i, "pad": "x" * 200_000} for i in range(30)])
        wal = tmp_path / "edl.db-wal"
        assert wal.stat().st_size > 4 * 1024 * 1024  # nothing copied by a commit

        busy, log, copied = nx_server.checkpoint_all()[str(path)]
        assert (busy, copied) == (0, log) and log > 1000

        logs = []
        for round_ in range(4):
            for i in range(30):
                docs.update_one({"n": i}, {"$set": {"pad": str(round_) * 200_000}})
            busy, log, copied = nx_server.checkpoint_all()[str(path)]
            assert (busy, copied) == (0, log)
            logs.append(log)
        # The log starts over after a full checkpoint (from the second round on here: the first
        # write after the inserts still read from the log) rather than growing with every save.
        assert logs[2] == logs[3] <= logs[1] < 2 * logs[0]
        assert docs.count_documents({"pad": "3" * 200_000}) == 30
    finally:
        conn.close()


def test_a_database_in_memory_is_not_registered_and_a_file_gone_is_forgotten_not_created(wal_files, tmp_path):
    from neosqlite.connection import Connection

    memory = Connection(":memory:")
    memory.close()
    assert wal_files == set()
    gone = tmp_path / "dropped.db"
    wal_files.add(str(gone))
    assert nx_server.checkpoint_all() == {}
    assert wal_files == set() and not gone.exists()

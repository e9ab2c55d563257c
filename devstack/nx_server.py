"""The embedded MongoDB-protocol server (nx-27017), with its two per-value walks made cheaper and
``$set`` applied by MongoDB's path rules.

    python -I devstack/nx_server.py --data-dir DIR --host H -p PORT ...   (nx-27017's own arguments)

nx-27017 walks every value of every document it receives and sends, in Python, to swap BSON's
ObjectId type and its own (nx_27017.utils); a 2,000-clip timeline is about 38,000 values. The walks
here give the same results (tests/devstack/test_nx_server.py compares them with the originals on
random documents) but step over plain values (strings, numbers, booleans, None, dates) without a
call each, and hand anything else to the original functions: the server's CPU for a replace or a
find of that timeline falls by about a fifth (1.5 s -> 1.24 s for an insert, 30 replaces and 20
finds). A received document with nothing to swap (no ObjectId, no dict or list subclass: a timeline, a
history snapshot), which a pickler probing it at C speed tells, is not walked at all. What is stored
is unchanged. Run by path with ``python -I``: its own folder, whose module
names could shadow others, is then not on sys.path.

``$set``: nx-27017 (through neosqlite) takes a numeric part of a path into an array as an object key,
so ``tracks.2.clips.17`` changes nothing, and stores a date it is sent in a ``$set`` as text. An
update made of a ``$set`` alone (update_one, and the update ops of a bulk write) is applied here
instead, as MongoDB applies it: a numeric part indexes an array (an index past the end pads the
array with nulls), a missing field is created as an embedded document, a path through a value that
is neither is refused (code 28), two paths of which one is a prefix of the other are refused (code
40), fields are applied in MongoDB's order (names lexicographically, array indexes numerically),
and values are stored as a replace stores them (a date stays a date). When every path leads to a
field that exists, through objects and through array elements that exist, the change is one SQL
``json_set`` of the stored JSON (no read of the document into Python); otherwise the document is
read, changed in Python and written back. Other update operators, paths with ``$`` or through
``_id``, and findAndModify keep nx-27017's own behaviour.

Replace: nx-27017 reads the whole stored document into Python only to keep its ``_id`` when the
replacement has none; here only the ``_id`` is read, by the statement that finds the row. The JSON
text stored is written by msgspec rather than the json module (about nine times faster), once the
values neosqlite stores as objects of its own (dates, ObjectIds, binaries) are swapped for them;
a document holding anything msgspec would write otherwise (NaN, bytes, subclasses) goes the json
module's way. Parsed, both texts are the same document (tests/devstack/test_nx_server.py).
delete_many with a filter neosqlite cannot translate to SQL (``$nin``) reads only the fields the
filter names, not each candidate whole.

WAL checkpoints: SQLite copies its write-ahead log into the database file (and syncs both) inside
whichever commit takes the log past 1,000 pages, about every sixth save of a 650 KiB timeline,
which then waits for it. Here each database file's connections do no automatic checkpoint and a
thread checkpoints every file once a second (passively: no writer or reader waits for it).
"""

from __future__ import annotations

import gc
import io
import json
import logging
import math
import os
import pickle
import re
import threading
import time
import urllib.parse
from datetime import datetime
from typing import Any, NamedTuple

import msgspec
from bson import ObjectId as BsonObjectId
from bson.int64 import Int64
from neosqlite._sqlite import sqlite3
from neosqlite.binary import Binary
from neosqlite.collection import Collection
from neosqlite.collection.json_helpers import (
    NeoSQLiteJSONEncoder,
    neosqlite_json_dumps_for_sql,
    neosqlite_json_loads,
)
from neosqlite.collection.query_engine.crud_operations import CRUDOperationsMixin as EngineCrud
from neosqlite.collection.query_helper.crud_operations import CRUDOperationsMixin as HelperCrud
from neosqlite.collection.type_utils import validate_session
from neosqlite.connection import Connection
from neosqlite.objectid import ObjectId as NeoObjectId
from neosqlite.results import DeleteResult, UpdateResult
from neosqlite.sql_utils import quote_table_name
from nx_27017 import handler, utils, wire_protocol

# Exactly these types (not subclasses: an Int64 or a dict subclass goes the original's way).
_PLAIN = frozenset({str, int, float, bool, type(None), datetime})

_original_in = utils.convert_bson_to_neo_objectids
_original_out = utils.convert_neo_to_bson_objectids


class _Convertible(Exception):
    pass


class _Sink:
    @staticmethod
    def write(data: bytes) -> int:
        return len(data)


class _ConvertibleProbe(pickle.Pickler):
    """Pickles into nothing and stops at the first value the walk below would change: a BSON
    ObjectId, or a dict or list of a subclass. Exact dicts, lists, strings, numbers, booleans and
    None never reach ``reducer_override``; everything else does, as it is met, at C speed."""

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, (BsonObjectId, dict, list)):
            raise _Convertible
        return NotImplemented


def nothing_to_convert(doc: dict[str, Any]) -> bool:
    """Whether the walk would give a copy of ``doc`` equal to it in value and type throughout
    (no BSON ObjectId, no dict or list subclass): a quarter of the walk's time on a timeline."""
    probe = _ConvertibleProbe(_Sink(), protocol=pickle.HIGHEST_PROTOCOL)
    probe.fast = True  # no memo: the document is a tree
    try:
        probe.dump(doc)
    except Exception:  # noqa: BLE001 - _Convertible, or anything pickle cannot write: the walk decides
        return False
    return True


def bson_to_neo(doc: Any) -> Any:
    """As nx_27017.utils.convert_bson_to_neo_objectids, but a document with nothing to convert (a
    timeline, a history snapshot) is given back as it is rather than copied: each caller passes a
    document just decoded from the wire and keeps only what this returns."""
    kind = type(doc)
    if kind is dict and nothing_to_convert(doc):
        return doc
    return _walk_in(doc)


def _walk_in(doc: Any) -> Any:
    kind = type(doc)
    if kind is dict:
        return {k: v if type(v) in _PLAIN else _walk_in(v) for k, v in doc.items()}
    if kind is list:
        return [v if type(v) in _PLAIN else _walk_in(v) for v in doc]
    return _original_in(doc)


def _out_value(value: Any) -> Any:
    kind = type(value)
    if kind is dict:
        return neo_to_bson(value)
    if kind is list:
        return [v if type(v) in _PLAIN else _out_value(v) for v in value]
    return _original_out([value])[0]  # the original's rule for one value in a list


def neo_to_bson(doc: Any) -> Any:
    """As nx_27017.utils.convert_neo_to_bson_objectids (an "id" equal to 0 becomes an Int64)."""
    kind = type(doc)
    if kind is dict:
        result = {}
        for key, value in doc.items():
            if key == "id" and value == 0:
                result[key] = Int64(0)
            elif type(value) in _PLAIN:
                result[key] = value
            else:
                result[key] = _out_value(value)
        return result
    if kind is list:
        return [v if type(v) in _PLAIN else _out_value(v) for v in doc]
    return _original_out(doc)


# ----------------------------------------------------------------------------- the stored JSON

# The values neosqlite's encoder stores as objects of its own ({"$date": ...} and the like).
_STORED_AS_OBJECTS = frozenset({datetime, NeoObjectId, Binary})
_NEO_ENCODER = NeoSQLiteJSONEncoder()
_JSON_ENCODER = msgspec.json.Encoder()
# In a protocol-2 pickle a float is BINFLOAT: "G" and its 8 bytes big-endian, whose first 12 bits
# are all ones for an infinity or a NaN. A string holding the same bytes matches too: then the
# document merely takes the JSON module's way.
_NOT_FINITE = re.compile(rb"G[\x7f\xff][\xf0-\xff]")


class _PlainJsonProbe(pickle.Pickler):
    """Stops at the first value that is not an exact dict, list, tuple, str, int, float, bool or
    None: those never reach ``reducer_override``, and at protocol 2 neither does anything else go
    past it (bytes, sets and frozensets are written as calls of a function or a type, which do)."""

    def reducer_override(self, obj: Any) -> Any:
        raise _Convertible


def _plain_json(value: Any) -> bool:
    """Whether msgspec's JSON of ``value`` reads back as the JSON module's does: nothing but exact
    JSON types and finite floats (msgspec writes NaN and the infinities as null, bytes as base64
    and sets as arrays, where the JSON module writes NaN and refuses the others)."""
    out = io.BytesIO()
    probe = _PlainJsonProbe(out, protocol=2)
    probe.fast = True  # no memo: the document is a tree
    try:
        probe.dump(value)
    except Exception:  # noqa: BLE001 - _Convertible, or anything pickle cannot write
        return False
    return _NOT_FINITE.search(out.getbuffer()) is None


def stored_json(doc: dict[str, Any]) -> str:
    """The JSON text neosqlite stores for ``doc``: what ``json.dumps(doc, cls=NeoSQLiteJSONEncoder)``
    gives, in value (parsed, the same document throughout; the text is compact and UTF-8, where the
    JSON module's has spaces and escapes). Written by msgspec, about nine times faster on a
    2,000-clip timeline, once the values neosqlite stores as objects (dates, ObjectIds, binaries)
    are swapped for those objects; by the JSON module when anything else would read back otherwise
    from msgspec's text, or when finding the values to swap takes more than PROBES probes."""
    plain = _swapped(doc, [PROBES]) if type(doc) is dict else _NOT_PLAIN
    if plain is not _NOT_PLAIN:
        try:
            return _JSON_ENCODER.encode(plain).decode()
        except (TypeError, UnicodeEncodeError):  # a key msgspec does not write (None, a bool), a lone surrogate
            pass
    return json.dumps(doc, cls=NeoSQLiteJSONEncoder, check_circular=False)


# Each probe reads a subtree at C speed; a document with values to swap in many places (a date in
# every clip) costs this many probes at most before it is handed to the JSON module.
PROBES = 64
_NOT_PLAIN = object()
_JSON_LEAVES = frozenset({str, int, bool, type(None)})


def _swapped(container: dict[str, Any] | list[Any], probes: list[int]) -> Any:
    """``container`` with each value neosqlite stores as an object swapped for it, copying only the
    containers on the way to one; _NOT_PLAIN when msgspec's text of it would read back otherwise
    (or the probes ran out). Each subtree is probed whole first and only entered when it fails."""
    items = container.items() if type(container) is dict else enumerate(container)
    out: dict[Any, Any] = {}
    for key, value in items:
        kind = type(value)
        if kind in _JSON_LEAVES or (kind is float and math.isfinite(value)):
            out[key] = value
        elif kind in _STORED_AS_OBJECTS:
            out[key] = _NEO_ENCODER.default(value)
        elif kind is dict or kind is list:
            probes[0] -= 1
            if probes[0] < 0:
                return _NOT_PLAIN
            inner = value if _plain_json(value) else _swapped(value, probes)
            if inner is _NOT_PLAIN:
                return _NOT_PLAIN
            out[key] = inner
        else:
            return _NOT_PLAIN
    return out if type(container) is dict else list(out.values())


# ----------------------------------------------------------------------------- $set by MongoDB's rules

# A field name the SQL path may hold quoted; any other goes the Python way.
_PLAIN_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
# MongoDB refuses to pad an array by more than this many nulls.
MAX_PADDING = 1_500_000


class UpdatePathError(Exception):
    """A ``$set`` MongoDB refuses, with its error code (answered as a write error)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def _index(part: str) -> int | None:
    """The array index a path part names, or None (MongoDB takes only plain decimal digits)."""
    return int(part) if part.isdecimal() and part.isascii() else None


def _canonical(part: str) -> int | None:
    """The index ``part`` names when written without a leading zero (MongoDB's array index)."""
    index = _index(part)
    return index if index is not None and str(index) == part else None


def _order(path: str) -> tuple[tuple[int, int, str], ...]:
    return tuple((0, index, "") if (index := _index(p)) is not None else (1, 0, p) for p in path.split("."))


def set_fields(update: Any) -> dict[str, Any] | None:
    """The fields of an update that is one ``$set`` applied here, in the order MongoDB applies
    them; None when nx-27017's own handling keeps it (another operator, ``$`` or ``_id`` in a path,
    a number with a leading zero, or no field). Raises UpdatePathError for conflicting paths."""
    if type(update) is not dict or list(update) != ["$set"] or type(update["$set"]) is not dict:
        return None
    fields: dict[str, Any] = update["$set"]
    if not fields:
        return None
    for path in fields:
        parts = path.split(".") if type(path) is str else [""]
        if parts[0] == "_id" or any(not p or "$" in p or _index(p) not in (None, _canonical(p)) for p in parts):
            return None
    for path in fields:
        head = ""
        for part in path.split(".")[:-1]:
            head = f"{head}.{part}" if head else part
            if head in fields:
                raise UpdatePathError(40, f"Updating the path '{path}' would create a conflict at '{head}'")
    return {path: fields[path] for path in sorted(fields, key=_order)}


def _element(value: Any) -> str:
    kind = "array" if isinstance(value, list) else type(value).__name__
    return f"{{{kind}}}"


def apply_set(doc: dict[str, Any], fields: dict[str, Any]) -> None:
    """``fields`` set in ``doc`` by MongoDB's rules (see the module's docstring)."""
    for path, value in fields.items():
        parts = path.split(".")
        target: Any = doc
        for depth, part in enumerate(parts):
            last = depth == len(parts) - 1
            if isinstance(target, dict):
                if last:
                    target[part] = value
                elif part not in target:
                    target[part] = target = {}
                else:
                    target = target[part]
                continue
            index = _index(part)
            if not isinstance(target, list) or index is None:
                where = ".".join(parts[:depth]) or "the document"
                raise UpdatePathError(28, f"Cannot create field '{part}' in element {where} {_element(target)}")
            if index >= len(target):
                if index - len(target) > MAX_PADDING:
                    raise UpdatePathError(2, f"can't backfill more than {MAX_PADDING} elements")
                target.extend([None] * (index + 1 - len(target)))
                if not last:
                    target[index] = {}
            if last:
                target[index] = value
            else:
                target = target[index]


# The SQL condition under which a container on a path is what MongoDB's path walks through: an
# array holding the element the next part names (json_array_length is 0 for anything else, NULL
# for nothing), or an object.
_HOLDS_ELEMENT = "json_array_length(data, ?) > ?"
_IS_OBJECT = "json_type(data, ?) = 'object'"


class _SqlPath(NamedTuple):
    path: str  # SQLite's JSON path
    conditions: dict[tuple[str, int], str]  # (container's path, index or -1) -> its condition
    in_object: bool  # the last part names an object's field (which may not exist yet)


def _sql_path(path: str) -> _SqlPath | None:
    """The SQLite JSON path of ``path``, with the conditions under which it names what MongoDB's
    path names: each part an existing object's field or an existing array element (the stored
    document itself is always an object). None when a name needs the Python way."""
    sql = "$"
    conditions: dict[tuple[str, int], str] = {}
    in_object = True
    for part in path.split("."):
        index = _index(part)
        if index is not None and index >= MAX_PADDING:  # past what SQLite binds; refused in Python
            return None
        if index is not None:
            conditions[(sql, index)] = _HOLDS_ELEMENT
            sql += f"[{index}]"
            in_object = False
        elif _PLAIN_NAME.fullmatch(part):
            if sql != "$":
                conditions[(sql, -1)] = _IS_OBJECT
            sql += f'."{part}"'
            in_object = True
        else:
            return None
    return _SqlPath(sql, conditions, in_object)


def _sql(table: str, statement: str, where: str = "WHERE id = ?") -> str:
    """``statement`` on ``table`` (quoted by neosqlite) with ``where`` (neosqlite's translation of
    a filter, or the row's id): every value is a parameter."""
    return statement.format(table=table, where=where)


# The most paths one json_set, json_extract or json_array call takes here: SQLite caps a function's
# arguments (127 unless built otherwise) and json_set takes two a path. A $set of more is applied
# in Python, which has no such cap.
SQL_SET_PATHS = 60


def _set_in_sql(collection: Collection, table: str, row_id: int, fields: dict[str, str]) -> bool | None:
    """``fields`` (path: its value as JSON) set in row ``row_id`` with one ``json_set``: whether
    anything changed, or None (nothing written) when a path does not lead to an existing field
    through existing objects and array elements.

    SQLite parses the stored JSON again for each JSON function over it beyond the few it keeps
    parsed per statement, so the checks are few: each container once, and the values already
    there read by one multi-path json_extract."""
    if len(fields) > SQL_SET_PATHS:
        return None
    planned: list[tuple[_SqlPath, str]] = []
    for path, value in fields.items():
        sql_path = _sql_path(path)
        if sql_path is None:
            return None
        planned.append((sql_path, value))
    conditions: dict[tuple[str, int], str] = {}
    for sql_path, _ in planned:
        conditions.update(sql_path.conditions)
    reachable = " AND ".join(conditions.values()) or "1"
    args: list[Any] = [arg for (at, index), condition in conditions.items()
                       for arg in ((at, index) if condition == _HOLDS_ELEMENT else (at,))]
    marks = ", ".join("?" for _ in planned)
    stored = f"json_extract(data, {marks})" if len(planned) > 1 else "json_array(data -> ?)"
    sent = "json_array(" + ", ".join("json(?)" for _ in planned) + ")"
    args += [sql_path.path for sql_path, _ in planned] + [value for _, value in planned]
    select = f"SELECT {reachable}, {stored} IS {sent} FROM {{table}} {{where}}"  # noqa: S608 - values as parameters
    ok, same = collection.db.execute(_sql(table, select), [*args, row_id]).fetchone()
    if not ok:
        return None
    if same:
        # A field that does not exist reads as null there too: the same only if every one exists.
        fresh = [sql_path.path for sql_path, _ in planned if sql_path.in_object]
        exists = " AND ".join("json_type(data, ?) IS NOT NULL" for _ in fresh) or "1"
        if collection.db.execute(_sql(table, f"SELECT {exists} FROM {{table}} {{where}}"),  # noqa: S608
                                 [*fresh, row_id]).fetchone()[0]:
            return False
    setters = ", ".join("?, json(?)" for _ in planned)
    update = f"UPDATE {{table}} SET data = json_set(data, {setters}) {{where}}"  # noqa: S608 - as above
    collection.db.execute(_sql(table, update), [*(arg for sql_path, value in planned for arg in (sql_path.path, value)),
                                                row_id])
    return True


def _set_in_python(collection: Collection, table: str, row_id: int, fields: dict[str, str]) -> bool:
    """``fields`` set in row ``row_id`` by reading the document, changing it and writing it back:
    whether anything changed. Raises UpdatePathError (nothing written) for a path MongoDB refuses."""
    stored_id, data = collection.db.execute(_sql(table, "SELECT _id, data FROM {table} {where}"),
                                            (row_id,)).fetchone()
    doc = collection._load_with_stored_id(row_id, data, stored_id)
    before = neosqlite_json_dumps_for_sql(doc)
    apply_set(doc, {path: neosqlite_json_loads(value) for path, value in fields.items()})
    after = neosqlite_json_dumps_for_sql(doc)
    if after == before:
        return False
    collection.db.execute(_sql(table, "UPDATE {table} SET data = ? {where}"), (after, row_id))
    return True


def _update_one(
    self: Collection, filter: dict[str, Any], update: dict[str, Any], upsert: bool = False,
    array_filters: list[dict[str, Any]] | None = None, session: Any = None,
) -> UpdateResult:
    """As neosqlite's, with a ``$set`` alone applied by MongoDB's rules (see the module's docstring)."""
    def own() -> UpdateResult:
        return _original_update_one(self, filter, update, upsert=upsert, array_filters=array_filters, session=session)

    fields = None if array_filters or self.name.endswith(("_files", "_chunks")) else set_fields(update)
    if fields is None:
        return own()
    try:
        encoded = {path: neosqlite_json_dumps_for_sql(value) for path, value in fields.items()}
    except (TypeError, ValueError):  # a value neosqlite cannot store as JSON: its own handling
        return own()
    engine = self.query_engine
    where, params = engine.sql_translator.translate_match(engine.helpers._normalize_id_query(filter))
    if not where:
        return own()
    table = quote_table_name(self.name)
    row = self.db.execute(_sql(table, "SELECT id FROM {table} {where} LIMIT 1", where), params).fetchone()
    if row is None:
        return own() if upsert else UpdateResult(matched_count=0, modified_count=0, upserted_id=None)
    changed = _set_in_sql(self, table, row[0], encoded)
    if changed is None:  # a path that creates fields or pads an array, a name SQL cannot hold, or too many paths
        changed = _set_in_python(self, table, row[0], encoded)
    return UpdateResult(matched_count=1, modified_count=int(changed), upserted_id=None)


def _write_replacement(collection: Collection, table: str, row_id: int, replacement: dict[str, Any],
                       id_json: str | None, stored_id: Any) -> None:
    """Row ``row_id`` replaced by ``replacement``, which keeps the stored ``_id`` (``id_json``: its
    JSON in the stored document; else the ``_id`` column's) when it has none, as neosqlite's
    replace does, and stored as neosqlite stores it (stored_json)."""
    doc = dict(replacement)
    if "_id" not in doc:
        if id_json is not None:
            doc["_id"] = neosqlite_json_loads(id_json)
        elif stored_id is not None:
            doc["_id"] = collection._parse_stored_id(stored_id)
    collection.db.execute(_sql(table, "UPDATE {table} SET data = ? {where}"), (stored_json(doc), row_id))


def _internal_replace(self: HelperCrud, doc_id: Any, replacement: dict[str, Any]) -> None:
    """As neosqlite's, reading only the stored ``_id``, not the whole document."""
    int_doc_id = self._get_integer_id_for_oid(doc_id)
    table = quote_table_name(self.collection.name)
    row = self.collection.db.execute(_sql(table, "SELECT data -> '$._id', _id FROM {table} {where}"),
                                     (int_doc_id,)).fetchone()
    _write_replacement(self.collection, table, int_doc_id, replacement, *(row or (None, None)))


def _replace_one(self: EngineCrud, filter: dict[str, Any], replacement: dict[str, Any], upsert: bool = False,
                 session: Any = None) -> UpdateResult:
    """As neosqlite's, with the matched row and its ``_id`` found by one statement (SQLite reads the
    stored JSON once for the filter and the ``_id``)."""
    validate_session(session, self.collection._database)
    where, params = self.sql_translator.translate_match(self.helpers._normalize_id_query(filter))
    if not where:
        return _original_replace_one(self, filter, replacement, upsert=upsert, session=session)
    table = quote_table_name(self.collection.name)
    row = self.collection.db.execute(
        _sql(table, "SELECT id, data -> '$._id', _id FROM {table} {where} LIMIT 1", where), params).fetchone()
    if row is None:
        if upsert:
            return _original_replace_one(self, filter, replacement, upsert=True, session=session)
        return UpdateResult(matched_count=0, modified_count=0, upserted_id=None)
    _write_replacement(self.collection, table, row[0], replacement, row[1], row[2])
    return UpdateResult(matched_count=1, modified_count=1, upserted_id=None)


# ----------------------------------------------------------------------------- delete_many

_DELETE_BATCH = 500


def _delete_many(self: Collection, filter: dict[str, Any], session: Any = None) -> DeleteResult:
    """As neosqlite's. For a filter its SQL translation does not cover (``$nin``, as the EDL
    history's pruning sends), neosqlite reads every candidate document whole into Python to match
    it; here only the fields the filter names are read (by SQLite), and matched by neosqlite's
    own matcher."""
    def own() -> DeleteResult:
        return _original_delete_many(self, filter, session=session)

    if type(filter) is not dict or not filter or self._is_gridfs_collection():
        return own()
    engine = self.query_engine
    query = engine.helpers._normalize_id_query(filter)
    names = {str(key).split(".")[0] for key in query}
    if (engine.sql_translator.translate_match(query)[0] is not None or "_id" in names
            or not all(_PLAIN_NAME.fullmatch(name) for name in names)):
        return own()
    validate_session(session, self._database)
    table = quote_table_name(self.name)
    if self.db.execute("SELECT name FROM sqlite_master WHERE type='table' AND name=?", (self.name,)).fetchone() is None:
        return DeleteResult(deleted_count=0)
    # The filter's plain equalities narrow the candidates in SQL; the matcher decides.
    equal = {key: value for key, value in query.items() if type(value) in (str, int, float, bool)}
    where, params = engine.sql_translator.translate_match(equal) if equal else (None, [])
    fields = sorted(names)
    extract = ", ".join(f"data -> '$.\"{name}\"'" for name in fields)
    select = f"SELECT id, {extract} FROM {{table}} {{where}}"  # noqa: S608 - names checked above
    rows = self.db.execute(_sql(table, select, where or ""), params if where else []).fetchall()
    ids = [
        row[0] for row in rows
        if engine.helpers._apply_query(query, {
            name: neosqlite_json_loads(text) for name, text in zip(fields, row[1:], strict=True) if text is not None})
    ]
    for start in range(0, len(ids), _DELETE_BATCH):
        batch = ids[start:start + _DELETE_BATCH]
        marks = ",".join("?" * len(batch))
        self.db.execute(_sql(table, f"DELETE FROM {{table}} WHERE id IN ({marks})", ""), batch)  # noqa: S608
    return DeleteResult(deleted_count=len(ids))


def _write_error(exc: Exception, index: int) -> dict[str, Any]:
    if isinstance(exc, UpdatePathError):
        return {"index": index, "code": exc.code, "errmsg": str(exc)}
    return _original_write_error(exc, index)


# ----------------------------------------------------------------------------- WAL checkpoints

logger = logging.getLogger(__name__)

# How often the checkpointer copies what the write-ahead logs hold into their database files.
CHECKPOINT_INTERVAL_S = 1.0

_wal_files: set[str] = set()
_wal_lock = threading.Lock()


def _configure_connection(self: Connection) -> None:
    """As neosqlite's, and a connection to a database file in WAL mode leaves checkpoints to the
    checkpointer (checkpoints_started): SQLite's automatic checkpoint runs inside the commit that
    takes the log past 1,000 pages (4 MiB: every sixth or so save of a 650 KiB timeline), copying it
    into the database file and syncing both files, all on that save's time."""
    _original_configure(self)
    mode = self.db.execute("PRAGMA journal_mode").fetchone()
    path = next((file for _, name, file, *_ in self.db.execute("PRAGMA database_list") if name == "main"), "")
    if not path or mode is None or str(mode[0]).lower() != "wal":  # in memory, or no log to copy
        return
    self.db.execute("PRAGMA wal_autocheckpoint = 0")
    with _wal_lock:
        _wal_files.add(path)


def checkpoint_all() -> dict[str, tuple[int, int, int]]:
    """One passive checkpoint of each database file a connection registered (it waits for no
    writer or reader, and copies what it can): {path: (busy, frames in the log, frames copied)}.
    Each through a connection of its own, opened without creating the file: a file that is gone
    (its database dropped) is forgotten."""
    with _wal_lock:
        paths = sorted(_wal_files)
    done: dict[str, tuple[int, int, int]] = {}
    for path in paths:
        if not os.path.exists(path):
            with _wal_lock:
                _wal_files.discard(path)
            continue
        try:
            conn = sqlite3.connect(f"file:{urllib.parse.quote(path)}?mode=rw", uri=True, isolation_level=None,
                                   check_same_thread=False)
            try:
                busy, log, copied = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            finally:
                conn.close()
        except sqlite3.Error as exc:  # locked or gone meanwhile: the next pass tries again
            logger.debug("WAL checkpoint of %s skipped: %s", path, exc)
            continue
        done[path] = (busy, log, copied)
    return done


def _checkpoints(interval: float) -> None:
    while True:
        time.sleep(interval)
        try:
            checkpoint_all()
        except Exception:  # the checkpointer outlives any one pass
            logger.exception("WAL checkpoint pass failed")


def checkpoints_started(interval: float = CHECKPOINT_INTERVAL_S) -> threading.Thread:
    """The checkpointer: a daemon thread that checkpoints every registered file each ``interval``
    seconds, beside the writes (a writer in WAL mode does not wait for a checkpoint). When the
    server stops, SQLite checkpoints each file as its last connection closes."""
    thread = threading.Thread(target=_checkpoints, args=(interval,), name="wal-checkpoints", daemon=True)
    thread.start()
    return thread


_original_configure = Connection._configure_connection
_original_update_one = Collection.update_one
_original_delete_many = Collection.delete_many
_original_replace_one = EngineCrud.replace_one
_original_write_error = handler._bulk_write_error


def install() -> None:
    utils.convert_bson_to_neo_objectids = bson_to_neo  # looked up at each call by the handler
    utils.convert_neo_to_bson_objectids = neo_to_bson
    wire_protocol._convert_objectids = neo_to_bson  # imported by name there
    Collection.update_one = _update_one
    Collection.delete_many = _delete_many
    HelperCrud._internal_replace = _internal_replace
    EngineCrud.replace_one = _replace_one
    handler._bulk_write_error = _write_error
    Connection._configure_connection = _configure_connection


# The collector's youngest generation is examined after this many more container allocations than
# frees. A timeline received or read is ~40,000 dicts and lists, all freed by reference counting
# when the request ends (a tree holds no cycle): at the default (700) each one set off dozens of
# passes over the young objects, a few milliseconds of the ~30 ms of CPU a whole-timeline replace
# costs the server.
# Cycles (asyncio's, an exception's) are still collected, after more allocations.
GC_YOUNG_THRESHOLD = 100_000


def collector_tuned() -> None:
    """The server's modules, loaded once, out of the collector's passes; its young generation
    examined less often (GC_YOUNG_THRESHOLD)."""
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, middle, old)


if __name__ == "__main__":
    from nx_27017.nx_27017 import main

    install()
    collector_tuned()
    checkpoints_started()
    main()

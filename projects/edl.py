"""The EDL (timeline) documents in MongoDB: the mongoengine schema and the connection.

One ``edl`` document per project (seed section 3.1) and, in ``edl_history``, the content of
superseded versions that undo/redo can return to. The schema here is the single source of truth
for field names, types and bounds: ``projects.edl_services`` validates client documents against
these field definitions (with the exact path of every problem) before anything is written.

Writes never go through ``Document.save()``: on a modified document it sends partial ``$set``
paths such as ``tracks.0.clips.2.out_point_ms``, which the embedded MongoDB-protocol server
(nx-27017) silently ignores. Services write whole documents with pymongo's
``find_one_and_replace`` guarded by the version instead (DESIGN.md, "Known limit").
"""

from __future__ import annotations

import os
import threading
from typing import Any

import mongoengine
from django.conf import settings
from mongoengine import (
    BooleanField,
    DateTimeField,
    DictField,
    Document,
    EmbeddedDocument,
    EmbeddedDocumentField,
    EmbeddedDocumentListField,
    FloatField,
    IntField,
    ListField,
    StringField,
)
from pymongo.collection import Collection

ALIAS = "edl"
# Fail fast when MongoDB is unreachable: an API request should answer 503, not hang.
SERVER_SELECTION_TIMEOUT_MS = 3_000
CONNECT_TIMEOUT_MS = 3_000
SOCKET_TIMEOUT_MS = 15_000

MAX_MS = 2**31 - 1  # about 24.8 days: any real timeline, and always a 32-bit BSON int
ID_MAX_LENGTH = 64
NAME_MAX_LENGTH = 255
TEXT_MAX_LENGTH = 20_000
MAX_DIMENSION = 7680  # 8K UHD, as projects.models
MAX_EFFECTS_PER_CLIP = 32
UUID_RE = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"

TRACK_TYPES = ("video", "audio")


def _ms(**kwargs: Any) -> IntField:
    return IntField(min_value=0, max_value=MAX_MS, **kwargs)


def _id_field() -> StringField:
    return StringField(required=True, min_length=1, max_length=ID_MAX_LENGTH)


class Resolution(EmbeddedDocument):
    width = IntField(required=True, min_value=16, max_value=MAX_DIMENSION)
    height = IntField(required=True, min_value=16, max_value=MAX_DIMENSION)


class TimelineSettings(EmbeddedDocument):
    resolution = EmbeddedDocumentField(Resolution, required=True)
    frame_rate = FloatField(required=True, min_value=1, max_value=240)
    # Computed by the server on every write: the end of the last non-deleted clip.
    duration_ms = _ms(default=0)


class Clip(EmbeddedDocument):
    id = _id_field()
    media_file_id = StringField(required=True, regex=UUID_RE)
    # Filled with the enclosing track's id when omitted; must equal it when given.
    track_id = StringField(min_length=1, max_length=ID_MAX_LENGTH)
    start_ms = _ms(required=True)  # position on the timeline
    duration_ms = _ms(required=True)  # length on the timeline == out_point_ms - in_point_ms
    in_point_ms = _ms(required=True)  # source start trim
    out_point_ms = _ms(required=True)  # source end trim
    effects = ListField(DictField(), max_length=MAX_EFFECTS_PER_CLIP)  # opaque small JSON objects
    deleted = BooleanField(default=False)


class Track(EmbeddedDocument):
    id = _id_field()
    type = StringField(required=True, choices=TRACK_TYPES)
    name = StringField(max_length=NAME_MAX_LENGTH, default="")
    clips = EmbeddedDocumentListField(Clip)


class Word(EmbeddedDocument):
    word = StringField(required=True, max_length=NAME_MAX_LENGTH)
    start_ms = _ms(required=True)
    end_ms = _ms(required=True)
    confidence = FloatField(required=True, min_value=0, max_value=1)


class Segment(EmbeddedDocument):
    id = _id_field()
    speaker = StringField(max_length=NAME_MAX_LENGTH, null=True)
    start_ms = _ms(required=True)
    end_ms = _ms(required=True)
    text = StringField(max_length=TEXT_MAX_LENGTH, default="")
    words = EmbeddedDocumentListField(Word)
    deleted = BooleanField(default=False)
    edited_text = StringField(max_length=TEXT_MAX_LENGTH, null=True)


class Transcript(EmbeddedDocument):
    generated_at = DateTimeField(null=True)
    segments = EmbeddedDocumentListField(Segment)


class EDL(Document):
    """One project's timeline. ``version`` guards every write (optimistic concurrency)."""

    project_id = StringField(required=True)  # Postgres projects.id, as a string (seed 3.1)
    user_id = StringField(required=True)
    version = IntField(required=True, min_value=1)
    created_at = DateTimeField(required=True)
    updated_at = DateTimeField(required=True)
    settings = EmbeddedDocumentField(TimelineSettings, required=True)
    tracks = EmbeddedDocumentListField(Track)
    transcript = EmbeddedDocumentField(Transcript, required=True)
    # The versions undo and redo step back/forward to, most recent last; their content is in
    # edl_history. Kept here so that they change atomically with the content they describe.
    undo_versions = ListField(IntField())
    redo_versions = ListField(IntField())

    meta = {
        "collection": "edl",
        "db_alias": ALIAS,
        "indexes": [{"fields": ["project_id"], "unique": True}],
        "auto_create_index": False,  # created once per process by collections(), see below
    }


class EDLHistory(Document):
    """The content (settings, tracks, transcript) of one superseded version of a project's EDL."""

    project_id = StringField(required=True)
    version = IntField(required=True, min_value=1)
    snapshot = DictField(required=True)
    created_at = DateTimeField(required=True)

    meta = {
        "collection": "edl_history",
        "db_alias": ALIAS,
        "indexes": [{"fields": ["project_id", "version"], "unique": True}],
        "auto_create_index": False,
    }


# Fields that only the server writes; a client may send them back (as read from GET) and they are
# ignored. "id" is the document's MongoDB id (for projects.edl_id); "history" is the read-only
# {"undo": n, "redo": n} summary that GET shows instead of the stacks.
SERVER_FIELDS = frozenset({"id", "project_id", "user_id", "version", "created_at", "updated_at", "history"})
CLIENT_FIELDS = ("settings", "tracks", "transcript")


# ----------------------------------------------------------------------------- connection

_lock = threading.Lock()
_connected_pid: int | None = None


def _connect() -> None:
    """Register the connection once per process; a forked child registers its own.

    ``connect=False`` opens no socket until the first operation, so importing or configuring
    this in a parent that later forks (gunicorn --preload, Celery prefork) shares nothing. A
    MongoClient must never be used across fork: when the pid changed, the inherited client is
    dropped and a fresh one registered.
    """
    global _connected_pid
    pid = os.getpid()
    if _connected_pid == pid:
        return
    with _lock:
        if _connected_pid == pid:
            return
        mongoengine.disconnect(alias=ALIAS)
        mongoengine.connect(
            host=settings.MONGODB_URI,
            alias=ALIAS,
            connect=False,
            uuidRepresentation="standard",
            tz_aware=True,
            serverSelectionTimeoutMS=SERVER_SELECTION_TIMEOUT_MS,
            connectTimeoutMS=CONNECT_TIMEOUT_MS,
            socketTimeoutMS=SOCKET_TIMEOUT_MS,
        )
        EDL.ensure_indexes()
        EDLHistory.ensure_indexes()
        _connected_pid = pid


def disconnect() -> None:
    """Forget the connection (tests that point MONGODB_URI elsewhere; process shutdown)."""
    global _connected_pid
    with _lock:
        mongoengine.disconnect(alias=ALIAS)
        _connected_pid = None


def edl_collection() -> Collection[dict[str, Any]]:
    _connect()
    collection: Collection[dict[str, Any]] = EDL._get_collection()
    return collection


def history_collection() -> Collection[dict[str, Any]]:
    _connect()
    collection: Collection[dict[str, Any]] = EDLHistory._get_collection()
    return collection

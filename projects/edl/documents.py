"""What an EDL (timeline) document is: its mongoengine schema, bounds and limits, and its JSON form.

One ``edl`` document per project, keyed by the project's id, and in ``edl_history`` the content
of superseded versions that undo/redo can return to. The schema here is the single source of
truth for field names, types and bounds: ``projects.edl.validation`` checks client documents
against these field definitions (with the exact path of every problem) before anything is
written.

The ``edl`` document is stored as it reads: settings, tracks with their clips, the transcript
with its segments, words and pauses, as plain BSON subdocuments any MongoDB client shows and
queries, plus ``media_ids`` (the media files the timeline plays, indexed). Documents written
while the content was packed into one text field (``content_z``) are read as well until the data
migration (projects/migrations/0009_edl_structured.py) has rewritten them.

Writes never go through ``Document.save()``: ``projects.edl.versions`` writes each version with
one pymongo write guarded by the version (a whole-document ``replace_one``, or a ``$set`` of the
changed parts where the server applies such paths).
"""

from __future__ import annotations

import base64
import json
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import msgspec
from django.conf import settings
from django.utils import timezone
from mongoengine import (
    BinaryField,
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

from auteur.core.quotas import quota_limit

ALIAS = "edl"  # the mongoengine connection alias, registered by projects.edl.store

MAX_MS = 2**31 - 1  # about 24.8 days: any real timeline, and always a 32-bit BSON int
ID_MAX_LENGTH = 64
NAME_MAX_LENGTH = 255
TEXT_MAX_LENGTH = 20_000
MAX_DIMENSION = 7680  # 8K UHD, as projects.models
MAX_EFFECTS_PER_CLIP = 32
UUID_RE = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\Z"

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
    # Length on the timeline: out_point_ms - in_point_ms, divided by the rate of a speed effect.
    duration_ms = _ms(required=True)
    in_point_ms = _ms(required=True)  # source start trim
    out_point_ms = _ms(required=True)  # source end trim
    # Small JSON objects, each checked against the effect vocabulary (projects.edl.effects).
    effects = ListField(DictField(), max_length=MAX_EFFECTS_PER_CLIP)
    deleted = BooleanField(default=False)


class Track(EmbeddedDocument):
    id = _id_field()
    type = StringField(required=True, choices=TRACK_TYPES)
    name = StringField(max_length=NAME_MAX_LENGTH, default="")
    clips = EmbeddedDocumentListField(Clip)


class Word(EmbeddedDocument):
    """A spoken word at its TIMELINE time (where it plays in the edited video, before cuts)."""

    word = StringField(required=True, max_length=NAME_MAX_LENGTH)
    start_ms = _ms(required=True)
    end_ms = _ms(required=True)
    confidence = FloatField(required=True, min_value=0, max_value=1)
    # A deleted word's time span is cut from every track when the timeline renders.
    deleted = BooleanField(default=False)


class Segment(EmbeddedDocument):
    """A stretch of speech, at TIMELINE times. A transcription of a media file writes one segment
    per (speech segment, clip that plays it), naming both: `media_file_id` and `clip_id` say where
    it came from, so that a newer transcription of that file replaces exactly its segments. A
    segment a client writes may name neither."""

    id = _id_field()
    media_file_id = StringField(regex=UUID_RE, null=True)
    clip_id = StringField(min_length=1, max_length=ID_MAX_LENGTH, null=True)
    speaker = StringField(max_length=NAME_MAX_LENGTH, null=True)
    start_ms = _ms(required=True)
    end_ms = _ms(required=True)
    text = StringField(max_length=TEXT_MAX_LENGTH, default="")
    words = EmbeddedDocumentListField(Word)
    deleted = BooleanField(default=False)
    edited_text = StringField(max_length=TEXT_MAX_LENGTH, null=True)
    # The language it was transcribed in (a Whisper code such as "en"), when known.
    language = StringField(max_length=16, null=True)


class Pause(EmbeddedDocument):
    """A silence between words (TIMELINE times) that an edit marked: when `deleted`, the render
    cuts it down to the padding kept beside the words around it."""

    start_ms = _ms(required=True)
    end_ms = _ms(required=True)
    deleted = BooleanField(default=True)


class Transcript(EmbeddedDocument):
    generated_at = DateTimeField(null=True)
    segments = EmbeddedDocumentListField(Segment)
    pauses = EmbeddedDocumentListField(Pause)


class EDL(Document):
    """One project's timeline. ``version`` guards every write (optimistic concurrency)."""

    # The Postgres projects.id in its canonical string form: the document lives in another
    # database, so the link is by value, not a foreign key.
    project_id = StringField(required=True)
    user_id = StringField(required=True)
    version = IntField(required=True, min_value=1)
    created_at = DateTimeField(required=True)
    updated_at = DateTimeField(required=True)
    settings = EmbeddedDocumentField(TimelineSettings, required=True)
    tracks = EmbeddedDocumentListField(Track)
    transcript = EmbeddedDocumentField(Transcript, required=True)
    # Computed by the server on every write (media_ids_of): the media files the non-deleted clips
    # play, each once. Indexed: "which timelines play this file" is one index lookup.
    media_ids = ListField(StringField())
    # Documents written before the content was stored structured: tracks and transcript packed
    # (PACKED, below). Read until the data migration has rewritten them; never written.
    content_z = StringField()
    # The versions undo and redo step back/forward to, most recent last; their content is in
    # edl_history. Kept here so that they change atomically with the content they describe.
    undo_versions = ListField(IntField())
    redo_versions = ListField(IntField())

    meta = {
        "collection": "edl",
        "db_alias": ALIAS,
        # Every query names the project and its owner (projects.edl.store.owned): the unique
        # project_id index finds the one document, (user_id, project_id) a user's documents. The
        # media_ids index (multikey on MongoDB) answers which projects use a media file.
        "indexes": [{"fields": ["project_id"], "unique": True}, {"fields": ["user_id", "project_id"]},
                    {"fields": ["media_ids"]}],
        "auto_create_index": False,  # created once per process by projects.edl.store
    }


class EDLHistory(Document):
    """The content (settings, tracks, transcript) of one superseded version of a project's EDL."""

    project_id = StringField(required=True)
    # The project's owner, as in EDL (the snapshots written before it was recorded got it from
    # their EDL document: projects/migrations/0005_edl_history_owner.py).
    user_id = StringField(required=True)
    version = IntField(required=True, min_value=1)
    # The content: its settings, and its tracks and transcript packed (PACKED). A snapshot is the
    # server's own undo storage, written on every save and read only by undo/redo, never queried:
    # packed it is a tenth of the size to write. Snapshots written before hold it as
    # zlib-compressed BSON (``snapshot_z``) or, before that, as the plain ``snapshot`` dict; all
    # three are read.
    settings = DictField()
    content_z = StringField()
    snapshot_z = BinaryField()
    snapshot = DictField()
    created_at = DateTimeField(required=True)

    meta = {
        "collection": "edl_history",
        "db_alias": ALIAS,
        "indexes": [
            {"fields": ["project_id", "version"], "unique": True},
            {"fields": ["user_id", "project_id", "version"]},
        ],
        "auto_create_index": False,
    }


# Fields that only the server writes; a client may send them back (as read from GET, or as the
# document's published shape has them) and they are ignored. "id" is the document's MongoDB id
# (for projects.edl_id); "history" is the read-only {"undo": n, "redo": n} summary, and
# "undo_stack" / "redo_stack" the versions undo and redo return to (the last first): the server
# keeps them, and only POST .../edl/undo and .../redo move along them.
SERVER_FIELDS = frozenset({"id", "project_id", "user_id", "version", "created_at", "updated_at", "history",
                           "undo_stack", "redo_stack", "media_ids"})
CLIENT_FIELDS = ("settings", "tracks", "transcript")


# ----------------------------------------------------------------------------- limits


@dataclass(frozen=True)
class EdlLimits:
    """What one timeline may hold. Every computation on a timeline (validation, cuts, captions,
    fillers, the render's snapshot) is linear or n log n in these counts, and the counts are
    checked before any of it runs, so a request's cost is bounded whatever its body.

    The defaults are generous for real use: a 3-hour recording is about 30,000 words (160 a
    minute); 50,000 covers the render's 4-hour maximum at a fast 200 words a minute. A pause lies
    between two words, so a transcript has fewer pauses than words. A transcription writes one
    segment per sentence or so (a 4-hour talk: a few thousand); 20,000 leaves room for a
    segment per clip of a finely cut timeline. `max_render_pieces` is what the render engine takes
    (gpu_tasks/engines/timeline.py MAX_CLIPS: one ffmpeg input per piece), counted after the
    transcript's cuts split the clips, and refused before anything is charged or built.
    """

    history: int  # the edl_history quota (auteur/core/quotas.py): undo steps kept, the oldest pruned
    max_bytes: int
    max_tracks: int
    max_clips: int
    max_segments: int
    max_words: int
    max_pauses: int
    max_render_pieces: int


def edl_limits() -> EdlLimits:
    """Read at call time, so that a changed setting (or a test's override) applies at once."""
    return EdlLimits(
        history=quota_limit("edl_history"),
        max_bytes=int(getattr(settings, "AUTEUR_EDL_MAX_BYTES", 2 * 1024 * 1024)),
        max_tracks=int(getattr(settings, "AUTEUR_EDL_MAX_TRACKS", 50)),
        max_clips=int(getattr(settings, "AUTEUR_EDL_MAX_CLIPS", 5000)),
        max_segments=int(getattr(settings, "AUTEUR_EDL_MAX_SEGMENTS", 20000)),
        max_words=int(getattr(settings, "AUTEUR_EDL_MAX_WORDS", 50000)),
        max_pauses=int(getattr(settings, "AUTEUR_EDL_MAX_PAUSES", 50000)),
        max_render_pieces=int(getattr(settings, "AUTEUR_RENDER_MAX_PIECES", 400)),
    )


def _items(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def edl_counts(doc: Any) -> dict[str, int]:
    """What the limits count in a timeline, read before (or without) its field checks: a part of
    the wrong shape counts as empty (the field checks report it). Linear in the document."""
    doc = doc if isinstance(doc, dict) else {}
    tracks = _items(doc.get("tracks"))
    transcript = doc.get("transcript") if isinstance(doc.get("transcript"), dict) else {}
    segments = _items(transcript.get("segments"))
    return {
        "tracks": len(tracks),
        "clips": sum(len(_items(t.get("clips"))) for t in tracks if isinstance(t, dict)),
        "segments": len(segments),
        "words": sum(len(_items(s.get("words"))) for s in segments if isinstance(s, dict)),
        "pauses": len(_items(transcript.get("pauses"))),
    }


# (what is counted, its EdlLimits field, where it is in the document, in words), in checking order.
COUNTED_LIMITS: tuple[tuple[str, str, str, str], ...] = (
    ("tracks", "max_tracks", "tracks", "tracks"),
    ("clips", "max_clips", "tracks[].clips", "clips in all tracks together"),
    ("segments", "max_segments", "transcript.segments", "transcript segments"),
    ("words", "max_words", "transcript.segments[].words", "words in all transcript segments together"),
    ("pauses", "max_pauses", "transcript.pauses", "transcript pauses"),
)


# ----------------------------------------------------------------------------- JSON form


def ms_precision(value: datetime) -> datetime:
    """What MongoDB keeps of a datetime: milliseconds. Truncated before storing, so it reads back equal."""
    return value.replace(microsecond=value.microsecond // 1000 * 1000)


def now() -> datetime:
    return ms_precision(timezone.now())


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def media_ids_of(content: dict[str, Any]) -> list[str]:
    """The media files a timeline plays: those its non-deleted clips name, each once, sorted.

    A deleted clip is not rendered and a transcript segment's ``media_file_id`` only says where
    its words came from (they stay valid text without the file), so neither keeps a file in use.
    Linear in the clips."""
    return sorted({
        clip["media_file_id"]
        for track in content.get("tracks") or []
        for clip in track.get("clips") or []
        if clip.get("media_file_id") and not clip.get("deleted")
    })


def stored_form(doc: dict[str, Any]) -> dict[str, Any]:
    """An ``edl`` document as it is written: as given, with its ``media_ids`` computed."""
    return {**doc, "media_ids": media_ids_of(doc)}


# The form the content had before it was stored structured, and that history snapshots keep: the
# JSON of the tracks and the transcript (compact, UTF-8; a date as an RFC 3339 string), one line
# each, zlib-compressed and base64-encoded into one string. Text, not binary: the embedded server
# cannot replace a document holding binary data (a snapshot left by a deleted EDL is replaced).
PACKED = "content_z"


def content_pack(content: dict[str, Any]) -> str:
    """``content``'s tracks and transcript packed (see PACKED). msgspec writes the JSON (compact,
    UTF-8, a date as RFC 3339) five times faster than the json module: it runs on every save, for
    the history snapshot (bench/edl_latency.py)."""
    text = msgspec.json.encode(content["tracks"]) + b"\n" + msgspec.json.encode(content["transcript"])
    return base64.b64encode(zlib.compress(text, 1)).decode("ascii")


def stored_content(raw: dict[str, Any]) -> dict[str, Any]:
    """A stored document with its tracks and transcript as fields: a structured one as it is, a
    packed one (written before the content was stored structured, or a history snapshot) unpacked."""
    if PACKED not in raw:
        return raw
    tracks_json, transcript_json = zlib.decompress(base64.b64decode(raw[PACKED])).decode().split("\n", 1)
    tracks, transcript = json.loads(tracks_json), json.loads(transcript_json)
    if isinstance(transcript.get("generated_at"), str):
        transcript["generated_at"] = datetime.fromisoformat(transcript["generated_at"].replace("Z", "+00:00"))
    unpacked = {name: value for name, value in raw.items() if name != PACKED}
    unpacked.update(tracks=tracks, transcript=transcript)
    return unpacked


def edl_output(raw: dict[str, Any]) -> dict[str, Any]:
    """The stored document as the API shows it: JSON-safe, server bookkeeping summarised."""
    raw = stored_content(raw)
    transcript = dict(raw["transcript"])
    transcript["generated_at"] = _iso(transcript.get("generated_at"))
    return {
        "id": str(raw["_id"]) if "_id" in raw else None,
        "project_id": raw["project_id"],
        "user_id": raw["user_id"],
        "version": raw["version"],
        "created_at": _iso(raw["created_at"]),
        "updated_at": _iso(raw["updated_at"]),
        "settings": raw["settings"],
        "tracks": raw["tracks"],
        "transcript": transcript,
        "history": {"undo": len(raw.get("undo_versions") or []), "redo": len(raw.get("redo_versions") or [])},
        "undo_stack": list(raw.get("undo_versions") or []),
        "redo_stack": list(raw.get("redo_versions") or []),
    }

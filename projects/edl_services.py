"""Every read and write of a project's EDL (timeline) document.

Concurrency: each write replaces the whole document with ``find_one_and_replace`` filtered on
``{project_id, version}`` and bumps the version; a client that saved from a stale version gets
409 ``edl_conflict`` and nothing is written. Partial updates are never sent (the embedded MongoDB
ignores positional paths; an editor saves whole timelines anyway).

Undo/redo: the content of every version is also kept in ``edl_history``, written right after
the version itself, so that the state a save supersedes is already there. The EDL holds two
small stacks of version numbers, ``undo_versions`` and ``redo_versions``, which change in the
same atomic replace as the content. Undo and redo each write a NEW version whose content is the
older/newer state; a normal save clears the redo side. Both stacks hold at most
``AUTEUR_EDL_HISTORY`` (N) versions, and N together (undo moves a version from one stack to the
other); after each write the snapshots that neither stack nor the current version refers to
are deleted, so a project keeps at most N + 1 of them.

``settings.duration_ms`` is computed by the server on every write: the end of the last
non-deleted clip on any track (0 for an empty timeline). A value sent by the client is accepted
and ignored, so a client may send back what it read.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.utils import timezone
from mongoengine import (
    BooleanField,
    DateTimeField,
    DictField,
    EmbeddedDocumentField,
    FloatField,
    IntField,
    ListField,
    StringField,
)
from mongoengine.base import BaseField
from pymongo import ReturnDocument
from pymongo.errors import ConnectionFailure, DuplicateKeyError

from auteur.errors import ApplicationError
from media.models import MediaFile, MediaStatus, MediaType
from projects.edl import (
    CLIENT_FIELDS,
    EDL,
    SERVER_FIELDS,
    UUID_RE,
    edl_collection,
    history_collection,
)
from projects.models import Project, parse_resolution

logger = logging.getLogger(__name__)

MAX_ERRORS = 200  # a response listing every problem of a broken 5,000-clip timeline is useless
MAX_EFFECT_BYTES = 4096
MAX_EFFECT_DEPTH = 8
DEFAULT_RESOLUTION = (1920, 1080)

# Which media a track may hold: video tracks show pictures, audio tracks play sound.
COMPATIBLE_MEDIA: dict[str, frozenset[str]] = {
    "video": frozenset({MediaType.VIDEO, MediaType.IMAGE}),
    "audio": frozenset({MediaType.AUDIO, MediaType.VIDEO}),
}


# ----------------------------------------------------------------------------- errors


class EdlInvalid(ApplicationError):
    status_code = 422
    code = "edl_invalid"


class EdlTooLarge(ApplicationError):
    status_code = 413
    code = "edl_too_large"


class EdlConflict(ApplicationError):
    status_code = 409
    code = "edl_conflict"


class NothingToUndo(ApplicationError):
    status_code = 409
    code = "nothing_to_undo"


class NothingToRedo(ApplicationError):
    status_code = 409
    code = "nothing_to_redo"


class EdlUnavailable(ApplicationError):
    status_code = 503
    code = "edl_unavailable"


def _conflict(current_version: int | None) -> EdlConflict:
    return EdlConflict(
        "The timeline was changed since you loaded it. Reload it and apply your change again.",
        details={"current_version": current_version},
    )


@contextlib.contextmanager
def _store() -> Iterator[None]:
    """An unreachable MongoDB is a 503 the client may retry, not a 500."""
    try:
        yield
    except ConnectionFailure as exc:
        logger.warning("EDL store unreachable: %s", type(exc).__name__)
        raise EdlUnavailable("The timeline store is unavailable. Try again shortly.") from None


# ----------------------------------------------------------------------------- limits


@dataclass(frozen=True)
class EdlLimits:
    history: int
    max_bytes: int
    max_tracks: int
    max_clips: int
    max_segments: int


def edl_limits() -> EdlLimits:
    """Read at call time, so that a changed setting (or a test's override) applies at once."""
    return EdlLimits(
        history=int(getattr(settings, "AUTEUR_EDL_HISTORY", 20)),
        max_bytes=int(getattr(settings, "AUTEUR_EDL_MAX_BYTES", 2 * 1024 * 1024)),
        max_tracks=int(getattr(settings, "AUTEUR_EDL_MAX_TRACKS", 50)),
        max_clips=int(getattr(settings, "AUTEUR_EDL_MAX_CLIPS", 5000)),
        max_segments=int(getattr(settings, "AUTEUR_EDL_MAX_SEGMENTS", 20000)),
    )


# ----------------------------------------------------------------------------- validation


@dataclass
class _Errors:
    items: list[dict[str, str]] = field(default_factory=list)
    truncated: bool = False

    def add(self, path: str, message: str) -> None:
        if len(self.items) < MAX_ERRORS:
            self.items.append({"path": path, "message": message})
        else:
            self.truncated = True

    def raise_if_any(self) -> None:
        if not self.items:
            return
        details: dict[str, Any] = {"errors": self.items}
        if self.truncated:
            details["truncated"] = True
        count = len(self.items)
        raise EdlInvalid(
            f"The timeline has {count}{'+' if self.truncated else ''} invalid field{'s' if count > 1 else ''}.",
            details=details,
        )


ROOT = "$"  # the path of the document itself

# Paths are built only for errors: a valid 2,000-clip timeline has ~40,000 values to check.
Key = str | int


def _path(parent: str, key: Key) -> str:
    if isinstance(key, int):
        return f"{parent}[{key}]"
    return f"{parent}.{key}" if parent and parent != ROOT else key


def _check_bounds(value: float, fld: IntField | FloatField, parent: str, key: Key, errors: _Errors) -> bool:
    if fld.min_value is not None and value < fld.min_value:
        errors.add(_path(parent, key), f"Must be at least {fld.min_value}.")
        return False
    if fld.max_value is not None and value > fld.max_value:
        errors.add(_path(parent, key), f"Must be at most {fld.max_value}.")
        return False
    return True


def _check_int(fld: IntField, value: Any, parent: str, key: Key, errors: _Errors) -> int | None:
    if type(value) is not int:  # not isinstance: True and False are ints to Python
        errors.add(_path(parent, key), "Must be an integer.")
        return None
    return value if _check_bounds(value, fld, parent, key, errors) else None


def _check_float(fld: FloatField, value: Any, parent: str, key: Key, errors: _Errors) -> float | None:
    if type(value) not in (int, float) or not math.isfinite(value):
        errors.add(_path(parent, key), "Must be a number.")
        return None
    return float(value) if _check_bounds(value, fld, parent, key, errors) else None


def _check_str(fld: StringField, value: Any, parent: str, key: Key, errors: _Errors) -> str | None:
    if not isinstance(value, str):
        message = "Must be a string."
    elif fld.min_length is not None and len(value) < fld.min_length:
        message = "May not be empty." if fld.min_length == 1 else f"Must be at least {fld.min_length} long."
    elif fld.max_length is not None and len(value) > fld.max_length:
        message = f"Must be at most {fld.max_length} characters."
    elif fld.choices and value not in fld.choices:
        message = f"Must be one of: {', '.join(fld.choices)}."
    elif fld.regex is not None and fld.regex.match(value) is None:
        message = "Must be a UUID." if fld.regex.pattern == UUID_RE else "Has an invalid format."
    else:
        return value
    errors.add(_path(parent, key), message)
    return None


def _check_bool(fld: BooleanField, value: Any, parent: str, key: Key, errors: _Errors) -> bool | None:
    if not isinstance(value, bool):
        errors.add(_path(parent, key), "Must be true or false.")
        return None
    return value


def _check_datetime(fld: DateTimeField, value: Any, parent: str, key: Key, errors: _Errors) -> datetime | None:
    parsed: datetime | None = value if isinstance(value, datetime) else None
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            parsed = datetime.fromisoformat(value)
    if parsed is None or parsed.tzinfo is None:
        errors.add(_path(parent, key), "Must be an ISO 8601 date-time with a time zone, e.g. 2026-01-31T12:00:00Z.")
        return None
    return _ms_precision(parsed.astimezone(UTC))  # what MongoDB stores: read back exactly


def _json_safe(value: Any, depth: int = 0) -> bool:
    if value is None or isinstance(value, (str, bool, int)):
        return True
    if isinstance(value, float):
        return math.isfinite(value)
    if depth >= MAX_EFFECT_DEPTH:
        return False
    if isinstance(value, list):
        return all(_json_safe(v, depth + 1) for v in value)
    if isinstance(value, dict):
        # "$"-prefixed and dotted keys are operators and paths to MongoDB, never data.
        return all(
            isinstance(k, str) and k and not k.startswith("$") and "." not in k and "\x00" not in k
            and _json_safe(v, depth + 1)
            for k, v in value.items()
        )
    return False


def _check_dict(fld: DictField, value: Any, parent: str, key: Key, errors: _Errors) -> dict[str, Any] | None:
    if not isinstance(value, dict):
        message = "Must be an object."
    elif not _json_safe(value):
        message = (
            f"Must be plain JSON nested at most {MAX_EFFECT_DEPTH} deep, with keys that are non-empty, "
            "do not start with '$' and contain no '.'."
        )
    elif len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()) > MAX_EFFECT_BYTES:
        message = f"Must be at most {MAX_EFFECT_BYTES} bytes of JSON."
    else:
        return value
    errors.add(_path(parent, key), message)
    return None


def _check_list(fld: ListField, value: Any, parent: str, key: Key, errors: _Errors) -> list[Any] | None:
    if not isinstance(value, list):
        errors.add(_path(parent, key), "Must be a list.")
        return None
    if fld.max_length is not None and len(value) > fld.max_length:
        errors.add(_path(parent, key), f"Must have at most {fld.max_length} items.")
        return None
    if not value:
        return []
    path = _path(parent, key)
    inner = fld.field
    return [_check_value(inner, item, path, i, errors) for i, item in enumerate(value)]


def _check_embedded(
    fld: EmbeddedDocumentField, value: Any, parent: str, key: Key, errors: _Errors
) -> dict[str, Any] | None:
    return _check_document(fld.document_type, value, _path(parent, key), errors)


_CHECKS: list[tuple[type[BaseField], Callable[..., Any]]] = [
    # Order matters where classes inherit: EmbeddedDocumentListField is a ListField.
    (EmbeddedDocumentField, _check_embedded),
    (ListField, _check_list),
    (IntField, _check_int),
    (FloatField, _check_float),
    (StringField, _check_str),
    (BooleanField, _check_bool),
    (DateTimeField, _check_datetime),
    (DictField, _check_dict),
]


def _check_for(fld: BaseField) -> Callable[..., Any]:
    check = next((fn for cls, fn in _CHECKS if isinstance(fld, cls)), None)
    if check is None:  # a field type added to projects.edl without a check here
        raise TypeError(f"no EDL check for {type(fld).__name__}")
    return check


_CHECK_BY_FIELD: dict[int, Callable[..., Any]] = {}


def _check_value(fld: BaseField, value: Any, parent: str, key: Key, errors: _Errors) -> Any:
    if value is None:
        if not fld.null:
            errors.add(_path(parent, key), "May not be null.")
        return None
    check = _CHECK_BY_FIELD.get(id(fld))
    if check is None:
        check = _CHECK_BY_FIELD[id(fld)] = _check_for(fld)
    return check(fld, value, parent, key, errors)


# Fast paths for the common valid values (most of a timeline is ints, short strings and flags);
# anything else goes through the field's full check, which also words the error.
_SLOW, _INT, _STR, _BOOL = range(4)


@dataclass(frozen=True)
class _FieldSpec:
    name: str
    fld: BaseField
    check: Callable[..., Any]
    required: bool
    null: bool
    default: Any
    kind: int = _SLOW
    low: float = -math.inf  # _INT: value bounds; _STR: length bounds
    high: float = math.inf


def _spec(name: str, fld: BaseField) -> _FieldSpec:
    kind, low, high = _SLOW, -math.inf, math.inf
    if isinstance(fld, IntField):
        kind = _INT
        low = fld.min_value if fld.min_value is not None else -math.inf
        high = fld.max_value if fld.max_value is not None else math.inf
    elif isinstance(fld, StringField) and not fld.choices and fld.regex is None:
        kind = _STR
        low = fld.min_length or 0
        high = fld.max_length if fld.max_length is not None else math.inf
    elif isinstance(fld, BooleanField):
        kind = _BOOL
    return _FieldSpec(name, fld, _check_for(fld), bool(fld.required), bool(fld.null), fld.default, kind, low, high)


_SPECS: dict[tuple[type, tuple[str, ...] | None], tuple[_FieldSpec, ...]] = {}
_ALLOWED: dict[tuple[type, tuple[str, ...] | None], frozenset[str]] = {}


def _specs(doc_cls: type, names: tuple[str, ...] | None) -> tuple[_FieldSpec, ...]:
    specs = _SPECS.get((doc_cls, names))
    if specs is None:
        fields = doc_cls._fields  # type: ignore[attr-defined]
        specs = _SPECS[(doc_cls, names)] = tuple(
            _spec(name, fields[name]) for name in (names if names is not None else tuple(fields))
        )
        _ALLOWED[(doc_cls, names)] = frozenset(spec.name for spec in specs)
    return specs


def _check_document(
    doc_cls: type, value: Any, path: str, errors: _Errors, *, names: tuple[str, ...] | None = None,
    ignored: frozenset[str] = frozenset(),
) -> dict[str, Any] | None:
    """``value`` against the fields of a mongoengine (embedded) document class.

    Unknown keys are refused, required ones must be present, absent optional ones get the
    field's default. Returns the normalised dict (None in place of each invalid value).
    """
    if not isinstance(value, dict):
        errors.add(path, "Must be an object.")
        return None
    specs = _specs(doc_cls, names)
    unknown = value.keys() - _ALLOWED[(doc_cls, names)] - ignored
    for k in sorted(unknown, key=str):
        errors.add(_path(path, str(k)), "Unknown field.")
    out: dict[str, Any] = {}
    for spec in specs:
        name = spec.name
        if name in value:
            item = value[name]
            kind = spec.kind
            if (
                (kind == _INT and type(item) is int and spec.low <= item <= spec.high)
                or (kind == _STR and type(item) is str and spec.low <= len(item) <= spec.high)
                or (kind == _BOOL and type(item) is bool)
            ):
                out[name] = item
            elif item is None:
                if not spec.null:
                    errors.add(_path(path, name), "May not be null.")
                out[name] = None
            else:
                out[name] = spec.check(spec.fld, item, path, name, errors)
        elif spec.required:
            errors.add(_path(path, name), "This field is required.")
            out[name] = None
        else:
            default = spec.default
            out[name] = default() if callable(default) else default
    return out


def _json_size(data: Any) -> int:
    return len(json.dumps(data, separators=(",", ":"), ensure_ascii=False, default=str).encode())


def edl_validate(*, project: Project, data: Any) -> dict[str, Any]:
    """The client's document checked and normalised: {"settings", "tracks", "transcript"}.

    Raises EdlTooLarge (413) over the size limit, else EdlInvalid (422) listing every problem
    with its field path (``tracks[0].clips[2].out_point_ms``).
    """
    limits = edl_limits()
    size = _json_size(data)
    if size > limits.max_bytes:
        raise EdlTooLarge(
            f"The timeline is {size} bytes of JSON; the limit is {limits.max_bytes}.",
            details={"size_bytes": size, "max_bytes": limits.max_bytes},
        )
    errors = _Errors()
    doc = _check_document(EDL, data, ROOT, errors, names=CLIENT_FIELDS, ignored=SERVER_FIELDS)
    if doc is None:  # not an object at all: that is the one error
        errors.raise_if_any()
    assert doc is not None
    tracks = [t for t in (doc["tracks"] or []) if t is not None]
    transcript = doc["transcript"] or {}

    _check_limits(doc, limits, errors)
    _check_unique_ids(doc, errors)
    clips = _check_clips(tracks, errors)
    _check_media(project, clips, errors)
    _check_segments(transcript.get("segments") or [], errors)
    errors.raise_if_any()

    settings_doc = doc["settings"]
    settings_doc["duration_ms"] = max(
        (c["start_ms"] + c["duration_ms"] for _, _, c in clips if not c["deleted"]), default=0
    )
    return {"settings": settings_doc, "tracks": doc["tracks"], "transcript": doc["transcript"]}


def _check_limits(doc: dict[str, Any], limits: EdlLimits, errors: _Errors) -> None:
    tracks = doc["tracks"] or []
    if len(tracks) > limits.max_tracks:
        errors.add("tracks", f"At most {limits.max_tracks} tracks; got {len(tracks)}.")
    clips = sum(len(t["clips"] or []) for t in tracks if t)
    if clips > limits.max_clips:
        errors.add("tracks", f"At most {limits.max_clips} clips in all tracks together; got {clips}.")
    segments = (doc["transcript"] or {}).get("segments") or []
    if len(segments) > limits.max_segments:
        errors.add("transcript.segments", f"At most {limits.max_segments} segments; got {len(segments)}.")


def _check_unique_ids(doc: dict[str, Any], errors: _Errors) -> None:
    def unique(items: Iterator[tuple[str, Any]]) -> None:
        seen: dict[str, str] = {}
        for path, ident in items:
            if not isinstance(ident, str):
                continue
            if ident in seen:
                errors.add(path, f"Duplicate id {ident!r} (also at {seen[ident]}).")
            else:
                seen[ident] = path

    tracks = doc["tracks"] or []
    unique((f"tracks[{i}].id", t["id"]) for i, t in enumerate(tracks) if t)
    unique(
        (f"tracks[{i}].clips[{j}].id", c["id"])
        for i, t in enumerate(tracks) if t
        for j, c in enumerate(t["clips"] or []) if c
    )
    segments = (doc["transcript"] or {}).get("segments") or []
    unique((f"transcript.segments[{k}].id", s["id"]) for k, s in enumerate(segments) if s)


_CLIP_TIMES = ("start_ms", "duration_ms", "in_point_ms", "out_point_ms")


def _check_clips(tracks: list[dict[str, Any]], errors: _Errors) -> list[tuple[str, str, dict[str, Any]]]:
    """Per-clip time rules and per-track overlap; returns (path, track type, clip) of the sound clips."""
    sound: list[tuple[str, str, dict[str, Any]]] = []
    for i, track in enumerate(tracks):
        placed: list[tuple[int, int, str, str]] = []  # (start, end, path, id) of non-deleted clips
        for j, clip in enumerate(track["clips"] or []):
            if clip is None:
                continue
            path = f"tracks[{i}].clips[{j}]"
            if clip["track_id"] is None and isinstance(track["id"], str):
                clip["track_id"] = track["id"]
            elif clip["track_id"] != track["id"] and track["id"] is not None:
                errors.add(f"{path}.track_id", f"Must be the id of its track ({track['id']!r}).")
            if any(clip[k] is None for k in _CLIP_TIMES) or clip["deleted"] is None:
                continue
            if clip["out_point_ms"] <= clip["in_point_ms"]:
                errors.add(f"{path}.out_point_ms", f"Must be greater than in_point_ms ({clip['in_point_ms']}).")
                continue
            expected = clip["out_point_ms"] - clip["in_point_ms"]
            if clip["duration_ms"] != expected:
                errors.add(f"{path}.duration_ms", f"Must equal out_point_ms - in_point_ms ({expected}).")
                continue
            if track["type"] is not None and clip["media_file_id"] is not None:
                sound.append((path, track["type"], clip))
            if not clip["deleted"]:
                placed.append((clip["start_ms"], clip["start_ms"] + clip["duration_ms"], path, clip["id"]))
        placed.sort()
        latest: tuple[int, int, str, str] | None = None  # the clip reaching furthest so far
        for start, end, path, ident in placed:
            if latest is not None and start < latest[1]:
                errors.add(
                    f"{path}.start_ms",
                    f"Overlaps clip {latest[3]!r} ({latest[0]}-{latest[1]} ms) on the same track.",
                )
            if latest is None or end > latest[1]:
                latest = (start, end, path, ident)
    return sound


def _check_media(project: Project, clips: list[tuple[str, str, dict[str, Any]]], errors: _Errors) -> None:
    """Every clip's media: a ready file of this project, of a type its track can hold, long enough."""
    canonical: dict[str, str] = {}
    for _, _, c in clips:
        raw_id = c["media_file_id"]
        if raw_id not in canonical:
            canonical[raw_id] = str(uuid.UUID(raw_id))
        c["media_file_id"] = canonical[raw_id]  # stored in canonical form
    ids = set(canonical.values())
    if not ids:
        return
    # One query for the whole timeline. Another project's file is reported exactly like a missing
    # one: its existence is not the caller's business.
    media = {
        str(row["id"]): row
        for row in MediaFile.objects.filter(project_id=project.pk, pk__in=ids).values(
            "id", "status", "type", "duration_ms"
        )
    }
    for path, track_type, clip in clips:
        row = media.get(clip["media_file_id"])
        if row is None:
            errors.add(f"{path}.media_file_id", "No media file with this id in this project.")
        elif row["status"] != MediaStatus.READY:
            errors.add(f"{path}.media_file_id", f"The media file is not ready (status: {row['status']}).")
        elif row["type"] not in COMPATIBLE_MEDIA[track_type]:
            allowed = " or ".join(sorted(COMPATIBLE_MEDIA[track_type]))
            errors.add(f"{path}.media_file_id", f"A {track_type} track takes {allowed} media, not {row['type']}.")
        elif row["duration_ms"] is not None and row["type"] != MediaType.IMAGE and (
            clip["out_point_ms"] > row["duration_ms"]
        ):
            errors.add(f"{path}.out_point_ms", f"Past the end of the media file ({row['duration_ms']} ms).")


def _check_segments(segments: list[dict[str, Any] | None], errors: _Errors) -> None:
    for k, segment in enumerate(segments):
        if segment is None:
            continue
        path = f"transcript.segments[{k}]"
        start, end = segment["start_ms"], segment["end_ms"]
        if start is not None and end is not None and end < start:
            errors.add(f"{path}.end_ms", f"Must be at least start_ms ({start}).")
            continue
        for w, word in enumerate(segment["words"] or []):
            if word is None or word["start_ms"] is None or word["end_ms"] is None:
                continue
            wpath = f"{path}.words[{w}]"
            if word["end_ms"] < word["start_ms"]:
                errors.add(f"{wpath}.end_ms", f"Must be at least start_ms ({word['start_ms']}).")
            elif start is not None and word["start_ms"] < start:
                errors.add(f"{wpath}.start_ms", f"Must be within the segment ({start}-{end} ms).")
            elif end is not None and word["end_ms"] > end:
                errors.add(f"{wpath}.end_ms", f"Must be within the segment ({start}-{end} ms).")


# ----------------------------------------------------------------------------- documents


def _ms_precision(value: datetime) -> datetime:
    return value.replace(microsecond=value.microsecond // 1000 * 1000)


def _now() -> datetime:
    return _ms_precision(timezone.now())


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _output(raw: dict[str, Any]) -> dict[str, Any]:
    """The stored document as the API shows it: JSON-safe, server bookkeeping summarised."""
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
    }


def _project_key(project_id: Any) -> str:
    """The canonical string form of a project id, as stored in EDL documents."""
    try:
        return str(uuid.UUID(str(project_id)))
    except ValueError:
        return str(project_id)


def _new_document(project: Project) -> dict[str, Any]:
    try:
        width, height = parse_resolution(project.resolution)
    except ValueError:
        width, height = DEFAULT_RESOLUTION
    now = _now()
    return {
        "project_id": _project_key(project.pk),
        "user_id": str(project.user_id),
        "version": 1,
        "created_at": now,
        "updated_at": now,
        "settings": {
            "resolution": {"width": width, "height": height},
            "frame_rate": float(project.frame_rate),
            "duration_ms": 0,
        },
        "tracks": [
            {"id": str(uuid.uuid4()), "type": "video", "name": "Video 1", "clips": []},
            {"id": str(uuid.uuid4()), "type": "audio", "name": "Audio 1", "clips": []},
        ],
        "transcript": {"generated_at": None, "segments": []},
        "undo_versions": [],
        "redo_versions": [],
    }


def edl_create(*, project: Project) -> dict[str, Any]:
    """The project's timeline: one empty video and one empty audio track. Idempotent."""
    with _store():
        existing = edl_collection().find_one({"project_id": _project_key(project.pk)})
        if existing is not None:
            return _output(existing)
        doc = _new_document(project)
        try:
            edl_collection().insert_one(doc)  # adds "_id" to doc
        except DuplicateKeyError:
            # Created by a concurrent request between our read and insert: that one is the EDL.
            existing = edl_collection().find_one({"project_id": _project_key(project.pk)})
            if existing is None:  # and deleted since: the project is being deleted
                raise _conflict(None) from None
            return _output(existing)
        _history_put(doc["project_id"], 1, doc)
    logger.info("EDL created", extra={"project_id": doc["project_id"]})
    return _output(doc)


def edl_get(*, project: Project) -> dict[str, Any]:
    """The project's timeline (created on first use)."""
    with _store():
        raw = edl_collection().find_one({"project_id": _project_key(project.pk)})
    return _output(raw) if raw is not None else edl_create(project=project)


def edl_snapshot(*, project: Project) -> dict[str, Any]:
    """A deep, JSON-safe copy of the current timeline, for a render job's input."""
    copied: dict[str, Any] = json.loads(json.dumps(edl_get(project=project)))
    return copied


def edl_delete(*, project_id: uuid.UUID | str) -> None:
    """The document and its history. Idempotent (called when a project is deleted)."""
    key = _project_key(project_id)
    with _store():
        edl_collection().delete_many({"project_id": key})
        history_collection().delete_many({"project_id": key})
    logger.info("EDL deleted", extra={"project_id": key})


@dataclass(frozen=True)
class _Head:
    """What a write needs of the current document, without its (large) content."""

    version: int
    user_id: str
    created_at: datetime
    undo: list[int]
    redo: list[int]


_HEAD_FIELDS = {"version": 1, "user_id": 1, "created_at": 1, "undo_versions": 1, "redo_versions": 1}


def _head(project: Project) -> _Head:
    key = _project_key(project.pk)
    with _store():
        raw = edl_collection().find_one({"project_id": key}, _HEAD_FIELDS)
    if raw is None:
        edl_create(project=project)
        with _store():
            raw = edl_collection().find_one({"project_id": key}, _HEAD_FIELDS)
        if raw is None:
            raise _conflict(None)
    return _Head(
        version=raw["version"],
        user_id=raw["user_id"],
        created_at=raw["created_at"],
        undo=list(raw.get("undo_versions") or []),
        redo=list(raw.get("redo_versions") or []),
    )


def _push(stack: list[int], version: int, bound: int) -> list[int]:
    return [*stack, version][-bound:] if bound > 0 else []


def _commit(
    *, project: Project, head: _Head, content: dict[str, Any], undo: list[int], redo: list[int]
) -> dict[str, Any]:
    """Replace version ``head.version`` with ``head.version + 1``; keep the superseded content."""
    key = _project_key(project.pk)
    new_version = head.version + 1
    new: dict[str, Any] = {
        "project_id": key,
        "user_id": head.user_id,
        "version": new_version,
        "created_at": head.created_at,
        "updated_at": _now(),
        "settings": content["settings"],
        "tracks": content["tracks"],
        "transcript": content["transcript"],
        "undo_versions": undo,
        "redo_versions": redo,
    }
    with _store():
        edls = edl_collection()
        # Projection: only whether it matched matters, not 600 KB of the old timeline back.
        matched = edls.find_one_and_replace(
            {"project_id": key, "version": head.version}, new, projection={"_id": 1},
            return_document=ReturnDocument.BEFORE,
        )
        if matched is None:
            current = edls.find_one({"project_id": key}, {"version": 1})
            current_version = current["version"] if current else None
            if current_version == head.version:
                # The embedded server answers "no match" when a replace fails; MongoDB would raise.
                logger.error("EDL replace matched nothing at the current version", extra={"project_id": key})
                raise EdlUnavailable("The timeline could not be saved. Try again.")
            logger.info(
                "EDL write conflict",
                extra={"project_id": key, "expected": head.version, "current": current_version},
            )
            raise _conflict(current_version)
        # Only the writer that won version new_version gets here, so the snapshot is its own.
        _history_put(key, new_version, content)
        # Snapshots no stack refers to any more, when this write dropped one (most saves once the
        # undo stack is full; none before). Only versions below ours: a later writer's snapshots
        # (>= new_version) are not ours to judge, and every version below ours that it still
        # refers to is in our stacks. The range also sweeps up what a crashed write left behind.
        keep = set(undo) | set(redo)
        if (set(head.undo) | set(head.redo) | {head.version}) - keep - {new_version}:
            history_collection().delete_many(
                {"project_id": key, "version": {"$lt": new_version, "$nin": sorted(keep)}}
            )
    new["_id"] = matched["_id"]
    return _output(new)


def _history_put(key: str, version: int, content: dict[str, Any]) -> None:
    """Keep the content of a version, for when undo or redo needs to return to it.

    Written right after the version itself; if the process dies in between, that version is
    skipped by undo/redo later (they step over missing snapshots) rather than restored wrongly.
    """
    doc = {
        "project_id": key,
        "version": version,
        "snapshot": {name: content[name] for name in CLIENT_FIELDS},
        "created_at": _now(),
    }
    history = history_collection()
    try:
        history.insert_one(doc)
    except DuplicateKeyError:  # left by a deleted EDL of the same project id: ours replaces it
        doc.pop("_id", None)
        history.replace_one({"project_id": key, "version": version}, doc)


def edl_replace(*, project: Project, expected_version: int, data: dict[str, Any]) -> dict[str, Any]:
    """Save the client's whole document over version ``expected_version``.

    409 ``edl_conflict`` (with ``current_version``) when the stored version is another one,
    413/422 when the document is too large or invalid; nothing is written in any of these cases.
    Server fields in ``data`` (project_id, user_id, version, created_at, updated_at, history)
    are ignored: they are what the client read.
    """
    head = _head(project)
    if head.version != expected_version:
        raise _conflict(head.version)
    content = edl_validate(project=project, data=data)
    bound = edl_limits().history
    return _commit(project=project, head=head, content=content, undo=_push(head.undo, head.version, bound), redo=[])


def _step(project: Project, expected_version: int | None, *, back: bool) -> dict[str, Any]:
    head = _head(project)
    if expected_version is not None and head.version != expected_version:
        raise _conflict(head.version)
    key = _project_key(project.pk)
    stack = list(head.undo if back else head.redo)
    snapshot: dict[str, Any] | None = None
    with _store():
        while stack and snapshot is None:
            found = history_collection().find_one({"project_id": key, "version": stack.pop()})
            snapshot = found["snapshot"] if found else None
    if snapshot is None:
        if back:
            raise NothingToUndo("There is nothing to undo.", details={"current_version": head.version})
        raise NothingToRedo("There is nothing to redo.", details={"current_version": head.version})
    bound = edl_limits().history
    if back:
        undo, redo = stack, _push(head.redo, head.version, bound)
    else:
        undo, redo = _push(head.undo, head.version, bound), stack
    return _commit(project=project, head=head, content=snapshot, undo=undo, redo=redo)


def edl_undo(*, project: Project, expected_version: int | None = None) -> dict[str, Any]:
    """A new version with the content before the last change; 409 ``nothing_to_undo``.

    The restored content is not validated again: it was valid when saved. A media file deleted
    since then is reported by whatever uses the timeline (a render), and the next save names it.
    """
    return _step(project, expected_version, back=True)


def edl_redo(*, project: Project, expected_version: int | None = None) -> dict[str, Any]:
    """A new version with the content the last undo took back; 409 ``nothing_to_redo``."""
    return _step(project, expected_version, back=False)

"""Partial writes of an EDL version: ``$set`` of only the parts a save changed.

An editor's autosave moves a clip or fixes a word; sending the whole timeline (hundreds of KiB
for thousands of clips) for that is what a whole-document replace does. Where the server applies
numeric-index paths (MongoDB does; the embedded nx-27017 silently ignores them), a save whose
writer knows what the stored version holds sends a ``$set`` of the changed clips
(``tracks.2.clips.17``), segments (``transcript.segments.4``) and top-level parts instead. The
result is the same stored document as the replace would give (tests/projects/test_edl_partial.py
applies both and compares); the write is the same single update guarded by the version.

What the stored version holds is known from a ContentDigest: a short hash of each clip, of each
track's other fields, of each segment and of the rest. The writer of a version remembers its
digest with the version's head (projects.edl.versions); a version is written once, so the
digest remembered for (document id, version) describes exactly what the guarded write matches.
Without one (a head read from the store, another process's write), the save replaces the whole
document.

Whether the server applies numeric paths (and keeps a date sent in a ``$set`` a date) is asked once
per process, with a probe on a scratch document of its own collection (``edl_probe``), never on a
user's timeline.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import msgspec
from pymongo.errors import ConnectionFailure

logger = logging.getLogger(__name__)

# More changed paths than this and the $set is no smaller than the document: replace it whole.
MAX_PATHS = 200
PROBE_COLLECTION = "edl_probe"


# A part whose digest is unchanged is not written, so two contents with one digest must be out of
# anyone's reach: 128 bits put a collision a user could search for (about 2**64 tries) beyond it.
DIGEST_BYTES = 16


_ENCODER = msgspec.json.Encoder()


def _digest(value: Any) -> bytes:
    return hashlib.blake2b(_ENCODER.encode(value), digest_size=DIGEST_BYTES).digest()


def _digests(values: list[Any]) -> tuple[bytes, ...]:
    """Each value's _digest, the values encoded by one call: one compact JSON text a line (a
    value's compact JSON never holds a newline: one in a string is escaped)."""
    if not values:
        return ()
    lines = _ENCODER.encode_lines(values).split(b"\n")
    return tuple(hashlib.blake2b(line, digest_size=DIGEST_BYTES).digest() for line in lines[:-1])


@dataclass(frozen=True)
class ContentDigest:
    """Hashes of the parts of a timeline's content that a partial write may set one by one."""

    settings: bytes
    tracks: tuple[tuple[bytes, tuple[bytes, ...]], ...]  # (the track without its clips, each clip)
    transcript: bytes  # the transcript without its segments
    segments: tuple[bytes, ...]


def content_digest(content: dict[str, Any]) -> ContentDigest:
    """Linear in the content (each value encoded once)."""
    tracks = tuple(
        (_digest({k: v for k, v in track.items() if k != "clips"}), _digests(track["clips"]))
        for track in content["tracks"]
    )
    transcript = content["transcript"]
    return ContentDigest(
        settings=_digest(content["settings"]),
        tracks=tracks,
        transcript=_digest({k: v for k, v in transcript.items() if k != "segments"}),
        segments=_digests(transcript.get("segments") or []),
    )


def content_set(old: ContentDigest, new: ContentDigest, content: dict[str, Any]) -> dict[str, Any] | None:
    """The ``$set`` paths that turn content digested as ``old`` into ``content`` (digested as
    ``new``); None when a whole replace is as small (more than MAX_PATHS paths)."""
    paths: dict[str, Any] = {}
    if old.settings != new.settings:
        paths["settings"] = content["settings"]
    if len(old.tracks) != len(new.tracks):
        paths["tracks"] = content["tracks"]
    else:
        for i, ((old_meta, old_clips), (new_meta, new_clips)) in enumerate(zip(old.tracks, new.tracks, strict=True)):
            track = content["tracks"][i]
            if old_meta != new_meta or len(old_clips) != len(new_clips):
                paths[f"tracks.{i}"] = track
                continue
            for j, (before, after) in enumerate(zip(old_clips, new_clips, strict=True)):
                if before != after:
                    paths[f"tracks.{i}.clips.{j}"] = track["clips"][j]
    transcript = content["transcript"]
    if old.transcript != new.transcript or len(old.segments) != len(new.segments):
        paths["transcript"] = transcript
    else:
        for k, (before, after) in enumerate(zip(old.segments, new.segments, strict=True)):
            if before != after:
                paths[f"transcript.segments.{k}"] = transcript["segments"][k]
    return paths if len(paths) <= MAX_PATHS else None


# ----------------------------------------------------------------------------- the server's ability

_probe_lock = threading.Lock()
_probed: dict[int, bool] = {}  # pid -> whether the server applies numeric-index paths


def numeric_paths_applied(database: Any) -> bool:
    """Whether the server behind ``database`` applies ``$set`` of a numeric-index path, asked once
    per process (a forked child asks again: it may be pointed elsewhere). A probe the server
    refuses says no (the whole-document replace is right on every server); an unreachable server
    raises ConnectionFailure and is asked again by the next save."""
    pid = os.getpid()
    if pid in _probed:
        return _probed[pid]
    with _probe_lock:
        if pid not in _probed:
            _probed[pid] = _probe(database)
            logger.info("EDL partial writes %s", "on" if _probed[pid] else "off (numeric paths not applied)")
    return _probed[pid]


def forget_probe() -> None:
    """Ask again on the next save (the store was pointed at another server)."""
    _probed.clear()


def _probe(database: Any) -> bool:
    """Both things a partial write needs: a numeric-index path applied, and a date sent in a
    ``$set`` kept a date (nx-27017 ignores the first and stores the second as text)."""
    scratch = database[PROBE_COLLECTION]
    key = {"_id": f"numeric-paths-{uuid.uuid4()}"}
    when = datetime(2000, 1, 1, tzinfo=UTC)
    try:
        scratch.insert_one({**key, "items": [{"n": 0}]})
        try:
            scratch.update_one(key, {"$set": {"items.0.n": 1, "at": when}})
            found = scratch.find_one(key)
        finally:
            scratch.delete_one(key)
    except ConnectionFailure:
        raise  # the store is out of reach: this save fails (503) and the next one asks again
    except Exception as exc:  # noqa: BLE001 - any other refusal means: replace whole documents
        logger.warning("EDL partial-write probe failed (%s): whole-document writes", type(exc).__name__)
        return False
    return (found is not None and found.get("items") == [{"n": 1}] and isinstance(found.get("at"), datetime)
            and found["at"].replace(tzinfo=UTC) == when)

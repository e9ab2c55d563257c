"""``edl_validate``: a client's timeline checked against the schema and the EDL's own rules.

First the size and the per-document limits (cheap counts, before anything else reads the
document), then every field against its definition in ``projects.edl.documents``, then what
only a timeline has: unique ids, clip effects (``projects.edl.effects``),
clip times and overlaps, the media each clip plays, and transcript segments. Every problem is
reported with its field path; the document is returned normalised (defaults filled,
``settings.duration_ms`` computed).
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Iterator
from typing import Any

import msgspec
from django.db import connection

from media.models import MediaStatus, MediaType
from projects.edl.documents import CLIENT_FIELDS, COUNTED_LIMITS, EDL, SERVER_FIELDS, EdlLimits, edl_counts, edl_limits
from projects.edl.effects import check_clip_effects, clip_speed, expected_duration_ms
from projects.edl.field_checks import ROOT, Errors, check_document, compiled_check
from projects.errors import EdlInvalid, EdlLimitExceeded, EdlTooLarge
from projects.models import Project

# Which media a track may hold: video tracks show pictures, audio tracks play sound.
COMPATIBLE_MEDIA: dict[str, frozenset[str]] = {
    "video": frozenset({MediaType.VIDEO, MediaType.IMAGE}),
    "audio": frozenset({MediaType.AUDIO, MediaType.VIDEO}),
}


def _json_size(data: Any) -> int:
    """The document's length as compact UTF-8 JSON (a value JSON lacks, from a server-side caller,
    counted as its text). EdlInvalid for a string holding a lone surrogate, which no UTF-8 text
    can hold (a client's JSON cannot carry one: the API's reader refuses it)."""
    try:
        return len(msgspec.json.encode(data, enc_hook=str))
    except UnicodeEncodeError:
        raise EdlInvalid(
            "The timeline holds text that is not valid Unicode (a lone UTF-16 surrogate).",
            details={"errors": [{"path": ROOT, "message": "Holds a lone UTF-16 surrogate."}]},
        ) from None
    except (TypeError, msgspec.EncodeError):  # keys msgspec does not write (tuples, None)
        return len(json.dumps(data, separators=(",", ":"), ensure_ascii=False, default=str).encode())


def edl_validate(*, project: Project, data: Any) -> dict[str, Any]:
    """The client's document checked and normalised: {"settings", "tracks", "transcript"}.

    Raises EdlTooLarge (413) over the size limit, EdlLimitExceeded (422) over a count limit,
    else EdlInvalid (422) listing every problem with its field path
    (``tracks[0].clips[2].out_point_ms``).
    """
    limits = edl_limits()
    size = _json_size(data)
    if size > limits.max_bytes:
        raise EdlTooLarge(
            f"The timeline is {size} bytes of JSON; the limit is {limits.max_bytes}.",
            details={"size_bytes": size, "max_bytes": limits.max_bytes},
        )
    check_edl_limits(data, limits)
    errors = Errors()
    doc = compiled_check(EDL, data, names=CLIENT_FIELDS, ignored=SERVER_FIELDS)
    if doc is None:  # a problem somewhere: found and worded, each with its path
        doc = check_document(EDL, data, ROOT, errors, names=CLIENT_FIELDS, ignored=SERVER_FIELDS)
    if doc is None:  # not an object at all: that is the one error
        errors.raise_if_any()
    assert doc is not None
    tracks = [t for t in (doc["tracks"] or []) if t is not None]
    transcript = doc["transcript"] or {}

    _check_unique_ids(doc, errors)
    clips = _check_clips(tracks, errors)
    _check_media(project, clips, errors)
    _check_segments(transcript.get("segments") or [], errors)
    _check_pauses(transcript.get("pauses") or [], errors)
    errors.raise_if_any()

    settings_doc = doc["settings"]
    settings_doc["duration_ms"] = max(
        (c["start_ms"] + c["duration_ms"] for _, _, c in clips if not c["deleted"]), default=0
    )
    return {"settings": settings_doc, "tracks": doc["tracks"], "transcript": doc["transcript"]}


def check_edl_limits(doc: Any, limits: EdlLimits | None = None) -> None:
    """EdlLimitExceeded (422) naming the first count over its limit, with `limit`, `max`, `count`
    and `path` in its details. Linear in the document, and read before anything else reads it: a
    client's document before its field checks, a stored one (saved under other limits) before a
    render, the captions or an edit compute anything from it."""
    limits = limits or edl_limits()
    counts = edl_counts(doc)
    for name, field, path, what in COUNTED_LIMITS:
        maximum = getattr(limits, field)
        if counts[name] > maximum:
            raise EdlLimitExceeded(
                f"A timeline may hold at most {maximum} {what}; this one has {counts[name]}.",
                details={"limit": name, "max": maximum, "count": counts[name], "path": path},
            )


def _check_unique_ids(doc: dict[str, Any], errors: Errors) -> None:
    # Each id with where it is, as indexes: a path is written only for a duplicate.
    def unique(items: Iterator[tuple[tuple[int, ...], Any]], path: str) -> None:
        seen: dict[str, tuple[int, ...]] = {}
        for where, ident in items:
            if not isinstance(ident, str):
                continue
            if ident in seen:
                errors.add(path.format(*where), f"Duplicate id {ident!r} (also at {path.format(*seen[ident])}).")
            else:
                seen[ident] = where

    tracks = doc["tracks"] or []
    unique((((i,), t["id"]) for i, t in enumerate(tracks) if t), "tracks[{}].id")
    unique(
        (((i, j), c["id"]) for i, t in enumerate(tracks) if t for j, c in enumerate(t["clips"] or []) if c),
        "tracks[{}].clips[{}].id",
    )
    segments = (doc["transcript"] or {}).get("segments") or []
    unique((((k,), s["id"]) for k, s in enumerate(segments) if s), "transcript.segments[{}].id")


def _check_clips(tracks: list[dict[str, Any]], errors: Errors) -> list[tuple[tuple[int, int], str, dict[str, Any]]]:
    """Per-clip time rules and per-track overlap; returns ((track, clip) indexes, track type, clip)
    of the sound clips. A clip's path is written only for an error (a valid 2,000-clip timeline
    writes none)."""
    sound: list[tuple[tuple[int, int], str, dict[str, Any]]] = []
    for i, track in enumerate(tracks):
        track_id, track_type = track["id"], track["type"]
        placed: list[tuple[int, int, int, str]] = []  # (start, end, clip index, id) of non-deleted clips
        for j, clip in enumerate(track["clips"] or ()):
            if clip is None:
                continue
            if clip["track_id"] is None and isinstance(track_id, str):
                clip["track_id"] = track_id
            elif clip["track_id"] != track_id and track_id is not None:
                errors.add(f"{_clip_path(i, j)}.track_id", f"Must be the id of its track ({track_id!r}).")
            # Most clips have no effects: nothing to check, and their speed is 1.
            effects_valid = not clip["effects"] or check_clip_effects(clip, _clip_path(i, j), errors)
            start, duration, in_point, out_point = (
                clip["start_ms"], clip["duration_ms"], clip["in_point_ms"], clip["out_point_ms"]
            )
            if start is None or duration is None or in_point is None or out_point is None or clip["deleted"] is None:
                continue
            if out_point <= in_point:
                errors.add(f"{_clip_path(i, j)}.out_point_ms", f"Must be greater than in_point_ms ({in_point}).")
                continue
            if not effects_valid:  # its speed, and so its length, is not known
                continue
            expected = expected_duration_ms(clip) if clip["effects"] else out_point - in_point
            if duration != expected:
                rate = clip_speed(clip)
                rule = "out_point_ms - in_point_ms"
                rule = rule if rate == 1 else f"round(({rule}) / {rate:g}), at its speed"
                errors.add(f"{_clip_path(i, j)}.duration_ms", f"Must equal {rule} ({expected}).")
                continue
            if track_type is not None and clip["media_file_id"] is not None:
                sound.append(((i, j), track_type, clip))
            if not clip["deleted"]:
                placed.append((start, start + duration, j, clip["id"]))
        placed.sort()
        latest: tuple[int, int, int, str] | None = None  # the clip reaching furthest so far
        for start, end, j, ident in placed:  # equal times: in the track's order
            if latest is not None and start < latest[1]:
                errors.add(
                    f"{_clip_path(i, j)}.start_ms",
                    f"Overlaps clip {latest[3]!r} ({latest[0]}-{latest[1]} ms) on the same track.",
                )
            if latest is None or end > latest[1]:
                latest = (start, end, j, ident)
    return sound


def _clip_path(track: int, clip: int) -> str:
    return f"tracks[{track}].clips[{clip}]"


def _check_media(project: Project, clips: list[tuple[tuple[int, int], str, dict[str, Any]]], errors: Errors) -> None:
    """Every clip's media: a ready file of this project, of a type its track can hold, long enough."""
    canonical: dict[str, str] = {}
    for _, _, c in clips:
        raw_id = c["media_file_id"]
        if raw_id not in canonical:
            canonical[raw_id] = str(uuid.UUID(raw_id))
        c["media_file_id"] = canonical[raw_id]  # stored in canonical form
    if not canonical:
        return
    # One query for the whole timeline. Another project's file is reported exactly like a missing
    # one: its existence is not the caller's business.
    media = _project_media(project, set(canonical.values()))
    fits: dict[tuple[str, str], float | tuple[str, str]] = {}  # judged once per file and track type
    for where, track_type, clip in clips:
        key = (clip["media_file_id"], track_type)
        fit = fits.get(key)
        if fit is None:
            fit = fits[key] = _media_fit(media.get(key[0]), track_type)
        if isinstance(fit, tuple):
            field, message = fit
            errors.add(f"{_clip_path(*where)}.{field}", message)
        elif clip["out_point_ms"] > fit:
            errors.add(f"{_clip_path(*where)}.out_point_ms", f"Past the end of the media file ({int(fit)} ms).")


# FOR SHARE: inside a save's transaction, a file its clips play cannot be deleted until the save
# has written its media_ids (projects/edl/media_use.py); shared locks do not wait for one another.
_MEDIA_OF_PROJECT = (
    "SELECT id::text, status, type, duration_ms FROM media_files WHERE project_id = %s AND id = ANY(%s::uuid[])"
    " FOR SHARE"
)


def _project_media(project: Project, ids: set[str]) -> dict[str, tuple[str, str, int | None]]:
    """{id: (status, type, duration_ms)} of those of `ids` that are this project's files."""
    with connection.cursor() as cursor:
        cursor.execute(_MEDIA_OF_PROJECT, [project.pk, list(ids)])
        return {row[0]: row[1:] for row in cursor.fetchall()}


def _media_fit(row: tuple[str, str, int | None] | None, track_type: str) -> float | tuple[str, str]:
    """How far into the file a clip of a `track_type` track may play (infinite when its length does
    not bound it), or the (field, message) of why no clip of that track may play it at all."""
    if row is None:
        return ("media_file_id", "No media file with this id in this project.")
    status, media_type, duration_ms = row
    if status != MediaStatus.READY:
        return ("media_file_id", f"The media file is not ready (status: {status}).")
    if media_type not in COMPATIBLE_MEDIA[track_type]:
        allowed = " or ".join(sorted(COMPATIBLE_MEDIA[track_type]))
        return ("media_file_id", f"A {track_type} track takes {allowed} media, not {media_type}.")
    if duration_ms is None or media_type == MediaType.IMAGE:
        return math.inf
    return duration_ms


def _check_segments(segments: list[dict[str, Any] | None], errors: Errors) -> None:
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


def _check_pauses(pauses: list[dict[str, Any] | None], errors: Errors) -> None:
    for k, pause in enumerate(pauses):
        if pause is None or pause["start_ms"] is None or pause["end_ms"] is None:
            continue
        if pause["end_ms"] <= pause["start_ms"]:
            errors.add(f"transcript.pauses[{k}].end_ms", f"Must be greater than start_ms ({pause['start_ms']}).")

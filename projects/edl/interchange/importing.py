"""An editor's file as a new version of the timeline: read in a confined child, its clips matched to
the project's media, its tracks saved in one edit, the transcript carried onto the clips."""

from __future__ import annotations

import bisect
import difflib
import posixpath
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from auteur.core.errors import ApplicationError
from auteur.core.untrusted import parse_confined
from auteur.users.models import User
from gpu_tasks.effect_vocabulary import EFFECTS
from media.models import MediaFile, MediaStatus, MediaType
from projects.edl.cuts import clip_speed
from projects.edl.documents import MAX_EFFECTS_PER_CLIP, edl_limits
from projects.edl.effects import check_clip_effects
from projects.edl.field_checks import Errors
from projects.edl.frame_rates import exact_rate
from projects.edl.interchange.export import (
    _reel,
    stable_names,
)
from projects.edl.interchange.formats import (
    _FEATURE_WORDS,
    FORMATS,
    IMPORT_EXTENSIONS,
    LIKENED_LENGTH,
    MARKERS,
    MAX_LIKENED_FILES,
    MAX_LIKENED_NAMES,
    MAX_LISTED_UNMATCHED,
    Report,
    max_import_bytes,
)
from projects.edl.interchange.read import READ
from projects.edl.selectors import edl_frame_rate
from projects.edl.services import edl_edit
from projects.edl.transcripts import map_transcript
from projects.errors import InterchangeInvalid, MediaUnmatched
from projects.models import Project

# ----------------------------------------------------------------------------- import


@dataclass(frozen=True)
class Import:
    version: int
    tracks: int
    clips: int
    frame_rate: float  # the file's, which the timeline takes
    dropped: list[dict[str, Any]]
    matched: list[dict[str, Any]]
    transcript_words: int  # the transcript's words the imported clips still play
    transcript_words_dropped: int  # those deleted before, or that no imported clip plays


def import_format(*, filename: str, fmt: str | None) -> str:
    """The format an upload is read as: the one named, else its extension's."""
    if fmt:
        if fmt not in FORMATS or not FORMATS[fmt].importable:
            importable = ", ".join(sorted(n for n, f in FORMATS.items() if f.importable))
            raise InterchangeInvalid(f"{fmt!r} cannot be imported; importable formats: {importable}.",
                                     details={"format": fmt})
        return fmt
    ext = PurePosixPath(filename.lower()).suffix
    if ext not in IMPORT_EXTENSIONS:
        raise InterchangeInvalid(
            f"Cannot tell the format of {filename!r}: name it with format, or upload a "
            f"{', '.join(sorted(IMPORT_EXTENSIONS))} file.", details={"filename": filename})
    return IMPORT_EXTENSIONS[ext]


def read_plain(data: bytes, fmt: str, rate: float) -> dict[str, Any]:
    """The file's tracks as plain data, read in a confined child (projects/edl/interchange/read.py):
    its shape and what its references expand to are checked before its adapter builds anything, and
    the adapter runs under the parse budget. 422 `interchange_invalid` for a file that is not one,
    `edl_limit_exceeded` past the timeline's limits, `input_too_complex` past the budget."""
    limits = edl_limits()
    result: dict[str, Any] = parse_confined(READ, what="The timeline file", data=data, fmt=fmt, rate=rate,
                                            max_clips=limits.max_clips, max_tracks=limits.max_tracks)
    return result


def _stem(name: str) -> str:
    """A name without its extension, lower case: what an editor's list names a file by."""
    stem, ext = posixpath.splitext(name.strip().lower())
    return stem if stem and ext and " " not in ext and len(ext) <= 6 else name.strip().lower()


# The kinds of file a clip of each kind of track plays, where a name is several files'.
_PLAYS = {"video": (MediaType.VIDEO, MediaType.IMAGE), "audio": (MediaType.AUDIO, MediaType.VIDEO)}


class _Matcher:
    """A clip's media file of the project, tried in this order:

    1. the request's own list (`media`: a name the file gives -> a file's id);
    2. our id, which files this API exported carry;
    3. each name the file gives the clip (its media reference's name, the file name its path ends
       in, the clip's name, its reel or tape), whole and ignoring case, against each file's name
       and its export name (the name with the start of its id, where names repeat);
    4. the same names without their extension (`clip_B` is `clip_B.mov`; `A001C003.mxf` is
       `A001C003.mov`);
    5. a CMX reel made from our id.

    A name that several files answer is ambiguous, unless one only is of a kind the clip's track
    plays (a video file on a video track); the next name is tried then."""

    def __init__(self, files: Sequence[MediaFile], given: Mapping[str, MediaFile] | None = None) -> None:
        self.by_id = {str(m.pk): m for m in files}
        self.given = {k.strip().lower(): v for k, v in (given or {}).items()}
        self.by_name: dict[str, list[MediaFile]] = {}
        self.by_stem: dict[str, list[MediaFile]] = {}
        stable = stable_names(files)
        for key, media in self.by_id.items():
            for name in {media.name, stable[key]}:
                self.by_name.setdefault(name.lower(), []).append(media)
                self.by_stem.setdefault(_stem(name), []).append(media)
        self.by_reel: dict[str, list[MediaFile]] = {}
        for key, media in self.by_id.items():
            self.by_reel.setdefault(_reel(key), []).append(media)
        self.short: dict[str, str] = {}  # a stem cut short -> the stem (`candidates`)
        self.likened = 0  # names searched for files like them, at most MAX_LIKENED_NAMES

    @staticmethod
    def names(clip: Mapping[str, Any]) -> list[str]:
        names = [str(n) for n in clip.get("names") or ()]
        if clip.get("reel"):
            names.append(str(clip["reel"]))
        return names

    def match(self, clip: Mapping[str, Any], kind: str) -> MediaFile | None:
        names = self.names(clip)
        for name in names:
            if name.strip().lower() in self.given:
                return self.given[name.strip().lower()]
        ours = clip.get("media_file_id")
        if isinstance(ours, str) and ours in self.by_id:
            return self.by_id[ours]
        for index, key in ((self.by_name, str.lower), (self.by_stem, _stem)):
            for name in names:
                found = self._one(index.get(key(name.strip()), []), kind)
                if found is not None:
                    return found
        reel = clip.get("reel")
        return self._one(self.by_reel.get(str(reel).upper(), []) if reel else [], kind)

    @staticmethod
    def _one(found: list[MediaFile], kind: str) -> MediaFile | None:
        unique = list(dict.fromkeys(found))
        if len(unique) > 1:
            unique = [m for m in unique if m.type in _PLAYS[kind]]
        return unique[0] if len(unique) == 1 else None

    def candidates(self, clip: Mapping[str, Any]) -> list[MediaFile]:
        """The files a clip that matched none could mean: those its names answer (more than one),
        else those whose names are most like them."""
        names = self.names(clip)
        several = [m for name in names for index, key in ((self.by_name, str.lower), (self.by_stem, _stem))
                   for m in index.get(key(name.strip()), [])]
        if several:
            return list(dict.fromkeys(several))[:5]
        if len(self.by_stem) > MAX_LIKENED_FILES or self.likened >= MAX_LIKENED_NAMES:
            return []
        self.likened += 1
        close = {c for stem in {_stem(name)[:LIKENED_LENGTH] for name in names}
                 for c in difflib.get_close_matches(stem, self._short_stems(), n=5, cutoff=0.6)}
        return list(dict.fromkeys(m for stem in sorted(close) for m in self.by_stem[self.short[stem]]))[:5]

    def _short_stems(self) -> list[str]:
        """The files' stems cut to LIKENED_LENGTH, for a likeness search of bounded cost."""
        if not self.short:
            self.short = {stem[:LIKENED_LENGTH]: stem for stem in self.by_stem}
        return list(self.short)


def _display_name(item: Mapping[str, Any]) -> str:
    """What an unmatched clip is called in the answer: its first name that is more than a number
    (a CMX 3600 event without a clip name is named by its number), else its reel."""
    names = _Matcher.names(item)
    return next((n for n in names if not n.strip().isdigit()), names[0] if names else "(unnamed clip)")


def _clip_times(item: Mapping[str, Any], lead_ms: int, media_ms: int | None,
                frame_ms: float) -> tuple[int, int, int, int]:
    """(start, length, in, out) in ms of a file's clip: its edges as the file places them (each
    rounded alone, so neighbours never overlap) after its track's lead, its out point where its
    speed plays that length (the timeline's rule: length = round((out - in) / speed)), never past
    its own edge; a span that frame rounding puts past the media's end (`media_ms`) starts that
    much earlier: its in point rounds by up to half a frame and its length by up to a frame of the
    timeline (`speed` frames of its source). Further past is the file's, and the timeline's
    validation names the clip."""
    speed = float(item["rate"])
    start = int(item["start_ms"])
    length = max(1, int(item.get("end_ms", start + int(item["duration_ms"]))) - start)
    start += lead_ms
    in_ms = max(int(item["in_ms"]), 0)
    span = max(1, round(length * speed))
    for _ in range(3):  # round(span / speed) exceeds the length by at most a step or two (times are bounded)
        if span > 1 and round(span / speed) > length:
            span -= 1
    if media_ms is not None and 0 < in_ms + span - media_ms <= frame_ms * (0.5 + max(1.0, speed)) + 1:
        in_ms = max(0, media_ms - span)
        span = min(span, media_ms - in_ms)
    return start, max(1, round(span / speed)), in_ms, in_ms + max(1, span)


def plain_to_tracks(plain: Mapping[str, Any], matcher: _Matcher, report: Report,
                    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, int]]:
    """The file's tracks (`read_plain`) as EDL tracks; (tracks, unmatched names, clips per matched file).
    A clip without media (a title, a generator, black, a multicam's angles) leaves a gap, reported."""
    tracks: list[dict[str, Any]] = []
    unmatched: dict[str, dict[str, Any]] = {}
    matched: Counter[str] = Counter()
    used_ids: set[str] = set()
    idents: dict[int, str] = {}  # a clip's number in the file -> its id in the timeline
    frame_ms = 1000 / exact_rate(float(plain["frame_rate"]))
    for n, track in enumerate(plain["tracks"]):
        kind = "video" if track["kind"] == "video" else "audio"
        track_id = str(track.get("track_id") or f"{kind}-{n + 1}")[:64]
        if track_id in used_ids:
            track_id = f"{kind}-{n + 1}"
        used_ids.add(track_id)
        clips: list[dict[str, Any]] = []
        for item in track["clips"]:
            if item["markers"]:
                report.drop(MARKERS, "markers are not kept in the timeline", None)
            if item.get("generator"):
                feature = item["generator"] if item["generator"] in _GENERATED else "generator"
                report.drop(feature, _GENERATED[feature], None)
                continue
            media = matcher.match(item, kind)
            if media is None:
                name = _display_name(item)
                unmatched.setdefault(name, {"name": name, "clips": 0, "clip": item})["clips"] += 1
                continue
            ident = str(item.get("piece_id") or f"{track_id}-{len(clips) + 1}")[:64]
            idents[item["number"]] = ident
            start_ms, duration_ms, in_ms, out_ms = _clip_times(
                item, int(track.get("lead_ms") or 0), media.duration_ms if media.type != MediaType.IMAGE else None,
                frame_ms)
            clip: dict[str, Any] = {
                "id": ident, "media_file_id": str(media.pk), "track_id": track_id, "start_ms": start_ms,
                "in_point_ms": in_ms, "out_point_ms": out_ms, "effects": item["effects"], "deleted": False,
                "duration_ms": duration_ms,
            }
            for fade in item["fades"]:
                clip["effects"].append({"type": fade["kind"], "target": fade["target"],
                                        "duration_ms": max(1, min(int(fade["length_ms"]), clip["duration_ms"]))})
            clip["effects"] = _held_effects(clip, report)
            clips.append(clip)
            matched[str(media.pk)] += 1
        tracks.append({"id": track_id, "type": kind, "name": track["name"], "clips": clips})
    for feature, why, number in plain["dropped"]:
        report.drop(feature, why, idents.get(number) if number is not None else None)
    # The files each unmatched name could mean, for the names the answer lists only.
    listed = sorted(unmatched.values(), key=lambda u: u["name"])
    for entry in listed[:MAX_LISTED_UNMATCHED]:
        entry["candidates"] = [{"media_file_id": str(m.pk), "name": m.name}
                               for m in matcher.candidates(entry.pop("clip"))]
    for entry in listed[MAX_LISTED_UNMATCHED:]:
        del entry["clip"]
    return tracks, listed, dict(matched)


def _held_effects(clip: dict[str, Any], report: Report) -> list[dict[str, Any]]:
    """The clip's effects that it can hold (a file may give a clip a text overlay that starts after
    its end, two crops, more effects than a clip takes); each other one reported, never refusing
    the file for it. Each effect is checked once, alone on the clip."""
    held: list[dict[str, Any]] = []
    kinds: set[str] = set()
    for effect in clip["effects"]:
        kind = str(effect.get("type")) if isinstance(effect, Mapping) else "effects"
        errors = Errors()
        check_clip_effects({**clip, "effects": [effect]}, "clip", errors)
        why = errors.items[0]["message"] if errors.items else None
        if why is None and kind in kinds and EFFECTS[kind].single:
            why = f"a clip has one {kind} effect at most"
        if why is None and len(held) >= MAX_EFFECTS_PER_CLIP:
            why = f"a clip holds {MAX_EFFECTS_PER_CLIP} effects at most"
        if why is not None:
            report.drop(kind if kind in _FEATURE_WORDS else "effects", f"the clip cannot hold it: {why}",
                        str(clip["id"]))
            continue
        held.append(effect)
        kinds.add(kind)
    return held


# What a clip without media is, in the report: it leaves a gap where it played.
_GENERATED = {
    "title": "a title has no media file: its place is left as a gap (its text is not read)",
    "multicam": "a multicam clip's angles are not read: its place is left as a gap",
    "generator": "a generator (a colour matte, bars, black, a graphic) has no media file: its place is left as "
                 "a gap",
}


def _given_media(media: Mapping[str, str], files: Sequence[MediaFile]) -> dict[str, MediaFile]:
    """The request's list of a name the file gives -> a file of the project, each id checked:
    another project's or user's file, or one that is not there, is refused as unknown."""
    by_id = {str(m.pk): m for m in files}
    unknown = sorted({str(v) for v in media.values() if str(v) not in by_id})
    if unknown:
        raise ApplicationError(f"`media` names {len(unknown)} file(s) this project does not hold: "
                               + ", ".join(unknown[:5]), code="validation_error",
                               details={"fields": {"media": [f"Unknown media file: {u}" for u in unknown[:20]]}})
    return {name: by_id[str(media_id)] for name, media_id in media.items()}


class _ClipsAt:
    """The clip that plays a timeline time: audio tracks first, then video, each in track order
    (as a transcription is written); a bisect per track."""

    def __init__(self, tracks: Sequence[Mapping[str, Any]]) -> None:
        ordered = sorted(tracks, key=lambda t: t.get("type") != "audio")
        self.tracks = []
        for track in ordered:
            clips = sorted((c for c in track.get("clips") or [] if isinstance(c, Mapping) and not c.get("deleted")
                            and isinstance(c.get("start_ms"), int)), key=lambda c: c["start_ms"])
            self.tracks.append(([c["start_ms"] for c in clips], clips))

    def at(self, t: int) -> Mapping[str, Any] | None:
        for starts, clips in self.tracks:
            i = bisect.bisect_right(starts, t) - 1
            if i >= 0 and t < clips[i]["start_ms"] + int(clips[i].get("duration_ms") or 0):
                return clips[i]
        return None


def transcript_onto(
    transcript: Mapping[str, Any], old_tracks: Sequence[Mapping[str, Any]], new_tracks: Sequence[dict[str, Any]]
) -> tuple[list[dict[str, Any]], int, int]:
    """The transcript's words on the imported timeline: (segments, words kept, words before).

    Each kept word goes back to its file's source time through the clip it was on, then onto
    every imported clip that plays that source time (projects.edl.transcripts.map_transcript, as
    a transcription is written). Deleted words are the cuts the file already made: they are
    dropped, as are words no imported clip plays; so are edited segment texts and pauses, which
    belong to the old clips."""
    clips = {str(c.get("id")): c for t in old_tracks for c in t.get("clips") or [] if isinstance(c, Mapping)}
    playing = _ClipsAt(old_tracks)
    sources: dict[tuple[str, str], dict[str, Any]] = {}  # (segment, clip) -> a source-time segment
    before = 0
    for n, segment in enumerate(transcript.get("segments") or []):
        words = [w for w in segment.get("words") or [] if isinstance(w.get("start_ms"), int)]
        before += len(words)
        if segment.get("deleted"):
            continue
        named = clips.get(str(segment.get("clip_id")))
        for word in words:
            # A segment written by a transcription names its clip; a client's own is placed by time.
            clip = named or playing.at(word["start_ms"])
            if word.get("deleted") or clip is None or not clip.get("media_file_id"):
                continue
            speed, start, inp = clip_speed(clip), clip["start_ms"], clip["in_point_ms"]
            source = sources.setdefault((str(n), str(clip.get("id"))), {
                "media": str(clip["media_file_id"]), "speaker": segment.get("speaker"),
                "language": segment.get("language"), "words": []})
            source["words"].append({
                **word, "start_ms": inp + round((word["start_ms"] - start) * speed),
                "end_ms": inp + round((int(word.get("end_ms") or word["start_ms"]) - start) * speed)})
    by_media: dict[str, list[dict[str, Any]]] = {}
    for source in sources.values():
        by_media.setdefault(source["media"], []).append(source)
    segments: list[dict[str, Any]] = []
    budget = edl_limits().max_words  # a file whose many clips play one file's words: what a timeline holds
    for media_id, source_segments in by_media.items():
        language = next((s["language"] for s in source_segments if s.get("language")), None)
        source_segments.sort(key=lambda s: s["words"][0]["start_ms"])
        placed = map_transcript({"segments": source_segments, "language": language},
                                media_file_id=media_id, tracks=new_tracks, max_words=budget)
        budget -= sum(len(s["words"]) for s in placed)
        segments.extend(placed)
    segments.sort(key=lambda s: s["start_ms"])
    return segments, sum(len(s["words"]) for s in segments), before


def timeline_import(*, user: User, project: Project, data: bytes, fmt: str, expected_version: int | None = None,
                    frame_rate: float | None = None, media: Mapping[str, str] | None = None) -> Import:
    """Replace the timeline's tracks by the file's: one save, so one undo step. The timeline takes
    the file's frame rate; a CMX 3600 list, which states none, is read at `frame_rate` (default:
    the timeline's). `media` names a file of the project for a name the file gives."""
    limit = max_import_bytes()
    if len(data) > limit:
        raise ApplicationError(f"The file is {len(data)} bytes; the limit for an import is {limit}.",
                               code="file_too_large", details={"size_bytes": len(data), "max_bytes": limit})
    files = list(MediaFile.objects.filter(project=project, user=user).exclude(status=MediaStatus.UPLOADING))
    given = _given_media(media or {}, files)
    plain = read_plain(data, fmt, frame_rate or edl_frame_rate(project=project))
    report = Report()
    tracks, unmatched, matched = plain_to_tracks(plain, _Matcher(files, given), report)
    if unmatched:
        raise MediaUnmatched(
            f"{len(unmatched)} media name(s) in the file match no file of this project: "
            + ", ".join(u["name"] for u in unmatched[:10]) + ("..." if len(unmatched) > 10 else "")
            + ". Upload them, rename them, or name a file for each with `media`.",
            details={"unmatched": unmatched[:MAX_LISTED_UNMATCHED], "count": len(unmatched)},
        )
    words = {"kept": 0, "before": 0}
    rate = float(plain["frame_rate"])

    def change(doc: dict[str, Any]) -> dict[str, Any]:
        transcript = doc.get("transcript") or {}
        segments, words["kept"], words["before"] = transcript_onto(transcript, doc.get("tracks") or [], tracks)
        doc["tracks"] = tracks
        doc["settings"] = {**(doc.get("settings") or {}), "frame_rate": rate}
        doc["transcript"] = {"generated_at": transcript.get("generated_at"), "segments": segments, "pauses": []}
        return doc

    saved = edl_edit(project=project, change=change, expected_version=expected_version)
    assert saved is not None  # change() always returns a document
    by_id = {str(m.pk): m for m in files}
    return Import(
        version=saved["version"], tracks=len(tracks), clips=sum(len(t["clips"]) for t in tracks), frame_rate=rate,
        dropped=report.items(),
        matched=[{"media_file_id": k, "name": by_id[k].name, "clips": v} for k, v in sorted(matched.items())],
        transcript_words=words["kept"],
        # (A word that several imported clips play is kept once on each: never a negative count.)
        transcript_words_dropped=max(0, words["before"] - words["kept"]),
    )

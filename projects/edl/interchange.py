"""Timeline interchange: the timeline as a professional editor's file (OTIO, FCPXML, FCP7 XML,
CMX 3600 EDL, AAF), and such a file back as a new version of the timeline.

Export reads the cuts from `projects.edl.cuts` exactly as the render's snapshot does
(`transcript_cuts` then `cut_tracks`): each piece the render plays is one clip of the file, at its
edited time, with its own source in point, so the file's cut list is the render's by construction.
The file is written by OpenTimelineIO's adapters from one OTIO timeline; what a format cannot
carry is removed from that timeline before it is written and listed in the report, never lost
silently. The formats and what each carries are declared once, in `FORMATS`.

How the timeline maps to OTIO:
- a track is a track of its kind; a piece is a clip whose `source_range` starts at the piece's
  in point and lasts its length on the timeline (OTIO's convention: a clip's duration is its
  record duration), with a `LinearTimeWarp` of the clip's speed; the space between pieces is a gap;
- a fade is a dissolve (`Transition`) from or to a gap: black on a video track, silence on an
  audio one;
- volume, text, crop and fit are OTIO effects named `auteur.<type>` whose metadata holds the
  effect as the timeline has it (OTIO files keep them all; FCP7 XML and FCPXML also carry an
  audio clip's volume);
- speed and volume in FCP7 XML, FCPXML and AAF, which their adapters do not write or read, are
  added to and read from the adapter's document by `interchange_formats`;
- media is named by a stable name (the file's name, with the start of its id where two files
  share one) and referenced by a relink path, or by a signed URL when asked;
- markers (opt-in) mark each transcript cut, on the piece that plays right after it.

Import is the reverse, for every format: every clip's media is matched to a file of the
project (by id where the file carries ours, else by name), and the timeline's tracks are replaced
in one save (one undo step). The cuts are real edits in the file, so the transcript's deleted
words are not carried over (they would be cut twice); its other words are placed on the imported
clips that play them (`transcript_onto`), and the report counts those kept and those dropped.

Work is bounded: an import's file size is checked before it is parsed, and the file is read in a
confined child (projects/edl/interchange_read.py, through auteur.untrusted): its shape (depth,
elements, entity declarations) and what its references expand to are checked against the
timeline's limits before an adapter builds anything, and the adapter runs under CPU, memory and
time limits. This process only matches the plain tracks the child answers to the project's media
and saves them. An export is at most the render's pieces of a timeline within its limits.
"""

from __future__ import annotations

import base64
import bisect
import difflib
import os
import posixpath
import tempfile
import uuid
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import quote

import aaf2.mobid
import opentimelineio as otio
from django.conf import settings

from auteur.errors import ApplicationError
from auteur.untrusted import parse_confined
from auteur.users.models import User
from gpu_tasks.effect_vocabulary import EFFECTS
from media.models import MediaFile, MediaStatus, MediaType
from media.services.downloads import media_urls
from projects.edl import interchange_formats as formats
from projects.edl.cuts import DEFAULT_PADDING_MS, Cuts, clip_speed, count_pieces, cut_tracks, transcript_cuts
from projects.edl.documents import MAX_EFFECTS_PER_CLIP, edl_limits
from projects.edl.effects import check_clip_effects
from projects.edl.field_checks import Errors
from projects.edl.frame_rates import cmx_timecodes, exact_rate, is_drop_frame_rate, stored_rate
from projects.edl.interchange_read import ADAPTERS, READ
from projects.edl.selectors import edl_frame_rate, edl_get
from projects.edl.services import edl_edit
from projects.edl.transcripts import map_transcript
from projects.edl.validation import check_edl_limits
from projects.errors import EdlLimitExceeded, InterchangeInvalid, MediaUnmatched
from projects.models import Project

# ----------------------------------------------------------------------------- formats

SPEED, FADES, VOLUME, TEXT, CROP, FIT = "speed", "fades", "volume", "text", "crop", "fit"
MARKERS, AUDIO_TRACKS, EXTRA_VIDEO_TRACKS = "markers", "audio_tracks", "extra_video_tracks"
# The effects that only travel as `auteur.<type>` OTIO effects.
PLAIN_EFFECTS = (VOLUME, TEXT, CROP, FIT)


@dataclass(frozen=True)
class InterchangeFormat:
    """One target format: its OTIO adapter, file, and what of a timeline it carries."""

    name: str
    adapter: str
    extension: str
    content_type: str
    binary: bool
    carries: frozenset[str]
    importable: bool
    editors: str
    # Why each feature it does not carry is dropped, in words for the report.
    notes: Mapping[str, str] = field(default_factory=dict)


_ALL = frozenset({SPEED, FADES, VOLUME, TEXT, CROP, FIT, MARKERS, AUDIO_TRACKS, EXTRA_VIDEO_TRACKS})
_ONLY_OTIO = "only OpenTimelineIO files carry it"

FORMATS: dict[str, InterchangeFormat] = {
    f.name: f
    for f in (
        InterchangeFormat("otio", ADAPTERS["otio"], "otio", "application/json", False, _ALL, True,
                          "DaVinci Resolve, Premiere Pro (OTIO import), any OTIO tool"),
        InterchangeFormat(
            "fcpxml", ADAPTERS["fcpxml"], "fcpxml", "application/xml", False,
            frozenset({SPEED, VOLUME, MARKERS, AUDIO_TRACKS, EXTRA_VIDEO_TRACKS}), True,
            "Final Cut Pro, DaVinci Resolve",
            notes={FADES: "the FCPXML adapter writes no transitions",
                   VOLUME: "a clip of a video track has no sound of its own in the file"},
        ),
        InterchangeFormat(
            "fcp7xml", ADAPTERS["fcp7xml"], "xml", "application/xml", False,
            frozenset({SPEED, FADES, VOLUME, MARKERS, AUDIO_TRACKS, EXTRA_VIDEO_TRACKS}), True,
            "Premiere Pro, DaVinci Resolve, Final Cut Pro 7",
            notes={VOLUME: "a clip of a video track has no sound of its own in the file"},
        ),
        InterchangeFormat(
            "edl", ADAPTERS["edl"], "edl", "text/plain", False, frozenset({SPEED, MARKERS}), True,
            "Avid Media Composer, DaVinci Resolve, Premiere Pro",
            notes={FADES: "the CMX 3600 adapter writes a dissolve from black as a dissolve from the clip before",
                   AUDIO_TRACKS: "a CMX 3600 list holds one track: the first video track",
                   EXTRA_VIDEO_TRACKS: "a CMX 3600 list holds one track: the first video track"},
        ),
        InterchangeFormat(
            "aaf", ADAPTERS["aaf"], "aaf", "application/octet-stream", True,
            frozenset({SPEED, FADES, AUDIO_TRACKS, EXTRA_VIDEO_TRACKS}), True, "Avid Media Composer, Pro Tools",
            notes={MARKERS: "the AAF adapter writes no markers"},
        ),
    )
}
# The formats' names, as the API schema's one enum of them (auteur/settings/api.py names it).
FORMAT_NAMES = list(FORMATS)

IMPORT_EXTENSIONS = {f".{f.extension}": f.name for f in FORMATS.values() if f.importable}

_FEATURE_WORDS = {
    SPEED: "speed changes", FADES: "fades", VOLUME: "volume changes", TEXT: "text overlays", CROP: "crops",
    FIT: "fit modes", MARKERS: "cut markers", AUDIO_TRACKS: "audio tracks", EXTRA_VIDEO_TRACKS: "video tracks",
    "title": "titles", "multicam": "multicam clips", "generator": "generators",
    "compound_clips": "compound clip groupings", "transitions": "transitions", "effects": "effects",
}

MAX_XML_GAIN_DB = 12.0
MAX_REPORTED_IDS = 20  # clip ids listed per dropped feature; the count is always whole
MAX_LISTED_UNMATCHED = 50  # unmatched names an answer lists (with the files each could mean); the count is whole
# Files like an unmatched name are looked for among at most this many files, for this many names,
# comparing this many characters: a bounded search (difflib's ratio is quadratic in the length),
# whatever the names a project's files and an uploaded file hold.
MAX_LIKENED_FILES, MAX_LIKENED_NAMES, LIKENED_LENGTH = 500, 10, 40
RELINK_ROOT = "media"


def max_import_bytes() -> int:
    return int(getattr(settings, "AUTEUR_INTERCHANGE_MAX_BYTES", 5 * 1024 * 1024))


# ----------------------------------------------------------------------------- report


class Report:
    """What a conversion could not carry: per feature, how many clips (or tracks, or cuts) and which."""

    def __init__(self) -> None:
        self._counts: Counter[str] = Counter()
        self._ids: dict[str, dict[str, None]] = {}  # (an ordered set)
        self._why: dict[str, str] = {}

    def drop(self, feature: str, why: str, ident: str | None = None) -> None:
        """One thing `feature` loses; a clip's pieces are one clip (`ident`: the clip's id)."""
        self._why.setdefault(feature, why)
        ids = self._ids.setdefault(feature, {})
        if ident is None:
            self._counts[feature] += 1
        elif ident not in ids:
            ids[ident] = None
            self._counts[feature] += 1

    def items(self) -> list[dict[str, Any]]:
        return [
            {"feature": feature, "count": count, "message": f"{_FEATURE_WORDS.get(feature, feature)} dropped: "
             f"{self._why[feature]}.", "clip_ids": list(self._ids.get(feature, {}))[:MAX_REPORTED_IDS]}
            for feature, count in sorted(self._counts.items())
        ]


# ----------------------------------------------------------------------------- time


def _frames(ms: int, rate: float) -> int:
    return round(ms * rate / 1000)


def _rt(frames: int, rate: float) -> otio.opentime.RationalTime:
    return otio.opentime.RationalTime(frames, rate)


def _range(start: int, duration: int, rate: float) -> otio.opentime.TimeRange:
    return otio.opentime.TimeRange(_rt(start, rate), _rt(duration, rate))


# ----------------------------------------------------------------------------- export


@dataclass(frozen=True)
class MediaEntry:
    media_file_id: str
    name: str  # the stable name clips carry
    path: str  # the relink path
    url: str | None = None
    expires_at: str | None = None
    missing: bool = False
    frame_size: tuple[int, int] | None = None  # (width, height), as the probe measured the picture


@dataclass(frozen=True)
class Export:
    format: str
    filename: str
    content_type: str
    data: bytes
    dropped: list[dict[str, Any]]
    media: list[MediaEntry]
    version: int
    pieces: int
    duration_ms: int
    frame_rate: float  # the timeline's, which the file counts its frames at
    drop_frame: bool  # whether its timecode is drop-frame

    def content(self) -> tuple[str, str]:
        """(encoding, content): the file as text, or base64 for a binary format."""
        if FORMATS[self.format].binary:
            return "base64", base64.b64encode(self.data).decode()
        return "utf-8", self.data.decode()


def stable_names(files: Iterable[MediaFile]) -> dict[str, str]:
    """Each file's name in an exported timeline: its own, or with the start of its id where
    several files share it (an editor relinks by name, so a name must name one file)."""
    files = sorted(files, key=lambda m: str(m.pk))
    counts = Counter(m.name for m in files)
    names = {}
    for media in files:
        if counts[media.name] == 1:
            names[str(media.pk)] = media.name
        else:
            stem, ext = posixpath.splitext(media.name)
            names[str(media.pk)] = f"{stem} ({str(media.pk)[:8]}){ext}"
    return names


def _mob_id(media_file_id: str) -> str:
    """A stable AAF MobID for a media file: its id as the UMID's material number."""
    mob = aaf2.mobid.MobID.new()
    mob.material = uuid.UUID(media_file_id)
    return str(mob)


def _reel(media_file_id: str) -> str:
    """A CMX 3600 reel name (8 characters, no spaces): the start of the file's id."""
    return media_file_id.replace("-", "")[:8].upper()


def _fade(kind: str, duration_frames: int, rate: float, target: str) -> otio.schema.Transition:
    fade_in = kind == "fade_in"
    transition = otio.schema.Transition(
        name=kind, transition_type=otio.schema.TransitionTypes.SMPTE_Dissolve,
        in_offset=_rt(0 if fade_in else duration_frames, rate), out_offset=_rt(duration_frames if fade_in else 0, rate),
    )
    transition.metadata["auteur"] = {"type": kind, "target": target}
    transition.metadata["AAF"] = _aaf_dissolve(fade_in, 0 if fade_in else duration_frames)
    return transition


def _aaf_dissolve(fade_in: bool, cut_point: int) -> dict[str, Any]:
    """What the AAF writer requires of a transition: its operation, its level's keyframes, and its
    cut point (the frames before the cut: AAF's form of OTIO's in_offset, which its reader reads)."""
    return {
        "PointList": [{"Value": 0 if fade_in else 1, "Time": 0}, {"Value": 1 if fade_in else 0, "Time": 1}],
        "CutPoint": cut_point,
        "OperationGroup": {"Operation": {
            "DataDefinition": {"Name": "Picture"}, "Description": "Video Dissolve", "Name": "VideoDissolve_2",
            "Identification": "0c3bea41-fc05-11d2-8a29-0050040ef7d2", "IsTimeWarp": False, "Bypass": 1,
            "NumberInputs": 2, "OperationCategory": "OperationCategory_Effect",
        }},
    }


def _gap(frames: int, rate: float) -> otio.schema.Gap:
    return otio.schema.Gap(source_range=_range(0, frames, rate))


def _track_fades(piece: Mapping[str, Any], track_type: str, fmt: InterchangeFormat,
                 report: Report, frames: int, rate: float) -> dict[str, int]:
    """The fades of a piece that the file shows, in frames: a fade belongs to the piece that holds
    the clip's own start (fade_in) or end (fade_out), as in the render."""
    fades: dict[str, int] = {}
    for effect in piece.get("effects") or ():
        kind = effect.get("type")
        if kind not in ("fade_in", "fade_out") or not piece["first" if kind == "fade_in" else "last"]:
            continue
        target = effect.get("target", "both")
        if FADES not in fmt.carries:
            report.drop(FADES, fmt.notes.get(FADES, "the format has no fades"), piece["clip_id"])
        elif target not in ("both", track_type):
            report.drop(FADES, f"a {target}-only fade on a {track_type} track is a fade of the whole clip in an "
                        "editor's file", piece["clip_id"])
        else:
            fades[kind] = max(1, min(frames, _frames(int(effect["duration_ms"]), rate)))
    return fades


def _clip(piece: Mapping[str, Any], media: MediaEntry, fmt: InterchangeFormat, rate: float,
          frames: int, available_ms: int | None, report: Report, track_type: str) -> otio.schema.Clip:
    media_id = media.media_file_id
    reference = otio.schema.ExternalReference(target_url=media.url or media.path)
    reference.name = media.name
    in_frames = _frames(int(piece["in_point_ms"]), rate)
    # A still picture (or a file whose length is unknown) holds as much as its clips play: every
    # format's writer needs the media's range.
    available = _frames(available_ms, rate) if available_ms else in_frames + frames
    reference.available_range = _range(0, max(available, 1), rate)
    reference.metadata["auteur"] = {"media_file_id": media_id}
    if media.frame_size:
        reference.metadata["auteur"]["frame_size"] = list(media.frame_size)
    reference.metadata["AAF"] = {"MobID": _mob_id(media_id)}
    clip = otio.schema.Clip(name=media.name, media_reference=reference,
                            source_range=_range(in_frames, frames, rate))
    clip.metadata["auteur"] = {
        "clip_id": str(piece["clip_id"]), "piece_id": str(piece["id"]), "media_file_id": media_id,
        "in_point_ms": piece["in_point_ms"], "out_point_ms": piece["out_point_ms"],
        "start_ms": piece["start_ms"], "duration_ms": piece["duration_ms"],
    }
    clip.metadata["cmx_3600"] = {"reel": _reel(media_id)}
    for effect in piece.get("effects") or ():
        kind = effect.get("type")
        if kind == SPEED:
            if SPEED in fmt.carries:
                clip.effects.append(otio.schema.LinearTimeWarp(name="speed", time_scalar=float(effect["rate"])))
            else:
                report.drop(SPEED, fmt.notes.get(SPEED, "the format has no speed"), str(piece["clip_id"]))
        elif kind in PLAIN_EFFECTS:
            why = _volume_problem(effect, fmt, track_type) if kind == VOLUME and kind in fmt.carries else None
            ours = _text_on_piece(effect, piece) if kind == TEXT else dict(effect)
            if why:
                report.drop(kind, why, str(piece["clip_id"]))
            elif ours is None:
                continue  # a text overlay this piece of its clip does not show
            elif kind in fmt.carries:
                clip.effects.append(otio.schema.Effect(name=kind, effect_name=f"auteur.{kind}",
                                                       metadata={"auteur": ours}))
            else:
                report.drop(kind, fmt.notes.get(kind, _ONLY_OTIO), str(piece["clip_id"]))
    return clip


def _text_on_piece(effect: Mapping[str, Any], piece: Mapping[str, Any]) -> dict[str, Any] | None:
    """A text overlay as the piece shows it: its times count in the clip's own time, where the
    piece starts `clip_offset_ms` in; None where the piece shows none of it."""
    offset, length = int(piece.get("clip_offset_ms") or 0), int(piece["duration_ms"])
    start = int(effect.get("start_ms") or 0)
    shown = effect.get("duration_ms")
    end = start + int(shown) if shown is not None else None
    first, last = max(start, offset), min(end, offset + length) if end is not None else offset + length
    if last <= first:
        return None
    text = {**effect, "start_ms": first - offset}
    if end is not None:
        text["duration_ms"] = last - first
    return text


def _volume_problem(effect: Mapping[str, Any], fmt: InterchangeFormat, track_type: str) -> str | None:
    """Why `fmt` cannot carry this volume change, if it cannot. The XML formats give a level to an
    audio clip only, and their level stops at +12 dB (an FCP7 level of 3.98)."""
    if fmt.name == "otio":
        return None
    if track_type != "audio":
        return fmt.notes[VOLUME]
    if float(effect.get("gain_db") or 0) > MAX_XML_GAIN_DB:
        return f"the format's level stops at +{MAX_XML_GAIN_DB:g} dB"
    return None


def _cut_markers(cuts: Cuts, duration_ms: int) -> list[tuple[int, int]]:
    """(edited time, removed ms) of every cut inside the timeline: where it joins, and how much."""
    return [(a - cuts.removed_before(a), b - a) for a, b in cuts.spans if a < duration_ms]


def timeline_to_otio(
    *, edl: Mapping[str, Any], pieces: Sequence[Mapping[str, Any]], cuts: Cuts, fmt: InterchangeFormat,
    media: Mapping[str, MediaEntry], available: Mapping[str, int | None], markers: bool, name: str,
    report: Report,
) -> otio.schema.Timeline:
    """The cut timeline (`pieces`: `cut_tracks` of the timeline's tracks) as an OTIO timeline,
    less what `fmt` cannot carry (in `report`)."""
    rate = exact_rate(float(edl["settings"]["frame_rate"]))
    timeline = otio.schema.Timeline(name=name)
    timeline.global_start_time = _rt(0, rate)
    timeline.metadata["auteur"] = {"version": edl["version"], "frame_rate": rate}
    first_video = next((t["id"] for t in pieces if t["type"] == "video"), None)
    cut_points = {_frames(at, rate): (at, removed) for at, removed in _cut_markers(cuts, int(edl["settings"].get(
        "duration_ms") or 0))} if markers else {}
    marked: set[int] = set()
    for track in pieces:
        kind = track["type"]
        if kind == "audio" and AUDIO_TRACKS not in fmt.carries:
            report.drop(AUDIO_TRACKS, fmt.notes[AUDIO_TRACKS], None)
            continue
        if kind == "video" and track["id"] != first_video and EXTRA_VIDEO_TRACKS not in fmt.carries:
            report.drop(EXTRA_VIDEO_TRACKS, fmt.notes[EXTRA_VIDEO_TRACKS], None)
            continue
        out = otio.schema.Track(name=track.get("name") or track["id"],
                                kind=otio.schema.TrackKind.Video if kind == "video" else otio.schema.TrackKind.Audio)
        out.metadata["auteur"] = {"track_id": track["id"], "type": kind}
        at = 0  # frames placed so far
        for piece in sorted(track["clips"], key=lambda p: int(p["start_ms"])):
            start_f = _frames(int(piece["start_ms"]), rate)
            end_f = _frames(int(piece["start_ms"]) + int(piece["duration_ms"]), rate)
            frames = end_f - max(start_f, at)
            if frames <= 0:
                report.drop("sub_frame_pieces", "a piece shorter than a frame has no frame of its own in a "
                            "frame-based file", str(piece["clip_id"]))
                continue
            start_f = max(start_f, at)
            fades = _track_fades(piece, kind, fmt, report, frames, rate)
            if start_f > at or "fade_in" in fades:
                out.append(_gap(start_f - at, rate))
            if "fade_in" in fades:
                out.append(_fade("fade_in", fades["fade_in"], rate, _target(piece, "fade_in")))
            entry = media[str(piece["media_file_id"])]
            clip = _clip(piece, entry, fmt, rate, frames, available.get(entry.media_file_id), report, kind)
            if start_f in cut_points and piece.get("cut_in") and start_f not in marked:
                when, removed = cut_points[start_f]
                if MARKERS in fmt.carries:
                    marker = otio.schema.Marker(
                        name=f"Cut: {removed / 1000:.3f} s removed",
                        marked_range=otio.opentime.TimeRange(clip.source_range.start_time, _rt(0, rate)),
                        color=otio.schema.MarkerColor.RED)
                    marker.metadata["auteur"] = {"edited_ms": when, "removed_ms": removed}
                    clip.markers.append(marker)
                else:
                    report.drop(MARKERS, fmt.notes.get(MARKERS, "the format has no markers"), None)
                marked.add(start_f)
            out.append(clip)
            at = start_f + frames
            if "fade_out" in fades:
                out.append(_fade("fade_out", fades["fade_out"], rate, _target(piece, "fade_out")))
                out.append(_gap(0, rate))
        timeline.tracks.append(out)
    if fmt.name == "fcpxml":
        _span_primary_storyline(timeline, rate)
    return timeline


def _span_primary_storyline(timeline: otio.schema.Timeline, rate: float) -> None:
    """FCPXML anchors every clip of another track to the item of the first video track (the primary
    storyline) that plays at its start: that track is made to last the whole timeline, with a gap
    where it has nothing (and made, empty, where the timeline has no video track)."""
    video = next((t for t in timeline.tracks if t.kind == otio.schema.TrackKind.Video), None)
    if video is None:
        video = otio.schema.Track(name="Video", kind=otio.schema.TrackKind.Video)
        timeline.tracks.insert(0, video)
    end = max((round(t.duration().to_seconds() * rate) for t in timeline.tracks), default=0)
    missing = end - round(video.duration().to_seconds() * rate)
    if missing > 0:
        video.append(_gap(missing, rate))


def _target(piece: Mapping[str, Any], kind: str) -> str:
    return next((str(e.get("target", "both")) for e in piece.get("effects") or () if e.get("type") == kind), "both")


def _write(timeline: otio.schema.Timeline, fmt: InterchangeFormat, rate: float, drop_frame: bool) -> bytes:
    """The file of `timeline` in `fmt`; its timecode (CMX 3600's times, the XML formats' display
    of them) drop-frame where asked and the rate has it."""
    if fmt.binary:
        # The AAF adapter writes to a file only.
        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, f"timeline.{fmt.extension}")
            otio.adapters.write_to_file(timeline, path, adapter_name=fmt.adapter)
            formats.aaf_add_speed(timeline, path)
            with open(path, "rb") as handle:
                return handle.read()
    if fmt.adapter == "fcp_xml":
        return formats.fcp7_write(timeline, drop_frame).encode()
    if fmt.adapter == "fcpx_xml":
        return formats.fcpx_write(timeline, drop_frame).encode()
    if fmt.adapter == "cmx_3600":
        if not any(True for _ in timeline.find_clips()):
            # A list of no events (the adapter's writer fails on a track without items).
            title = "".join(ch if ch.isprintable() else " " for ch in timeline.name)
            return cmx_timecodes(f"TITLE: {title}\n", rate, drop_frame).encode()
        return cmx_timecodes(otio.adapters.write_to_string(timeline, adapter_name=fmt.adapter, rate=rate),
                             rate, drop_frame).encode()
    text: str = otio.adapters.write_to_string(timeline, adapter_name=fmt.adapter)
    return text.encode()


def _max_export_pieces() -> int:
    limits = edl_limits()
    return int(getattr(settings, "AUTEUR_INTERCHANGE_MAX_PIECES", limits.max_clips * 2))


def _media_entries(user: User, project: Project, ids: set[str], *, signed: bool, report: Report,
                   ) -> tuple[dict[str, MediaEntry], dict[str, int | None]]:
    files = list(MediaFile.objects.filter(project=project, user=user, pk__in=ids))
    names = stable_names(files)
    entries: dict[str, MediaEntry] = {}
    available: dict[str, int | None] = {}
    for media in files:
        key = str(media.pk)
        url = expires = None
        if signed and media.status == MediaStatus.READY:
            urls = media_urls(media=media)
            url = urls.download_url
            expires = urls.expires_at.isoformat() if urls.expires_at else None
        entries[key] = MediaEntry(media_file_id=key, name=names[key], path=f"{RELINK_ROOT}/{quote(names[key])}",
                                  url=url, expires_at=expires, frame_size=_frame_size(media))
        available[key] = media.duration_ms
    for key in sorted(ids - entries.keys()):
        name = f"missing-{key[:8]}"
        report.drop("media", "the file was deleted from the project: the clip names it by id", None)
        entries[key] = MediaEntry(media_file_id=key, name=name, path=f"{RELINK_ROOT}/{name}", missing=True)
        available[key] = None
    return entries, available


def _frame_size(media: MediaFile) -> tuple[int, int] | None:
    meta = media.metadata if isinstance(media.metadata, dict) else {}
    width, height = meta.get("width"), meta.get("height")
    return (width, height) if type(width) is int and type(height) is int and width > 0 and height > 0 else None


def timeline_export(*, user: User, project: Project, fmt: str, padding_ms: int = DEFAULT_PADDING_MS,
                    markers: bool = False, signed_urls: bool = False, drop_frame: bool | None = None) -> Export:
    """The project's timeline as the render plays it, in format `fmt` (a key of FORMATS); its
    timecode drop-frame at 29.97 and 59.94 unless `drop_frame` is False."""
    spec = FORMATS[fmt]
    edl = edl_get(project=project)
    check_edl_limits(edl)  # one saved under other limits: refused before anything is computed
    cuts = transcript_cuts(edl.get("transcript") or {}, padding_ms=padding_ms)
    tracks = edl.get("tracks") or []
    count, maximum = count_pieces(tracks, cuts), _max_export_pieces()
    if count > maximum:
        raise EdlLimitExceeded(
            f"An export takes at most {maximum} clips, counting each piece the transcript's cuts split a clip "
            f"into; this timeline makes {count}.",
            details={"limit": "export_pieces", "max": maximum, "count": count, "path": "tracks[].clips"},
        )
    pieces = cut_tracks(tracks, cuts)
    report = Report()
    ids = {str(p["media_file_id"]) for t in pieces for p in t["clips"]}
    media, available = _media_entries(user, project, ids, signed=signed_urls, report=report)
    timeline = timeline_to_otio(edl=edl, pieces=pieces, cuts=cuts, fmt=spec, media=media, available=available,
                                markers=markers, name=project.name or "Timeline", report=report)
    rate = exact_rate(float(edl["settings"]["frame_rate"]))
    drop = is_drop_frame_rate(rate) and drop_frame is not False
    data = _write(timeline, spec, rate, drop)
    stem = "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in (project.name or "timeline"))[:80]
    before = int(edl["settings"].get("duration_ms") or 0)
    return Export(
        format=fmt, filename=f"{stem or 'timeline'}.{spec.extension}", content_type=spec.content_type, data=data,
        frame_rate=stored_rate(rate), drop_frame=drop,
        dropped=report.items(), media=sorted(media.values(), key=lambda m: m.name), version=edl["version"],
        pieces=sum(len(t["clips"]) for t in pieces), duration_ms=cuts.edited_duration(before),
    )


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
    """The file's tracks as plain data, read in a confined child (projects/edl/interchange_read.py):
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
    its own edge; a span that a frame's rounding puts past the media's end (`media_ms`, by at
    most a frame of the timeline) starts that much earlier. Further past is the file's, and the
    timeline's validation names the clip."""
    speed = float(item["rate"])
    start = int(item["start_ms"])
    length = max(1, int(item.get("end_ms", start + int(item["duration_ms"]))) - start)
    start += lead_ms
    in_ms = max(int(item["in_ms"]), 0)
    span = max(1, round(length * speed))
    for _ in range(3):  # round(span / speed) exceeds the length by at most a step or two (times are bounded)
        if span > 1 and round(span / speed) > length:
            span -= 1
    if media_ms is not None and 0 < in_ms + span - media_ms <= frame_ms * max(1.0, speed) + 1:
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

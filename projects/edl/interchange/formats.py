"""The interchange formats: what each is, what it carries, and the limits and report every export
and import share."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import opentimelineio as otio
from django.conf import settings

from projects.edl.interchange.read import ADAPTERS

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

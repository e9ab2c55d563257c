"""Filler words and long pauses marked deleted in a project's EDL transcript, in one undo step.

Fillers are matched per language on the word's spelling, lower-cased and without the
punctuation around it; only sounds that are never a real word of that language are listed
("like" or "este" are sometimes fillers and sometimes meant, so they are left to the user).
A segment is read in the language given, else in its own `language`, else English; a segment
in a language without a list is left alone and named in the result.

A pause is the silence between two consecutive words that are kept (not deleted, not in a
deleted segment, not a filler marked now), over all segments in timeline order: one longer than
``min_pause_ms`` becomes a deleted entry of ``transcript.pauses``, unless an entry already
overlaps it (deleted or one the user restored: either way, the user's). Running it again marks
nothing new. Linear in the transcript but for two sorts (the kept words, the pauses).
"""

from __future__ import annotations

import bisect
import itertools
from dataclasses import dataclass, field
from typing import Any

from auteur.core.collector import collector_paused
from projects.edl.services import edl_edit
from projects.edl.validation import check_edl_limits
from projects.models import Project

FILLERS: dict[str, frozenset[str]] = {
    "en": frozenset({"um", "umm", "uh", "uhh", "uhm", "er", "erm", "hmm", "hm", "mm", "mmm", "ah", "ahh"}),
    "fr": frozenset({"euh", "euhh", "heu", "hum", "hmm", "hm", "mmh"}),
    "de": frozenset({"äh", "ähm", "ähh", "öh", "öhm", "hm", "hmm", "mhm", "em", "ehm"}),
    "es": frozenset({"eh", "ehh", "em", "ehm", "mmm", "hmm", "hm", "mm"}),
    "it": frozenset({"ehm", "eh", "uhm", "mmm", "hmm", "hm"}),
    "pt": frozenset({"hã", "ãh", "ahn", "hum", "hmm", "hm"}),
    "nl": frozenset({"eh", "ehm", "uh", "uhm", "hm", "hmm"}),
}
DEFAULT_LANGUAGE = "en"
DEFAULT_MIN_PAUSE_MS = 1000
# Around a word: ASCII punctuation, and the quotes, dashes and marks of the languages above.
_PUNCTUATION = " \t\n.,;:!?()[]\"'-" + "\u00bf\u00a1\u2026\u201c\u201d\u2018\u2019\u00ab\u00bb\u2013\u2014"


def language_code(value: str) -> str:
    """"en-US", "EN", "en_GB" -> "en"."""
    return value.strip().lower().replace("_", "-").split("-")[0]


def is_filler(word: str, language: str) -> bool:
    return word.strip(_PUNCTUATION).lower() in FILLERS.get(language, frozenset())


@dataclass
class Marked:
    """What one run marked: words as {segment_id, index, word, start_ms, end_ms}, pauses as spans."""

    words: list[dict[str, Any]] = field(default_factory=list)
    pauses: list[dict[str, int]] = field(default_factory=list)
    skipped_languages: set[str] = field(default_factory=set)


def mark_fillers(
    transcript: dict[str, Any], *, language: str | None, min_pause_ms: int
) -> tuple[dict[str, Any], Marked]:
    """A copy of the EDL transcript with fillers and long pauses marked deleted, and what was marked."""
    with collector_paused():  # bounded by the timeline's limits: auteur/core/collector.py
        return _mark_fillers(transcript, language=language, min_pause_ms=min_pause_ms)


def _mark_fillers(
    transcript: dict[str, Any], *, language: str | None, min_pause_ms: int
) -> tuple[dict[str, Any], Marked]:
    # The copy shares what it does not change with `transcript` (a word, a segment, a pause is
    # copied only when it changes): a copy of everything made the collector's passes over a long
    # transcript cost more than the rest (bench/timeline_limits.py).
    out = dict(transcript)
    segments = list(transcript.get("segments") or [])
    if "segments" in out:
        out["segments"] = segments
    marked = Marked()
    kept: list[tuple[int, int]] = []  # (start, end) of every word that stays
    for s_index, segment in enumerate(segments):
        if segment.get("deleted"):
            continue
        lang = language or language_code(segment.get("language") or DEFAULT_LANGUAGE)
        listed = lang in FILLERS
        if not listed:
            marked.skipped_languages.add(lang)
        words = segment.get("words") or []
        changed: list[dict[str, Any]] | None = None  # the segment's words, once one is marked
        for index, word in enumerate(words):
            if word.get("deleted"):
                continue
            if listed and is_filler(word["word"], lang):
                if changed is None:
                    changed = list(words)
                    segments[s_index] = {**segment, "words": changed}
                changed[index] = {**word, "deleted": True}
                marked.words.append({
                    "segment_id": segment["id"], "index": index, "word": word["word"],
                    "start_ms": word["start_ms"], "end_ms": word["end_ms"],
                })
            else:
                kept.append((word["start_ms"], word["end_ms"]))
    if min_pause_ms > 0:
        pauses = out["pauses"] = list(out.get("pauses") or [])
        # The user's pauses by start, with the furthest end among each prefix: whether any of them
        # overlaps a gap is one bisect (they may overlap each other, so the end is a running max).
        existing = sorted((p["start_ms"], p["end_ms"]) for p in pauses)
        existing_starts = [a for a, _ in existing]
        furthest_end = list(itertools.accumulate((b for _, b in existing), max))
        kept.sort()
        reached = None  # the furthest end of the words so far (speech on two tracks may overlap)
        for start, end in kept:
            if reached is not None and start - reached > min_pause_ms and not _overlapped(
                existing_starts, furthest_end, reached, start
            ):
                pause = {"start_ms": reached, "end_ms": start}
                pauses.append({**pause, "deleted": True})
                marked.pauses.append(pause)
            reached = end if reached is None else max(reached, end)
        pauses.sort(key=lambda p: (p["start_ms"], p["end_ms"]))
    return out, marked


def _overlapped(starts: list[int], furthest_end: list[int], gap_start: int, gap_end: int) -> bool:
    """Whether a pause (start, end), of those `starts` and `furthest_end` index, overlaps the open
    gap (gap_start, gap_end): one starts before the gap ends and ends after it starts."""
    before = bisect.bisect_left(starts, gap_end)  # the pauses that start before the gap ends
    return before > 0 and furthest_end[before - 1] > gap_start


def edl_remove_fillers(
    *, project: Project, language: str | None = None, min_pause_ms: int = DEFAULT_MIN_PAUSE_MS,
    expected_version: int | None = None,
) -> tuple[dict[str, Any] | None, Marked]:
    """Mark fillers and long pauses deleted in the project's timeline: one undo step.

    Returns the saved timeline (None when there was nothing to mark: nothing written) and what
    was marked. 409 ``edl_conflict`` when ``expected_version`` is given and stale; without it a
    concurrent save makes it start over from the newer timeline.
    """
    result = Marked()

    def change(doc: dict[str, Any]) -> dict[str, Any] | None:
        nonlocal result
        check_edl_limits(doc)  # one saved under other limits: refused before it is read
        transcript, result = mark_fillers(doc["transcript"], language=language, min_pause_ms=min_pause_ms)
        if not result.words and not result.pauses:
            return None
        return {**doc, "transcript": transcript}

    saved = edl_edit(project=project, change=change, expected_version=expected_version)
    return saved, result

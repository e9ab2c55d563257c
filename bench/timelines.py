"""Timelines as large as the limits allow, shaped to cost the most: for bench/timeline_limits.py
and the tests that load the API with them.

The shape is the one that took the API down before its timeline code was linear: every other
word deleted (as many runs of deleted words as there can be, so as many cuts), a deleted pause
in every gap between two words, the words spread over as many segments as allowed, and clips
back to back on every track. Fields are as short as the schema allows (one-letter words, the
defaults left out), so that as many items as possible fit in the document's byte limit.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

WORD_MS, GAP_MS = 250, 50  # a word every 300 ms: 200 words a minute, fast speech
VOCABULARY = ("a", "um", "so", "the", "and", "we", "it", "uh", "was", "to", "go.")  # "go." ends a sentence


@dataclass(frozen=True)
class Counts:
    words: int
    pauses: int
    segments: int
    clips: int
    tracks: int

    def scaled(self, factor: float, *, clips: bool = False) -> Counts:
        """Words, pauses and segments times `factor` (at least one each); clips and tracks too
        with `clips`, else kept."""
        def times(n: int) -> int:
            return max(1, int(n * factor))

        return Counts(times(self.words), times(self.pauses), times(self.segments),
                      times(self.clips) if clips else self.clips, times(self.tracks) if clips else self.tracks)


def transcript(counts: Counts) -> dict[str, Any]:
    """`counts.words` words in `counts.segments` segments, every other one deleted, and
    `counts.pauses` deleted pauses, one per gap between words (and past the last word, more)."""
    step = WORD_MS + GAP_MS
    per_segment, extra = divmod(counts.words, max(1, min(counts.segments, counts.words)))
    segments, k = [], 0
    for n in range(min(counts.segments, counts.words)):
        words = []
        for _ in range(per_segment + (1 if n < extra else 0)):
            word: dict[str, Any] = {"word": VOCABULARY[k % len(VOCABULARY)], "start_ms": k * step,
                                    "end_ms": k * step + WORD_MS, "confidence": 1}
            if k % 2:
                word["deleted"] = True
            words.append(word)
            k += 1
        segments.append({"id": f"s{n}", "start_ms": words[0]["start_ms"], "end_ms": words[-1]["end_ms"],
                         "words": words})
    pauses = [{"start_ms": i * step + WORD_MS, "end_ms": (i + 1) * step} for i in range(counts.pauses)]
    return {"segments": segments, "pauses": pauses}


def duration_ms(counts: Counts) -> int:
    return max(counts.words, counts.pauses) * (WORD_MS + GAP_MS)


def tracks(counts: Counts, media: Mapping[str, Sequence[str]]) -> list[dict[str, Any]]:
    """`counts.clips` clips back to back over `counts.tracks` tracks (the first half video, the
    rest audio), each track covering the whole timeline; `media`: ids by kind ("video", "audio")."""
    total = duration_ms(counts)
    out = []
    for t in range(counts.tracks):
        kind = "video" if t < max(1, counts.tracks // 2) else "audio"
        per_track = counts.clips // counts.tracks + (1 if t < counts.clips % counts.tracks else 0)
        length = max(1, total // max(1, per_track))
        pool = media[kind]
        clips = [{"id": f"t{t}c{i}", "media_file_id": pool[i % len(pool)], "start_ms": i * length,
                  "duration_ms": length, "in_point_ms": 0, "out_point_ms": length} for i in range(per_track)]
        out.append({"id": f"t{t}", "type": kind, "clips": clips})
    return out


def timeline(counts: Counts, media: Mapping[str, Sequence[str]]) -> dict[str, Any]:
    """A client's document (PUT /edl body) with these counts."""
    return {"settings": {"resolution": {"width": 1280, "height": 720}, "frame_rate": 30},
            "tracks": tracks(counts, media), "transcript": transcript(counts)}


def size(doc: dict[str, Any]) -> int:
    """Its size as the byte limit counts it (projects/edl/validation.py)."""
    return len(json.dumps(doc, separators=(",", ":"), ensure_ascii=False, default=str).encode())


def largest_within(counts: Counts, media: Mapping[str, Sequence[str]], max_bytes: int) -> tuple[Counts, dict[str, Any]]:
    """The largest timeline of this shape whose document fits in `max_bytes`: every count scaled
    down from `counts` by the same factor."""
    doc = timeline(counts, media)
    if size(doc) <= max_bytes:
        return counts, doc
    low, high = 0.0, 1.0
    best = (counts.scaled(0.0, clips=True), timeline(counts.scaled(0.0, clips=True), media))
    for _ in range(14):  # to within 1/16,000 of the counts
        middle = (low + high) / 2
        doc = timeline(counts.scaled(middle, clips=True), media)
        if size(doc) <= max_bytes:
            low, best = middle, (counts.scaled(middle, clips=True), doc)
        else:
            high = middle
    return best


def dense_transcript(words: int) -> dict[str, Any]:
    """`words` one-letter words 100 ms apart in one segment, none deleted, no sentence end: every
    cue as full as its two lines allow, the costliest for laying cues out."""
    items = [{"word": "a", "start_ms": k * 100, "end_ms": k * 100 + 50, "confidence": 1} for k in range(words)]
    return {"segments": [{"id": "dense", "start_ms": 0, "end_ms": max(1, words * 100), "words": items}]}

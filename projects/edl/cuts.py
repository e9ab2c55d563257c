"""Cuts: what deleting words, segments and pauses in the transcript removes from the timeline.

Transcript times are timeline times, so a deletion is a span of the timeline, removed from every
track at once (picture and sound stay in sync). The rules:

- A run of consecutive deleted words (in time order, across segments) is cut from the end of the
  kept word before it plus the padding to the start of the kept word after it minus the padding:
  the silences around the deleted words go with them, and `padding_ms` of silence stays beside
  each kept word, so cuts fall in the gaps between words, never inside a kept one. Where a gap is
  shorter than the padding, the cut still covers the deleted words themselves. At either end of
  the transcript the cut is the deleted words plus the padding.
- A deleted segment deletes all of its words; one without words is cut over its own span.
- A deleted pause is cut down to the padding beside the words around it.
- Overlapping or touching spans merge. A kept word that overlaps a deleted one (two voices at
  once) loses the overlap: the cut is of time, on every track.

Everything here is pure: the render snapshot and the edited-timeline captions both read it.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

Span = tuple[int, int]

DEFAULT_PADDING_MS = 40


def clip_speed(clip: Mapping[str, Any]) -> float:
    """The clip's playback rate: its `speed` effect's `rate`, 1 without one."""
    for effect in clip.get("effects") or ():
        if isinstance(effect, Mapping) and effect.get("type") == "speed":
            rate = effect.get("rate")
            if isinstance(rate, int | float) and not isinstance(rate, bool) and rate > 0:
                return float(rate)
    return 1.0


def _words(transcript: Mapping[str, Any]) -> tuple[list[tuple[int, int, bool]], list[Span]]:
    """Every word as (start, end, deleted) in time order, and the spans of deleted empty segments."""
    words: list[tuple[int, int, bool]] = []
    bare: list[Span] = []
    for segment in transcript.get("segments") or ():
        segment_deleted = bool(segment.get("deleted"))
        seg_words = segment.get("words") or ()
        if segment_deleted and not seg_words:
            bare.append((int(segment["start_ms"]), int(segment["end_ms"])))
        for word in seg_words:
            start, end = int(word["start_ms"]), int(word["end_ms"])
            words.append((start, max(start, end), segment_deleted or bool(word.get("deleted"))))
    words.sort()
    return words, bare


def merge_spans(spans: Iterable[Span]) -> list[Span]:
    """Sorted, with overlapping or touching spans merged and empty ones dropped."""
    merged: list[list[int]] = []
    for start, end in sorted(s for s in spans if s[1] > s[0]):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return [(a, b) for a, b in merged]


def removed_spans(transcript: Mapping[str, Any], *, padding_ms: int = DEFAULT_PADDING_MS) -> list[Span]:
    """The timeline spans the transcript's deletions remove, sorted and merged."""
    pad = max(0, int(padding_ms))
    words, spans = _words(transcript)
    i = 0
    while i < len(words):
        if not words[i][2]:
            i += 1
            continue
        j = i
        while j + 1 < len(words) and words[j + 1][2]:
            j += 1
        first_start = words[i][0]
        last_end = max(w[1] for w in words[i : j + 1])
        prev_end = max((w[1] for w in words[:i]), default=None)
        next_start = words[j + 1][0] if j + 1 < len(words) else None
        start = first_start - pad if prev_end is None else min(prev_end + pad, first_start)
        end = last_end + pad if next_start is None else max(next_start - pad, last_end)
        spans.append((max(0, start), end))
        i = j + 1
    for pause in transcript.get("pauses") or ():
        if pause.get("deleted", True):
            start, end = int(pause["start_ms"]) + pad, int(pause["end_ms"]) - pad
            spans.append((start, end))
    return merge_spans(spans)


def removed_before(t_ms: int, spans: Sequence[Span]) -> int:
    """How much of the timeline before `t_ms` the spans remove."""
    total = 0
    for start, end in spans:
        if start >= t_ms:
            break
        total += min(end, t_ms) - start
    return total


def edited_time(t_ms: int, spans: Sequence[Span]) -> int | None:
    """Where timeline instant `t_ms` plays after the cuts; None when a span removes it.

    A span is half-open [start, end): its end is the first instant kept after it.
    """
    k = bisect.bisect_right(spans, (t_ms, float("inf"))) - 1
    if k >= 0 and spans[k][0] <= t_ms < spans[k][1]:
        return None
    return t_ms - removed_before(t_ms, spans)


def edited_duration(total_ms: int, spans: Sequence[Span]) -> int:
    """The length of a timeline of `total_ms` after the cuts."""
    return total_ms - removed_before(total_ms, spans)


def _keep(start: int, end: int, spans: Sequence[Span]) -> list[Span]:
    """The parts of [start, end) that no span removes."""
    kept: list[Span] = []
    at = start
    for a, b in spans:
        if b <= at:
            continue
        if a >= end:
            break
        if a > at:
            kept.append((at, a))
        at = max(at, b)
    if at < end:
        kept.append((at, end))
    return kept


def cut_clip(clip: Mapping[str, Any], spans: Sequence[Span]) -> list[dict[str, Any]]:
    """A clip as the pieces that survive the cuts, each at its edited time.

    A piece keeps the clip's fields, with `start_ms`, `duration_ms`, `in_point_ms` and
    `out_point_ms` its own, and adds `clip_id` (the clip's id), `first` / `last` (whether it holds
    the clip's own start / end), `cut_in` / `cut_out` (whether a cut made that edge) and
    `clip_offset_ms` (where the piece starts in the clip's own time, which text overlays count in).
    """
    start = int(clip["start_ms"])
    end = start + int(clip["duration_ms"])
    rate = clip_speed(clip)
    in_point = int(clip["in_point_ms"])
    out_point = int(clip.get("out_point_ms") or in_point + round(int(clip["duration_ms"]) * rate))
    pieces = _keep(start, end, spans)
    result = []
    for n, (a, b) in enumerate(pieces):
        first, last = a == start, b == end
        piece_in = in_point + round((a - start) * rate)
        piece_out = out_point if last else in_point + round((b - start) * rate)
        result.append({
            **clip,
            "id": str(clip["id"]) if len(pieces) == 1 else f"{clip['id']}~{n}",
            "clip_id": clip["id"],
            "start_ms": a - removed_before(a, spans),
            "duration_ms": b - a,
            "in_point_ms": piece_in,
            "out_point_ms": max(piece_out, piece_in + 1),
            "first": first,
            "last": last,
            "cut_in": not first,
            "cut_out": not last,
            "clip_offset_ms": a - start,
        })
    return result


def cut_tracks(tracks: Sequence[Mapping[str, Any]], spans: Sequence[Span]) -> list[dict[str, Any]]:
    """The tracks with their non-deleted clips cut into pieces (deleted clips are dropped)."""
    return [
        {
            **track,
            "clips": [piece for clip in track.get("clips") or () if not clip.get("deleted")
                      for piece in cut_clip(clip, spans)],
        }
        for track in tracks
    ]

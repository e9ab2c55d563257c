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

Everything here is pure: the render snapshot and the edited-timeline captions both read it. Every
computation is linear or n log n in the timeline's size (a sort, then running maxima, prefix sums
and bisects in `Cuts`): a timeline is user input, and the API serves it on request.
"""

from __future__ import annotations

import bisect
import itertools
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
    append = words.append
    bare: list[Span] = []
    for segment in transcript.get("segments") or ():
        segment_deleted = bool(segment.get("deleted"))
        seg_words = segment.get("words") or ()
        if segment_deleted and not seg_words:
            bare.append((int(segment["start_ms"]), int(segment["end_ms"])))
        for word in seg_words:
            start, end = int(word["start_ms"]), int(word["end_ms"])
            append((start, end if end > start else start, segment_deleted or bool(word.get("deleted"))))
    words.sort()
    return words, bare


def merge_spans(spans: Iterable[Span]) -> list[Span]:
    """Sorted, with overlapping or touching spans merged and empty ones dropped."""
    ordered = sorted(s for s in spans if s[1] > s[0])
    merged: list[Span] = []
    if not ordered:
        return merged
    at, reach = ordered[0]
    for start, end in ordered:
        if start <= reach:
            if end > reach:
                reach = end
        else:
            merged.append((at, reach))
            at, reach = start, end
    merged.append((at, reach))
    return merged


def removed_spans(transcript: Mapping[str, Any], *, padding_ms: int = DEFAULT_PADDING_MS) -> list[Span]:
    """The timeline spans the transcript's deletions remove, sorted and merged.

    One pass over the words in time order (n log n for the sort): `reached`, the furthest end of
    every word so far, is what the kept word before a run of deleted ones ends at (two voices
    may overlap, so it is a running max, not the previous word's end).
    """
    pad = max(0, int(padding_ms))
    words, spans = _words(transcript)
    count = len(words)
    reached: int | None = None
    i = 0
    while i < count:
        first_start, last_end, deleted = words[i]
        if not deleted:
            reached = last_end if reached is None else max(reached, last_end)
            i += 1
            continue
        j = i
        while j + 1 < count and words[j + 1][2]:
            j += 1
            last_end = max(last_end, words[j][1])
        next_start = words[j + 1][0] if j + 1 < count else None
        start = first_start - pad if reached is None else min(reached + pad, first_start)
        end = last_end + pad if next_start is None else max(next_start - pad, last_end)
        spans.append((max(0, start), end))
        reached = last_end if reached is None else max(reached, last_end)
        i = j + 1
    for pause in transcript.get("pauses") or ():
        if pause.get("deleted", True):
            start, end = int(pause["start_ms"]) + pad, int(pause["end_ms"]) - pad
            spans.append((start, end))
    return merge_spans(spans)


class Cuts:
    """Removed spans, merged and indexed: each question about an instant is a bisect, O(log n).

    Captions map two instants per word and a render one per piece, so a scan of the spans per
    question would be quadratic in the timeline's size. Build one per timeline and ask it.
    """

    __slots__ = ("_before", "_ends", "_starts", "spans")

    def __init__(self, spans: Iterable[Span], *, merged: bool = False) -> None:
        """`merged`: the spans are already sorted and merged (as `removed_spans` returns them)."""
        self.spans: list[Span] = list(spans) if merged else merge_spans(spans)
        self._starts = [a for a, _ in self.spans]
        self._ends = [b for _, b in self.spans]
        # _before[k]: the time the first k spans remove.
        self._before = [0, *itertools.accumulate(b - a for a, b in self.spans)]

    def __len__(self) -> int:
        return len(self.spans)

    def removed_before(self, t_ms: int) -> int:
        """How much of the timeline before `t_ms` the spans remove."""
        k = bisect.bisect_left(self._starts, t_ms)  # the spans that start before t
        if k == 0:
            return 0
        return self._before[k - 1] + min(self._ends[k - 1], t_ms) - self._starts[k - 1]

    def span_at(self, t_ms: int) -> int | None:
        """The index of the span that removes instant `t_ms` (spans are half-open), or None."""
        k = bisect.bisect_right(self._starts, t_ms) - 1
        return k if k >= 0 and t_ms < self._ends[k] else None

    def edited_time(self, t_ms: int) -> int | None:
        """Where timeline instant `t_ms` plays after the cuts; None when a span removes it."""
        if self.span_at(t_ms) is not None:
            return None
        return t_ms - self.removed_before(t_ms)

    def output_time(self, t_ms: int) -> tuple[int, bool]:
        """Where `t_ms` plays after the cuts, and whether it survives them (inside a cut: the
        instant the cut joins to). One bisect: captions ask it twice per word."""
        k = bisect.bisect_right(self._starts, t_ms) - 1  # the last span starting at or before t
        if k >= 0 and t_ms < self._ends[k]:
            return self._ends[k] - self._before[k + 1], False  # merged spans never touch: an end is kept
        return t_ms - self._before[k + 1], True  # spans 0..k all end at or before t

    def edited_duration(self, total_ms: int) -> int:
        """The length of a timeline of `total_ms` after the cuts."""
        return total_ms - self.removed_before(total_ms)

    def keep(self, start: int, end: int) -> list[Span]:
        """The parts of [start, end) that no span removes: O(log n + the spans inside it)."""
        kept: list[Span] = []
        at = start
        k = bisect.bisect_right(self._ends, start)  # the first span that ends after `start`
        spans = self.spans
        while k < len(spans) and spans[k][0] < end:
            a, b = spans[k]
            if a > at:
                kept.append((at, a))
            at = max(at, b)
            k += 1
        if at < end:
            kept.append((at, end))
        return kept

    def count_pieces(self, start: int, end: int) -> int:
        """len(self.keep(start, end)), in O(log n) whatever the number of spans inside it."""
        if end <= start:
            return 0
        first = bisect.bisect_right(self._ends, start)  # spans ending after start
        stop = bisect.bisect_left(self._starts, end)  # ... and starting before end
        inside = stop - first
        if inside <= 0:
            return 1
        pieces = inside + 1
        if self._starts[first] <= start:  # the first span removes the start itself
            pieces -= 1
        if self._ends[stop - 1] >= end:  # the last removes the end
            pieces -= 1
        return pieces


def transcript_cuts(transcript: Mapping[str, Any], *, padding_ms: int = DEFAULT_PADDING_MS) -> Cuts:
    """The cuts the transcript's deletions make, indexed."""
    return Cuts(removed_spans(transcript, padding_ms=padding_ms), merged=True)


def cut_index(spans: Sequence[Span] | Cuts) -> Cuts:
    """`spans` indexed (a Cuts is returned as it is). Building one is O(n): callers asking about
    many instants build it once, as the functions below do for one question each."""
    return spans if isinstance(spans, Cuts) else Cuts(spans)


def removed_before(t_ms: int, spans: Sequence[Span] | Cuts) -> int:
    """How much of the timeline before `t_ms` the spans remove."""
    return cut_index(spans).removed_before(t_ms)


def edited_time(t_ms: int, spans: Sequence[Span] | Cuts) -> int | None:
    """Where timeline instant `t_ms` plays after the cuts; None when a span removes it.

    A span is half-open [start, end): its end is the first instant kept after it.
    """
    return cut_index(spans).edited_time(t_ms)


def edited_duration(total_ms: int, spans: Sequence[Span] | Cuts) -> int:
    """The length of a timeline of `total_ms` after the cuts."""
    return cut_index(spans).edited_duration(total_ms)


def count_pieces(tracks: Sequence[Mapping[str, Any]], spans: Sequence[Span] | Cuts) -> int:
    """How many pieces `cut_tracks` would make, without making them: O(clips log spans)."""
    cuts = cut_index(spans)
    return sum(
        cuts.count_pieces(int(clip["start_ms"]), int(clip["start_ms"]) + int(clip["duration_ms"]))
        for track in tracks for clip in track.get("clips") or () if not clip.get("deleted")
    )


def cut_clip(clip: Mapping[str, Any], spans: Sequence[Span] | Cuts) -> list[dict[str, Any]]:
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
    cuts = cut_index(spans)
    pieces = cuts.keep(start, end)
    result = []
    for n, (a, b) in enumerate(pieces):
        first, last = a == start, b == end
        piece_in = in_point + round((a - start) * rate)
        piece_out = out_point if last else in_point + round((b - start) * rate)
        result.append({
            **clip,
            "id": str(clip["id"]) if len(pieces) == 1 else f"{clip['id']}~{n}",
            "clip_id": clip["id"],
            "start_ms": a - cuts.removed_before(a),
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


def cut_tracks(tracks: Sequence[Mapping[str, Any]], spans: Sequence[Span] | Cuts) -> list[dict[str, Any]]:
    """The tracks with their non-deleted clips cut into pieces (deleted clips are dropped)."""
    cuts = cut_index(spans)
    return [
        {
            **track,
            "clips": [piece for clip in track.get("clips") or () if not clip.get("deleted")
                      for piece in cut_clip(clip, cuts)],
        }
        for track in tracks
    ]

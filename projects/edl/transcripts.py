"""A media file's transcription written into its project's EDL transcript, at TIMELINE times.

The mapping (pure functions, no I/O): for every non-deleted clip that plays the file, the words
whose source start falls inside the clip's ``[in_point_ms, out_point_ms)`` are placed at
``clip.start_ms + (t - in_point_ms) / speed``; each (transcript segment, clip) pair that keeps a
word becomes one EDL segment naming ``media_file_id`` and ``clip_id``, with an id derived from
both and the segment's position, so that writing the same transcription twice writes the same
document. Audio tracks are read before video tracks, and a word that two clips place at the
same timeline time (a video clip and the audio clip linked to it) is written once, under the
first of them. A word with no confidence from its engine gets 0.

A new transcription of a file replaces exactly the segments that name that file; every other
segment (other files', a client's own) and the transcript's pauses stay as they are. What the
user edited in the replaced segments is carried over where it still applies, matched within the
same clip at timeline times:
- a new word whose middle lies inside a word the user deleted is deleted;
- a new segment whose words all lie inside segments the user deleted is deleted; otherwise
  those of its words that lie inside one are deleted;
- ``edited_text`` goes to the new segment that overlaps the old one for at least half the
  length of the longer of the two.
Word texts, speakers and confidences are the new transcription's.
"""

from __future__ import annotations

import hashlib
import heapq
import logging
import uuid
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from projects.edl.cuts import clip_speed
from projects.edl.services import edl_edit
from projects.models import Project

logger = logging.getLogger(__name__)

Span = tuple[int, int]


def segment_id(media_file_id: str, clip_id: str, index: int) -> str:
    """The id of the segment that transcript segment ``index`` of a file becomes in a clip."""
    digest = hashlib.sha256(f"{media_file_id}\n{clip_id}\n{index}".encode()).hexdigest()[:24]
    return f"tr-{digest}"


def _clips_playing(tracks: Sequence[dict[str, Any]], media_file_id: str) -> list[dict[str, Any]]:
    """The non-deleted clips of the file, those on audio tracks first, each in track order."""
    ordered = sorted(tracks, key=lambda t: t.get("type") != "audio")  # stable: track order kept
    return [
        clip
        for track in ordered
        for clip in track.get("clips") or []
        if clip and clip.get("media_file_id") == media_file_id and not clip.get("deleted")
    ]


def _confidence(value: Any) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return min(max(float(value), 0.0), 1.0)
    return 0.0


def _source_words(transcript: dict[str, Any]) -> list[tuple[int, int, int, str]]:
    """(source start, segment index, word index, text) of every usable word, by start."""
    return sorted(
        (word["start_ms"], s_index, w_index, text)
        for s_index, source in enumerate(transcript.get("segments") or [])
        for w_index, word in enumerate(source.get("words") or [])
        if isinstance(word.get("start_ms"), int) and (text := str(word.get("word") or "").strip())
    )


def map_transcript(
    transcript: dict[str, Any], *, media_file_id: str, tracks: Sequence[dict[str, Any]], max_words: int | None = None
) -> list[dict[str, Any]]:
    """The EDL segments of a file's transcript (its source times) on this timeline, by start. A
    word is written on every clip that plays it: with `max_words`, no more than that many in all
    (many clips of one file multiply its words)."""
    language = transcript.get("language")
    language = language[:16] if isinstance(language, str) and language else None
    sources = transcript.get("segments") or []
    flat = _source_words(transcript)
    starts = [item[0] for item in flat]
    placed: set[tuple[int, int, int]] = set()  # (segment, word, timeline start) already written
    out: list[dict[str, Any]] = []
    written = 0
    for clip in _clips_playing(tracks, media_file_id):
        if max_words is not None and written >= max_words:
            break
        speed = clip_speed(clip)
        inp, outp, start = clip["in_point_ms"], clip["out_point_ms"], clip["start_ms"]
        end_on_timeline = start + round((outp - inp) / speed)
        by_segment: dict[int, list[dict[str, Any]]] = {}
        for t, s_index, w_index, text in flat[bisect_left(starts, inp):bisect_left(starts, outp)]:
            if max_words is not None and written >= max_words:
                break
            at = start + round((t - inp) / speed)
            if (s_index, w_index, at) in placed:
                continue
            placed.add((s_index, w_index, at))
            written += 1
            word = sources[s_index]["words"][w_index]
            until = min(max(word.get("end_ms") or t, t), outp)
            by_segment.setdefault(s_index, []).append({
                "word": text[:255],
                "start_ms": at,
                "end_ms": min(max(start + round((until - inp) / speed), at), end_on_timeline),
                "confidence": _confidence(word.get("confidence")),
                "deleted": False,
            })
        for s_index, words in sorted(by_segment.items()):
            out.append({
                "id": segment_id(media_file_id, clip["id"], s_index),
                "media_file_id": media_file_id,
                "clip_id": clip["id"],
                "speaker": sources[s_index].get("speaker"),
                "start_ms": words[0]["start_ms"],
                "end_ms": max(w["end_ms"] for w in words),
                "text": " ".join(w["word"] for w in words),
                "words": words,
                "deleted": False,
                "edited_text": None,
                "language": language,
            })
    out.sort(key=lambda s: s["start_ms"])
    return out


# ----------------------------------------------------------------------------- user edits


class _Spans:
    """A union of closed time spans, asked whether a word's middle lies inside it."""

    def __init__(self, spans: Iterable[Span]) -> None:
        merged: list[list[int]] = []
        for a, b in sorted(spans):
            if merged and a <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], b)
            else:
                merged.append([a, b])
        self.starts = [2 * a for a, _ in merged]  # doubled, as the middles: integers only
        self.ends = [2 * b for _, b in merged]

    def __bool__(self) -> bool:
        return bool(self.starts)

    def holds(self, word: dict[str, Any]) -> bool:
        middle2 = word["start_ms"] + word["end_ms"]
        at = bisect_right(self.starts, middle2) - 1
        return at >= 0 and middle2 <= self.ends[at]


def _overlap(a: Span, b: Span) -> int:
    return min(a[1], b[1]) - max(a[0], b[0])


def _same_stretch(old: Span, new: Span) -> bool:
    longer = max(old[1] - old[0], new[1] - new[0])
    return old == new if longer == 0 else 2 * _overlap(old, new) >= longer


class _EditedTexts:
    """The old segments of one clip that carry an ``edited_text``, indexed by their middles.

    An old segment that overlaps a new one for at least half the length of the longer of the two
    has at least half of itself inside the new one, so its middle lies inside the new one: only
    those are compared (a bisect, then the few a transcription's non-overlapping segments put
    there), not every old segment of the clip for every new one.
    """

    def __init__(self, segments: Sequence[dict[str, Any]]) -> None:
        edited = [
            (s["start_ms"] + s["end_ms"], order, s)  # doubled middles: integers only
            for order, s in enumerate(segments) if s.get("edited_text") is not None
        ]
        edited.sort(key=lambda item: (item[0], item[1]))
        self.middles = [middle for middle, _, _ in edited]
        self.items = [(order, s) for _, order, s in edited]

    def best(self, span: Span) -> str | None:
        """The edited text of the old segment that overlaps `span` most, of those that overlap it
        for at least half the longer's length (the first of them on a tie); None without one."""
        lo, hi = bisect_left(self.middles, 2 * span[0]), bisect_right(self.middles, 2 * span[1])
        if lo == hi:
            return None
        matching = sorted(
            (order, s) for order, s in self.items[lo:hi] if _same_stretch((s["start_ms"], s["end_ms"]), span)
        )
        if not matching:
            return None
        _, best = max(matching, key=lambda item: _overlap((item[1]["start_ms"], item[1]["end_ms"]), span))
        text: str = best["edited_text"]
        return text


def carry_edits(new: list[dict[str, Any]], old: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """``new`` (mapped segments of a file) with the user's edits of ``old`` (its previous ones) applied."""
    by_clip: dict[Any, list[dict[str, Any]]] = {}
    for segment in old:
        by_clip.setdefault(segment.get("clip_id"), []).append(segment)
    edited_texts = {clip_id: _EditedTexts(before) for clip_id, before in by_clip.items()}
    deleted: dict[Any, tuple[_Spans, _Spans]] = {  # per clip: the words, the segments the user deleted
        clip_id: (
            _Spans((w["start_ms"], w["end_ms"]) for s in before for w in s.get("words") or [] if w.get("deleted")),
            _Spans((s["start_ms"], s["end_ms"]) for s in before if s.get("deleted")),
        )
        for clip_id, before in by_clip.items()
    }
    for segment in new:
        if segment["clip_id"] not in by_clip:
            continue
        deleted_words, deleted_segments = deleted[segment["clip_id"]]
        words = segment["words"]
        segment["deleted"] = bool(deleted_segments) and all(deleted_segments.holds(w) for w in words)
        for word in words:
            word["deleted"] = deleted_words.holds(word) or (not segment["deleted"] and deleted_segments.holds(word))
        text = edited_texts[segment["clip_id"]].best((segment["start_ms"], segment["end_ms"]))
        if text is not None:
            segment["edited_text"] = text
    return new


def merge_transcript(
    current: dict[str, Any], transcript: dict[str, Any], *, media_file_id: str,
    tracks: Sequence[dict[str, Any]], generated_at: datetime,
) -> dict[str, Any] | None:
    """The EDL transcript ``current`` with the file's segments replaced; None when nothing changes."""
    segments = current.get("segments") or []
    mine = [s for s in segments if s.get("media_file_id") == media_file_id]
    others = [s for s in segments if s.get("media_file_id") != media_file_id]
    new = carry_edits(map_transcript(transcript, media_file_id=media_file_id, tracks=tracks), mine)
    if new == mine:
        return None
    stamp = generated_at
    previous = current.get("generated_at")
    if isinstance(previous, str):  # as GET shows it
        previous = datetime.fromisoformat(previous)
    if isinstance(previous, datetime) and previous > stamp:
        stamp = previous  # the transcript as a whole is as recent as its newest part
    return {
        **current,
        "generated_at": stamp,
        "segments": list(heapq.merge(others, new, key=lambda s: s["start_ms"])),
    }


# ----------------------------------------------------------------------------- the write


def edl_transcript_write(
    *, project: Project, media_file_id: str, transcript: dict[str, Any], generated_at: datetime
) -> dict[str, Any] | None:
    """Write a file's transcription into the project's timeline: one undo step; idempotent.

    None when the project's `transcript_to_edl` is off or the timeline already holds exactly
    this (nothing written). A concurrent save by the user makes it start over from the user's
    version (``edl_edit``): the user's edits are never overwritten.
    """
    if not project.transcript_to_edl:
        return None
    media_file_id = str(uuid.UUID(media_file_id))  # as clips store it

    def change(doc: dict[str, Any]) -> dict[str, Any] | None:
        merged = merge_transcript(
            doc["transcript"], transcript, media_file_id=media_file_id, tracks=doc["tracks"],
            generated_at=generated_at,
        )
        return None if merged is None else {**doc, "transcript": merged}

    saved = edl_edit(project=project, change=change)
    if saved is not None:
        logger.info(
            "transcript written into the EDL",
            extra={"project_id": str(project.pk), "media_id": media_file_id, "version": saved["version"]},
        )
    return saved

"""The timeline computations as they were before they were made linear: the baseline that
bench/timeline_limits.py measures against in the same run, and the oracle that
tests/projects/test_timeline_equivalence.py compares the linear ones with.

Not used by the application. Each function is the former code, unchanged but for its imports
(and `Word`, now a named tuple, copied with `_replace`):
`removed_spans` takes a max over every earlier word for each run of deleted words,
`removed_before` scans the spans for every instant it maps (two per caption word, one per render
piece), `mark_fillers` scans every existing pause for each gap between words, and `carry_edits`
every old segment of a clip for each new one, so each is quadratic in the timeline's size.
The parts of the captions that did not change (the layout of one cue, the file writers) are
imported from the application.
"""

from __future__ import annotations

import bisect
import copy
import json
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from projects.captions import (
    MAX_CUE_MS,
    MAX_GAP_MS,
    MAX_LABEL_CHARS,
    SENTENCE_END,
    Cue,
    Word,
    _clean,
    _cue,
    _layout,
    _split_long,
    _spread,
    caption_json,
    write,
    write_ass,
)
from projects.edl.cuts import DEFAULT_PADDING_MS, Span, _words, clip_speed, merge_spans
from projects.edl.fillers import DEFAULT_LANGUAGE, FILLERS, Marked, is_filler, language_code
from projects.edl.transcripts import _overlap, _same_stretch, _Spans

# ----------------------------------------------------------------------------- projects/edl/cuts.py


def removed_spans(transcript: Mapping[str, Any], *, padding_ms: int = DEFAULT_PADDING_MS) -> list[Span]:
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
    total = 0
    for start, end in spans:
        if start >= t_ms:
            break
        total += min(end, t_ms) - start
    return total


def edited_time(t_ms: int, spans: Sequence[Span]) -> int | None:
    k = bisect.bisect_right(spans, (t_ms, float("inf"))) - 1
    if k >= 0 and spans[k][0] <= t_ms < spans[k][1]:
        return None
    return t_ms - removed_before(t_ms, spans)


def edited_duration(total_ms: int, spans: Sequence[Span]) -> int:
    return total_ms - removed_before(total_ms, spans)


def _keep(start: int, end: int, spans: Sequence[Span]) -> list[Span]:
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
    return [
        {
            **track,
            "clips": [piece for clip in track.get("clips") or () if not clip.get("deleted")
                      for piece in cut_clip(clip, spans)],
        }
        for track in tracks
    ]


# ----------------------------------------------------------------------------- projects/captions.py


def timeline_words(
    transcript: Mapping[str, Any],
    *,
    padding_ms: int = DEFAULT_PADDING_MS,
    tracks: Sequence[Mapping[str, Any]] | None = None,
    end_ms: int = 0,
) -> list[list[Word]]:
    spans = removed_spans(transcript, padding_ms=padding_ms)
    playing = None if tracks is None else {
        str(c.get("clip_id") or c.get("id"))
        for t in tracks for c in t.get("clips") or () if not c.get("deleted")
    }  # fmt: skip
    groups = []
    segments = sorted(transcript.get("segments") or [], key=lambda s: (s.get("start_ms", 0), s.get("end_ms", 0)))
    for seg in segments:
        if seg.get("deleted") or (playing is not None and seg.get("clip_id") and str(seg["clip_id"]) not in playing):
            continue
        words = [w for w in _mapped(seg, spans) if w.text]
        if end_ms > 0:
            words = [w._replace(end_ms=min(w.end_ms, end_ms)) for w in words if w.start_ms < end_ms]
        if words:
            groups.append(words)
    return groups


def _output_time(t: int, spans: Sequence[Span]) -> tuple[int, bool]:
    edited = edited_time(t, spans)
    if edited is not None:
        return edited, True
    k = bisect.bisect_right(spans, (t, math.inf)) - 1
    cut_point = edited_time(spans[k][1], spans)
    assert cut_point is not None
    return cut_point, False


def _mapped(seg: Mapping[str, Any], spans: Sequence[Span]) -> list[Word]:
    speaker = seg.get("speaker")
    all_words = seg.get("words") or []
    kept = [w for w in all_words if not w.get("deleted")]
    if all_words and not kept:
        return []
    mapped: list[Word] = []
    for w in kept or [{"word": "", "start_ms": seg["start_ms"], "end_ms": seg["end_ms"]}]:
        (start, start_kept), (end, _) = _output_time(int(w["start_ms"]), spans), _output_time(int(w["end_ms"]), spans)
        if start_kept or end > start:
            mapped.append(Word(_clean(w.get("word") or ""), start, max(start, end), speaker))
    edited = seg.get("edited_text")
    if (edited is None and all_words) or not mapped:
        return mapped
    text = edited if edited is not None else seg.get("text") or ""
    return _spread(_clean(text).split(), mapped[0].start_ms, mapped[-1].end_ms, speaker)


def timeline_caption_file(
    edl: Mapping[str, Any], fmt: str, *, speakers: bool = False, padding_ms: int = DEFAULT_PADDING_MS
) -> str:
    transcript = edl.get("transcript") or {}
    total_ms = int((edl.get("settings") or {}).get("duration_ms") or 0)
    duration_ms = edited_duration(total_ms, removed_spans(transcript, padding_ms=padding_ms))
    groups = timeline_words(transcript, padding_ms=padding_ms, tracks=edl.get("tracks") or [], end_ms=duration_ms)
    languages = Counter(
        s["language"] for s in transcript.get("segments") or () if s.get("language") and not s.get("deleted")
    )
    language = transcript.get("language") or (languages.most_common(1)[0][0] if languages else None)
    return _file(groups, fmt, speakers=speakers, duration_ms=duration_ms, language=language)


def render_caption_files(
    edl: Mapping[str, Any], transcript: Mapping[str, Any], mode: str, *, padding_ms: int = DEFAULT_PADDING_MS,
) -> dict[str, str]:
    settings = edl.get("settings") or {}
    words = [] if mode == "none" else timeline_words(
        transcript, padding_ms=padding_ms, tracks=edl.get("tracks") or [], end_ms=int(settings.get("duration_ms") or 0)
    )
    cues = build_cues(words)
    if not cues:
        return {}
    if mode == "sidecar":
        return {"captions_srt": write(cues, "srt"), "captions_vtt": write(cues, "vtt")}
    resolution = settings.get("resolution") or {}
    width, height = int(resolution.get("width", 1920)), int(resolution.get("height", 1080))
    return {"captions_ass": write_ass(cues, width=width, height=height)}


def build_cues(groups: Iterable[Sequence[Word]], *, speakers: bool = False) -> list[Cue]:
    cues: list[Cue] = []
    last_speaker: str | None = None

    def label_for(speaker: str | None) -> str:
        if not speakers or not speaker or (cues and speaker == last_speaker):
            return ""
        return f"{speaker[:MAX_LABEL_CHARS]}: "

    for group in groups:
        current: list[Word] = []
        for word in _split_long(group):
            if current:
                label = label_for(current[0].speaker)
                too_long = word.end_ms - current[0].start_ms > MAX_CUE_MS
                if too_long or word.start_ms - current[-1].end_ms > MAX_GAP_MS or not _layout([*current, word], label):
                    cues.append(_cue(current, label))
                    last_speaker = current[0].speaker
                    current = []
            current.append(word)
            if word.text.endswith(SENTENCE_END):
                cues.append(_cue(current, label_for(current[0].speaker)))
                last_speaker, current = current[0].speaker, []
        if current:
            cues.append(_cue(current, label_for(current[0].speaker)))
            last_speaker = current[0].speaker
    return cues


def _file(groups: list[list[Word]], fmt: str, *, speakers: bool, duration_ms: int, language: str | None) -> str:
    if fmt == "json":
        return json.dumps(
            caption_json(groups, duration_ms=duration_ms, language=language, speakers=speakers), ensure_ascii=False
        )
    return write(build_cues(groups, speakers=speakers), fmt)


# ----------------------------------------------------------------------------- projects/edl/fillers.py


def mark_fillers(
    transcript: dict[str, Any], *, language: str | None, min_pause_ms: int
) -> tuple[dict[str, Any], Marked]:
    out = copy.deepcopy(transcript)
    marked = Marked()
    kept: list[tuple[int, int]] = []
    for segment in out.get("segments") or []:
        if segment.get("deleted"):
            continue
        lang = language or language_code(segment.get("language") or DEFAULT_LANGUAGE)
        listed = lang in FILLERS
        if not listed:
            marked.skipped_languages.add(lang)
        for index, word in enumerate(segment.get("words") or []):
            if word.get("deleted"):
                continue
            if listed and is_filler(word["word"], lang):
                word["deleted"] = True
                marked.words.append({
                    "segment_id": segment["id"], "index": index, "word": word["word"],
                    "start_ms": word["start_ms"], "end_ms": word["end_ms"],
                })
            else:
                kept.append((word["start_ms"], word["end_ms"]))
    if min_pause_ms > 0:
        pauses = out.setdefault("pauses", [])
        existing = [(p["start_ms"], p["end_ms"]) for p in pauses]
        kept.sort()
        reached = None
        for start, end in kept:
            if reached is not None and start - reached > min_pause_ms and not any(
                a < start and reached < b for a, b in existing
            ):
                pause = {"start_ms": reached, "end_ms": start}
                pauses.append({**pause, "deleted": True})
                marked.pauses.append(pause)
            reached = end if reached is None else max(reached, end)
        pauses.sort(key=lambda p: (p["start_ms"], p["end_ms"]))
    return out, marked


# ----------------------------------------------------------------------------- projects/edl/transcripts.py


def carry_edits(new: list[dict[str, Any]], old: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    by_clip: dict[Any, list[dict[str, Any]]] = {}
    for segment in old:
        by_clip.setdefault(segment.get("clip_id"), []).append(segment)
    deleted: dict[Any, tuple[_Spans, _Spans]] = {
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
        span = (segment["start_ms"], segment["end_ms"])
        edited = [
            s for s in by_clip[segment["clip_id"]]
            if s.get("edited_text") is not None and _same_stretch((s["start_ms"], s["end_ms"]), span)
        ]
        if edited:
            best = max(edited, key=lambda s: _overlap((s["start_ms"], s["end_ms"]), span))
            segment["edited_text"] = best["edited_text"]
    return new

"""Engine-independent transcript building: words -> segments, speakers, alignment to a known script.

The transcript shape is the EDL's `transcript`:
    {"language", "duration_ms", "text",
     "segments": [{"id", "speaker", "start_ms", "end_ms", "text",
                   "words": [{"word", "start_ms", "end_ms", "confidence"}]}]}
`confidence` is the recogniser's probability for the word, or null where the engine gives none.
"""

from __future__ import annotations

import bisect
import difflib
import itertools
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

_NORMALIZE = re.compile(r"[^\w']+", re.UNICODE)
_SENTENCE_END = (".", "?", "!", "…")


@dataclass(frozen=True)
class Word:
    text: str
    start_s: float
    end_s: float
    confidence: float | None = None
    speaker: str | None = None
    source: str = "asr"  # "asr" | "script" (timed from a recognised word) | "interpolated"


@dataclass(frozen=True)
class Turn:
    start_s: float
    end_s: float
    speaker: str


def normalize(word: str) -> str:
    return _NORMALIZE.sub("", word.lower()).strip("'")


def clamp_words(words: Iterable[Word], duration_s: float) -> list[Word]:
    """Timings inside [0, duration], start <= end, never going back in time; empty words dropped."""
    out: list[Word] = []
    floor = 0.0
    for w in words:
        text = w.text.strip()
        if not text:
            continue
        start = min(max(w.start_s, floor, 0.0), duration_s)
        end = min(max(w.end_s, start), duration_s)
        out.append(replace(w, text=text, start_s=start, end_s=end))
        floor = start
    return out


def assign_speakers(words: Sequence[Word], turns: Sequence[Turn]) -> list[Word]:
    """Label each word with the speaker whose turns overlap it most (nearest turn if none overlaps).

    Diarization labels (SPEAKER_00, ...) become "Speaker 1", "Speaker 2", ... in order of first
    appearance in the transcript. The turns are swept in order of their starts, so two hours of
    words and turns take milliseconds, not a pass over every turn for every word.
    """
    if not turns:
        return [replace(w, speaker=w.speaker or "Speaker 1") for w in words]
    ordered = sorted(turns, key=lambda t: t.start_s)
    starts = [t.start_s for t in ordered]
    latest_end = list(itertools.accumulate((t.end_s for t in ordered), max))
    labels: list[str] = [""] * len(words)
    first = 0  # the turns before it end before every word still to come
    for index in sorted(range(len(words)), key=lambda i: words[i].start_s):
        w = words[index]
        while first < len(ordered) and ordered[first].end_s <= w.start_s:
            first += 1
        best, best_overlap = None, 0.0
        j = first
        while j < len(ordered) and ordered[j].start_s < w.end_s:
            t = ordered[j]
            overlap = min(w.end_s, t.end_s) - max(w.start_s, t.start_s)
            if overlap > best_overlap:
                best, best_overlap = t.speaker, overlap
            j += 1
        if best is None:  # the nearest turn: the latest ending before the word, or the next to start
            mid = (w.start_s + w.end_s) / 2
            after = bisect.bisect_right(starts, mid)
            near = [(mid - latest_end[after - 1], _latest(ordered, after, latest_end))] if after else []
            if after < len(ordered):
                near.append((ordered[after].start_s - mid, ordered[after]))
            best = min(near, key=lambda pair: pair[0])[1].speaker
        labels[index] = best
    names: dict[str, str] = {}
    for label in labels:
        names.setdefault(label, f"Speaker {len(names) + 1}")
    return [replace(w, speaker=names[label]) for w, label in zip(words, labels, strict=True)]


def _latest(ordered: Sequence[Turn], before: int, latest_end: Sequence[float]) -> Turn:
    """The turn among the first `before` whose end is the latest."""
    return next(t for t in ordered[:before] if t.end_s == latest_end[before - 1])


def speaker_turns(turns: Sequence[Turn], *, duration_s: float) -> dict[str, Any]:
    """Speaker turns alone in the transcript shape: one segment a turn, with no words (a long file's
    diarization, beside the recognition of its pieces)."""
    segments = [{"id": f"turn-{i + 1:05d}", "speaker": t.speaker, "start_ms": round(t.start_s * 1000),
                 "end_ms": round(t.end_s * 1000), "text": "", "words": []} for i, t in enumerate(turns)]
    return {"language": None, "duration_ms": round(duration_s * 1000), "text": "", "segments": segments}


def turns_of(transcript: Mapping[str, Any]) -> list[Turn]:
    """The speaker turns `speaker_turns` wrote."""
    return [Turn(s["start_ms"] / 1000, s["end_ms"] / 1000, str(s["speaker"]))
            for s in transcript.get("segments") or [] if s.get("speaker") is not None]


def group_words(
    words: Sequence[Word], *, max_gap_s: float = 1.0, max_words: int = 40, max_duration_s: float = 30.0
) -> list[list[Word]]:
    """Split words into segments at a speaker change, a sentence end, a long pause, or a size cap."""
    groups: list[list[Word]] = []
    current: list[Word] = []
    for w in words:
        if current:
            prev = current[-1]
            if (
                w.speaker != prev.speaker
                or prev.text.endswith(_SENTENCE_END)
                or w.start_s - prev.end_s > max_gap_s
                or len(current) >= max_words
                or w.end_s - current[0].start_s > max_duration_s
            ):
                groups.append(current)
                current = []
        current.append(w)
    if current:
        groups.append(current)
    return groups


def _word_dict(w: Word) -> dict[str, Any]:
    return {
        "word": w.text,
        "start_ms": round(w.start_s * 1000),
        "end_ms": round(w.end_s * 1000),
        "confidence": None if w.confidence is None else round(float(w.confidence), 3),
    }


def build_transcript(
    groups: Sequence[Sequence[Word]], *, language: str, duration_s: float, default_speaker: str = "Speaker 1"
) -> dict[str, Any]:
    segments: list[dict[str, Any]] = []
    for group in groups:
        if not group:
            continue
        text = " ".join(w.text for w in group)
        segments.append(
            {
                "id": f"seg-{len(segments) + 1:04d}",
                "speaker": group[0].speaker or default_speaker,
                "start_ms": round(group[0].start_s * 1000),
                "end_ms": round(max(w.end_s for w in group) * 1000),
                "text": text,
                "words": [_word_dict(w) for w in group],
            }
        )
    return {
        "language": language,
        "duration_ms": round(duration_s * 1000),
        "text": " ".join(s["text"] for s in segments),
        "segments": segments,
    }


def align_to_script(words: Sequence[Word], script: str) -> tuple[list[Word], dict[str, Any]]:
    """Time every word of the known `script` from the recognised `words`.

    The recogniser's words and the script's are matched on their normalised spelling
    (difflib's longest-matching-blocks). A matched script word takes the recognised word's timing
    and confidence; a run of script words facing a run of different recognised words (a
    misrecognition) shares that run's time span in proportion to the words' lengths; script words
    the recogniser missed are spread over the gap between their timed neighbours (confidence 0).
    Recognised words that are not in the script (hesitations, noise) are dropped: the result's
    text is exactly the script.
    """
    script_words = script.split()
    if not script_words:
        return list(words), {"mode": "none"}
    asr = [normalize(w.text) for w in words]
    ref = [normalize(w) for w in script_words]
    timed: list[Word | None] = [None] * len(script_words)
    matched = substituted = dropped = 0
    matcher = difflib.SequenceMatcher(a=asr, b=ref, autojunk=False)
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op == "equal":
            for k in range(j2 - j1):
                w = words[i1 + k]
                timed[j1 + k] = Word(script_words[j1 + k], w.start_s, w.end_s, w.confidence, w.speaker, "script")
                matched += 1
        elif op == "replace":
            span_start, span_end = words[i1].start_s, words[i2 - 1].end_s
            confs = [w.confidence for w in words[i1:i2] if w.confidence is not None]
            conf = (sum(confs) / len(confs)) * 0.5 if confs else None
            _spread(timed, script_words, j1, j2, span_start, span_end, conf, words[i1].speaker, "script")
            substituted += j2 - j1
        elif op == "delete":
            dropped += i2 - i1
    # Script words still untimed: spread over the gap between their timed neighbours.
    interpolated = 0
    j = 0
    while j < len(timed):
        if timed[j] is not None:
            j += 1
            continue
        k = j
        while k < len(timed) and timed[k] is None:
            k += 1
        prev_w = timed[j - 1] if j > 0 else None
        next_w = timed[k] if k < len(timed) else None
        start = prev_w.end_s if prev_w else (next_w.start_s if next_w else 0.0)
        end = next_w.start_s if next_w else (words[-1].end_s if words else start)
        neighbour = prev_w or next_w
        speaker = neighbour.speaker if neighbour is not None else None
        _spread(timed, script_words, j, k, start, max(start, end), 0.0, speaker, "interpolated")
        interpolated += k - j
        j = k
    aligned = [w for w in timed if w is not None]
    summary = {
        "mode": "script",
        "script_words": len(script_words),
        "matched": matched,
        "substituted": substituted,
        "interpolated": interpolated,
        "recognised_words_dropped": dropped,
    }
    return aligned, summary


def _spread(
    timed: list[Word | None],
    script_words: Sequence[str],
    j1: int,
    j2: int,
    start: float,
    end: float,
    confidence: float | None,
    speaker: str | None,
    source: str,
) -> None:
    weights = [max(1, len(normalize(w))) for w in script_words[j1:j2]]
    total = sum(weights)
    t = start
    for offset, weight in enumerate(weights):
        t_end = t + (end - start) * weight / total
        timed[j1 + offset] = Word(script_words[j1 + offset], t, t_end, confidence, speaker, source)
        t = t_end

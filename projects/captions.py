"""Captions: cues from a transcript, and the files they are written as (SRT, WebVTT, ASS, JSON).

Two sources. A media file's own transcription (its stored caption JSON: source times, every word).
And the project's EDL transcript, at TIMELINE times, which captions the edited timeline: deleted
segments and words are dropped, times are mapped through the cuts to where they play after them,
and a segment's `edited_text`, when set, is what its captions say (its words keep the audio):
the edited text's words are spread over the span the segment's kept words cover.

Cue rules: a line holds at most 42 characters and a cue at most 2 lines, balanced; a cue never
spans two segments (so never two speakers), a pause over 1 s, or more than 7 s, and ends at the
end of a sentence. With speaker labels, a cue whose speaker differs from the previous cue's begins
with "<speaker>: ", counted in its first line. Formats are written (and parsed by the tests) with
pysubs2.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import pysubs2

from auteur.core.collector import collector_paused
from projects.edl.cuts import DEFAULT_PADDING_MS, Cuts, transcript_cuts

MAX_LINE_CHARS = 42
MAX_LINES = 2
MAX_CUE_MS = 7000
MAX_GAP_MS = 1000
MAX_LABEL_CHARS = 24
SENTENCE_END = (".", "?", "!", "…")

# format -> (Content-Type, file extension)
FORMATS: Mapping[str, tuple[str, str]] = {
    "srt": ("application/x-subrip", "srt"),
    "vtt": ("text/vtt", "vtt"),
    "json": ("application/json", "json"),
}
POSITIONS = ("bottom", "center", "top")
_ALIGNMENT = {
    "bottom": pysubs2.Alignment.BOTTOM_CENTER,
    "center": pysubs2.Alignment.MIDDLE_CENTER,
    "top": pysubs2.Alignment.TOP_CENTER,
}
# The font burned-in captions are drawn with: the family the render engine's fonts folder holds.
CAPTION_FONT = "Roboto"


class Word(NamedTuple):
    """A word as the captions show it, at the times they show it (ms).

    A named tuple rather than a frozen dataclass: one is made per word of a transcript, and it
    costs half as much to make (bench/timeline_limits.py measures the captions at the limits).
    """

    text: str
    start_ms: int
    end_ms: int
    speaker: str | None = None


@dataclass(frozen=True)
class Cue:
    start_ms: int
    end_ms: int
    lines: tuple[str, ...]
    speaker: str | None = None

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


@dataclass(frozen=True)
class CaptionStyle:
    """How burned-in captions look: size in pixels of the output frame, position, text colour."""

    font_size: int | None = None  # default: 5% of the frame's height
    position: str = "bottom"
    color: str = "#ffffff"


# ----------------------------------------------------------------------------- words


def _clean(text: str) -> str:
    # Braces and backslashes are markup in the ASS text pysubs2 keeps events in.
    return " ".join(text.replace("{", "(").replace("}", ")").replace("\\", "/").split())


def media_words(caption_json: Mapping[str, Any]) -> list[list[Word]]:
    """A transcription's words (source times), one list per segment."""
    transcript = caption_json.get("transcript", caption_json)
    groups = []
    for seg in transcript.get("segments") or []:
        words = [
            Word(_clean(w.get("word") or ""), int(w["start_ms"]), int(w["end_ms"]), seg.get("speaker"))
            for w in seg.get("words") or []
        ]
        groups.append([w for w in words if w.text])
    return [g for g in groups if g]


def timeline_words(
    transcript: Mapping[str, Any],
    *,
    padding_ms: int = DEFAULT_PADDING_MS,
    tracks: Sequence[Mapping[str, Any]] | None = None,
    end_ms: int = 0,
    cuts: Cuts | None = None,
) -> list[list[Word]]:
    """The EDL transcript's words as the edited timeline plays them (output times after the
    cuts), with `edited_text` in place of a segment's words; one list per segment, in time order.

    With `tracks`, a segment transcribed from a clip that no longer plays (deleted, or gone) has
    no captions; with `end_ms` (the output's length), nothing is shown past the end. `cuts`: the
    transcript's own (`transcript_cuts(transcript, padding_ms=...)`) when the caller has them.
    Each word's times are two bisects in the cuts: n log n in all.
    """
    if cuts is None:
        cuts = transcript_cuts(transcript, padding_ms=padding_ms)
    playing = None if tracks is None else {
        str(c.get("clip_id") or c.get("id"))  # a piece of a cut clip names its clip
        for t in tracks for c in t.get("clips") or () if not c.get("deleted")
    }  # fmt: skip
    groups = []
    segments = sorted(transcript.get("segments") or [], key=lambda s: (s.get("start_ms", 0), s.get("end_ms", 0)))
    for seg in segments:
        if seg.get("deleted") or (playing is not None and seg.get("clip_id") and str(seg["clip_id"]) not in playing):
            continue
        words = [w for w in _mapped(seg, cuts) if w.text]
        if end_ms > 0:
            words = [w if w.end_ms <= end_ms else w._replace(end_ms=end_ms) for w in words if w.start_ms < end_ms]
        if words:
            groups.append(words)
    return groups


def _mapped(seg: Mapping[str, Any], cuts: Cuts) -> list[Word]:
    speaker = seg.get("speaker")
    all_words = seg.get("words") or []
    kept = [w for w in all_words if not w.get("deleted")]
    if all_words and not kept:
        return []  # every word was cut: nothing of it plays
    mapped: list[Word] = []
    output_time = cuts.output_time
    # A segment without words is timed by its own span.
    for w in kept or [{"word": "", "start_ms": seg["start_ms"], "end_ms": seg["end_ms"]}]:
        start, start_kept = output_time(int(w["start_ms"]))
        end = output_time(int(w["end_ms"]))[0]
        if start_kept or end > start:  # else wholly inside a cut
            mapped.append(Word(_clean(w.get("word") or ""), start, end if end > start else start, speaker))
    edited = seg.get("edited_text")
    if (edited is None and all_words) or not mapped:
        return mapped
    text = edited if edited is not None else seg.get("text") or ""
    return _spread(_clean(text).split(), mapped[0].start_ms, mapped[-1].end_ms, speaker)


def _spread(tokens: Sequence[str], start: int, end: int, speaker: str | None) -> list[Word]:
    """`tokens` timed over [start, end] in proportion to their lengths."""
    total = sum(len(t) for t in tokens) or 1
    words, used = [], 0
    for token in tokens:
        t0 = start + (end - start) * used // total
        used += len(token)
        words.append(Word(token, t0, start + (end - start) * used // total, speaker))
    return words


# ----------------------------------------------------------------------------- cues


def _layout(words: Sequence[Word], label: str) -> tuple[str, ...] | None:
    """The words (and label) as at most two balanced lines of at most 42 characters, or None."""
    texts = [w.text for w in words]
    one = label + " ".join(texts)
    if len(one) <= MAX_LINE_CHARS:
        return (one,)
    best: tuple[str, ...] | None = None
    for i in range(0 if label else 1, len(texts)):
        first, second = (label + " ".join(texts[:i])).rstrip(), " ".join(texts[i:])
        if len(first) <= MAX_LINE_CHARS and len(second) <= MAX_LINE_CHARS and (
            best is None or max(len(first), len(second)) < max(len(x) for x in best)
        ):
            best = (first, second)
    return best


def _split_long(words: Iterable[Word]) -> list[Word]:
    """A word longer than a line, cut into line-long pieces sharing its time."""
    out: list[Word] = []
    for w in words:
        if len(w.text) <= MAX_LINE_CHARS:
            out.append(w)
            continue
        pieces = [w.text[i : i + MAX_LINE_CHARS] for i in range(0, len(w.text), MAX_LINE_CHARS)]
        out += [p._replace(speaker=w.speaker) for p in _spread(pieces, w.start_ms, w.end_ms, w.speaker)]
    return out


class _Lines:
    """The cue being built: whether one more word still fits its lines, in O(1) a word.

    Trying every split (`_layout`) for every word made a cue of forty one-letter words cost
    forty splits a word (bench/timeline_limits.py). The first line only grows and the second
    only shrinks as the split moves right, so some split fits if and only if the one with the
    longest first line that fits does: that one is kept up to date as the words come.
    """

    def __init__(self, label: str) -> None:
        self.label = label
        self.count = 0
        self.width = 0  # len(" ".join(texts))
        self.trailing = 0  # the whitespace ending the last text (a piece of a long word may end so)
        # The longest first line that fits: how many words it holds (the label alone: 0), and
        # their width.
        self.first_count: int | None = 0 if label else None
        self.first_width = 0

    def add(self, text: str) -> None:
        self.width = self.width + 1 + len(text) if self.count else len(text)
        self.count += 1
        self.trailing = len(text) - len(text.rstrip())

    def fits(self, text: str) -> bool:
        """Whether the words and `text` make one line, or two, of at most MAX_LINE_CHARS each."""
        width = self.width + 1 + len(text)
        if len(self.label) + width <= MAX_LINE_CHARS:
            return True
        # All the words so far as the first line (stripped, as `_layout` strips it), `text` the second.
        if len(self.label) + self.width - self.trailing <= MAX_LINE_CHARS:
            self.first_count, self.first_width = self.count, self.width
        if self.first_count is None:
            return False
        return width - self.first_width - (1 if self.first_count else 0) <= MAX_LINE_CHARS


def build_cues(groups: Iterable[Sequence[Word]], *, speakers: bool = False) -> list[Cue]:
    cues: list[Cue] = []
    last_speaker: str | None = None

    def label_for(speaker: str | None) -> str:
        if not speakers or not speaker or (cues and speaker == last_speaker):
            return ""
        return f"{speaker[:MAX_LABEL_CHARS]}: "

    for group in groups:
        current: list[Word] = []
        lines = _Lines("")
        for word in _split_long(group):
            if current and (
                word.end_ms - current[0].start_ms > MAX_CUE_MS
                or word.start_ms - current[-1].end_ms > MAX_GAP_MS
                or not lines.fits(word.text)
            ):
                cues.append(_cue(current, lines.label))
                last_speaker = current[0].speaker
                current = []
            if not current:
                lines = _Lines(label_for(word.speaker))  # what the cue's first word says: its label
            current.append(word)
            lines.add(word.text)
            if word.text.endswith(SENTENCE_END):
                cues.append(_cue(current, lines.label))
                last_speaker, current = current[0].speaker, []
        if current:
            cues.append(_cue(current, lines.label))
            last_speaker = current[0].speaker
    return cues


def _cue(words: Sequence[Word], label: str) -> Cue:
    lines = _layout(words, label)
    assert lines is not None  # one word always fits: _split_long made it a line at most
    start = words[0].start_ms
    return Cue(start, max(start + 1, words[-1].end_ms), lines, words[0].speaker)


# ----------------------------------------------------------------------------- files


def _subs(cues: Iterable[Cue]) -> pysubs2.SSAFile:
    subs = pysubs2.SSAFile()
    for cue in cues:
        event = pysubs2.SSAEvent(start=cue.start_ms, end=cue.end_ms)
        event.plaintext = cue.text
        subs.append(event)
    return subs


# The largest time SubRip writes (99:59:59,999); pysubs2 clamps past it, with a warning.
_MAX_TIMESTAMP_MS = 100 * 3_600_000 - 1
_LINE_RUNS = re.compile("\n+")
# The largest time SubStation writes (9:59:59.99).
_MAX_ASS_MS = 10 * 3_600_000 - 10


def _timestamp(ms: int, separator: str) -> str:
    h, ms = divmod(ms, 3_600_000)
    m, ms = divmod(ms, 60_000)
    s, ms = divmod(ms, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{separator}{ms:03d}"


def _plain(cue: Cue) -> bool:
    """Whether pysubs2 would write the cue as it is: no override tags or escapes (braces,
    backslashes), integer times it does not clamp."""
    return (
        type(cue.start_ms) is int and type(cue.end_ms) is int
        and 0 <= cue.start_ms <= _MAX_TIMESTAMP_MS and 0 <= cue.end_ms <= _MAX_TIMESTAMP_MS
        and not any("{" in line or "}" in line or "\\" in line for line in cue.lines)
    )


def write(cues: Iterable[Cue], fmt: str) -> str:
    """SRT (`srt`) or WebVTT (`vtt`) text, exactly as pysubs2 writes it.

    Cues of plain text (all that this module makes: `_clean`) are written here, in a fraction of
    what pysubs2 spends per cue (bench/timeline_limits.py: a transcript at the limits makes
    20,000 cues); any other goes through pysubs2. tests/projects/test_timeline_equivalence.py
    compares the two.
    """
    cues = list(cues)
    if fmt not in ("srt", "vtt") or not all(_plain(cue) for cue in cues):
        return str(_subs(cues).to_string(fmt))
    separator = "," if fmt == "srt" else "."
    parts = []
    if fmt == "vtt":
        parts.append("WEBVTT\n\n")
        cues.sort(key=lambda cue: cue.start_ms)  # as pysubs2 orders WebVTT (a stable sort)
    for number, cue in enumerate(cues, 1):
        text = _LINE_RUNS.sub("\n", cue.text.strip())
        parts.append(f"{number}\n{_timestamp(cue.start_ms, separator)} --> {_timestamp(cue.end_ms, separator)}\n"
                     f"{text}\n\n")
    return "".join(parts)


def _ass_timestamp(ms: int) -> str:
    ms = ms + 5 - (ms + 5) % 10  # to the centisecond, as pysubs2 (and Aegisub) round
    h, ms = divmod(ms, 3_600_000)
    m, ms = divmod(ms, 60_000)
    s, ms = divmod(ms, 1000)
    return f"{h:01d}:{m:02d}:{s:02d}.{ms // 10:02d}"


def write_ass(cues: Iterable[Cue], *, width: int, height: int, style: CaptionStyle | None = None) -> str:
    """An ASS script drawing the cues on a `width` x `height` frame (burn-in), one style for all,
    exactly as pysubs2 writes it: pysubs2 writes the script's head, and the events of plain cues
    are written here, as `write` does (bench/timeline_limits.py: pysubs2 spent most of a render
    submission's time on them)."""
    cues = list(cues)
    plain = all(_plain(cue) and cue.start_ms <= _MAX_ASS_MS and cue.end_ms <= _MAX_ASS_MS for cue in cues)
    head = _ass(() if plain else cues, width=width, height=height, style=style)
    if not plain:
        return head
    # pysubs2 ends the script with its events, one line each, the fields of a default SSAEvent
    # and the text with its line breaks as \N.
    parts = [head]
    for cue in cues:
        text = cue.text.replace("\n", "\\N")
        parts.append(f"Dialogue: 0,{_ass_timestamp(cue.start_ms)},{_ass_timestamp(cue.end_ms)},Default,,0,0,0,,"
                     f"{text}\n")
    return "".join(parts)


def _ass(cues: Iterable[Cue], *, width: int, height: int, style: CaptionStyle | None) -> str:
    style = style or CaptionStyle()
    subs = _subs(cues)
    subs.info.update({"PlayResX": str(width), "PlayResY": str(height), "ScaledBorderAndShadow": "yes"})
    size = style.font_size or max(8, round(height * 0.05))
    rgb = style.color.lstrip("#")
    subs.styles["Default"] = pysubs2.SSAStyle(
        fontname=CAPTION_FONT,
        fontsize=size,
        primarycolor=pysubs2.Color(int(rgb[0:2], 16), int(rgb[2:4], 16), int(rgb[4:6], 16)),
        outlinecolor=pysubs2.Color(0, 0, 0),
        backcolor=pysubs2.Color(0, 0, 0, 128),
        outline=max(1, round(size / 16)),
        shadow=0,
        alignment=_ALIGNMENT[style.position],
        marginv=round(height * 0.05),
        marginl=round(width * 0.05),
        marginr=round(width * 0.05),
    )
    return str(subs.to_string("ass"))


def caption_json(
    groups: Iterable[Sequence[Word]], *, duration_ms: int, language: str | None, speakers: bool = False
) -> dict[str, Any]:
    """`{duration, language, words: [{text, start, end}]}`, times in seconds (with each word's
    `speaker` when asked)."""
    words = []
    for group in groups:
        for w in group:
            item: dict[str, Any] = {"text": w.text, "start": w.start_ms / 1000, "end": w.end_ms / 1000}
            if speakers:
                item["speaker"] = w.speaker
            words.append(item)
    return {"duration": duration_ms / 1000, "language": language or "und", "words": words}


# ----------------------------------------------------------------------------- what callers ask for


def _file(groups: list[list[Word]], fmt: str, *, speakers: bool, duration_ms: int, language: str | None) -> str:
    if fmt == "json":
        return json.dumps(
            caption_json(groups, duration_ms=duration_ms, language=language, speakers=speakers), ensure_ascii=False
        )
    return write(build_cues(groups, speakers=speakers), fmt)


def media_caption_file(caption: Mapping[str, Any], fmt: str, *, speakers: bool = False) -> str:
    """A media file's captions (`fmt`: srt, vtt or json) from its stored transcription."""
    transcript = caption.get("transcript", caption)
    groups = media_words(transcript)
    duration_ms = int(transcript.get("duration_ms") or max((g[-1].end_ms for g in groups), default=0))
    return _file(groups, fmt, speakers=speakers, duration_ms=duration_ms, language=transcript.get("language"))


def timeline_caption_file(
    edl: Mapping[str, Any], fmt: str, *, speakers: bool = False, padding_ms: int = DEFAULT_PADDING_MS
) -> str:
    """The edited timeline's captions (`fmt`: srt, vtt or json), at output times."""
    with collector_paused():  # bounded by the timeline's limits: auteur/core/collector.py
        return _timeline_caption_file(edl, fmt, speakers=speakers, padding_ms=padding_ms)


def _timeline_caption_file(edl: Mapping[str, Any], fmt: str, *, speakers: bool, padding_ms: int) -> str:
    transcript = edl.get("transcript") or {}
    total_ms = int((edl.get("settings") or {}).get("duration_ms") or 0)
    cuts = transcript_cuts(transcript, padding_ms=padding_ms)
    duration_ms = cuts.edited_duration(total_ms)
    groups = timeline_words(transcript, tracks=edl.get("tracks") or [], end_ms=duration_ms, cuts=cuts)
    # Each transcription records its language on its segments: the timeline's is the most common.
    languages = Counter(
        s["language"] for s in transcript.get("segments") or () if s.get("language") and not s.get("deleted")
    )
    language = transcript.get("language") or (languages.most_common(1)[0][0] if languages else None)
    return _file(groups, fmt, speakers=speakers, duration_ms=duration_ms, language=language)


def render_caption_files(
    edl: Mapping[str, Any],  # the render's snapshot: tracks already cut, settings.duration_ms the output's
    transcript: Mapping[str, Any],
    mode: str,
    *,
    style: CaptionStyle | None = None,
    padding_ms: int = DEFAULT_PADDING_MS,
    cuts: Cuts | None = None,
) -> dict[str, str]:
    """What a render with captions `mode` carries: `captions_ass` to burn in ("burn"), or
    `captions_srt` and `captions_vtt` to deliver beside the video ("sidecar"); nothing for "none", or
    when nothing is left to caption. `cuts`: those the snapshot was cut with, when the caller has them."""
    settings = edl.get("settings") or {}
    words = [] if mode == "none" else timeline_words(
        transcript, padding_ms=padding_ms, tracks=edl.get("tracks") or [], end_ms=int(settings.get("duration_ms") or 0),
        cuts=cuts,
    )
    cues = build_cues(words)
    if not cues:
        return {}
    if mode == "sidecar":
        return {"captions_srt": write(cues, "srt"), "captions_vtt": write(cues, "vtt")}
    resolution = settings.get("resolution") or {}
    width, height = int(resolution.get("width", 1920)), int(resolution.get("height", 1080))
    return {"captions_ass": write_ass(cues, width=width, height=height, style=style)}

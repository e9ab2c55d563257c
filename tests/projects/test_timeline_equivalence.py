"""The linear timeline computations give exactly what the former quadratic ones gave.

bench/quadratic_timeline.py keeps the former code as the oracle. Hypothesis draws timelines with
what makes the rules subtle: words out of order and overlapping (two voices), zero-length words,
deleted words, segments deleted with and without words, pauses overlapping each other and the
words, pauses without `deleted` (deleted by default), clips at several speeds and on several
tracks, fillers, edited texts; and the edge cases are also checked on their own.
"""

from __future__ import annotations

import copy
import warnings
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench import quadratic_timeline as old
from projects.captions import (
    CaptionStyle,
    Cue,
    Word,
    _ass,
    _layout,
    _Lines,
    _subs,
    build_cues,
    render_caption_files,
    timeline_caption_file,
    timeline_words,
    write,
    write_ass,
)
from projects.edl.cuts import (
    Cuts,
    count_pieces,
    cut_tracks,
    edited_duration,
    edited_time,
    removed_before,
    removed_spans,
)
from projects.edl.fillers import mark_fillers
from projects.edl.transcripts import carry_edits

EXAMPLES = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])

TEXTS = ["um", "Hello", "world.", "uh,", "this", "is", "fine?", "", "extraordinary", "internationalization,",
         "supercalifragilisticexpialidocious" * 2]


@st.composite
def words(draw: st.DrawFn, at: int, until: int) -> list[dict[str, Any]]:
    out = []
    for _ in range(draw(st.integers(0, 8))):
        start = draw(st.integers(at, until))
        end = draw(st.integers(start, min(until, start + 800)))
        word: dict[str, Any] = {"word": draw(st.sampled_from(TEXTS)), "start_ms": start, "end_ms": end,
                                "confidence": 1.0}
        if draw(st.booleans()):
            word["deleted"] = draw(st.booleans())
        out.append(word)
    return out


@st.composite
def transcripts(draw: st.DrawFn) -> dict[str, Any]:
    segments: list[dict[str, Any]] = []
    for n in range(draw(st.integers(0, 6))):
        start = draw(st.integers(0, 8000))
        end = draw(st.integers(start, start + 3000))
        segments.append({
            "id": f"s{n}", "start_ms": start, "end_ms": end, "words": draw(words(start, end)),
            "deleted": draw(st.booleans()) and draw(st.booleans()),
            "speaker": draw(st.sampled_from([None, "A", "B"])),
            "clip_id": draw(st.sampled_from([None, "c0", "c1", "gone"])),
            "edited_text": draw(st.sampled_from([None, None, "", "Edited text here.", "one two three four"])),
            "language": draw(st.sampled_from([None, "en", "fr", "xx"])),
            "text": "segment text",
        })
    # Pause edges often on word edges: where "before" and "after" differ by one comparison.
    edges = sorted({w[k] for s in segments for w in s["words"] for k in ("start_ms", "end_ms")})
    anywhere = st.integers(0, 11000)
    pauses = []
    for _ in range(draw(st.integers(0, 6))):
        start = draw(st.one_of(anywhere, st.sampled_from(edges)) if edges else anywhere)
        later = [e for e in edges if e > start]
        end = draw(st.one_of(st.integers(start + 1, start + 2500), st.sampled_from(later))
                   if later else st.integers(start + 1, start + 2500))
        pause: dict[str, Any] = {"start_ms": start, "end_ms": end}
        if draw(st.booleans()):
            pause["deleted"] = draw(st.booleans())
        pauses.append(pause)
    return {"segments": segments, "pauses": pauses}


@st.composite
def tracks(draw: st.DrawFn) -> list[dict[str, Any]]:
    out = []
    for t in range(draw(st.integers(1, 3))):
        clips = []
        for c in range(draw(st.integers(0, 4))):
            start = draw(st.integers(0, 10000))
            duration = draw(st.integers(1, 4000))
            rate = draw(st.sampled_from([None, 0.5, 1, 2]))
            inp = draw(st.integers(0, 1000))
            clips.append({
                "id": f"c{c}" if t == 0 else f"t{t}c{c}", "media_file_id": "m", "start_ms": start,
                "duration_ms": duration, "in_point_ms": inp, "out_point_ms": inp + round(duration * (rate or 1)),
                "effects": [] if rate is None else [{"type": "speed", "rate": rate}],
                "deleted": draw(st.booleans()) and draw(st.booleans()),
            })
        out.append({"id": f"t{t}", "type": "video", "clips": clips})
    return out


def instants(spans: list[tuple[int, int]]) -> list[int]:
    """Every span edge and its neighbours, and a few instants away from them."""
    around = {t + d for a, b in spans for t in (a, b) for d in (-1, 0, 1)}
    return sorted(around | {0, 1, 5000, 20_000})


@EXAMPLES
@given(transcripts(), st.integers(0, 120))
def test_removed_spans_and_the_instants_they_map_match_the_former_code(transcript, padding):
    spans = removed_spans(transcript, padding_ms=padding)
    assert spans == old.removed_spans(transcript, padding_ms=padding)
    cuts = Cuts(spans)
    for t in instants(spans):
        assert cuts.removed_before(t) == removed_before(t, spans) == old.removed_before(t, spans)
        assert cuts.edited_time(t) == edited_time(t, spans) == old.edited_time(t, spans)
        assert cuts.edited_duration(t) == edited_duration(t, spans) == old.edited_duration(t, spans)
        assert cuts.output_time(t) == old._output_time(t, spans)


@EXAMPLES
@given(transcripts(), tracks(), st.integers(0, 120))
def test_cut_tracks_and_the_piece_count_match_the_former_code(transcript, timeline, padding):
    spans = removed_spans(transcript, padding_ms=padding)
    cut = cut_tracks(timeline, Cuts(spans))
    assert cut == cut_tracks(timeline, spans) == old.cut_tracks(timeline, spans)
    assert count_pieces(timeline, spans) == sum(len(t["clips"]) for t in cut)


@EXAMPLES
@given(transcripts(), tracks(), st.integers(0, 120), st.integers(0, 15000))
def test_captions_match_the_former_code(transcript, timeline, padding, total):
    edl = {"settings": {"duration_ms": total, "resolution": {"width": 640, "height": 360}},
           "tracks": timeline, "transcript": transcript}
    assert timeline_words(transcript, padding_ms=padding, tracks=timeline, end_ms=total) == old.timeline_words(
        transcript, padding_ms=padding, tracks=timeline, end_ms=total)
    for fmt in ("json", "srt"):
        assert timeline_caption_file(edl, fmt, speakers=True, padding_ms=padding) == old.timeline_caption_file(
            edl, fmt, speakers=True, padding_ms=padding)
    snapshot = {**edl, "tracks": cut_tracks(timeline, removed_spans(transcript, padding_ms=padding))}
    for mode in ("burn", "sidecar"):
        assert render_caption_files(snapshot, transcript, mode, padding_ms=padding) == old.render_caption_files(
            snapshot, transcript, mode, padding_ms=padding)


@st.composite
def word_groups(draw: st.DrawFn) -> list[list[Word]]:
    groups, at = [], 0
    for _ in range(draw(st.integers(0, 4))):
        group = []
        for _ in range(draw(st.integers(1, 30))):
            # As cleaned words are: no whitespace at either end, single spaces inside (a long one is
            # cut into pieces, which may end with a space).
            text = " ".join(draw(st.text(alphabet="xxxxy ", min_size=1, max_size=60)).split()) or "x"
            text += draw(st.sampled_from(["", "", ",", "."]))
            at += draw(st.sampled_from([0, 100, 400, 1200]))
            end = at + draw(st.integers(0, 3000))
            group.append(Word(text, at, end, draw(st.sampled_from([None, "A", "Bob"]))))
            at = end
        groups.append(group)
    return groups


@settings(max_examples=1000, deadline=None)
@given(st.sampled_from(["", "Bob: "]), st.lists(st.sampled_from(
    ["x", "xx", "x" * 5, "x" * 20, "x" * 21, "x" * 20 + " ", "x" * 36, "x" * 37, "x" * 41, "x" * 42, "x" * 41 + " "]),
    min_size=1, max_size=8))
def test_a_cue_takes_one_more_word_exactly_when_some_layout_holds_it(label, texts):
    lines, words = _Lines(label), list[Word]()
    for text in texts:
        word = Word(text, 0, 0)
        if words:
            assert lines.fits(text) == (_layout([*words, word], label) is not None), (label, texts, text)
        words.append(word)
        lines.add(text)


@EXAMPLES
@given(word_groups(), st.booleans())
def test_cues_match_the_former_code(groups, speakers):
    assert build_cues(groups, speakers=speakers) == old.build_cues(groups, speakers=speakers)


cue_times = st.one_of(st.integers(0, 10_000), st.integers(-5, 5), st.just(100 * 3_600_000 - 1),
                     st.just(100 * 3_600_000), st.floats(0, 5000, allow_nan=False))
cue_lines = st.lists(st.text(alphabet="ab ,.\n{}\\hN:é", max_size=12), min_size=1, max_size=2)


plain_times = st.integers(0, 10_000)
plain_lines = st.lists(st.text(alphabet="ab ,.\né", max_size=12), min_size=1, max_size=2)


@EXAMPLES
@given(st.one_of(  # all plain (written here), or any (some through pysubs2)
    st.lists(st.builds(Cue, plain_times, plain_times, plain_lines.map(tuple), st.none()), max_size=8),
    st.lists(st.builds(Cue, cue_times, cue_times, cue_lines.map(tuple), st.none()), max_size=8),
), st.sampled_from(["srt", "vtt"]))
def test_caption_files_are_written_exactly_as_pysubs2_writes_them(cues, fmt):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # pysubs2 clamping a time past 99:59:59,999
        assert write(cues, fmt) == str(_subs(cues).to_string(fmt))


@EXAMPLES
@given(st.one_of(
    st.lists(st.builds(Cue, plain_times, plain_times, plain_lines.map(tuple), st.none()), max_size=8),
    st.lists(st.builds(Cue, cue_times | st.just(10 * 3_600_000 - 5), cue_times, cue_lines.map(tuple), st.none()),
             max_size=8),
), st.sampled_from([None, CaptionStyle(font_size=20, position="top", color="#ff0000")]))
def test_burned_in_captions_are_written_exactly_as_pysubs2_writes_them(cues, style):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        assert write_ass(cues, width=640, height=360, style=style) == _ass(cues, width=640, height=360, style=style)


@EXAMPLES
@given(transcripts(), st.sampled_from([None, "en", "fr"]), st.integers(0, 1500))
def test_mark_fillers_matches_the_former_code(transcript, language, min_pause):
    for segment in transcript["segments"]:  # the stored form: every word has `deleted`
        for word in segment["words"]:
            word.setdefault("deleted", False)
    given_transcript = copy.deepcopy(transcript)
    new, marked = mark_fillers(transcript, language=language, min_pause_ms=min_pause)
    assert transcript == given_transcript  # the result shares what it did not change, and changed nothing given
    former, former_marked = old.mark_fillers(transcript, language=language, min_pause_ms=min_pause)
    assert new == former
    assert marked == former_marked


@st.composite
def edited_segments(draw: st.DrawFn, prefix: str, near: tuple[int, ...] = ()) -> list[dict[str, Any]]:
    """Segments; with `near`, their edges often on those instants (another list's edges and middles)."""
    out = []
    anywhere = st.integers(0, 5000)
    for n in range(draw(st.integers(0, 8))):
        start = draw(st.one_of(anywhere, st.sampled_from(near)) if near else anywhere)
        later = [t for t in near if t >= start]
        end = draw(st.one_of(st.integers(start, start + 2000), st.sampled_from(later))
                   if later else st.integers(start, start + 2000))
        out.append({
            "id": f"{prefix}{n}", "clip_id": draw(st.sampled_from(["c0", "c1"])), "start_ms": start, "end_ms": end,
            "words": draw(words(start, end)), "deleted": draw(st.booleans()) and draw(st.booleans()),
            "edited_text": draw(st.sampled_from([None, "A", "B", "C"])),
        })
    return out


@st.composite
def old_and_new(draw: st.DrawFn) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    previous = draw(edited_segments("old"))
    edges = {t for s in previous for t in (s["start_ms"], s["end_ms"], (s["start_ms"] + s["end_ms"]) // 2)}
    return draw(edited_segments("new", tuple(sorted(edges)))), previous


@EXAMPLES
@given(old_and_new())
def test_carry_edits_matches_the_former_code(segments):
    new, previous = segments
    for segment in new:
        segment["edited_text"] = None
        for word in segment["words"]:
            word["deleted"] = False
    assert carry_edits(copy.deepcopy(new), previous) == old.carry_edits(copy.deepcopy(new), previous)


# ----------------------------------------------------------------------------- edge cases, by name


def one_segment(*spec: tuple[int, int, bool], pauses: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"segments": [{"id": "s", "start_ms": 0, "end_ms": 100_000, "words": [
        {"word": "w", "start_ms": a, "end_ms": b, "confidence": 1.0, "deleted": d} for a, b, d in spec]}],
        "pauses": pauses or []}


@pytest.mark.parametrize(("name", "transcript"), [
    ("empty", {}),
    ("no words", {"segments": [], "pauses": []}),
    ("all deleted", one_segment((0, 100, True), (200, 300, True), (250, 400, True))),
    ("deleted segment without words", {"segments": [{"id": "s", "start_ms": 10, "end_ms": 90, "words": [],
                                                     "deleted": True}]}),
    ("overlapping pauses", one_segment((0, 100, False), (5000, 5100, False), pauses=[
        {"start_ms": 100, "end_ms": 3000}, {"start_ms": 2000, "end_ms": 5000}, {"start_ms": 2500, "end_ms": 2600},
        {"start_ms": 4000, "end_ms": 4500, "deleted": False}])),
    ("overlapping voices", one_segment((0, 5000, False), (100, 200, True), (300, 400, True), (6000, 6100, False))),
])  # fmt: skip
def test_edge_cases_match_the_former_code(name, transcript):
    spans = removed_spans(transcript, padding_ms=40)
    assert spans == old.removed_spans(transcript, padding_ms=40)
    timeline = [{"id": "t", "type": "video", "clips": [
        {"id": "c", "media_file_id": "m", "start_ms": 0, "duration_ms": 8000, "in_point_ms": 0, "out_point_ms": 8000}]}]
    assert cut_tracks(timeline, spans) == old.cut_tracks(timeline, spans)
    edl = {"settings": {"duration_ms": 8000}, "tracks": timeline, "transcript": transcript}
    assert timeline_caption_file(edl, "json") == old.timeline_caption_file(edl, "json")
    assert mark_fillers(transcript, language=None, min_pause_ms=500) == old.mark_fillers(
        transcript, language=None, min_pause_ms=500)


def test_a_piece_count_is_exact_where_spans_touch_a_clips_edges():
    cuts = Cuts([(0, 100), (200, 300), (400, 500)])
    for start, end in [(0, 500), (0, 100), (50, 450), (100, 400), (100, 200), (120, 180), (500, 600), (150, 150)]:
        assert cuts.count_pieces(start, end) == len(cuts.keep(start, end)), (start, end)

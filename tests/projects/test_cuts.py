"""The cut rules: which timeline spans deletions remove, and what the clips become."""

from __future__ import annotations

from typing import Any

import pytest

from projects.edl.cuts import (
    clip_speed,
    cut_clip,
    cut_tracks,
    edited_duration,
    edited_time,
    merge_spans,
    removed_spans,
)


def transcript(*words: tuple[str, int, int, bool], pauses: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {
        "segments": [{
            "id": "s0", "start_ms": 0, "end_ms": 100_000,
            "words": [{"word": w, "start_ms": s, "end_ms": e, "confidence": 1.0, "deleted": d} for w, s, e, d in words],
        }],
        "pauses": pauses or [],
    }


SENTENCE = [("the", 0, 200, False), ("quick", 500, 900, False), ("brown", 1000, 1400, False),
            ("fox", 1800, 2100, False), ("jumps", 2500, 3000, False)]


def deleting(*names: str) -> dict[str, Any]:
    return transcript(*[(w, s, e, w in names) for w, s, e, _ in SENTENCE])


def test_nothing_deleted_removes_nothing():
    assert removed_spans(deleting()) == []


def test_a_deleted_word_takes_its_gaps_and_leaves_the_padding_beside_kept_words():
    # "brown" 1000-1400 between "quick" (ends 900) and "fox" (starts 1800).
    assert removed_spans(deleting("brown"), padding_ms=40) == [(940, 1760)]
    assert removed_spans(deleting("brown"), padding_ms=0) == [(900, 1800)]


def test_consecutive_deleted_words_make_one_cut():
    assert removed_spans(deleting("quick", "brown"), padding_ms=40) == [(240, 1760)]


def test_a_gap_shorter_than_the_padding_still_cuts_the_word_itself():
    words = transcript(("a", 0, 500, False), ("b", 510, 900, True), ("c", 920, 1200, False))
    assert removed_spans(words, padding_ms=40) == [(510, 900)]


def test_deletions_at_either_end_take_the_padding_past_the_words():
    assert removed_spans(deleting("the"), padding_ms=40) == [(0, 460)]
    assert removed_spans(deleting("jumps"), padding_ms=40) == [(2140, 3040)]


def test_a_deleted_segment_deletes_its_words_and_an_empty_one_its_span():
    doc = transcript(*SENTENCE)
    doc["segments"].append({"id": "s1", "start_ms": 5000, "end_ms": 5600, "words": [], "deleted": True})
    assert removed_spans(doc, padding_ms=40) == [(5000, 5600)]
    doc["segments"][1:] = [
        {"id": "s2", "start_ms": 6000, "end_ms": 7000, "deleted": True,
         "words": [{"word": "x", "start_ms": 6100, "end_ms": 6500, "confidence": 1}]},
        {"id": "s3", "start_ms": 7000, "end_ms": 8000,
         "words": [{"word": "y", "start_ms": 7200, "end_ms": 7500, "confidence": 1}]},
    ]
    # The silence between "jumps" (ends 3000) and "y" (starts 7200) goes with "x".
    assert removed_spans(doc, padding_ms=40) == [(3040, 7160)]


def test_words_of_several_segments_are_taken_in_time_order():
    doc = {"segments": [
        {"id": "b", "start_ms": 1000, "end_ms": 2000,
         "words": [{"word": "two", "start_ms": 1000, "end_ms": 1400, "confidence": 1, "deleted": True}]},
        {"id": "a", "start_ms": 0, "end_ms": 900,
         "words": [{"word": "one", "start_ms": 0, "end_ms": 600, "confidence": 1}]},
        {"id": "c", "start_ms": 2000, "end_ms": 3000,
         "words": [{"word": "three", "start_ms": 2200, "end_ms": 2600, "confidence": 1}]},
    ]}
    assert removed_spans(doc, padding_ms=40) == [(640, 2160)]


def test_a_deleted_pause_keeps_the_padding_and_an_undeleted_one_is_ignored():
    doc = transcript(*SENTENCE, pauses=[{"start_ms": 2100, "end_ms": 2500, "deleted": True},
                                        {"start_ms": 1400, "end_ms": 1800, "deleted": False}])
    assert removed_spans(doc, padding_ms=40) == [(2140, 2460)]
    # A pause shorter than twice the padding removes nothing.
    assert removed_spans(transcript(pauses=[{"start_ms": 0, "end_ms": 60}]), padding_ms=40) == []


def test_spans_merge_when_they_touch_or_overlap():
    assert merge_spans([(5, 10), (0, 5), (8, 12), (20, 20), (30, 31)]) == [(0, 12), (30, 31)]


@pytest.mark.parametrize(("t", "expected"), [(0, 0), (939, 939), (940, None), (1759, None), (1760, 940),
                                             (3000, 2180)])
def test_edited_time_shifts_what_follows_a_cut_and_drops_what_it_removes(t, expected):
    assert edited_time(t, [(940, 1760)]) == expected


def test_edited_duration():
    assert edited_duration(3000, [(100, 200), (940, 1760), (5000, 6000)]) == 3000 - 100 - 820


def clip(**fields: Any) -> dict[str, Any]:
    base = {"id": "c1", "media_file_id": "m", "start_ms": 1000, "duration_ms": 4000, "in_point_ms": 500,
            "out_point_ms": 4500, "effects": [], "deleted": False}
    return {**base, **fields}


def test_a_clip_away_from_every_cut_moves_by_what_is_cut_before_it():
    [piece] = cut_clip(clip(), [(0, 200)])
    assert (piece["id"], piece["start_ms"], piece["duration_ms"], piece["in_point_ms"], piece["out_point_ms"]) == (
        "c1", 800, 4000, 500, 4500)
    assert piece["first"] and piece["last"] and not piece["cut_in"] and not piece["cut_out"]


def test_a_cut_inside_a_clip_splits_it_and_trims_its_source_in_step():
    first, second = cut_clip(clip(), [(2000, 2500)])
    assert (first["id"], first["clip_id"], first["start_ms"], first["duration_ms"]) == ("c1~0", "c1", 1000, 1000)
    assert (first["in_point_ms"], first["out_point_ms"]) == (500, 1500)
    assert first["first"] and first["cut_out"] and not first["last"] and not first["cut_in"]
    assert (second["start_ms"], second["duration_ms"], second["in_point_ms"], second["out_point_ms"]) == (
        2000, 2500, 2000, 4500)
    assert second["last"] and second["cut_in"] and not second["first"]


def test_a_cut_over_a_clips_start_or_the_whole_clip():
    [piece] = cut_clip(clip(), [(500, 1500)])
    assert (piece["start_ms"], piece["duration_ms"], piece["in_point_ms"], piece["cut_in"], piece["first"]) == (
        500, 3500, 1000, True, False)
    assert cut_clip(clip(), [(0, 10_000)]) == []


def test_a_fast_clip_maps_its_source_at_its_rate():
    fast = clip(duration_ms=2000, effects=[{"type": "speed", "rate": 2}])
    assert clip_speed(fast) == 2.0 and clip_speed(clip()) == 1.0
    first, second = cut_clip(fast, [(1500, 2000)])
    assert (first["in_point_ms"], first["out_point_ms"]) == (500, 1500)
    assert (second["start_ms"], second["duration_ms"], second["in_point_ms"], second["out_point_ms"]) == (
        1500, 1000, 2500, 4500)


def test_every_track_is_cut_alike_and_deleted_clips_are_dropped():
    tracks: list[dict[str, Any]] = [
        {"id": "v", "type": "video", "clips": [clip(id="v1"), clip(id="v2", start_ms=6000, deleted=True)]},
        {"id": "a", "type": "audio", "clips": [clip(id="a1")]},
    ]
    cut = cut_tracks(tracks, [(2000, 2500)])
    assert [[p["id"] for p in t["clips"]] for t in cut] == [["v1~0", "v1~1"], ["a1~0", "a1~1"]]
    assert [p["start_ms"] for p in cut[0]["clips"]] == [p["start_ms"] for p in cut[1]["clips"]]
    assert tracks[0]["clips"][0]["id"] == "v1"  # the input is not changed

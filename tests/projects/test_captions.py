"""Captions from transcripts: cue layout, speaker labels, edits and cuts, and the files pysubs2 reads back."""

from __future__ import annotations

import json
from typing import Any

import pysubs2
import pytest

from projects.captions import (
    MAX_LINE_CHARS,
    MAX_LINES,
    CaptionStyle,
    build_cues,
    media_caption_file,
    media_words,
    render_caption_files,
    timeline_caption_file,
    timeline_words,
)

TEXT = (
    "Editing video by editing text is what makes this editor worth using, and every word you delete "
    "disappears from the picture and the sound at the same time without anyone noticing the cut"
)
SENTENCE = TEXT.split()


def seg(words: list[tuple[str, int, int]] | list[str], *, start: int = 0, step: int = 300, speaker: str = "Ana",
        cut: tuple[int, ...] = (), **extra: Any) -> dict[str, Any]:
    timed = [(w, start + i * step, start + i * step + step - 50) if isinstance(w, str) else w
             for i, w in enumerate(words)]
    return {
        "id": extra.pop("id", f"s{start}"), "speaker": speaker,
        "start_ms": timed[0][1], "end_ms": timed[-1][2], "text": " ".join(str(t[0]) for t in timed),
        "words": [{"word": w, "start_ms": s, "end_ms": e, "confidence": 0.9, "deleted": i in cut}
                  for i, (w, s, e) in enumerate(timed)],
        "deleted": False, "edited_text": None, **extra,
    }


def parse(text: str, fmt: str) -> pysubs2.SSAFile:
    return pysubs2.SSAFile.from_string(text, format_=fmt)


@pytest.mark.parametrize("fmt", ["srt", "vtt"])
def test_cues_parse_with_lines_of_at_most_42_characters_and_at_most_2_lines(fmt):
    caption = {"language": "en", "duration_ms": 60_000, "segments": [seg(SENTENCE), seg(SENTENCE, start=20_000)]}
    subs = parse(media_caption_file(caption, fmt), fmt)
    assert len(subs) >= 4
    for event in subs:
        lines = event.plaintext.split("\n")
        assert 1 <= len(lines) <= MAX_LINES
        assert all(0 < len(line) <= MAX_LINE_CHARS for line in lines)
    # Every word is there once, in order.
    shown = " ".join(e.plaintext.replace("\n", " ") for e in subs).split()
    assert shown == SENTENCE + SENTENCE


def test_a_cue_runs_from_its_first_word_start_to_its_last_word_end():
    caption = {"segments": [seg(["Hello", "there."], start=1000), seg(["General", "Kenobi."], start=5000)]}
    subs = parse(media_caption_file(caption, "srt"), "srt")
    assert [(e.start, e.end, e.plaintext) for e in subs] == [
        (1000, 1550, "Hello there."),
        (5000, 5550, "General Kenobi."),
    ]


def test_a_cue_ends_at_a_long_pause_and_never_spans_two_segments():
    words = [("one", 0, 200), ("two", 300, 500), ("three", 2000, 2300)]
    cues = build_cues(media_words({"segments": [seg(words), seg(["four"], start=2400, speaker="Ben")]}))
    assert [c.text for c in cues] == ["one two", "three", "four"]


def test_a_word_longer_than_a_line_is_cut_into_line_long_pieces():
    long_word = "x" * 100
    cues = build_cues(media_words({"segments": [seg([long_word, "end"])]}))
    assert all(len(line) <= MAX_LINE_CHARS for c in cues for line in c.lines)
    assert "".join(line for c in cues for line in c.lines).startswith(long_word)


def test_speaker_labels_mark_each_change_of_speaker_and_count_in_the_line():
    caption = {"segments": [
        seg(["Hi", "Ben."], speaker="Ana"),
        seg(["Hello", "Ana."], start=1000, speaker="Ben"),
        seg(SENTENCE, start=2000, speaker="Ben"),
    ]}
    subs = parse(media_caption_file(caption, "vtt", speakers=True), "vtt")
    texts = [e.plaintext for e in subs]
    assert texts[0] == "Ana: Hi Ben."
    assert texts[1] == "Ben: Hello Ana."
    assert not any(t.startswith("Ben:") for t in texts[2:])  # the same speaker goes on unlabelled
    assert all(len(line) <= MAX_LINE_CHARS for t in texts for line in t.split("\n"))
    assert "Ana:" not in media_caption_file(caption, "srt")


def test_json_is_duration_language_and_words_in_seconds():
    caption = {"transcript": {"language": "en", "duration_ms": 4200, "segments": [seg(["Hello", "world"])]}}
    body = json.loads(media_caption_file(caption, "json"))
    assert body == {"duration": 4.2, "language": "en", "words": [
        {"text": "Hello", "start": 0.0, "end": 0.25}, {"text": "world", "start": 0.3, "end": 0.55},
    ]}
    with_speakers = json.loads(media_caption_file(caption, "json", speakers=True))
    assert with_speakers["words"][0]["speaker"] == "Ana"


def test_edited_text_replaces_the_words_over_the_segments_kept_span():
    transcript = {"segments": [seg(["helo", "wrld"], start=1000, edited_text="Hello, world!")]}
    [[first, second]] = timeline_words(transcript)
    assert (first.text, second.text) == ("Hello,", "world!")
    assert first.start_ms == 1000 and second.end_ms == 1550 and first.end_ms == second.start_ms


def test_deleted_words_are_dropped_and_later_captions_move_up_by_the_cut():
    # "um" (600-850) deleted: the cut runs from 40 ms after "so" to 40 ms before "we".
    transcript = {"segments": [seg(["So", "um", "we", "start."], cut=(1,))]}
    cues = build_cues(timeline_words(transcript))
    assert [c.text for c in cues] == ["So we start."]
    removed = (600 - 40) - (250 + 40)
    [[so, we, start]] = timeline_words(transcript)
    assert (so.start_ms, so.end_ms) == (0, 250)
    assert we.start_ms == 600 - removed
    assert start.end_ms == 1150 - removed


def test_deleted_segments_and_fully_deleted_segments_have_no_captions():
    transcript = {"segments": [
        seg(["Keep", "this."]),
        seg(["Drop", "this."], start=1000, deleted=True),
        seg(["And", "this."], start=2000, cut=(0, 1), edited_text="Edited but cut"),
        seg(["Last."], start=3000),
    ]}
    cues = build_cues(timeline_words(transcript))
    assert [c.text for c in cues] == ["Keep this.", "Last."]
    assert cues[1].start_ms < 3000  # moved up by the two cuts


def test_a_deleted_pause_moves_later_captions_up():
    transcript = {"segments": [seg(["One."]), seg(["Two."], start=5000)],
                  "pauses": [{"start_ms": 250, "end_ms": 5000, "deleted": True}]}
    [one, two] = build_cues(timeline_words(transcript))
    assert one.start_ms == 0
    assert two.start_ms == 5000 - (5000 - 40 - (250 + 40))


def test_edited_text_never_changes_the_cuts():
    plain = {"segments": [seg(["a", "b", "c", "d."], cut=(1,))]}
    edited = {"segments": [seg(["a", "b", "c", "d."], cut=(1,), edited_text="A completely new sentence.")]}
    words = timeline_words(edited)[0]
    assert " ".join(w.text for w in words) == "A completely new sentence."
    assert (words[0].start_ms, words[-1].end_ms) == (timeline_words(plain)[0][0].start_ms,
                                                     timeline_words(plain)[0][-1].end_ms)


def test_timeline_json_duration_is_the_edited_length():
    edl = {"settings": {"duration_ms": 2000}, "transcript": {"segments": [seg(["So", "um", "we."], cut=(1,))]}}
    body = json.loads(timeline_caption_file(edl, "json"))
    assert [w["text"] for w in body["words"]] == ["So", "we."]
    assert body["duration"] == (2000 - ((600 - 40) - (250 + 40))) / 1000


def test_render_captions_burn_is_an_ass_script_sized_to_the_frame():
    edl = {"settings": {"resolution": {"width": 640, "height": 360}}}
    transcript = {"segments": [seg(["Hello", "world."])]}
    files = render_caption_files(edl, transcript, "burn", style=CaptionStyle(font_size=30, position="top"))
    subs = parse(files["captions_ass"], "ass")
    assert subs.info["PlayResX"] == "640" and subs.info["PlayResY"] == "360"
    assert subs.styles["Default"].fontsize == 30
    assert subs.styles["Default"].alignment == pysubs2.Alignment.TOP_CENTER
    assert [e.plaintext for e in subs] == ["Hello world."]


def test_render_captions_sidecar_is_srt_and_vtt_and_none_is_nothing():
    transcript = {"segments": [seg(["Hello", "world."])]}
    files = render_caption_files({}, transcript, "sidecar")
    assert set(files) == {"captions_srt", "captions_vtt"}
    assert parse(files["captions_vtt"], "vtt")[0].plaintext == "Hello world."
    assert render_caption_files({}, transcript, "none") == {}


def test_markup_in_words_is_shown_as_text():
    subs = parse(media_caption_file({"segments": [seg(["{\\b1}bold", "x"])]}, "srt"), "srt")
    assert subs[0].plaintext == "(/b1)bold x"


def test_timeline_json_language_is_the_segments_most_common_one():
    segments = [seg(["Hola."], language="es"), seg(["Hello."], start=1000, language="en"),
                seg(["Adiós."], start=2000, language="es")]
    edl = {"settings": {"duration_ms": 3000}, "transcript": {"segments": segments}}
    assert json.loads(timeline_caption_file(edl, "json"))["language"] == "es"
    assert json.loads(timeline_caption_file({"transcript": {"segments": [seg(["x"])]}}, "json"))["language"] == "und"

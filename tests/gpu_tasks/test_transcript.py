from __future__ import annotations

import itertools

from gpu_tasks.engines.transcript import (
    Turn,
    Word,
    align_to_script,
    assign_speakers,
    build_transcript,
    clamp_words,
    group_words,
)


def words(*spec: tuple[str, float, float]) -> list[Word]:
    return [Word(text, start, end, 0.9) for text, start, end in spec]


def test_alignment_takes_the_script_spelling_and_times_every_script_word() -> None:
    asr = words(("the", 0.0, 0.2), ("quick", 0.2, 0.5), ("round", 0.5, 0.8), ("fox", 0.8, 1.1), ("um", 1.1, 1.3),
                ("jumps", 1.3, 1.6), ("dog", 2.2, 2.5))  # fmt: skip
    aligned, summary = align_to_script(asr, "The quick brown fox jumps over the lazy dog.")
    assert [w.text for w in aligned] == ["The", "quick", "brown", "fox", "jumps", "over", "the", "lazy", "dog."]
    assert aligned[2].start_s == 0.5 and aligned[2].end_s == 0.8  # "brown" took "round"'s slot
    over, the, lazy = aligned[5:8]  # missed by recognition: spread over the 1.6-2.2 gap
    assert 1.6 <= over.start_s < the.start_s < lazy.start_s < lazy.end_s <= 2.2
    assert over.confidence == 0.0 and over.source == "interpolated"
    assert aligned[-1].start_s == 2.2
    assert summary["matched"] == 5 and summary["substituted"] == 1 and summary["interpolated"] == 3
    assert summary["recognised_words_dropped"] == 1  # "um"
    assert all(a.end_s <= b.start_s + 1e-9 for a, b in itertools.pairwise(aligned))


def test_alignment_with_no_recognised_words_spreads_nothing_past_zero() -> None:
    aligned, _ = align_to_script([], "hello world")
    assert [w.text for w in aligned] == ["hello", "world"]
    assert all(w.start_s == 0.0 and w.end_s == 0.0 for w in aligned)


def test_speakers_follow_the_turn_with_most_overlap_named_in_order_of_appearance() -> None:
    ws = words(("a", 0.0, 0.5), ("b", 0.6, 1.0), ("c", 1.1, 1.6), ("d", 5.0, 5.2))
    turns = [Turn(0.0, 1.05, "SPEAKER_07"), Turn(1.05, 2.0, "SPEAKER_02")]
    labelled = assign_speakers(ws, turns)
    assert [w.speaker for w in labelled] == ["Speaker 1", "Speaker 1", "Speaker 2", "Speaker 2"]
    assert [w.speaker for w in assign_speakers(ws, [])] == ["Speaker 1"] * 4


def test_segments_split_on_speaker_sentence_and_pause() -> None:
    ws = [
        Word("Hi.", 0.0, 0.3, 0.9, "Speaker 1"),
        Word("How", 0.4, 0.6, 0.9, "Speaker 1"),
        Word("are", 0.6, 0.8, 0.9, "Speaker 1"),
        Word("you", 3.0, 3.2, 0.9, "Speaker 1"),  # long pause before
        Word("Fine", 3.3, 3.6, 0.9, "Speaker 2"),
    ]
    transcript = build_transcript(group_words(ws), language="en", duration_s=4.0)
    assert [s["text"] for s in transcript["segments"]] == ["Hi.", "How are", "you", "Fine"]
    assert transcript["segments"][3]["speaker"] == "Speaker 2"
    assert transcript["duration_ms"] == 4000
    assert transcript["text"] == "Hi. How are you Fine"
    first = transcript["segments"][0]
    assert set(first) == {"id", "speaker", "start_ms", "end_ms", "text", "words"}
    assert first["words"] == [{"word": "Hi.", "start_ms": 0, "end_ms": 300, "confidence": 0.9}]


def test_clamping_keeps_timings_inside_the_audio_and_monotonic() -> None:
    ws = [Word(" a", -0.5, 0.2), Word("b", 0.1, 9.0), Word("  ", 1.0, 2.0), Word("c", 0.05, 0.01)]
    clamped = clamp_words(ws, 5.0)
    assert [(w.text, w.start_s, w.end_s) for w in clamped] == [("a", 0.0, 0.2), ("b", 0.1, 5.0), ("c", 0.1, 0.1)]


def test_speakers_swept_in_order_match_every_turn_tried_for_every_word() -> None:
    """The sweep gives each word the label a pass over every turn would: most overlap, else the
    nearest turn; overlapping turns and words between turns included."""
    import random

    from bench.speaker_assignment import every_turn  # the former rule, kept as the benchmark's baseline
    from gpu_tasks.engines.transcript import Turn, Word, assign_speakers

    rng = random.Random(7)
    for _ in range(500):
        starts = sorted(rng.uniform(0, 60) for _ in range(rng.randint(1, 12)))
        turns = [Turn(a, a + rng.uniform(0.1, 5), f"SPEAKER_0{rng.randint(0, 3)}") for a in starts]
        words = [Word("w", a, a + rng.uniform(0.05, 1.0))
                 for a in sorted(rng.uniform(0, 70) for _ in range(rng.randint(0, 30)))]
        assert assign_speakers(words, turns) == every_turn(words, turns)


def test_speaker_turns_travel_in_the_transcript_shape() -> None:
    from gpu_tasks.engines.transcript import Turn, speaker_turns, turns_of
    from gpu_tasks.results import check_transcript

    turns = [Turn(0.0, 2.5, "SPEAKER_00"), Turn(2.5, 4.0, "SPEAKER_01")]
    shaped = speaker_turns(turns, duration_s=4.0)
    check_transcript(shaped)
    assert turns_of(shaped) == turns and shaped["text"] == "" and shaped["duration_ms"] == 4000

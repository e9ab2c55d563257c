"""Cutting a long recording at its silences, and stitching the pieces' transcripts back."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import pytest

from gpu_tasks.pieces import Piece, piece_count, plan_pieces, silences, stitch_transcript


def tone_and_silence(path: Path, layout: list[tuple[float, bool]], rate: int = 16000) -> Path:
    """A WAV of (seconds, loud) stretches: a 440 Hz tone or digital silence."""
    chunks = []
    for seconds, loud in layout:
        t = np.arange(round(seconds * rate)) / rate
        chunks.append(0.5 * np.sin(2 * np.pi * 440 * t) if loud else np.zeros_like(t))
    samples = (np.concatenate(chunks) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(samples.tobytes())
    return path


def test_silences_are_found_where_the_audio_is_quiet(tmp_path):
    path = tone_and_silence(tmp_path / "a.wav", [(2.0, True), (0.8, False), (3.0, True), (0.1, False),
                                                  (1.0, True), (1.5, False)])
    found = silences(path)
    assert len(found) == 2, found  # the 0.1 s gap is too short to be a pause
    (a_start, a_end), (b_start, b_end) = found
    assert abs(a_start - 2000) <= 60 and abs(a_end - 2800) <= 60
    assert abs(b_start - 6900) <= 60 and abs(b_end - 8400) <= 60


def test_cuts_fall_in_the_silence_nearest_each_target_or_at_the_target():
    quiet = [(9_000, 9_600), (19_500, 20_300), (41_000, 41_200)]
    pieces = plan_pieces(60_000, quiet, target_ms=20_000, window_ms=3_000, overlap_ms=1_000)
    assert [(p.start_ms, p.end_ms) for p in pieces] == [(0, 19_900), (19_900, 41_100), (41_100, 60_000)]
    assert (pieces[1].audio_start_ms, pieces[1].audio_end_ms) == (18_900, 42_100)
    assert (pieces[0].audio_start_ms, pieces[-1].audio_end_ms) == (0, 60_000)
    # No pause near a target: a hard cut there.
    hard = plan_pieces(60_000, [], target_ms=20_000, window_ms=3_000, overlap_ms=1_000)
    assert [p.start_ms for p in hard] == [0, 20_000, 40_000]
    # A file not much longer than a target is one piece; the pieces always cover it whole.
    assert len(plan_pieces(29_000, quiet, target_ms=20_000, window_ms=3_000, overlap_ms=0)) == 1
    assert piece_count(7_200_000, 600_000) == 12


def words(*spans: tuple[str, int, int]) -> dict:
    return {"segments": [{"speaker": "Speaker 1", "words": [
        {"word": w, "start_ms": s, "end_ms": e, "confidence": 0.9} for w, s, e in spans]}]}


def test_stitching_moves_words_to_the_files_time_and_keeps_each_word_once():
    pieces = [Piece(0, 0, 10_000, 0, 11_000), Piece(1, 10_000, 20_000, 9_000, 20_000)]
    # "seam" (9.8 to 10.4 s) is heard by both pieces, in the overlap; "tail" only by the second.
    first = words(("hello", 500, 900), ("seam", 9_800, 10_400), ("extra", 10_600, 10_900))
    second = words(("seam", 800, 1_400), ("extra", 1_600, 1_900), ("tail", 5_000, 5_500))
    stitched = stitch_transcript(pieces, [first, second], language="en", duration_ms=20_000)
    flat = [(w["word"], w["start_ms"], w["end_ms"]) for s in stitched["segments"] for w in s["words"]]
    assert flat == [("hello", 500, 900), ("seam", 9_800, 10_400), ("extra", 10_600, 10_900),
                    ("tail", 14_000, 14_500)]
    assert stitched["duration_ms"] == 20_000 and stitched["text"].split() == ["hello", "seam", "extra", "tail"]


def test_stitching_needs_a_transcript_per_piece():
    with pytest.raises(ValueError, match="one transcript per piece"):
        stitch_transcript([Piece(0, 0, 10, 0, 10)], [], language="en", duration_ms=10)

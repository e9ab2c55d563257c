"""A long file cut into pieces that run as separate calls, and their results stitched back.

Where to cut a recording: at silences, so that no word straddles a cut. ``silences`` reads the
audio once, streaming (an hour of it holds about 120,000 numbers here, never the samples), and
finds the runs quieter than a threshold. ``plan_pieces`` puts a cut near every ``target_ms``
of audio: at the middle of the silence nearest the target within ``window_ms`` of it, or, in a
recording with no pause there, at the target itself (a hard cut). A cut in a silence falls just
before the speech resumes, and each piece hears only its own span; at a hard cut, the audio of
both pieces reaches ``overlap_ms`` past it, so a word the cut splits is heard whole by one of them.

``stitch_transcript`` puts the pieces' transcripts back on the file's time: each word is moved
by its piece's offset and kept by the piece whose own span holds the word's middle, so a word
heard by two pieces (in their overlap) is kept once, and none is lost. The words are then
grouped into segments as a whole-file transcript's are (gpu_tasks.engines.transcript).

A video to compress is cut at keyframes instead (``keyframes``, ``plan_keyframe_pieces``): each
piece starts on a keyframe, so its call decodes from there exactly, and ends just before the next
piece's keyframe; the pieces do not overlap and together hold every frame once. Their encodings
are joined end to end (gpu_tasks.engines.compression.join_pieces).

A piece's call names its span as `span: {start_ms, end_ms}` (``span_of``).

No Django here: the workers plan and stitch, the engines run each piece.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gpu_tasks.engines.media import open_input
from gpu_tasks.engines.transcript import Turn, Word, assign_speakers, build_transcript, group_words
from gpu_tasks.errors import PermanentGpuError

FRAME_S = 0.03  # the loudness of the audio is measured per 30 ms
SILENCE_DB = -40.0  # quieter than this (dBFS, RMS) is silence
MIN_SILENCE_S = 0.3
# A cut in a silence falls this long before the speech resumes.
SPEECH_LEAD_MS = 100


@dataclass(frozen=True)
class Piece:
    """Part `index` of a file: its own span [start_ms, end_ms), and the audio its call hears."""

    index: int
    start_ms: int
    end_ms: int
    audio_start_ms: int
    audio_end_ms: int


def silences(path: Path, *, threshold_db: float = SILENCE_DB, min_silence_s: float = MIN_SILENCE_S,
             sample_rate: int = 8000) -> list[tuple[int, int]]:
    """The file's silences as (start_ms, end_ms), in order: runs of 30 ms frames quieter than
    `threshold_db` lasting at least `min_silence_s`. The audio is decoded once, streaming."""
    import av
    import numpy as np

    frame_len = round(FRAME_S * sample_rate)
    levels: list[float] = []
    carry = np.zeros(0, dtype=np.float32)
    with open_input(path) as container:
        if not container.streams.audio:
            raise PermanentGpuError("invalid_media", "the media has no audio stream")
        resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)

        def resampled() -> Any:
            for frame in container.decode(audio=0):
                yield from resampler.resample(frame)
            yield from resampler.resample(None)

        try:
            for out in resampled():
                samples = np.concatenate([carry, out.to_ndarray().reshape(-1)])
                whole = len(samples) // frame_len * frame_len
                if whole:
                    blocks = samples[:whole].reshape(-1, frame_len)
                    rms = np.sqrt(np.mean(blocks.astype(np.float64) ** 2, axis=1))
                    levels.extend((20 * np.log10(np.maximum(rms, 1e-9))).tolist())
                carry = samples[whole:]
        except av.FFmpegError as exc:
            raise PermanentGpuError("invalid_media", f"cannot decode audio: {type(exc).__name__}") from exc
    found: list[tuple[int, int]] = []
    run_start: int | None = None
    for i, level in enumerate([*levels, 0.0]):  # a loud sentinel ends a silence at the end
        if level < threshold_db and run_start is None:
            run_start = i
        elif level >= threshold_db and run_start is not None:
            if (i - run_start) * FRAME_S >= min_silence_s:
                found.append((round(run_start * FRAME_S * 1000), round(i * FRAME_S * 1000)))
            run_start = None
    return found


def plan_pieces(duration_ms: int, quiet: Sequence[tuple[int, int]], *, target_ms: int, window_ms: int,
                overlap_ms: int) -> list[Piece]:
    """The file's pieces: about `target_ms` each, cut in the silence nearest each target within
    `window_ms`, else at the target. One piece when the file is not longer than 1.5 targets (a
    last piece of a few seconds would cost a call for nothing).

    A cut in a silence falls SPEECH_LEAD_MS before the speech resumes, and the pieces on both
    sides hear only their own span: a recogniser places the first word of its audio well only
    when the audio does not open on a long silence. A hard cut's pieces hear `overlap_ms` more on
    both sides."""
    if duration_ms <= 0:
        raise ValueError("a file of no duration has no pieces")
    cuts: list[tuple[int, bool]] = []  # (where, in a silence)
    count = piece_count(duration_ms, target_ms)
    for k in range(1, count):
        target = round(duration_ms * k / count)
        after = cuts[-1][0] if cuts else 0
        near = [(abs(max(a, b - SPEECH_LEAD_MS) - target), max(a, b - SPEECH_LEAD_MS)) for a, b in quiet
                if abs(max(a, b - SPEECH_LEAD_MS) - target) <= window_ms and max(a, b - SPEECH_LEAD_MS) > after]
        cuts.append((min(near)[1], True) if near else (target, False))
    bounds = [(0, True), *cuts, (duration_ms, True)]
    pieces = []
    for i, ((start, soft_start), (end, soft_end)) in enumerate(itertools.pairwise(bounds)):
        pieces.append(Piece(
            index=i, start_ms=start, end_ms=end,
            audio_start_ms=start if soft_start else max(0, start - overlap_ms),
            audio_end_ms=end if soft_end else min(duration_ms, end + overlap_ms),
        ))
    return pieces


def stitch_transcript(pieces: Sequence[Piece], transcripts: Sequence[dict[str, Any]], *, language: str,
                      duration_ms: int, turns: Sequence[Turn] | None = None) -> dict[str, Any]:
    """One transcript of the whole file from each piece's (on its own audio's time); with `turns`
    (the whole file's diarization), each word's speaker is the turn's that it overlaps most, the
    same across pieces."""
    if len(pieces) != len(transcripts):
        raise ValueError("one transcript per piece")
    words: list[Word] = []
    for piece, transcript in zip(pieces, transcripts, strict=True):
        for segment in transcript.get("segments") or []:
            for w in segment.get("words") or []:
                start = (w["start_ms"] + piece.audio_start_ms) / 1000
                end = (w["end_ms"] + piece.audio_start_ms) / 1000
                middle_ms = (start + end) * 500
                last = piece.index == len(pieces) - 1
                if piece.start_ms <= middle_ms < piece.end_ms or (last and middle_ms >= piece.end_ms):
                    words.append(Word(text=w["word"], start_s=start, end_s=end, confidence=w.get("confidence"),
                                      speaker=segment.get("speaker")))
    words.sort(key=lambda w: (w.start_s, w.end_s))
    if turns is not None:
        words = assign_speakers(words, turns)
    return build_transcript(group_words(words), language=language, duration_s=duration_ms / 1000)


def piece_count(duration_ms: int, target_ms: int) -> int:
    """How many pieces `plan_pieces` makes of a file this long."""
    return max(1, round(duration_ms / target_ms)) if duration_ms > 1.5 * target_ms else 1




def span_of(payload: Mapping[str, Any]) -> tuple[int, int] | None:
    """A piece's `span`: {"start_ms", "end_ms"}, whole milliseconds, start before end; None without one."""
    span = payload.get("span")
    if span is None:
        return None
    start, end = (span.get("start_ms"), span.get("end_ms")) if isinstance(span, Mapping) else (None, None)
    if (isinstance(start, int) and isinstance(end, int) and not isinstance(start, bool)
            and not isinstance(end, bool) and 0 <= start < end):
        return start, end
    raise PermanentGpuError("invalid_input", "span must be {start_ms, end_ms}: whole milliseconds, start < end")


def keyframes(path: Path) -> tuple[list[int], int]:
    """Where a video may be cut, and where its frames end: the keyframes' times and one past the last
    frame's, in whole milliseconds from the file's start (as ffmpeg's `-ss` counts them), read from
    the packets without decoding. A keyframe is a cut only when no frame falls in the millisecond
    before it, so a span starting at its rounded-down time starts exactly on it."""
    with open_input(path) as container:
        if not container.streams.video:
            raise PermanentGpuError("invalid_media", "the media has no video stream")
        stream = container.streams.video[0]
        base = stream.time_base
        origin = (container.start_time or 0) / 1_000_000
        frames: list[tuple[float, bool]] = []
        try:
            for packet in container.demux(stream):
                if packet.pts is not None and base is not None:
                    frames.append((float(packet.pts * base) - origin, bool(packet.is_keyframe)))
        except Exception as exc:  # PyAV raises its own error classes per FFmpeg error
            raise PermanentGpuError("invalid_media", f"cannot read the video: {type(exc).__name__}") from exc
    if not frames:
        raise PermanentGpuError("invalid_media", "the video has no frames")
    frames.sort()
    cuts = [math.floor(t * 1000) for (before, _), (t, key) in itertools.pairwise(frames)
            if key and t > 0 and before < math.floor(t * 1000) / 1000]
    return cuts, math.floor(frames[-1][0] * 1000) + 1


def plan_keyframe_pieces(end_ms: int, cuts: Sequence[int], *, target_ms: int) -> list[Piece]:
    """The video's pieces: about `target_ms` each, cut at the keyframe nearest each target (later
    than the cut before). `end_ms` is one past the last frame (``keyframes``). Pieces do not
    overlap: a piece's call encodes the frames of [start_ms, end_ms)."""
    if end_ms <= 0:
        raise ValueError("a file of no duration has no pieces")
    bounds = [0]
    count = piece_count(end_ms, target_ms)
    for k in range(1, count):
        target = round(end_ms * k / count)
        later = [c for c in cuts if bounds[-1] < c < end_ms]
        if later:
            bounds.append(min(later, key=lambda c: (abs(c - target), c)))
    bounds = [*sorted(set(bounds)), end_ms]
    return [Piece(index=i, start_ms=a, end_ms=b, audio_start_ms=a, audio_end_ms=b)
            for i, (a, b) in enumerate(itertools.pairwise(bounds))]

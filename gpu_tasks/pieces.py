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

A video to compress is cut at keyframes instead (``keyframe_bounds``): each piece starts on a
keyframe, so its call decodes from there exactly, and ends just before the next piece's keyframe;
the pieces do not overlap and together hold every frame once. The packets are read twice, in a
bounded stream that never holds the file's frames: first for where the frames end (which places
the targets), then for the keyframe nearest each target (``nearest_cuts``). The scans hold a fixed
number of packets whatever the file (a short file of tiny packets can hold tens of millions), and
return lists of ints of the pieces' length. Their encodings are joined end to end
(gpu_tasks.engines.compression.join_pieces).

A piece's call names its span as `span: {start_ms, end_ms}` (``span_of``).

No Django here: the workers plan and stitch, the engines run each piece.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gpu_tasks.confined import Refused
from gpu_tasks.engines.media import open_input
from gpu_tasks.engines.transcript import Turn, Word, assign_speakers, build_transcript, group_words
from gpu_tasks.errors import PermanentGpuError

FRAME_S = 0.03  # the loudness of the audio is measured per 30 ms
SILENCE_DB = -40.0  # quieter than this (dBFS, RMS) is silence
MIN_SILENCE_S = 0.3
# A cut in a silence falls this long before the speech resumes.
SPEECH_LEAD_MS = 100
# Packets come in decoding order, and a frame's presentation time is out of that order by a few
# frames at most (B-frames: H.264 and HEVC reorder 16 at most); the keyframe scan puts them back in
# time order within this many. Only a file reordered further than any encoder does could be cut
# just after a frame it shows before the keyframe, which its pieces might then lose or repeat.
REORDER_WINDOW = 256


@dataclass(frozen=True)
class Piece:
    """Part `index` of a file: its own span [start_ms, end_ms), and the audio its call hears."""

    index: int
    start_ms: int
    end_ms: int
    audio_start_ms: int
    audio_end_ms: int


def silences(path: Path, *, threshold_db: float = SILENCE_DB, min_silence_s: float = MIN_SILENCE_S,
             sample_rate: int = 8000, fd: int | None = None) -> list[tuple[int, int]]:
    """The file's silences as (start_ms, end_ms), in order: runs of 30 ms frames quieter than
    `threshold_db` lasting at least `min_silence_s`. The audio is decoded once, streaming, and
    each frame's loudness is looked at as it comes (only the silences are kept)."""
    import av
    import numpy as np

    frame_len = round(FRAME_S * sample_rate)
    found: list[tuple[int, int]] = []
    frames = 0  # 30 ms frames measured so far
    run_start: int | None = None

    def measure(level: float) -> None:
        # A run of quiet frames ends at the first loud one; kept when long enough.
        nonlocal frames, run_start
        if level < threshold_db and run_start is None:
            run_start = frames
        elif level >= threshold_db and run_start is not None:
            if (frames - run_start) * FRAME_S >= min_silence_s:
                found.append((round(run_start * FRAME_S * 1000), round(frames * FRAME_S * 1000)))
            run_start = None
        frames += 1

    carry = np.zeros(0, dtype=np.float32)
    with open_input(path, fd=fd) as container:
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
                    for level in (20 * np.log10(np.maximum(rms, 1e-9))).tolist():
                        measure(level)
                carry = samples[whole:]
        except av.FFmpegError as exc:
            raise PermanentGpuError("invalid_media", f"cannot decode audio: {type(exc).__name__}") from exc
    measure(0.0)  # a loud sentinel ends a silence at the end
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


def _frame_times(path: Path, fd: int | None) -> Iterator[tuple[float, bool]]:
    """(seconds from the file's start, whether a keyframe) of each video packet with a time, in the
    order they are read, without decoding: one packet held at a time."""
    with open_input(path, fd=fd) as container:
        if not container.streams.video:
            raise PermanentGpuError("invalid_media", "the media has no video stream")
        stream = container.streams.video[0]
        base = stream.time_base
        origin = (container.start_time or 0) / 1_000_000
        try:
            for packet in container.demux(stream):
                if packet.pts is not None and base is not None:
                    yield float(packet.pts * base) - origin, bool(packet.is_keyframe)
        except Exception as exc:  # PyAV raises its own error classes per FFmpeg error
            raise PermanentGpuError("invalid_media", f"cannot read the video: {type(exc).__name__}") from exc


def frames_end(path: Path, *, fd: int | None = None) -> int:
    """One past the video's last frame, in whole milliseconds from the file's start."""
    last: float | None = None
    for t, _ in _frame_times(path, fd):
        last = t if last is None else max(last, t)
    if last is None:
        raise PermanentGpuError("invalid_media", "the video has no frames")
    return math.floor(last * 1000) + 1


def keyframe_cuts(path: Path, *, fd: int | None = None) -> Iterator[int]:
    """Where a video may be cut, in increasing order: its keyframes' times in whole milliseconds
    from the file's start (as ffmpeg's `-ss` counts them). A keyframe is a cut only when no frame
    falls in the millisecond before it, so a span starting at its rounded-down time starts exactly
    on it. The frames are put back in time order within REORDER_WINDOW packets."""
    window: list[tuple[float, bool]] = []
    before: float | None = None  # the latest time of a frame taken out of the window
    last_cut = 0

    def cut(t: float, key: bool) -> int | None:
        nonlocal before, last_cut
        ms = math.floor(t * 1000)
        found = key and t > 0 and before is not None and before < ms / 1000 and ms > last_cut
        before = t if before is None else max(before, t)
        if found:
            last_cut = ms
            return ms
        return None

    for frame in _frame_times(path, fd):
        if len(window) < REORDER_WINDOW:
            heapq.heappush(window, frame)
        elif (ms := cut(*heapq.heappushpop(window, frame))) is not None:
            yield ms
    while window:
        if (ms := cut(*heapq.heappop(window))) is not None:
            yield ms


def nearest_cuts(end_ms: int, cuts: Iterable[int], *, target_ms: int) -> list[int]:
    """The bounds of a video's pieces, [0, cut, ..., end_ms]: about `target_ms` each, cut at the
    cut nearest each target (the earlier of two as near), later than the cut before. `cuts` come
    in increasing order (``keyframe_cuts``) and are looked at once each, as they come: only the
    latest one before the current target is held."""
    if end_ms <= 0:
        raise ValueError("a file of no duration has no pieces")
    count = piece_count(end_ms, target_ms)
    bounds = [0]
    k = 1  # the target being placed: the k-th of count - 1
    below: int | None = None  # the latest cut at or before it
    for c in cuts:
        if k == count:
            break
        if c >= end_ms or c <= (bounds[-1] if below is None else below):
            continue
        while k < count:
            target = round(end_ms * k / count)
            if c <= target:
                below = c
                break
            # `c` is the first cut past the target: the nearer of it and the one before wins.
            if below is not None and target - below <= c - target:
                bounds.append(below)
                below, k = None, k + 1
                continue  # `c` is the first cut after this one: it may serve the next target
            bounds.append(c)
            below, k = None, k + 1
            break
    if below is not None:
        bounds.append(below)
    return [*bounds, end_ms]


def keyframe_bounds(path: Path, *, target_ms: int, fd: int | None = None) -> list[int]:
    """The bounds of a video's pieces of about `target_ms`, cut at keyframes (``nearest_cuts``):
    two passes over its packets, neither holding more than REORDER_WINDOW of them."""
    end_ms = frames_end(path, fd=fd)
    if piece_count(end_ms, target_ms) == 1:
        return [0, end_ms]
    return nearest_cuts(end_ms, keyframe_cuts(path, fd=fd), target_ms=target_ms)


# ----------------------------------------------------------------------------- in a confined child
# The scans decode an upload: they run in a child of the worker's media server (a sandbox, memory,
# CPU and time limits: media/probing/sandbox.py), through the descriptor it opened, and answer plain
# data; a file they cannot read is refused with the job's error code.


def _scanned(fd: int | None, scan: Callable[[], Any]) -> Any:
    if fd is None:
        raise Refused("invalid_media", "the upload could not be opened")
    try:
        return scan()
    except PermanentGpuError as exc:
        raise Refused(exc.code, exc.message) from None


def scan_keyframe_bounds(*, path: str, fd: int | None, target_ms: int) -> list[int]:
    bounds: list[int] = _scanned(fd, lambda: keyframe_bounds(Path(path), target_ms=target_ms, fd=fd))
    return bounds


def scan_silences(*, path: str, fd: int | None) -> list[tuple[int, int]]:
    found: list[tuple[int, int]] = _scanned(fd, lambda: silences(Path(path), fd=fd))
    return found


def pieces_between(bounds: Sequence[int]) -> list[Piece]:
    """The pieces [bounds[i], bounds[i + 1]) of a video cut at keyframes: they do not overlap, and
    a piece's call encodes the frames of its span."""
    return [Piece(index=i, start_ms=a, end_ms=b, audio_start_ms=a, audio_end_ms=b)
            for i, (a, b) in enumerate(itertools.pairwise(bounds))]


def plan_keyframe_pieces(end_ms: int, cuts: Iterable[int], *, target_ms: int) -> list[Piece]:
    """The video's pieces from its cuts in any order (``nearest_cuts``); `end_ms` is one past the
    last frame (``frames_end``)."""
    return pieces_between(nearest_cuts(end_ms, sorted(set(cuts)), target_ms=target_ms))

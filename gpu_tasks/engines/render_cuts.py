"""The render at the cuts made by deleting words: the sound's crossfade, and what was cut.

The snapshot a render gets is already cut into pieces (projects/edl/cuts.py); a piece's edge that
a cut made is marked `cut_in` / `cut_out`. The sound at a cut is an equal-power crossfade that
keeps the output's length exact.

A cut joins two pieces at one instant `c` of the edited timeline: the piece before it ends there
with `cut_out`, the piece after it starts there with `cut_in` (pieces of one clip, or of two
clips, on any audio track). The picture cuts hard at `c`, on the frame grid. The sound
crossfades over the window `[c - X/2, c + X/2)`, X being `crossfade_ms`:

- the piece before plays on for X/2 past its end (its source goes on into the removed span)
  while it fades out over the window;
- the piece after starts X/2 early (its source from X/2 before its in point, also inside the
  removed span) while it fades in over the window;
- the two overlap and are summed by the mix.

Each piece keeps its place and length on the timeline and only borrows removed source time, so
the output is exactly the kept time long, and sound and picture stay in sync. The fades are
quarter-sine curves, the fade-in's gain sin(pi/2 * t) and the fade-out's cos(pi/2 * t): their
squares add up to 1 (equal power), which holds the loudness of the unrelated sounds a cut joins
(the words on either side of a removed phrase) and never steps the waveform, so no click.

Where there is nothing to cross into (the output's start or end, or a source that begins at
the cut), the borrowed half is dropped and that edge's fade lies inside the piece. X = 0 is a
hard cut of the sound too.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gpu_tasks.errors import PermanentGpuError

DEFAULT_CROSSFADE_MS = 10
MAX_CROSSFADE_MS = 200


@dataclass(frozen=True)
class AudioWindow:
    """What of a clip's source the mix plays, where, and the fades at its cut edges.

    Times on the timeline are `at_ms` / `duration_ms`; `seek_ms` / `source_ms` are in the source
    (they differ by the clip's playback rate).
    """

    at_ms: int
    duration_ms: int
    seek_ms: int
    source_ms: int
    fade_in_ms: int = 0
    fade_out_ms: int = 0

    def filters(self) -> list[str]:
        """The afade filters, in the window's own time (it starts at 0)."""
        out = []
        if self.fade_in_ms > 0:
            out.append(f"afade=t=in:st=0:d={self.fade_in_ms / 1000:.3f}:curve=qsin")
        if self.fade_out_ms > 0:
            start = max(0, self.duration_ms - self.fade_out_ms)
            out.append(f"afade=t=out:st={start / 1000:.3f}:d={self.fade_out_ms / 1000:.3f}:curve=qsin")
        return out


def crossfade_of(payload: Mapping[str, Any]) -> int:
    """The payload's `crossfade_ms`, checked (0 to MAX_CROSSFADE_MS)."""
    value = payload.get("crossfade_ms", DEFAULT_CROSSFADE_MS)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= MAX_CROSSFADE_MS:
        raise PermanentGpuError("invalid_input", f"crossfade_ms must be a number from 0 to {MAX_CROSSFADE_MS}")
    return round(value)


def audio_window(
    *,
    start_ms: int,
    duration_ms: int,
    in_point_ms: int,
    cut_in: bool,
    cut_out: bool,
    total_ms: int,
    crossfade_ms: int = DEFAULT_CROSSFADE_MS,
    rate: float = 1.0,
) -> AudioWindow:
    """The sound of a piece at `start_ms` for `duration_ms`, its source from `in_point_ms`."""
    x = max(0, min(int(crossfade_ms), MAX_CROSSFADE_MS))
    before, after = x // 2, x - x // 2  # the window's halves either side of the cut
    lead = min(before, start_ms, int(in_point_ms / rate)) if cut_in and x else 0
    tail = min(after, max(0, total_ms - start_ms - duration_ms)) if cut_out and x else 0
    length = lead + duration_ms + tail
    fade_in = min(lead + after, length) if cut_in and x else 0
    fade_out = min(before + tail, length) if cut_out and x else 0
    return AudioWindow(
        at_ms=start_ms - lead,
        duration_ms=length,
        seek_ms=max(0, in_point_ms - round(lead * rate)),
        source_ms=round(length * rate),
        fade_in_ms=fade_in,
        fade_out_ms=fade_out,
    )


def cut_summary(cuts: Mapping[str, Any] | None, duration_ms: int) -> dict[str, Any]:
    """What the render's result says of the cuts its snapshot was made with (`payload["cuts"]`:
    the timeline's length before them and the spans they removed)."""
    cuts = cuts if isinstance(cuts, Mapping) else {}
    before = cuts.get("duration_before_ms")
    before = before if isinstance(before, int) and not isinstance(before, bool) else duration_ms
    spans = cuts.get("spans")
    return {
        "duration_before_ms": before,
        "removed_ms": max(0, before - duration_ms),
        "cuts": len(spans) if isinstance(spans, list) else 0,
    }

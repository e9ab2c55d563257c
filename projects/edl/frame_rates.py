"""Frame rates as editors count them: the NTSC rates exactly, and SMPTE timecode both ways.

A timeline stores its rate as a number (29.97); an editor's file and OpenTimelineIO count NTSC
frames at the exact fraction (30000/1001), and OTIO refuses timecode at any rate near it that is
not exact ("SMPTE timecode does not support this rate"). So every rate is made exact before a file
is written or read (`exact_rate`), and a file's rate is stored back as the timeline keeps it
(`stored_rate`). Times in a timeline are milliseconds; a frame-based file's edges are rounded to
the millisecond one by one, never its lengths, so neighbouring clips stay neighbours.

Drop-frame timecode exists at 29.97 and 59.94 only (2 or 4 frame numbers skipped each minute but
every tenth); a CMX 3600 list says which it uses (`FCM:`) and writes drop-frame times with `;`.

No Django here: the confined child that reads an upload imports it.
"""

from __future__ import annotations

import re

import opentimelineio as otio

# The NTSC rates by their nominal (integer) rate: 24000/1001 (23.976), 30000/1001 (29.97), ...
NTSC = {nominal: nominal * 1000 / 1001 for nominal in (24, 30, 48, 60, 120)}
DROP_FRAME_NOMINAL = (30, 60)
# The rates the round trip is proved at; any other rate from 1 to 240 is kept as given.
COMMON = (23.976, 24.0, 25.0, 29.97, 30.0, 50.0, 59.94, 60.0)
_NEAR = 0.005  # a stored 29.97 or 23.976 is within this of its exact rate; no other common rate is


def exact_rate(rate: float) -> float:
    """The rate frames are counted at: an NTSC rate (29.97, 23.976, 59.94 as a timeline stores it)
    as its exact fraction; any other as given."""
    rate = float(rate)
    for exact in NTSC.values():
        if abs(rate - exact) < _NEAR:
            return exact
    return rate


def stored_rate(rate: float) -> float:
    """A file's rate as a timeline keeps it: 29.97, 23.976, 59.94 for the NTSC rates, 25.0 for 25;
    any other rate to six decimals."""
    exact = exact_rate(rate)
    return round(exact, 3) if exact in NTSC.values() else round(exact, 6)


def is_drop_frame_rate(rate: float) -> bool:
    """Whether drop-frame timecode exists at `rate` (29.97 and 59.94)."""
    exact = exact_rate(rate)
    return any(exact == NTSC[nominal] for nominal in DROP_FRAME_NOMINAL)


def timecode(frames: int, rate: float, drop_frame: bool) -> str:
    """`frames` as SMPTE timecode at `rate`, drop-frame (`;` before the frames) where asked and
    the rate has it."""
    exact = exact_rate(rate)
    drop = drop_frame and is_drop_frame_rate(exact)
    return str(otio.opentime.to_timecode(otio.opentime.RationalTime(frames, exact), exact, drop))


def frames_of(text: str, rate: float) -> int:
    """A timecode's frame count at `rate`: drop-frame when it says so (`;` or `.` before the
    frames), else non-drop."""
    return round(otio.opentime.from_timecode(text, exact_rate(rate)).value)


# ----------------------------------------------------------------------------- CMX 3600

# An event line: number, reel, channels, transition (and its length), then four timecodes.
_TIMECODE = r"\d{2}:\d{2}:\d{2}[:;.]\d{2,3}"
# (White space within a line only: a pattern whose `\s` crossed lines backtracked over every run of
# blank lines, quadratic in a list's size.)
_EVENT_TIMES = re.compile(rf"^([ \t]*\d+[ \t].*?)({_TIMECODE})([ \t]+)({_TIMECODE})([ \t]+)({_TIMECODE})([ \t]+)"
                          rf"({_TIMECODE})([ \t\r]*)$", re.MULTILINE)
_FCM = re.compile(r"^[ \t]*FCM:(.*)$", re.MULTILINE | re.IGNORECASE)


# A speed line: `M2`, the reel, the speed in frames a second, the source time it starts at.
_M2_TIME = re.compile(rf"^([ \t]*M2[ \t].*?)({_TIMECODE})([ \t\r]*)$", re.MULTILINE)


def cmx_timecodes(text: str, rate: float, drop_frame: bool) -> str:
    """A CMX 3600 list as written by the adapter (drop-frame wherever the rate has it) with its
    times in the timecode asked for, and the `FCM:` line that says which, after the title."""
    drop = drop_frame and is_drop_frame_rate(rate)

    def rewrite(match: re.Match[str]) -> str:
        parts = list(match.groups())
        for i in range(1, len(parts), 2):
            parts[i] = timecode(frames_of(parts[i], rate), rate, drop)
        return "".join(parts)

    body = _M2_TIME.sub(rewrite, _EVENT_TIMES.sub(rewrite, _FCM.sub("", text)))
    fcm = f"FCM: {'DROP FRAME' if drop else 'NON-DROP FRAME'}\n"
    lines = body.splitlines(keepends=True)
    at = 1 if lines and lines[0].startswith("TITLE:") else 0
    return "".join([*lines[:at], fcm, *lines[at:]])


def cmx_as_declared(text: str, rate: float) -> str:
    """A CMX 3600 list whose `FCM: DROP FRAME` line declares drop-frame times, with each time
    written with `;` (lists that declare it and write `:` are common); any other list as it is.
    Its times are read as they are written thereafter, one `FCM:` for the whole list."""
    declared = _FCM.search(text)
    if declared is None or not is_drop_frame_rate(rate):
        return text
    value = declared.group(1).strip().upper()
    if "NON" in value or "DROP" not in value:
        return text

    def mark(match: re.Match[str]) -> str:
        parts = list(match.groups())
        for i in range(1, len(parts), 2):
            parts[i] = parts[i][:8] + ";" + parts[i][9:]
        return "".join(parts)

    return _M2_TIME.sub(mark, _EVENT_TIMES.sub(mark, text))


# A list whose first record time is at most this long before a whole hour has a leader (a slate,
# a countdown) before a program that starts on the hour.
LEADER_MAX_SECONDS = 60


def cmx_record_start(text: str, rate: float) -> otio.opentime.RationalTime | None:
    """Where a CMX 3600 list's sequence starts: the whole hour at or before its first record time
    (a list states no start; editors start sequences at 00:00:00:00 or 01:00:00:00), except where
    that first record time is within LEADER_MAX_SECONDS before the next whole hour (a leader before
    a program at 01:00:00:00, from 00:59:50:00): there the sequence starts at its first event, not
    an hour of nothing before it. None for a list without events."""
    starts = [match.group(6) for match in _EVENT_TIMES.finditer(text)]
    if not starts:
        return None
    first = min(starts, key=lambda tc: frames_of(tc, rate))
    exact, separator = exact_rate(rate), first[8]
    hour = frames_of(f"{first[:2]}:00:00{separator}00", rate)
    # (A whole hour is never a dropped frame number: the next one is this one plus an hour's frames.)
    next_hour = hour + frames_of(f"01:00:00{separator}00", rate)
    at = frames_of(first, rate)
    leader = (next_hour - at) / exact <= LEADER_MAX_SECONDS
    return otio.opentime.RationalTime(at if leader else hour, exact)

"""How an engine declares the bounds of its payload's fields, so that they are written once.

An engine module lists them in `INPUT_BOUNDS` ({field: bound}), built from the constants its own
checks use; `gpu_tasks.engines.input_bounds(job_type)` gathers a type's, and the API's input for the
type (`jobs/inputs.py`, through the jobs app's GPU client) reads the same numbers, so a request the
engine would refuse is refused at submission, before anything is charged. A field of the payload
that the API's input does not name (an engine-only option) is not listed. A dotted name is a
field of an object (`target.yaw`).

An engine's limits on a media input that the file's probed facts show before the call (an audio's
length, a video's frames) are its `MEDIA_LIMITS` ({payload field: MediaLimit}), built from the
constants its own checks use; `gpu_tasks.engines.media_limits(job_type)` gathers a type's, and the
job's spec checks each input file against them at submission (422 before anything is charged).
The engine checks them again on what it decodes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class Bound:
    """A number from `low` to `high` (None: unbounded above), or text of `low` to `high` characters.

    The numbers keep the form the API shows (20, not 20.0, in its messages and schema).
    """

    kind: Literal["integer", "number", "text"]
    low: int | float
    high: int | float | None
    default: int | float | None = None  # what the engine takes when the field is absent
    multiple_of: int | None = None


@dataclass(frozen=True)
class Choices:
    """One of `values` ("WxH" sizes, preset names...), in the order the API lists them."""

    values: tuple[str, ...]
    default: str | None = None


@dataclass(frozen=True)
class Resolution:
    """A "WxH" size: even sides, each at least `min_side`, at most `max_width` x `max_height`."""

    min_side: int
    max_width: int
    max_height: int


InputBound = Bound | Choices | Resolution


@dataclass(frozen=True)
class MediaLimit:
    """What an engine takes of one media input: at most `max_seconds` long, at most `max_frames`
    frames (its duration times its frame rate), or both (None: no such limit)."""

    max_seconds: float | None = None
    max_frames: int | None = None

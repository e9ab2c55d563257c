"""How a job's price is computed, on the server only (the client never sends a price).

Prices are in credits and charged per started unit, so a 10 min 1 s file costs two units of
10 minutes. Each job type's rule is part of its spec (`jobs/specs.py`), the one place to change
a price; `GET /api/v1/jobs/types` shows it. A rule's measure says what is counted, from the
resolved request: a media file's duration, a field's value, a text's length, a timeline's length.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from jobs.errors import MediaDurationUnknown

if TYPE_CHECKING:
    from media.models import MediaFile

MINUTE_MS = 60_000


@dataclass(frozen=True)
class Measure:
    """What one unit of a price counts, read from the resolved request's `field`; `key` names
    the quantity stored on the job (the field's own name unless the measure says otherwise)."""

    field: str = ""
    key: str = ""

    def __post_init__(self) -> None:
        if not self.key:
            object.__setattr__(self, "key", self.field)

    def of(self, params: Mapping[str, Any], media: Mapping[str, MediaFile]) -> float:
        raise NotImplementedError


@dataclass(frozen=True)
class MediaDuration(Measure):
    """The duration of the media file named by `field`."""

    key: str = "duration_ms"

    def of(self, params: Mapping[str, Any], media: Mapping[str, MediaFile]) -> float:
        file = media[self.field]
        # A file whose length the probe could not read (a header without a duration, as live
        # recorders write them) cannot be priced: refused rather than charged the minimum.
        if not file.duration_ms:
            raise MediaDurationUnknown(
                "This file's duration is unknown, so the job cannot be priced; re-encode or remux it.",
                details={"media_id": str(file.pk)},
            )
        return int(file.duration_ms)


@dataclass(frozen=True)
class FieldValue(Measure):
    """A number the request gives (seconds of audio to generate, images to make)."""

    def of(self, params: Mapping[str, Any], media: Mapping[str, MediaFile]) -> float:
        value: float = params[self.field]
        return value


@dataclass(frozen=True)
class TextLength(Measure):
    key: str = "characters"

    def of(self, params: Mapping[str, Any], media: Mapping[str, MediaFile]) -> float:
        return len(params[self.field])


@dataclass(frozen=True)
class TimelineDuration(Measure):
    """The length of the timeline snapshot in `params["edl"]`: its set duration, else its last clip's end."""

    key: str = "duration_ms"

    def of(self, params: Mapping[str, Any], media: Mapping[str, MediaFile]) -> float:
        edl = params["edl"]
        clips = [c for t in edl.get("tracks") or [] for c in t["clips"]]
        declared = (edl.get("settings") or {}).get("duration_ms")
        return int(declared or max(c["start_ms"] + c["duration_ms"] for c in clips))


@dataclass(frozen=True)
class EstimatedGpuSeconds(Measure):
    """What a text-to-video call is estimated to take on its GPU, from the request's size, length,
    steps and guidance (the engine's cost model): what it costs to make grows with all four."""

    key: str = "gpu_seconds"

    def of(self, params: Mapping[str, Any], media: Mapping[str, MediaFile]) -> float:
        from jobs.gpu_client import video_generation_cost

        return round(video_generation_cost(params)[0], 1)


# A render's reference output: a minute of it costs the render's price per minute.
REFERENCE_PIXEL_RATE = 1920 * 1080 * 30


@dataclass(frozen=True)
class RenderOutput(TimelineDuration):
    """The timeline's length (as TimelineDuration), weighted by its output's pixels per second
    against 1080p at 30 fps, never less than 1: a minute at 720p or 1080p30 is one minute, a
    minute of 4K at 60 fps eight, of 8K at 120 fps sixty-four. What a render costs to make grows
    with the pixels it encodes, and so does its price."""

    def weight(self, params: Mapping[str, Any]) -> float:
        timeline = params["edl"].get("settings") or {}
        resolution = timeline.get("resolution") or {}
        pixel_rate = (float(resolution.get("width", 1920)) * float(resolution.get("height", 1080))
                      * float(timeline.get("frame_rate", 30)))
        return max(1.0, pixel_rate / REFERENCE_PIXEL_RATE)


@dataclass(frozen=True)
class PriceRule:
    credits: int  # per unit
    unit: str  # "job", or what is counted: "10 min of media", "1,000 characters"...
    measure: Measure | None = None
    per: float = 1.0  # the size of one unit, in the measure's own scale

    def quantities(self, params: Mapping[str, Any], media: Mapping[str, MediaFile]) -> dict[str, Any]:
        """What the price is computed from, as stored on the job (a retry is priced from it again)."""
        if self.measure is None:
            return {}
        quantities: dict[str, Any] = {self.measure.key: self.measure.of(params, media)}
        if isinstance(self.measure, RenderOutput):
            quantities["output_weight"] = round(self.measure.weight(params), 4)
        return quantities

    @property
    def minimum(self) -> int:
        """The least any job of this rule costs (one unit): what a balance must cover to submit one."""
        return self.credits

    def cost(self, quantities: Mapping[str, float]) -> int:
        if self.measure is None:
            return self.credits
        amount = float(quantities[self.measure.key]) * float(quantities.get("output_weight", 1.0))
        # Rounded first: a weight stored to 4 places must not push an exact number of units up by one.
        return self.credits * max(1, math.ceil(round(amount / self.per, 6)))

    def describe(self) -> str:
        credits = f"{self.credits} credit{'' if self.credits == 1 else 's'}"
        text = f"{credits} per {'job' if self.measure is None else 'started ' + self.unit}"
        if isinstance(self.measure, RenderOutput):
            text += "; above 1080p at 30 fps, in proportion to the pixels per second"
        return text

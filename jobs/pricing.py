"""What each job type costs, computed on the server only (the client never sends a price).

Prices are in credits and charged per started unit, so a 10 min 1 s file costs two units of
10 minutes. The table is the one place to change a price; `GET /api/v1/jobs/types` shows it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gpu_tasks.types import JobType


@dataclass(frozen=True)
class PriceRule:
    credits: int  # per unit
    unit: str  # "job", or what is counted: "10 min of media", "1,000 characters"...
    measure: str | None = None  # the key of the measured quantity in `quantities`
    per: float = 1.0  # the size of one unit, in the measure's own scale

    def cost(self, quantities: Mapping[str, float]) -> int:
        if self.measure is None:
            return self.credits
        amount = float(quantities[self.measure])
        return self.credits * max(1, math.ceil(amount / self.per))

    def describe(self) -> str:
        return f"{self.credits} credits per {'job' if self.measure is None else 'started ' + self.unit}"


MINUTE_MS = 60_000
PRICES: Mapping[str, PriceRule] = {
    JobType.TRANSCRIPTION: PriceRule(5, "10 min of audio", "duration_ms", 10 * MINUTE_MS),
    JobType.TTS: PriceRule(2, "1,000 characters", "characters", 1000),
    JobType.LIP_SYNC: PriceRule(15, "minute of video", "duration_ms", MINUTE_MS),
    JobType.VIDEO_GENERATION: PriceRule(50, "5 s of video", "duration_sec", 5),
    JobType.PERFORMANCE_CLONING: PriceRule(20, "minute of video", "duration_ms", MINUTE_MS),
    JobType.GAZE_REDIRECTION: PriceRule(10, "minute of video", "duration_ms", MINUTE_MS),
    JobType.AUDIO_GENERATION: PriceRule(3, "30 s of audio", "duration_sec", 30),
    JobType.VIDEO_QUERY: PriceRule(2, "question"),
    JobType.RENDER: PriceRule(2, "minute of output", "duration_ms", MINUTE_MS),
    JobType.COMPRESSION: PriceRule(1, "10 min of video", "duration_ms", 10 * MINUTE_MS),
    JobType.IMAGE_GENERATION: PriceRule(4, "image", "images", 1),
}


def job_cost(job_type: str, quantities: Mapping[str, Any]) -> int:
    return PRICES[job_type].cost(quantities)

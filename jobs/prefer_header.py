"""`Prefer: wait=N` on a job submission (RFC 7240), as both servers read it.

The waiting itself is the ASGI server's (realtime/prefer_wait.py, which reads the header with
`prefer_wait` below); a submission that reaches gunicorn answers 202 at once, with `Location`
naming the job's event stream (`event_stream_location`): a sync worker never waits. Both live
here, in the jobs app, because the submission view needs them and the jobs app never imports
the real-time layer.

N is at most MAX_WAIT_SECONDS; a larger N waits that long and says so in `Preference-Applied`.
A malformed preference is ignored, as RFC 7240 asks.
"""

from __future__ import annotations

import re
import uuid

MAX_WAIT_SECONDS = 60
_WAIT = re.compile(r'^\s*wait\s*=\s*"?(\d{1,9})"?\s*$', re.IGNORECASE)


def prefer_wait(header: str | None) -> tuple[int, bool] | None:
    """(seconds to wait, whether N was lowered to the maximum) from a Prefer header, or None."""
    if not header:
        return None
    for preference in header.split(","):
        match = _WAIT.match(preference.split(";", 1)[0])
        if match:
            seconds = int(match.group(1))
            return min(seconds, MAX_WAIT_SECONDS), seconds > MAX_WAIT_SECONDS
        if preference.split(";", 1)[0].strip().lower().startswith("wait"):
            return None  # `wait` without a valid delta-seconds: ignored
    return None


def event_stream_location(job_id: uuid.UUID | str) -> str:
    return f"/api/v1/jobs/{job_id}/stream"

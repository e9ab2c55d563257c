"""After a Redis server fails to answer in time, this process leaves it alone for a few seconds.

Across a partition (packets dropped, nothing refused) every call to Redis costs its whole socket
timeout, and one request makes several: the rate limiter's, the event stream's, the broker's
publish. The first call to time out marks its server silent for SILENT_SECONDS, and in that time
the calls skip it at once: the rate limiter lets the request through (it fails open anyway), and
a publish or an event's append is held by the process and done once the server answers
(auteur/core/outbox.py). A refused connection (the server down) needs none of this: it fails at once
by itself.
"""

from __future__ import annotations

import threading
import time

import redis

# Long enough that a partition costs one timed-out call per process every few seconds, short
# enough that a server which answers again is used again almost at once.
SILENT_SECONDS = 3.0

_lock = threading.Lock()
_silent_until: dict[str, float] = {}


def is_silent(url: str) -> bool:
    """Whether the server at `url` failed to answer within the last SILENT_SECONDS."""
    return time.monotonic() < _silent_until.get(url, 0.0)


def note_failure(url: str, exc: BaseException) -> None:
    """Mark the server at `url` silent if `exc` (or an error it was raised from) is a time-out."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, TimeoutError | redis.TimeoutError):
            with _lock:
                _silent_until[url] = time.monotonic() + SILENT_SECONDS
            return
        seen = seen.__cause__ or seen.__context__


def forget() -> None:
    """Every server is presumed to answer again (tests)."""
    with _lock:
        _silent_until.clear()

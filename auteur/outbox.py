"""Work this process could not do against a server just now, done again from a thread, in order.

For what a request or a step must neither wait for nor lose when Redis is out of reach: a
broker publish (auteur/publishing.py) and an append to a user's event stream
(jobs/services/stream.py). `try_now` does the work at once; if the server refused, timed out or
is silent (auteur/silence.py), the work is held here and tried again every RETRY_INTERVAL_SECONDS while
the server is not silent, oldest first, until it is done or KEEP_FOR_SECONDS have passed (then
it is logged and dropped: each kind of work says what makes up for it). While an outbox holds
anything, a caller whose work has an order (the event stream) puts new work behind it.

Work that timed out may have been done all the same (its bytes arrive once the link heals), so
it can happen twice: a publish is idempotent, and a stream entry carries its event's record id.
An outbox belongs to one process: a forked child starts with an empty one.
"""

from __future__ import annotations

import collections
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from auteur import silence

logger = logging.getLogger(__name__)

RETRY_INTERVAL_SECONDS = 1.0
SILENT = "no answer lately"  # try_now's reason when the server is silent
KEEP_FOR_SECONDS = 300.0
MAX_HELD = 10_000  # beyond this the oldest are dropped, as if kept too long


@dataclass
class Held:
    work: Any
    what: str
    log_extra: dict[str, Any] = field(default_factory=dict)
    since: float = field(default_factory=time.monotonic)


class Outbox:
    """`attempt(work)` does one piece of work against the server at `server()` (a URL), raising
    one of `errors` when it could not; `dropped` says what makes up for work given up."""

    def __init__(
        self, name: str, server: Callable[[], str], attempt: Callable[[Any], object],
        errors: tuple[type[BaseException], ...], dropped: str,
    ) -> None:  # fmt: skip
        self.name, self.server, self.attempt, self.errors, self.dropped = name, server, attempt, errors, dropped
        self._reset()
        os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        self.held: collections.deque[Held] = collections.deque(maxlen=MAX_HELD)
        self.ready = threading.Condition()
        self.thread: threading.Thread | None = None

    def holds(self) -> bool:
        return bool(self.held)

    def try_now(
        self, work: Any, what: str, *, hold: bool = True, in_order: bool = False, **log_extra: Any
    ) -> tuple[Any, str]:
        """Do `work` now: (its result, ""). Or not, (None, why): when the server is silent, when
        the attempt fails (a time-out makes the server silent), or, `in_order`, while earlier work
        is held; the work is then held (unless not `hold`)."""
        if silence.is_silent(self.server()):
            why = SILENT
        elif in_order and self.holds():
            why = "behind earlier work"
        else:
            try:
                return self.attempt(work), ""
            except self.errors as exc:
                silence.note_failure(self.server(), exc)
                why = f"{type(exc).__name__}: {exc}"
        if hold:
            self.add(work, what, **log_extra)
        return None, why

    def forget(self) -> None:
        """Drop everything held (tests)."""
        with self.ready:
            self.held.clear()

    def add(self, work: Any, what: str, **log_extra: Any) -> None:
        with self.ready:
            self.held.append(Held(work, what, log_extra))
            if self.thread is None:
                self.thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                self.thread.start()
            self.ready.notify()

    def _run(self) -> None:
        while True:
            with self.ready:
                while not self.held:
                    self.ready.wait()
            time.sleep(RETRY_INTERVAL_SECONDS)
            if not silence.is_silent(self.server()):
                self._try_all()

    def _try_all(self) -> None:
        while True:
            with self.ready:
                if not self.held:
                    return
                first = self.held[0]
            if time.monotonic() - first.since > KEEP_FOR_SECONDS:
                logger.warning("gave up on %s after %.0f s; %s", first.what, KEEP_FOR_SECONDS, self.dropped,
                               extra=first.log_extra)  # fmt: skip
            else:
                try:
                    self.attempt(first.work)
                except self.errors as exc:
                    silence.note_failure(self.server(), exc)
                    return
                logger.info("done after all: %s", first.what, extra=first.log_extra)
            with self.ready:
                if self.held and self.held[0] is first:
                    self.held.popleft()

"""A per-process hold, not a durable outbox: work this process could not do against a server just
now, kept in its memory and done again from a thread, in order (lost if the process dies).

For what a request or a step must neither wait for nor lose when Redis is out of reach: a
broker publish (auteur/core/publishing.py) and an append to a user's event stream
(jobs/events/stream.py). `try_now` does the work at once; if the server refused, timed out or
is silent (auteur/core/silence.py), the work is held here and tried again every RETRY_INTERVAL_SECONDS while
the server is not silent, oldest first, until it is done or KEEP_FOR_SECONDS have passed. An
outbox holds at most MAX_HELD pieces: past that the oldest is given up to make room. Work given
up on, for either reason, is logged (one line naming it and what makes up for it: each kind of
work says) and counted in `auteur_outbox_dropped_total{outbox,reason}`, which the API's /metrics
serves and an alert watches. While an outbox holds anything, a caller whose work has an order
(the event stream) puts new work behind it.

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

from prometheus_client import Counter

from auteur.core import silence

logger = logging.getLogger(__name__)

RETRY_INTERVAL_SECONDS = 1.0
SILENT = "no answer lately"  # try_now's reason when the server is silent
KEEP_FOR_SECONDS = 300.0
MAX_HELD = 10_000  # beyond this the oldest is dropped to make room
# Why work was given up on: it waited KEEP_FOR_SECONDS, or the outbox was full (the oldest went).
EXPIRED, FULL = "expired", "full"

DROPPED = Counter("auteur_outbox_dropped", "Work an outbox gave up on (never done), by outbox and reason "
                  "(expired: held past its time; full: the oldest, to make room)", ["outbox", "reason"])


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
        for reason in (EXPIRED, FULL):  # each series exported from 0, so an alert sees its first increase
            DROPPED.labels(name, reason)
        self._reset()
        os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        # Bounded by `add` (MAX_HELD), which logs and counts what it drops; a deque's own maxlen
        # would drop it without a word.
        self.held: collections.deque[Held] = collections.deque()
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
        full: list[Held] = []
        with self.ready:
            while len(self.held) >= MAX_HELD:
                full.append(self.held.popleft())
            self.held.append(Held(work, what, log_extra))
            if self.thread is None:
                self.thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                self.thread.start()
            self.ready.notify()
        for oldest in full:
            self._given_up(oldest, FULL, f"to make room ({self.name} holds {MAX_HELD} at most)")

    def _given_up(self, held: Held, reason: str, why: str) -> None:
        """Log (what it was, never the work itself: a message may carry anything) and count."""
        DROPPED.labels(self.name, reason).inc()
        logger.warning("gave up on %s %s; %s", held.what, why, self.dropped, extra=held.log_extra)

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
            expired = time.monotonic() - first.since > KEEP_FOR_SECONDS
            if not expired:
                try:
                    self.attempt(first.work)
                except self.errors as exc:
                    silence.note_failure(self.server(), exc)
                    return
                logger.info("done after all: %s", first.what, extra=first.log_extra)
            with self.ready:
                # (`add` may have dropped it meanwhile, to make room: then it was counted there.)
                ours = bool(self.held) and self.held[0] is first
                if ours:
                    self.held.popleft()
            if expired and ours:
                self._given_up(first, EXPIRED, f"after {KEEP_FOR_SECONDS:.0f} s")

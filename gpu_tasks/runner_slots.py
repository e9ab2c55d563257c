"""A machine-wide cap on the local runners: N slots, taken in order of arrival.

Each slot is a file that one runner holds with an exclusive `flock` for as long as its engine
runs; the kernel lets go of it when the runner exits or is killed, so a dead runner never keeps
a slot. Runners that find every slot taken wait in line: each writes a ticket named by its
arrival time and pid, and only the oldest live ticket may take a slot that frees, so a job that
waits keeps its place (and its credits: nothing fails while it waits). A ticket whose runner
died (a cancel kills it) is dropped by the next runner that looks. Every worker process that
shares the calls directory shares the slots, whichever process spawned the runner.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterator
from pathlib import Path

WAIT_POLL_S = 0.05


class RunnerSlots:
    def __init__(self, directory: Path, slots: int) -> None:
        if slots < 1:
            raise ValueError("a runner needs at least one slot")
        self.directory = directory
        self.slots = slots
        self.tickets = directory / "tickets"

    def acquire(self) -> int:
        """Wait for a slot and hold it: the returned descriptor holds the lock until it is closed
        (or this process and the children that inherit it have all exited)."""
        self.tickets.mkdir(parents=True, exist_ok=True)
        ticket = self.tickets / f"{time.time_ns():020d}-{os.getpid()}"
        ticket.touch()
        try:
            while True:
                with self._line():
                    if self._first_in_line() == ticket.name:
                        fd = self._take_free_slot()
                        if fd is not None:
                            return fd
                time.sleep(WAIT_POLL_S)
        finally:
            ticket.unlink(missing_ok=True)

    def held(self) -> int:
        """How many slots are held now (for tests and operators)."""
        count = 0
        for index in range(self.slots):
            fd = os.open(self.directory / f"slot-{index}", os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                count += 1
            finally:
                os.close(fd)
        return count

    @contextlib.contextmanager
    def _line(self) -> Iterator[None]:
        # One runner at a time looks at the line and the slots: the looks are short.
        fd = os.open(self.directory / "line.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _first_in_line(self) -> str | None:
        for ticket in sorted(self.tickets.iterdir()):
            pid = int(ticket.name.rpartition("-")[2] or 0)
            if _alive(pid):
                return ticket.name
            ticket.unlink(missing_ok=True)  # its runner died waiting (canceled, killed)
        return None

    def _take_free_slot(self) -> int | None:
        for index in range(self.slots):
            fd = os.open(self.directory / f"slot-{index}", os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            return fd
        return None


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True

"""The cyclic garbage collector: out of the way of a serving process's start-up objects, and
paused around a bounded computation that makes many objects.

A process that serves requests or runs tasks holds about 160,000 objects from importing Django
and the apps, and none of them is ever freed. Every full pass of the collector walks them all
again: about 85 ms on this machine, landing on whichever request made the allocation that set
it off (the p99 of a 600 KiB timeline's save went from 37 to 120 ms). ``startup_objects_frozen``
moves them out of the collector's sight once the application is loaded (before gunicorn forks
its workers, in each Celery pool process, at the end of the ASGI module); objects made later are
collected as before.

The captions, cuts and fillers of a timeline at its limits make a few hundred thousand small
objects (tuples, dicts) that live until the answer is written. Such a burst of allocations makes
the collector run full passes over every object of the process, the timeline included, which
doubled those computations' p99 (bench/timeline_limits.py). What they make holds no reference
cycles (JSON-shaped data), so reference counting frees it all the same; the collector runs again
as soon as the block ends, and the work inside is bounded by the timeline's limits.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


def startup_objects_frozen() -> None:
    """Every object alive now is left out of the collector's passes from here on (``gc.freeze``).
    Called once the application is loaded; calling it again freezes what was made since."""
    gc.freeze()


@contextmanager
def collector_paused() -> Iterator[None]:
    """Pause the cyclic collector for the block, if it runs (nested or concurrent blocks leave it
    to whichever paused it first, which turns it back on: it is never left off)."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()

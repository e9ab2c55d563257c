"""The cyclic garbage collector paused around a bounded computation that makes many objects.

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

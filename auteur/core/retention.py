"""Retention: what each app prunes, and how, declared once and run in bounded batches.

Each app that owns data declares its sweeps with ``register_sweep`` when it starts (its
AppConfig.ready); beat runs each through the app's own task (celeryconfig.beat_schedule), and
``manage.py retention [--dry-run] [--only NAME]`` runs them by hand. A sweep deletes in batches
of AUTEUR_RETENTION_BATCH_SIZE rows, each batch its own short transaction, so no sweep holds a
lock on more than one batch. Ledger rows (credits) are never swept.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SweepResult:
    """What one sweep deleted (or, in a dry run, would delete): ``count`` rows/objects/entries."""

    name: str
    count: int
    batches: int
    dry_run: bool
    details: dict[str, int] = field(default_factory=dict)

    def describe(self) -> str:
        verb = "would delete" if self.dry_run else "deleted"
        extra = "".join(f", {k}={v}" for k, v in self.details.items())
        return f"{self.name}: {verb} {self.count} in {self.batches} batch(es){extra}"


# A beat task stops starting batches after this long, well inside Celery's soft time limit
# (celeryconfig.task_soft_time_limit, 300 s): a backlog is worked off over several runs, each
# ending cleanly, rather than by a run killed mid-batch.
TASK_TIME_BUDGET_SECONDS = 240.0


@dataclass(frozen=True)
class SweepContext:
    now: datetime
    batch_size: int
    dry_run: bool
    deadline: float | None = None  # time.monotonic() past which no new batch starts

    def out_of_time(self) -> bool:
        return self.deadline is not None and time.monotonic() >= self.deadline


SweepFunction = Callable[[SweepContext], SweepResult]


@dataclass(frozen=True)
class Sweep:
    """One kind of data pruned: its name (for ``--only``), the beat task that runs it, the rule."""

    name: str
    task: str
    rule: str
    run: SweepFunction


_sweeps: dict[str, Sweep] = {}


def register_sweep(sweep: Sweep) -> Sweep:
    """Declare a sweep (once per name; registering the same one again is a no-op)."""
    existing = _sweeps.get(sweep.name)
    if existing is not None and existing != sweep:
        raise ValueError(f"retention sweep {sweep.name!r} is registered twice")
    _sweeps[sweep.name] = sweep
    return sweep


def registered_sweeps() -> list[Sweep]:
    return sorted(_sweeps.values(), key=lambda s: s.name)


def sweep_context(
    *, dry_run: bool = False, batch_size: int | None = None, now: datetime | None = None,
    time_budget: float | None = None,
) -> SweepContext:
    size = batch_size if batch_size is not None else settings.AUTEUR_RETENTION_BATCH_SIZE
    if size < 1:
        raise ValueError("the retention batch size must be at least 1")
    deadline = None if time_budget is None else time.monotonic() + time_budget
    return SweepContext(now=now or timezone.now(), batch_size=size, dry_run=dry_run, deadline=deadline)


def run_sweep(name: str, **context: Any) -> SweepResult:
    """Run the sweep called ``name`` and log what it did. Beat's tasks pass
    ``time_budget=TASK_TIME_BUDGET_SECONDS``; the command runs to the end."""
    result = _sweeps[name].run(sweep_context(**context))
    if result.count:
        logger.info("retention %s", result.describe())
    return result


def delete_in_batches(name: str, queryset: QuerySet[Any], ctx: SweepContext) -> SweepResult:
    """Delete what ``queryset`` selects, ``ctx.batch_size`` rows per DELETE and transaction.

    Each DELETE names its rows by primary key through a bounded subquery
    (``DELETE ... WHERE id IN (SELECT id ... LIMIT n)``), so a batch locks at most n rows and
    commits before the next one starts. The queryset must select only rows whose deletion
    cascades to nothing, so that Django issues that one statement.
    """
    if ctx.dry_run:
        count = queryset.count()
        return SweepResult(name, count, math.ceil(count / ctx.batch_size), dry_run=True)
    model = queryset.model
    deleted = batches = 0
    while True:
        with transaction.atomic():
            ids = queryset.order_by("pk").values("pk")[: ctx.batch_size]
            n, _ = model._default_manager.filter(pk__in=ids).delete()
        if not n:
            break
        deleted += n
        batches += 1
        if n < ctx.batch_size or ctx.out_of_time():
            break
    return SweepResult(name, deleted, batches, dry_run=False)

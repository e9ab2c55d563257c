"""What the media app prunes (auteur/core/retention.py runs it): files jobs produced, once older than
AUTEUR_RETENTION_JOB_OUTPUTS_DAYS (0, the default, keeps them for ever).

Each file goes through ``media_delete``, as a user's delete would: its row now, its storage
objects after commit, and never a file something still uses (that one is skipped and tried at
the next sweep). Uploads are never touched: only rows with a ``source_job_id``.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import QuerySet

from auteur.core.retention import Sweep, SweepContext, SweepResult
from media.errors import MediaInUse
from media.models import MediaFile
from media.services.deletion import media_delete


def job_outputs_due(cutoff: datetime) -> QuerySet[MediaFile]:
    """Files jobs produced before ``cutoff``, in primary-key order (the sweep's keyset). The
    partial index ``media_job_outputs_created`` finds them without reading the uploads or the
    files still inside the window (bench/retention_sweep.py)."""
    return MediaFile.objects.filter(source_job_id__isnull=False, created_at__lt=cutoff).order_by("pk")


def job_outputs_sweep(ctx: SweepContext) -> SweepResult:
    days = settings.AUTEUR_RETENTION_JOB_OUTPUTS_DAYS
    if days <= 0:
        return SweepResult("job_outputs", 0, 0, ctx.dry_run, details={"disabled": 1})
    old = job_outputs_due(ctx.now - timedelta(days=days))
    if ctx.dry_run:
        count = old.count()
        return SweepResult("job_outputs", count, -(-count // ctx.batch_size), dry_run=True)
    deleted = skipped = batches = 0
    after = None
    while True:
        # Keyset by primary key: a file skipped because it is in use is not selected again.
        page = old if after is None else old.filter(pk__gt=after)
        batch = list(page[: ctx.batch_size])
        if not batch:
            break
        batches += 1
        for media in batch:
            try:
                media_delete(media=media)
                deleted += 1
            except MediaInUse:
                skipped += 1
        after = batch[-1].pk
        if len(batch) < ctx.batch_size or ctx.out_of_time():
            break
    return SweepResult("job_outputs", deleted, batches, dry_run=False, details={"in_use": skipped})


SWEEPS = [
    Sweep("job_outputs", "media.retention.job_outputs",
          "files jobs produced, older than AUTEUR_RETENTION_JOB_OUTPUTS_DAYS (0: kept)", job_outputs_sweep),
]

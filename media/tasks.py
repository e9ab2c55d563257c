"""Media tasks (queue ``media``, celeryconfig.task_routes). Thin: ids and keys in, one service call.

Delivery is at-least-once (late acks, requeue on worker loss); each service is idempotent.
Only storage errors that can recover (network, 5xx: media.errors.StorageError) are retried, by
Celery's autoretry with exponential back-off and full jitter, never further out than
LONGEST_COUNTDOWN_SECONDS.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Task, shared_task

from auteur.core.retention import TASK_TIME_BUDGET_SECONDS, run_sweep
from celeryconfig import LONGEST_COUNTDOWN_SECONDS
from media import task_names
from media.errors import StorageError
from media.probing.service import media_hash_backfill, media_probe
from media.services.deletion import media_defer_object_deletion, media_delete_objects
from media.services.publishing import media_publication_abandon, media_publication_copy
from media.services.sweep import media_sweep

logger = logging.getLogger(__name__)


# A task that reads or copies a whole file (up to 50 GiB, the default largest): an upload is
# downloaded from S3 before PyAV opens it and its SHA-256 is read, a publication is copied
# server-side (through the worker with the local backend): at 200 MB/s about 5 minutes, under
# the 30-minute redelivery bound (LONGEST_TASK_SECONDS) and the sweep's 30-minute re-enqueue.
# Storage errors that may recover are retried, backing off.
WHOLE_FILE_TASK: dict[str, Any] = {
    "acks_late": True, "autoretry_for": (StorageError,), "retry_backoff": 5, "retry_backoff_max": 300,
    "retry_jitter": True, "max_retries": 6, "soft_time_limit": 1500, "time_limit": 1560,
}


@shared_task(name=task_names.PROBE, **WHOLE_FILE_TASK)
def probe(media_id: str) -> str | None:
    media = media_probe(media_id=media_id)
    return media.status if media is not None else None


@shared_task(
    bind=True,
    name=task_names.DELETE_OBJECTS,
    acks_late=True,
    autoretry_for=(StorageError, OSError),
    retry_backoff=10,
    retry_backoff_max=LONGEST_COUNTDOWN_SECONDS,
    retry_jitter=True,
    max_retries=12,
)
def delete_objects(self: Task, keys: list[str], prefixes: list[str] | None = None) -> int:
    """Remove objects after their records were deleted; retried until the store answers.

    12 retries, 10 s doubling up to LONGEST_COUNTDOWN_SECONDS: about 70 minutes of trying. Then
    the objects are handed to beat's ``media.sweep`` (a PendingObjectDeletion row each), which
    tries again at every sweep: an outage longer than the retries orphans nothing.
    """
    try:
        return media_delete_objects(keys=keys, prefixes=prefixes or ())
    except (StorageError, OSError) as exc:
        if self.request.retries < (self.max_retries or 0):
            raise
        media_defer_object_deletion(keys=keys, prefixes=prefixes or ())
        logger.warning("media.delete_objects: retries spent (%s); left to media.sweep: keys=%s prefixes=%s",
                       type(exc).__name__, keys, prefixes)
        return 0


@shared_task(bind=True, name=task_names.PUBLISH, **WHOLE_FILE_TASK)
def publish(self: Task, media_id: str, key: str) -> bool:
    """Make a publication's public copy and record it (media/services/publishing.py). Storage
    errors that may recover are retried; once the retries are spent the publication is given up
    (the file stays unpublished, its owner may publish it again)."""
    try:
        return media_publication_copy(media_id=media_id, key=key) is not None
    except StorageError as exc:
        if self.request.retries < (self.max_retries or 0):
            raise
        media_publication_abandon(media_id=media_id, key=key, why=f"the store failed: {type(exc).__name__}")
        return False


@shared_task(name=task_names.SWEEP, acks_late=True)
def sweep() -> dict[str, int]:
    """Beat, every 10 minutes: expire abandoned uploads, re-enqueue or time out stuck probes."""
    return media_sweep()


@shared_task(name=task_names.HASH_BACKFILL, acks_late=True, soft_time_limit=1500, time_limit=1560)
def hash_backfill() -> int:
    """Beat, every 10 minutes: the SHA-256 of files stored before it was recorded, a few GiB a run."""
    return media_hash_backfill()


@shared_task(name="media.retention.job_outputs", acks_late=True)
def retention_job_outputs() -> str:
    """Beat: files jobs produced, past AUTEUR_RETENTION_JOB_OUTPUTS_DAYS (off by default)."""
    return run_sweep("job_outputs", time_budget=TASK_TIME_BUDGET_SECONDS).describe()

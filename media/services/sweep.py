"""The media sweep, run by beat (``media.sweep``): no file stays non-terminal forever, and the
objects left to it are deleted when their time comes."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from auteur.core.publishing import send
from media import task_names
from media.models import MediaFile, MediaStatus, PendingObjectDeletion
from media.services.deletion import (
    PREFIX_MARK,
    media_delete_objects,
    schedule_multipart_abort,
    schedule_object_deletion,
)
from media.services.keys import media_prefix, object_keys
from media.services.publishing import media_publication_abandon, send_publication
from media.status import reject_overdue

logger = logging.getLogger(__name__)


def _delete_due_objects(now: datetime, batch: int = 500) -> int:
    """Delete the objects whose time has come, then their rows (a failed delete is tried again
    at the next sweep: the row stays)."""
    due = list(PendingObjectDeletion.objects.filter(due_at__lte=now).order_by("due_at")[:batch])
    if not due:
        return 0
    media_delete_objects(
        keys=[row.key for row in due if not row.key.endswith(PREFIX_MARK)],
        prefixes=[row.key.rstrip(PREFIX_MARK) for row in due if row.key.endswith(PREFIX_MARK)],
    )
    PendingObjectDeletion.objects.filter(pk__in=[row.pk for row in due]).delete()
    return len(due)


def _sweep_publications(now: datetime) -> dict[str, int]:
    retry_after = timedelta(seconds=settings.AUTEUR_MEDIA_PUBLISH_RETRY_SECONDS)
    deadline = timedelta(seconds=settings.AUTEUR_MEDIA_PUBLISH_DEADLINE_SECONDS)
    in_progress = MediaFile.objects.exclude(publishing_key="")
    given_up = 0
    for media_id, key in in_progress.filter(publishing_since__lt=now - deadline).values_list(
            "pk", "publishing_key")[:500]:
        media_publication_abandon(media_id=media_id, key=key, why="past its deadline")
        given_up += 1
    resent = 0
    for media_id, key in in_progress.filter(publishing_since__lt=now - retry_after).values_list(
            "pk", "publishing_key")[:500]:
        if not send_publication(media_id, key, resend=False):
            break  # the broker is out of reach: the next sweep tries again
        resent += 1
    return {"publications_resent": resent, "publications_given_up": given_up}


def media_sweep(*, now: datetime | None = None) -> dict[str, int]:
    """Housekeeping, run by beat (``media.sweep``): no file stays non-terminal forever.

    * ``uploading`` for longer than AUTEUR_MEDIA_STALE_UPLOAD_SECONDS (1 day): the client never
      confirmed; the record and whatever was uploaded are removed.
    * upload keys whose URL has expired (``PendingObjectDeletion``) are deleted.
    * ``processing`` for longer than AUTEUR_MEDIA_PROBE_RETRY_SECONDS (30 min, longer than a
      probe may run): the probe message was lost or its worker died; it is enqueued again
      (idempotent). Past AUTEUR_MEDIA_PROBE_DEADLINE_SECONDS (2 h) the file is rejected.
    * a publication in progress for longer than AUTEUR_MEDIA_PUBLISH_RETRY_SECONDS: its
      ``media.publish`` is sent again (idempotent); past AUTEUR_MEDIA_PUBLISH_DEADLINE_SECONDS it
      is given up (the file stays unpublished).
    """
    now = now or timezone.now()
    stale_after = timedelta(seconds=getattr(settings, "AUTEUR_MEDIA_STALE_UPLOAD_SECONDS", 24 * 3600))
    retry_after = timedelta(seconds=getattr(settings, "AUTEUR_MEDIA_PROBE_RETRY_SECONDS", 30 * 60))
    deadline = timedelta(seconds=getattr(settings, "AUTEUR_MEDIA_PROBE_DEADLINE_SECONDS", 2 * 3600))
    counts = {"expired_uploads": 0, "requeued": 0, "timed_out": 0, "upload_keys_deleted": 0,
              "publications_resent": 0, "publications_given_up": 0}

    stale = MediaFile.objects.filter(status=MediaStatus.UPLOADING, created_at__lt=now - stale_after)
    for media in stale.order_by("created_at")[:500]:
        with transaction.atomic():
            if MediaFile.objects.filter(pk=media.pk, status=MediaStatus.UPLOADING).delete()[0]:
                schedule_object_deletion(
                    object_keys(media), [media_prefix(project_id=media.project_id, media_id=media.pk)]
                )
                schedule_multipart_abort(media)
                counts["expired_uploads"] += 1

    counts["timed_out"] = reject_overdue(processing_since=now - deadline, now=now)
    stuck = MediaFile.objects.filter(status=MediaStatus.PROCESSING, updated_at__lt=now - retry_after)
    for media_id in stuck.values_list("pk", flat=True)[:500]:
        if not send(task_names.PROBE, (str(media_id),), what=f"probe of media {media_id}", resend=False):
            break  # the broker is out of reach: the next sweep tries again
        counts["requeued"] += 1
    counts.update(_sweep_publications(now))
    counts["upload_keys_deleted"] = _delete_due_objects(now)
    if any(counts.values()):
        logger.info("media sweep: %s", counts)
    return counts

"""A media file's status, and every move of it: no other module writes ``MediaFile.status``
(tests/media/test_status_writes.py holds it).

    (offered) ──> uploading ──confirm──> processing ──probe──> ready
                      │                       │  └──probe──> rejected
                      │                       └──deadline──> rejected   (the sweep)
                      └── deleted after a day unconfirmed (the sweep: a delete, not a move)
    (a job's output, a copy) ──> ready

Each move out of a state is a conditional UPDATE on that state, so two racing callers (a probe
retried by the sweep and the first one; the deadline and a late probe) cannot both make it: the
functions return whether this call did.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from django.utils import timezone

from media.models import MediaFile, MediaStatus

# The reason a file still processing at the deadline is rejected with.
DEADLINE_REASON = "processing did not finish in time; upload the file again"


def create_uploading(**fields: Any) -> MediaFile:
    """The row of an offered upload: ``uploading`` until the client confirms it."""
    return MediaFile.objects.create(status=MediaStatus.UPLOADING, **fields)


def new_ready(**fields: Any) -> MediaFile:
    """An unsaved row born ``ready``: a job's output or a copy, whose facts are known already."""
    return MediaFile(status=MediaStatus.READY, **fields)


def to_processing(media_id: uuid.UUID, **fields: Any) -> bool:
    """Confirmed: the object is in place and a probe is due (``uploading`` -> ``processing``)."""
    moved = MediaFile.objects.filter(pk=media_id, status=MediaStatus.UPLOADING).update(
        status=MediaStatus.PROCESSING, updated_at=timezone.now(), **fields)
    return bool(moved)


def to_ready(media_id: uuid.UUID, **fields: Any) -> bool:
    """Probed and usable (``processing`` -> ``ready``), with the facts the probe found."""
    moved = MediaFile.objects.filter(pk=media_id, status=MediaStatus.PROCESSING).update(
        status=MediaStatus.READY, rejection_reason="", updated_at=timezone.now(), **fields)
    return bool(moved)


def to_rejected(media_id: uuid.UUID, reason: str) -> bool:
    """Probed and refused (``processing`` -> ``rejected``), saying why."""
    moved = MediaFile.objects.filter(pk=media_id, status=MediaStatus.PROCESSING).update(
        status=MediaStatus.REJECTED, rejection_reason=reason, updated_at=timezone.now())
    return bool(moved)


def reject_overdue(*, processing_since: datetime, now: datetime) -> int:
    """Reject every file still ``processing`` since before `processing_since`; how many."""
    return MediaFile.objects.filter(status=MediaStatus.PROCESSING, updated_at__lt=processing_since).update(
        status=MediaStatus.REJECTED, rejection_reason=DEADLINE_REASON, updated_at=now)

"""The probe step of an upload (Celery task ``media.probe``) and the thumbnails it stores.

``media_probe`` runs at least once per confirmed upload: it re-reads the row, probes the
object with PyAV (media/probing.py), writes a thumbnail, and finishes with a conditional
UPDATE from ``processing`` to ``ready`` or ``rejected``. A redelivered run repeats the same
idempotent work (same thumbnail key) and its UPDATE matches nothing.
"""

from __future__ import annotations

import logging
import tempfile
import uuid
from pathlib import Path

from django.db import transaction
from django.utils import timezone

from media.models import MediaFile, MediaStatus, MediaType
from media.probing import ProbeResult, make_thumbnail, probe_file
from media.services.keys import thumbnail_key_for
from media.signals import media_ready
from media.storage import get_storage

logger = logging.getLogger(__name__)

MAX_DURATION_MS = 2**31 - 1  # PositiveIntegerField; 24 days of media


def stored_duration_ms(result: ProbeResult) -> int | None:
    """The probed duration, capped to what the column holds."""
    return min(result.duration_ms, MAX_DURATION_MS) if result.duration_ms is not None else None


def save_thumbnail(*, media: MediaFile, source: Path, duration_ms: int | None) -> str:
    """Make and store the thumbnail of a video or image; its key, or "" when there is none."""
    if media.type not in (MediaType.VIDEO, MediaType.IMAGE):
        return ""
    with tempfile.TemporaryDirectory(prefix="auteur-thumb-") as tmp:
        thumb = Path(tmp) / "thumbnail.jpg"
        if not make_thumbnail(source, thumb, media_type=media.type, duration_ms=duration_ms):
            return ""
        key = thumbnail_key_for(media)
        with thumb.open("rb") as fh:
            get_storage().save(key, fh, "image/jpeg")
    return key


def _send_media_ready(media_id: uuid.UUID) -> None:
    for receiver, result in media_ready.send_robust(sender=MediaFile, media_id=media_id):
        if isinstance(result, Exception):
            logger.error(
                "media_ready receiver %s failed: %s", getattr(receiver, "__qualname__", receiver), type(result).__name__
            )


def _finish_probe(media: MediaFile, result: ProbeResult, thumbnail_key: str) -> bool:
    """The one conditional UPDATE that ends processing; True if this run made it."""
    with transaction.atomic():
        pending = MediaFile.objects.filter(pk=media.pk, status=MediaStatus.PROCESSING)
        if result.ok:
            done = pending.update(
                status=MediaStatus.READY,
                duration_ms=stored_duration_ms(result),
                metadata=result.metadata,
                thumbnail_key=thumbnail_key,
                rejection_reason="",
                updated_at=timezone.now(),
            )
            if done:
                media_id = media.pk
                transaction.on_commit(lambda: _send_media_ready(media_id))
        else:
            done = pending.update(
                status=MediaStatus.REJECTED,
                rejection_reason=result.rejection_reason,
                updated_at=timezone.now(),
            )
    return bool(done)


def media_probe(*, media_id: uuid.UUID | str) -> MediaFile | None:
    """Probe a ``processing`` file: ``ready`` with its facts and thumbnail, or ``rejected``.

    Idempotent: a file in any other state (or deleted) is left alone, and only the run whose
    final UPDATE still finds it ``processing`` records a result.
    """
    media = MediaFile.objects.filter(pk=media_id).first()
    if media is None or media.status != MediaStatus.PROCESSING:
        return media
    storage = get_storage()
    thumbnail_key = ""
    try:
        with storage.local_path(media.storage_key) as path:
            result = probe_file(path, media.type)
            if result.ok:
                thumbnail_key = save_thumbnail(media=media, source=path, duration_ms=result.duration_ms)
    except FileNotFoundError:
        result = ProbeResult(ok=False, rejection_reason="the uploaded object is missing from storage")

    if _finish_probe(media, result, thumbnail_key):
        logger.info("media %s: %s", media.pk, "ready" if result.ok else f"rejected ({result.rejection_reason})")
    elif thumbnail_key and not MediaFile.objects.filter(pk=media.pk).exists():
        # Deleted while we probed: its object clean-up may have run before our thumbnail landed.
        storage.delete(thumbnail_key)
    return MediaFile.objects.filter(pk=media.pk).first()

"""The probe step of an upload (Celery task ``media.probe``) and the thumbnails it stores.

``media_probe`` runs at least once per confirmed upload: it re-reads the row, probes the
object with PyAV in a limited child process (media/probing/sandbox.py), writes a thumbnail, and
finishes with a conditional UPDATE from ``processing`` to ``ready`` or ``rejected``. A
redelivered run repeats the same idempotent work (same thumbnail key) and its UPDATE matches
nothing. Each run that reaches the probe counts an attempt in Redis: a file whose probe keeps
killing its worker (so the message keeps coming back) is rejected after
AUTEUR_MEDIA_PROBE_MAX_ATTEMPTS instead of crash-looping the media workers.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import logging
import tempfile
import uuid
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import transaction

import gpu_tasks.confined as confined
from media.models import MediaFile, MediaStatus, MediaType
from media.probing.facts import ProbeResult, content_sha256, make_thumbnail
from media.probing.sandbox import ProbeLimits, probe_isolated
from media.services.keys import THUMBNAIL_CONTENT_TYPE, thumbnail_key_for
from media.signals import media_ready
from media.status import to_ready, to_rejected
from media.storage import get_storage

logger = logging.getLogger(__name__)

MAX_DURATION_MS = 2**31 - 1  # PositiveIntegerField; 24 days of media


def probe_limits() -> ProbeLimits:
    return ProbeLimits(
        memory_bytes=settings.AUTEUR_MEDIA_PROBE_MEMORY_MB * 1024**2,
        cpu_seconds=settings.AUTEUR_MEDIA_PROBE_CPU_SECONDS,
        timeout_seconds=settings.AUTEUR_MEDIA_PROBE_TIMEOUT_SECONDS,
        max_pixels=settings.AUTEUR_MEDIA_MAX_PIXELS,
        sandbox=settings.AUTEUR_SANDBOX,
        sandbox_uid_base=settings.AUTEUR_SANDBOX_UID_BASE,
        sandbox_uid_count=settings.AUTEUR_SANDBOX_UID_COUNT,
    )


def _attempts_key(media_id: uuid.UUID) -> str:
    return f"media:probe-attempts:{media_id}"


def probe_attempt_claim(*, media_id: uuid.UUID) -> int:
    """Count one more run of the probe on this file; the count so far, this run included.

    Kept until the sweep's deadline would reject the file anyway; counted before the probe
    starts, so a run that dies with its worker still counts.
    """
    key = _attempts_key(media_id)
    cache.add(key, 0, timeout=settings.AUTEUR_MEDIA_PROBE_DEADLINE_SECONDS)
    return int(cache.incr(key))


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
            get_storage().save(key, fh, THUMBNAIL_CONTENT_TYPE)
    return key


def _send_media_ready(media_id: uuid.UUID) -> None:
    for receiver, result in media_ready.send_robust(sender=MediaFile, media_id=media_id):
        if isinstance(result, Exception):
            logger.error(
                "media_ready receiver %s failed: %s", getattr(receiver, "__qualname__", receiver), type(result).__name__
            )


def _finish_probe(media: MediaFile, result: ProbeResult, thumbnail_key: str, sha256: str) -> bool:
    """The one conditional UPDATE that ends processing; True if this run made it."""
    if not result.ok:
        return to_rejected(media.pk, result.rejection_reason)
    with transaction.atomic():
        done = to_ready(media.pk, duration_ms=stored_duration_ms(result), metadata=result.metadata,
                        thumbnail_key=thumbnail_key, content_sha256=sha256)
        if done:
            media_id = media.pk
            transaction.on_commit(lambda: _send_media_ready(media_id))
    return done


def media_probe(*, media_id: uuid.UUID | str) -> MediaFile | None:
    """Probe a ``processing`` file: ``ready`` with its facts and thumbnail, or ``rejected``.

    Idempotent: a file in any other state (or deleted) is left alone, and only the run whose
    final UPDATE still finds it ``processing`` records a result.
    """
    media = MediaFile.objects.filter(pk=media_id).first()
    if media is None or media.status != MediaStatus.PROCESSING:
        return media
    storage = get_storage()
    thumbnail_key = sha256 = ""
    try:
        with storage.local_path(media.storage_key) as path:
            attempt = probe_attempt_claim(media_id=media.pk)
            limit = settings.AUTEUR_MEDIA_PROBE_MAX_ATTEMPTS
            if attempt > limit:
                result = ProbeResult(ok=False, rejection_reason=f"the file could not be examined in {limit} attempts")
            else:
                result = probe_isolated(path, media.type, limits=probe_limits())
            if result.ok:
                thumbnail_key = save_thumbnail(media=media, source=path, duration_ms=result.duration_ms)
                sha256 = content_sha256(path)
    except FileNotFoundError:
        result = ProbeResult(ok=False, rejection_reason="the uploaded object is missing from storage")

    if _finish_probe(media, result, thumbnail_key, sha256):
        cache.delete(_attempts_key(media.pk))
        logger.info("media %s: %s", media.pk, "ready" if result.ok else f"rejected ({result.rejection_reason})")
    elif thumbnail_key and not MediaFile.objects.filter(pk=media.pk).exists():
        # Deleted while we probed: its object clean-up may have run before our thumbnail landed.
        storage.delete(thumbnail_key)
    return MediaFile.objects.filter(pk=media.pk).first()


# What one run of the backfill reads, at most (one file larger than that is still hashed alone).
HASH_BACKFILL_BYTES = 5 * 1024**3


def media_hash_backfill(*, byte_budget: int = HASH_BACKFILL_BYTES) -> int:
    """The SHA-256 of ready files stored before it was recorded (``content_sha256`` empty), oldest
    first, reading at most ``byte_budget`` bytes (beat's ``media.hash_backfill``, every 10 minutes):
    until it has been through them, jobs on those files are not served by the result cache. A file
    whose object is gone is skipped (its row is left to whoever deletes it). Returns how many."""
    storage = get_storage()
    hashed = spent = 0
    unhashed = MediaFile.objects.filter(status=MediaStatus.READY, content_sha256="").order_by("created_at")
    # Read through, not a first page: files whose object is gone must not hold back the rest.
    for media in unhashed.only("id", "storage_key", "file_size_bytes").iterator(chunk_size=100):
        if hashed and spent + media.file_size_bytes > byte_budget:
            break
        try:
            with storage.local_path(media.storage_key) as path:
                sha256 = content_sha256(path)
        except FileNotFoundError:
            continue
        spent += media.file_size_bytes
        hashed += MediaFile.objects.filter(pk=media.pk, content_sha256="").update(content_sha256=sha256)
    if hashed:
        logger.info("media hash backfill: %d files, %d bytes", hashed, spent)
    return hashed


SCREEN_FRAME_SIDE = 224
SCREEN_MOMENT_SAMPLE = 64 * 1024  # the bytes at either end of a file its screened moments are drawn from
# A picture that is not square is also scored in up to this many square windows along its long side
# (a generated image is at most 6:1).
SCREEN_TILES = 6


def screening_frames(path: Path, *, count: int, every_s: float) -> list[bytes] | None:
    """Frames of a picture or video for the image screener: decoded in a confined child with the
    probe's sandbox and limits (media.probing.facts.screen_frames), each 224 x 224 RGB bytes: each
    frame whole, then, when it is not square, up to SCREEN_TILES square windows along its long
    side. None when they cannot be decoded within those limits (a picture over
    AUTEUR_MEDIA_MAX_PIXELS too)."""
    return _screened_frames("screen_frames", path, count, every_s=every_s)


def _screened_frames(function: str, path: Path, count: int, **arguments: Any) -> list[bytes] | None:
    """media.probing.facts.<function>'s frames of `path` (`count` moments, each whole and in up to
    SCREEN_TILES windows), decoded in a confined child with the probe's sandbox and limits; None when
    they cannot be decoded within those limits."""
    limits = probe_limits()
    frame_chars = 4 * (SCREEN_FRAME_SIDE * SCREEN_FRAME_SIDE * 3) // 3 + 64
    most = count * (1 + SCREEN_TILES)
    bounds = dataclasses.replace(limits.confined(), max_result_bytes=most * frame_chars + 64 * 1024)
    answer: Any = None
    try:
        answer = confined.call(f"media.probing.facts:{function}", limits=bounds, path=path,
                               max_pixels=limits.max_pixels, count=count, crop=SCREEN_FRAME_SIDE, tiles=SCREEN_TILES,
                               **arguments)
        frames = [base64.b64decode(frame, validate=True) for frame in answer["frames"]]
    except (confined.BudgetSpent, confined.Refused, KeyError, TypeError, ValueError) as exc:
        why = answer.get("error") if isinstance(answer, dict) else exc
        logger.warning("screening frames not decoded (%s): %s", type(exc).__name__, str(why)[:300])
        return None
    return frames[:most]


def screening_moments(path: Path, count: int) -> list[float]:
    """Where in each of the count - 1 stretches of a video its screened frames are taken (fractions
    in [0, 1)): drawn from the file and this server's secret (an HMAC of its size and its first and
    last 64 KiB), so that the same file is always screened at the same moments, and nobody without
    the secret can know them and show what is refused only between them."""
    size = path.stat().st_size
    with path.open("rb") as file:
        head = file.read(SCREEN_MOMENT_SAMPLE)
        file.seek(max(0, size - SCREEN_MOMENT_SAMPLE))
        tail = file.read(SCREEN_MOMENT_SAMPLE)
    digest = hmac.new(settings.SECRET_KEY.encode(), b"screening-moments:%d:" % size + head + tail,
                      hashlib.sha256).digest()
    while len(digest) < 2 * max(0, count - 1):
        digest += hashlib.sha256(digest).digest()
    return [int.from_bytes(digest[2 * i:2 * i + 2], "big") / 65536 for i in range(max(0, count - 1))]


def screening_frames_spread(path: Path, *, count: int, duration_ms: int | None = None) -> list[bytes] | None:
    """`count` frames of a picture or video for the image screener
    (media.probing.facts.screen_frames_spread): its first frame, then one at a moment in each of
    count - 1 equal stretches of its length (`screening_moments`), decoded in a confined child with
    the probe's sandbox and limits, each frame whole and, when it is not square, its windows (as
    `screening_frames`). Whatever shows for two stretches' length or longer is seen. `duration_ms`:
    the length the probe measured, when known. None when they cannot be decoded within those limits."""
    return _screened_frames("screen_frames_spread", path, count, moments=screening_moments(path, count),
                            duration_s=None if duration_ms is None else duration_ms / 1000)

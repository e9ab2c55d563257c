"""Every write of media files and voices, and the storage work that goes with it.

The life of an upload (issue 4):

1. ``media_create_upload``: validate the declared type, name and size, insert the MediaFile
   (``uploading``) and sign a PUT URL bound to its key, content type and size.
2. The client PUTs the bytes straight to storage (S3/R2, or the local backend's view).
3. ``media_confirm_upload``: the object must exist with the declared size; one conditional
   UPDATE moves ``uploading`` -> ``processing`` and only the caller whose UPDATE matched
   enqueues the probe, after commit. Confirming again changes nothing and enqueues nothing.
4. ``media_probe`` (Celery task ``media.probe``, at-least-once): re-reads the row, probes the
   object with PyAV, writes a thumbnail, and finishes with a conditional UPDATE from
   ``processing`` to ``ready`` or ``rejected``. A redelivered run repeats the same idempotent
   work (same thumbnail key) and its UPDATE matches nothing.

Storage objects are deleted only after the deleting transaction commits (``media.delete_objects``
retries until the store answers), so a rolled-back delete never loses a file.
"""

from __future__ import annotations

import io
import json
import logging
import re
import tempfile
import unicodedata
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path, PurePosixPath
from typing import Any, Protocol

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from rest_framework import status as http

from auteur.errors import ApplicationError
from auteur.users.models import User
from media.hooks import media_in_use_reasons
from media.models import MediaFile, MediaStatus, MediaType, VoiceClone
from media.probing import ProbeResult, make_thumbnail, probe_file
from media.selectors import MediaNotFound
from media.signals import media_ready
from media.storage import PresignedDownload, PresignedUpload, get_storage

logger = logging.getLogger(__name__)

DEFAULT_MAX_UPLOAD_BYTES = 5 * 1024**3
VOICE_MIN_MS = 3_000
VOICE_MAX_MS = 5 * 60_000
MAX_FILENAME_LENGTH = 255
SAFE_STEM_LENGTH = 80
MAX_DURATION_MS = 2**31 - 1  # PositiveIntegerField; 24 days of media
# A redelivered store step derives the same id, hence the same key: nothing is uploaded twice.
OUTPUT_ID_NAMESPACE = uuid.UUID("6f1d0a52-5c43-4c0e-9d3b-3f1f4e0f8a11")

# Declared content type -> (media type, filename extensions that may carry it).
ALLOWED_CONTENT_TYPES: dict[str, tuple[str, tuple[str, ...]]] = {
    "video/mp4": (MediaType.VIDEO, ("mp4", "m4v")),
    "video/quicktime": (MediaType.VIDEO, ("mov", "qt")),
    "video/webm": (MediaType.VIDEO, ("webm",)),
    "video/x-matroska": (MediaType.VIDEO, ("mkv",)),
    "audio/wav": (MediaType.AUDIO, ("wav",)),
    "audio/x-wav": (MediaType.AUDIO, ("wav",)),
    "audio/wave": (MediaType.AUDIO, ("wav",)),
    "audio/mpeg": (MediaType.AUDIO, ("mp3",)),
    "audio/mp4": (MediaType.AUDIO, ("m4a", "mp4")),
    "audio/x-m4a": (MediaType.AUDIO, ("m4a",)),
    "audio/aac": (MediaType.AUDIO, ("aac",)),
    "audio/flac": (MediaType.AUDIO, ("flac",)),
    "audio/x-flac": (MediaType.AUDIO, ("flac",)),
    "audio/ogg": (MediaType.AUDIO, ("ogg", "oga", "opus")),
    "image/png": (MediaType.IMAGE, ("png",)),
    "image/jpeg": (MediaType.IMAGE, ("jpg", "jpeg")),
    "image/webp": (MediaType.IMAGE, ("webp",)),
}


class UnsupportedMediaType(ApplicationError):
    status_code = http.HTTP_415_UNSUPPORTED_MEDIA_TYPE
    code = "unsupported_media_type"


class FileTooLarge(ApplicationError):
    status_code = http.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    code = "file_too_large"


class MediaValidationError(ApplicationError):
    status_code = http.HTTP_422_UNPROCESSABLE_ENTITY
    code = "invalid_media"


class MediaInUse(ApplicationError):
    status_code = http.HTTP_409_CONFLICT
    code = "media_in_use"


class InvalidVoiceSample(ApplicationError):
    status_code = http.HTTP_422_UNPROCESSABLE_ENTITY
    code = "invalid_voice_sample"


class ProjectLike(Protocol):
    """A project, as far as media needs one (media imports no other app)."""

    @property
    def pk(self) -> Any: ...

    @property
    def user_id(self) -> Any: ...


@dataclass(frozen=True)
class MediaUrls:
    download_url: str | None
    thumbnail_url: str | None
    expires_at: datetime | None


# ----------------------------------------------------------------------------- helpers


def max_upload_bytes() -> int:
    return int(getattr(settings, "AUTEUR_MAX_UPLOAD_BYTES", DEFAULT_MAX_UPLOAD_BYTES))


def normalize_content_type(content_type: str) -> str:
    """``Video/MP4; codecs=avc1`` -> ``video/mp4``: parameters are not part of the decision."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def filename_extension(filename: str) -> str:
    name = PurePosixPath(filename.replace("\\", "/")).name
    return name.rsplit(".", 1)[1].lower() if "." in name.strip(".") else ""


def safe_filename(filename: str, *, fallback_ext: str = "bin") -> str:
    """A filename fit for a storage key, whatever the client sent.

    Only the last path component survives; accents are folded to ASCII; anything outside
    ``[A-Za-z0-9._-]`` becomes ``_`` (runs collapsed); no leading dot or dash; the stem is capped.
    """
    name = PurePosixPath(filename.replace("\\", "/")).name
    ext = filename_extension(name)
    stem = name[: -(len(ext) + 1)] if ext else name
    stem = unicodedata.normalize("NFKD", stem).encode("ascii", "ignore").decode("ascii")
    stem = "".join(c if (c.isalnum() or c in "._-") else "_" for c in stem)
    stem = re.sub(r"_{2,}", "_", stem)
    stem = stem.strip("._- ")[:SAFE_STEM_LENGTH].strip("._-") or "file"
    ext = "".join(c for c in ext.lower() if c.isascii() and c.isalnum())[:10] or fallback_ext
    return f"{stem}.{ext}"


def media_prefix(*, project_id: uuid.UUID | str, media_id: uuid.UUID | str) -> str:
    return f"projects/{project_id}/media/{media_id}"


def media_key(*, project_id: uuid.UUID | str, media_id: uuid.UUID | str, filename: str) -> str:
    return f"{media_prefix(project_id=project_id, media_id=media_id)}/{safe_filename(filename)}"


def thumbnail_key_for(media: MediaFile) -> str:
    # A sanitized filename has no "/", so this can never be the key of an upload.
    return f"{media_prefix(project_id=media.project_id, media_id=media.pk)}/thumbnails/thumbnail.jpg"


def _object_keys(media: MediaFile) -> list[str]:
    return [k for k in (media.storage_key, media.thumbnail_key, media.caption_key) if k]


def _schedule_object_deletion(keys: list[str], prefixes: list[str]) -> None:
    """Delete after commit: a rolled-back transaction must not have lost its objects."""
    from media.tasks import delete_objects

    if keys or prefixes:
        transaction.on_commit(lambda: delete_objects.delay(keys, prefixes))


def _send_media_ready(media_id: uuid.UUID) -> None:
    for receiver, result in media_ready.send_robust(sender=MediaFile, media_id=media_id):
        if isinstance(result, Exception):
            logger.error(
                "media_ready receiver %s failed: %s", getattr(receiver, "__qualname__", receiver), type(result).__name__
            )


# ----------------------------------------------------------------------------- uploads


def validate_upload(*, filename: str, content_type: str, size_bytes: int) -> tuple[str, str]:
    """(normalized content type, media type), or the error a client should see.

    Order matters to the client: first whether we take this kind of file at all (415), then
    its size (422/413), then whether the name agrees with the type (422).
    """
    normalized = normalize_content_type(content_type)
    if normalized not in ALLOWED_CONTENT_TYPES:
        raise UnsupportedMediaType(
            f"{content_type!r} is not a supported media type.",
            details={"content_type": content_type, "allowed": sorted(ALLOWED_CONTENT_TYPES)},
        )
    media_type, extensions = ALLOWED_CONTENT_TYPES[normalized]
    if isinstance(size_bytes, bool) or not isinstance(size_bytes, int) or size_bytes <= 0:
        raise MediaValidationError(
            "size_bytes must be a positive number of bytes.", code="invalid_size", details={"field": "size_bytes"}
        )
    limit = max_upload_bytes()
    if size_bytes > limit:
        raise FileTooLarge(
            f"The file is larger than the {limit}-byte limit.", details={"size_bytes": size_bytes, "max_bytes": limit}
        )
    if not filename or len(filename) > MAX_FILENAME_LENGTH or any(unicodedata.category(c)[0] == "C" for c in filename):
        raise MediaValidationError(
            f"filename must be 1 to {MAX_FILENAME_LENGTH} printable characters.",
            code="invalid_filename",
            details={"field": "filename"},
        )
    ext = filename_extension(filename)
    if ext not in extensions:
        raise MediaValidationError(
            f"A {normalized} file must be named *.{' or *.'.join(extensions)}.",
            code="extension_mismatch",
            details={"field": "filename", "content_type": normalized, "extensions": list(extensions)},
        )
    return normalized, str(media_type)


def media_create_upload(
    *, user: User, project: ProjectLike, filename: str, content_type: str, size_bytes: int
) -> tuple[MediaFile, PresignedUpload]:
    """A new ``uploading`` MediaFile and the signed PUT that fills it."""
    if project.user_id != user.pk:
        raise MediaNotFound("No such project.", code="project_not_found")
    normalized, media_type = validate_upload(filename=filename, content_type=content_type, size_bytes=size_bytes)
    media_id = uuid.uuid4()
    key = media_key(project_id=project.pk, media_id=media_id, filename=filename)
    # Sign first: a storage misconfiguration fails the request before a row exists.
    ticket = get_storage().presign_put(key, normalized, size_bytes)
    media = MediaFile.objects.create(
        id=media_id,
        project_id=project.pk,
        user=user,
        name=filename.strip(),
        type=media_type,
        mime_type=normalized,
        status=MediaStatus.UPLOADING,
        file_size_bytes=size_bytes,
        storage_key=key,
    )
    logger.info("media %s: upload URL issued (%s, %d bytes)", media.pk, normalized, size_bytes)
    return media, ticket


def media_confirm_upload(*, media: MediaFile) -> MediaFile:
    """``uploading`` -> ``processing`` once the object is there, whole; then probe it.

    Harmless to repeat: a file already past ``uploading`` is returned as it is.
    """
    if media.status != MediaStatus.UPLOADING:
        return media
    # Outside any transaction: a storage round trip must not hold database locks.
    size = get_storage().head(media.storage_key)
    if size is None:
        raise MediaValidationError(
            "Nothing was uploaded yet: PUT the file to the upload URL first.", code="upload_incomplete"
        )
    if size != media.file_size_bytes:
        raise MediaValidationError(
            f"The uploaded object has {size} bytes; {media.file_size_bytes} were declared.",
            code="size_mismatch",
            details={"declared_bytes": media.file_size_bytes, "uploaded_bytes": size},
        )
    from media.tasks import probe

    with transaction.atomic():
        claimed = MediaFile.objects.filter(pk=media.pk, status=MediaStatus.UPLOADING).update(
            status=MediaStatus.PROCESSING, updated_at=timezone.now()
        )
        if claimed:
            media_id = str(media.pk)
            transaction.on_commit(lambda: probe.delay(media_id))
    media.refresh_from_db()
    if claimed:
        logger.info("media %s: confirmed, probing", media.pk)
    return media


def _finish_probe(media: MediaFile, result: ProbeResult, thumbnail_key: str) -> bool:
    """The one conditional UPDATE that ends processing; True if this run made it."""
    with transaction.atomic():
        pending = MediaFile.objects.filter(pk=media.pk, status=MediaStatus.PROCESSING)
        if result.ok:
            done = pending.update(
                status=MediaStatus.READY,
                duration_ms=min(result.duration_ms, MAX_DURATION_MS) if result.duration_ms is not None else None,
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
        with storage.local_path(media.storage_key) as path, tempfile.TemporaryDirectory(prefix="auteur-thumb-") as tmp:
            result = probe_file(path, media.type)
            if result.ok and media.type in (MediaType.VIDEO, MediaType.IMAGE):
                thumb = Path(tmp) / "thumbnail.jpg"
                if make_thumbnail(path, thumb, media_type=media.type, duration_ms=result.duration_ms):
                    thumbnail_key = thumbnail_key_for(media)
                    with thumb.open("rb") as fh:
                        storage.save(thumbnail_key, fh, "image/jpeg")
    except FileNotFoundError:
        result = ProbeResult(ok=False, rejection_reason="the uploaded object is missing from storage")

    if _finish_probe(media, result, thumbnail_key):
        logger.info("media %s: %s", media.pk, "ready" if result.ok else f"rejected ({result.rejection_reason})")
    elif thumbnail_key and not MediaFile.objects.filter(pk=media.pk).exists():
        # Deleted while we probed: its object clean-up may have run before our thumbnail landed.
        storage.delete(thumbnail_key)
    return MediaFile.objects.filter(pk=media.pk).first()


def media_urls(*, media: MediaFile) -> MediaUrls:
    """Signed download (and thumbnail) URLs, valid AUTEUR_SIGNED_URL_TTL_SECONDS (15 minutes).

    None while the file is still ``uploading``: there may be nothing to download yet.
    """
    if media.status == MediaStatus.UPLOADING:
        return MediaUrls(download_url=None, thumbnail_url=None, expires_at=None)
    storage = get_storage()
    download: PresignedDownload = storage.presign_get(media.storage_key, filename=media.name)
    thumbnail = storage.presign_get(media.thumbnail_key) if media.thumbnail_key else None
    return MediaUrls(
        download_url=download.url,
        thumbnail_url=thumbnail.url if thumbnail else None,
        expires_at=download.expires_at,
    )


def media_download_url(*, media: MediaFile) -> PresignedDownload | None:
    if media.status == MediaStatus.UPLOADING:
        return None
    return get_storage().presign_get(media.storage_key, filename=media.name)


# ----------------------------------------------------------------------------- deletion


def media_delete(*, media: MediaFile) -> None:
    """Delete the record now and its objects after commit; 409 while anything uses it."""
    with transaction.atomic():
        # The lock makes the in-use checks and the delete one step against a job submission
        # that locks the same row (media/hooks.py).
        locked = MediaFile.objects.select_for_update().filter(pk=media.pk).first()
        if locked is None:
            return  # already gone: deleting twice is not an error for the caller
        reasons = media_in_use_reasons(locked)
        if reasons:
            raise MediaInUse(
                "This media file is in use and cannot be deleted now.", details={"reasons": reasons}
            )
        keys = _object_keys(locked)
        prefix = media_prefix(project_id=locked.project_id, media_id=locked.pk)
        locked.delete()
        _schedule_object_deletion(keys, [prefix])
    logger.info("media %s: deleted", media.pk)


def media_delete_project_objects(*, project_id: uuid.UUID | str) -> list[str]:
    """For project deletion: schedule removal of every object of the project, after commit.

    Call it inside the transaction that deletes the project, before the delete (the media rows
    go with the project by cascade). The whole ``projects/<id>/`` prefix is swept too, which
    catches objects no row names (an upload never confirmed, a thumbnail of a racing probe).
    """
    keys: list[str] = []
    rows = MediaFile.objects.filter(project_id=project_id).values_list("storage_key", "thumbnail_key", "caption_key")
    for row in rows:
        keys.extend(k for k in row if k)
    _schedule_object_deletion(keys, [f"projects/{project_id}"])
    return keys


def media_delete_objects(*, keys: Iterable[str], prefixes: Iterable[str] = ()) -> int:
    """Remove objects (the body of the ``media.delete_objects`` task); absent ones are fine."""
    storage = get_storage()
    removed = 0
    for key in keys:
        storage.delete(key)
        removed += 1
    for prefix in prefixes:
        removed += storage.delete_prefix(prefix)
    return removed


def media_sweep(*, now: datetime | None = None) -> dict[str, int]:
    """Housekeeping, run by beat (``media.sweep``): no file stays non-terminal forever.

    * ``uploading`` for longer than AUTEUR_MEDIA_STALE_UPLOAD_SECONDS (1 day): the client never
      confirmed; the record and whatever was uploaded are removed.
    * ``processing`` for longer than AUTEUR_MEDIA_PROBE_RETRY_SECONDS (30 min, longer than a
      probe may run): the probe message was lost or its worker died; it is enqueued again
      (idempotent). Past AUTEUR_MEDIA_PROBE_DEADLINE_SECONDS (2 h) the file is rejected.
    """
    from media.tasks import probe

    now = now or timezone.now()
    stale_after = timedelta(seconds=getattr(settings, "AUTEUR_MEDIA_STALE_UPLOAD_SECONDS", 24 * 3600))
    retry_after = timedelta(seconds=getattr(settings, "AUTEUR_MEDIA_PROBE_RETRY_SECONDS", 30 * 60))
    deadline = timedelta(seconds=getattr(settings, "AUTEUR_MEDIA_PROBE_DEADLINE_SECONDS", 2 * 3600))
    counts = {"expired_uploads": 0, "requeued": 0, "timed_out": 0}

    stale = MediaFile.objects.filter(status=MediaStatus.UPLOADING, created_at__lt=now - stale_after)
    for media in stale.order_by("created_at")[:500]:
        with transaction.atomic():
            if MediaFile.objects.filter(pk=media.pk, status=MediaStatus.UPLOADING).delete()[0]:
                _schedule_object_deletion(
                    _object_keys(media), [media_prefix(project_id=media.project_id, media_id=media.pk)]
                )
                counts["expired_uploads"] += 1

    counts["timed_out"] = MediaFile.objects.filter(
        status=MediaStatus.PROCESSING, updated_at__lt=now - deadline
    ).update(
        status=MediaStatus.REJECTED,
        rejection_reason="processing did not finish in time; upload the file again",
        updated_at=now,
    )
    stuck = MediaFile.objects.filter(status=MediaStatus.PROCESSING, updated_at__lt=now - retry_after)
    for media_id in stuck.values_list("pk", flat=True)[:500]:
        probe.delay(str(media_id))
        counts["requeued"] += 1
    if any(counts.values()):
        logger.info("media sweep: %s", counts)
    return counts


# ----------------------------------------------------------------------------- job outputs


def media_create_output(
    *,
    project_id: uuid.UUID | str,
    user_id: uuid.UUID | str,
    job_id: uuid.UUID | str,
    name: str,
    type: str,
    mime_type: str,
    local_path: str | Path,
) -> MediaFile:
    """Store a file a job produced as a ``ready`` MediaFile of its project; idempotent.

    One output per (job, name), by a unique constraint; the id is derived from both, so a
    redelivered store step finds the row (and uploads nothing), or, racing another delivery,
    writes the same bytes to the same key and loses the insert harmlessly.
    """
    if type not in MediaType.values:
        raise ApplicationError(f"Unknown media type {type!r}.", code="invalid_media_type")
    existing = MediaFile.objects.filter(source_job_id=job_id, name=name).first()
    if existing is not None:
        return existing
    path = Path(local_path)
    result = probe_file(path, type)
    if not result.ok:
        raise ApplicationError(
            f"The job produced an unusable file: {result.rejection_reason}.",
            code="output_not_decodable",
            status_code=http.HTTP_422_UNPROCESSABLE_ENTITY,
        )
    media_id = uuid.uuid5(OUTPUT_ID_NAMESPACE, f"{job_id}/{name}")
    media = MediaFile(
        id=media_id,
        project_id=project_id,
        user_id=user_id,
        name=name[:MAX_FILENAME_LENGTH],
        type=type,
        mime_type=normalize_content_type(mime_type) or "application/octet-stream",
        status=MediaStatus.READY,
        file_size_bytes=path.stat().st_size,
        storage_key=media_key(project_id=project_id, media_id=media_id, filename=name),
        duration_ms=min(result.duration_ms, MAX_DURATION_MS) if result.duration_ms is not None else None,
        metadata=result.metadata,
        source_job_id=job_id,
    )
    storage = get_storage()
    with path.open("rb") as fh:
        storage.save(media.storage_key, fh, media.mime_type)
    if type in (MediaType.VIDEO, MediaType.IMAGE):
        with tempfile.TemporaryDirectory(prefix="auteur-thumb-") as tmp:
            thumb = Path(tmp) / "thumbnail.jpg"
            if make_thumbnail(path, thumb, media_type=type, duration_ms=result.duration_ms):
                media.thumbnail_key = thumbnail_key_for(media)
                with thumb.open("rb") as fh:
                    storage.save(media.thumbnail_key, fh, "image/jpeg")
    try:
        with transaction.atomic():
            media.save(force_insert=True)
    except IntegrityError:
        existing = MediaFile.objects.filter(source_job_id=job_id, name=name).first()
        if existing is not None:
            return existing
        # Not a duplicate (the project is gone, say): nothing refers to what we uploaded.
        media_delete_objects(keys=_object_keys(media))
        raise
    logger.info("media %s: stored output of job %s", media.pk, job_id, extra={"job_id": str(job_id)})
    return media


# ----------------------------------------------------------------------------- voices


def voice_create(*, user: User, media: MediaFile, name: str) -> VoiceClone:
    """Clone a voice from one of the user's ready audio files (3 s to 5 min).

    The sample is copied to the voice's own key, so deleting the media file or its project
    leaves the voice working.
    """
    if media.user_id != user.pk:
        raise MediaNotFound("No such media file.")
    if media.type != MediaType.AUDIO:
        raise InvalidVoiceSample("A voice sample must be an audio file.", details={"field": "media_id"})
    if media.status != MediaStatus.READY:
        raise InvalidVoiceSample(
            f"The sample must be processed first (it is {media.status}).", details={"field": "media_id"}
        )
    duration = media.duration_ms or 0
    if not VOICE_MIN_MS <= duration <= VOICE_MAX_MS:
        raise InvalidVoiceSample(
            f"A voice sample must last between {VOICE_MIN_MS // 1000} seconds and {VOICE_MAX_MS // 60_000} minutes; "
            f"this one lasts {duration / 1000:.1f} s.",
            details={"field": "media_id", "duration_ms": duration, "min_ms": VOICE_MIN_MS, "max_ms": VOICE_MAX_MS},
        )
    voice_id = uuid.uuid4()
    ext = PurePosixPath(media.storage_key).suffix.lower()
    sample_key = f"voices/{voice_id}/sample{ext}"
    storage = get_storage()
    # The copy first: a voice row never exists without its sample.
    storage.copy(media.storage_key, sample_key)
    try:
        with transaction.atomic():
            voice = VoiceClone.objects.create(
                id=voice_id,
                user=user,
                name=name.strip(),
                sample_key=sample_key,
                sample_duration_ms=duration,
                source_media=media,
            )
    except BaseException:
        storage.delete(sample_key)
        raise
    logger.info("voice %s: created from media %s", voice.pk, media.pk)
    return voice


def voice_delete(*, voice: VoiceClone) -> None:
    with transaction.atomic():
        deleted, _ = VoiceClone.objects.filter(pk=voice.pk).delete()
        if deleted:
            _schedule_object_deletion([voice.sample_key], [f"voices/{voice.pk}"])
    logger.info("voice %s: deleted", voice.pk)


def voice_sample_url(*, voice: VoiceClone) -> PresignedDownload:
    return get_storage().presign_get(voice.sample_key)



# ----------------------------------------------------------------------------- captions


def media_attach_caption(*, media_id: uuid.UUID | str, transcript: dict[str, object]) -> str:
    """Store a transcript as caption JSON beside its media file (CodeEndelea behaviour); idempotent.

    The key is fixed per media file, so a redelivered store step overwrites the same object.
    Returns the key.
    """
    media = MediaFile.objects.get(pk=media_id)
    key = f"{media_prefix(project_id=media.project_id, media_id=media.pk)}/captions.json"
    body = json.dumps(transcript, ensure_ascii=False).encode()
    get_storage().save(key, io.BytesIO(body), "application/json")
    MediaFile.objects.filter(pk=media.pk).exclude(caption_key=key).update(caption_key=key, updated_at=timezone.now())
    return key


def media_delete_job_outputs(*, job_id: uuid.UUID | str) -> int:
    """Remove what a job stored before it failed (its refund must not leave it the outputs).

    Rows now, objects after commit (the same retried task as every deletion). Returns the count.
    """
    outputs = list(MediaFile.objects.filter(source_job_id=job_id))
    keys = [key for media in outputs for key in _object_keys(media)]
    MediaFile.objects.filter(pk__in=[m.pk for m in outputs]).delete()
    if keys:
        _schedule_object_deletion(keys, [])
    return len(outputs)

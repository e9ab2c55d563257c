"""Uploads: what the API accepts, the signed PUT that fills a new file, and its confirmation.

The life of an upload:

1. ``media_create_upload``: validate the declared type, name and size, check the
   ``storage_bytes`` quota, insert the MediaFile (``uploading``) and sign a PUT URL bound to
   its upload key, content type and size. The size may be left undeclared: the URL then takes
   up to the maximum upload size, nothing is reserved against the quota (``file_size_bytes``
   stays 0, which no declared size can be), and the size is checked at confirm.
2. The client PUTs the bytes straight to storage (S3/R2, or the local backend's view, which
   refuses a PUT once the file is no longer ``uploading``).
3. ``media_confirm_upload``: the object must exist with the declared size (an undeclared one:
   at most the maximum, else the file and its object are deleted) and fit the quota;
   under the row's lock it is moved to its final key (``media.services.keys``) and the row
   becomes ``processing``; the probe (media/services/probing.py) is enqueued after commit.
   Confirming again changes nothing and enqueues nothing.
"""

from __future__ import annotations

import logging
import unicodedata
import uuid
from typing import Any, Protocol

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from auteur.quotas import QuotaExceeded, quota_check, quota_lock
from auteur.users.models import User
from media.errors import FileTooLarge, MediaNotFound, MediaValidationError, UnsupportedMediaType
from media.models import MediaFile, MediaStatus, MediaType
from media.selectors import media_bytes_used
from media.services.deletion import schedule_object_deletion, schedule_upload_key_deletion
from media.services.keys import (
    MAX_FILENAME_LENGTH,
    confirmed_key_for,
    filename_extension,
    media_prefix,
    normalize_content_type,
    object_keys,
    upload_key,
)
from media.storage import get_storage
from media.storage.base import ObjectStorage, PresignedUpload

logger = logging.getLogger(__name__)

DEFAULT_MAX_UPLOAD_BYTES = 5 * 1024**3

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


class ProjectLike(Protocol):
    """A project, as far as media needs one (media imports no other app)."""

    @property
    def pk(self) -> Any: ...

    @property
    def user_id(self) -> Any: ...


def max_upload_bytes() -> int:
    return int(getattr(settings, "AUTEUR_MAX_UPLOAD_BYTES", DEFAULT_MAX_UPLOAD_BYTES))


def _check_size(size_bytes: int) -> None:
    if isinstance(size_bytes, bool) or not isinstance(size_bytes, int) or size_bytes <= 0:
        raise MediaValidationError(
            "size_bytes must be a positive number of bytes.", code="invalid_size", details={"field": "size_bytes"}
        )
    limit = max_upload_bytes()
    if size_bytes > limit:
        raise FileTooLarge(
            f"The file is larger than the {limit}-byte limit.", details={"size_bytes": size_bytes, "max_bytes": limit}
        )


def validate_upload(*, filename: str, content_type: str, size_bytes: int | None) -> tuple[str, str]:
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
    if size_bytes is not None:
        _check_size(size_bytes)
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
    *, user: User, project: ProjectLike, filename: str, content_type: str, size_bytes: int | None = None
) -> tuple[MediaFile, PresignedUpload]:
    """A new ``uploading`` MediaFile and the signed PUT that fills it.

    The declared size is reserved against the ``storage_bytes`` quota from now on; an
    undeclared one (None) reserves nothing and is checked at confirm.
    """
    if project.user_id != user.pk:
        raise MediaNotFound("No such project.", code="project_not_found")
    normalized, media_type = validate_upload(filename=filename, content_type=content_type, size_bytes=size_bytes)
    media_id = uuid.uuid4()
    key = upload_key(project_id=project.pk, media_id=media_id, filename=filename)
    with transaction.atomic():
        quota_lock(user_id=user.pk)
        quota_check(name="storage_bytes", used=media_bytes_used(user_id=user.pk), adding=size_bytes or 0)
        # Sign before the insert: a storage misconfiguration fails the request before a row exists.
        ticket = get_storage().presign_put(
            key, normalized, size_bytes or max_upload_bytes(), exact=size_bytes is not None
        )
        media = MediaFile.objects.create(
            id=media_id,
            project_id=project.pk,
            user=user,
            name=filename.strip(),
            type=media_type,
            mime_type=normalized,
            status=MediaStatus.UPLOADING,
            file_size_bytes=size_bytes or 0,
            storage_key=key,
        )
    logger.info("media %s: upload URL issued (%s, %s bytes)", media.pk, normalized, size_bytes or "undeclared")
    return media, ticket


def media_confirm_upload(*, media: MediaFile) -> MediaFile:
    """``uploading`` -> ``processing`` once the object is there, whole; then probe it.

    The object is moved from its upload key to its final key first, so that the signed PUT URL,
    which stays valid until it expires, can no longer change what is probed, priced and
    processed. Over the ``storage_bytes`` quota (the limit was lowered, or job outputs filled
    it since the upload began) the file and its object are deleted and QuotaExceeded raised.
    Harmless to repeat: a file already past ``uploading`` is returned as it is.
    """
    if media.status != MediaStatus.UPLOADING:
        return media
    storage = get_storage()
    # Outside any transaction: a storage round trip must not hold database locks.
    size = storage.head(media.storage_key)
    if size is None:
        media.refresh_from_db()
        if media.status != MediaStatus.UPLOADING:
            return media  # a concurrent confirm moved it away meanwhile
        raise MediaValidationError(
            "Nothing was uploaded yet: PUT the file to the upload URL first.", code="upload_incomplete"
        )
    if not media.file_size_bytes:  # undeclared: whatever was PUT, up to the maximum
        _refuse_if_too_large(media, size)
    elif size != media.file_size_bytes:
        raise MediaValidationError(
            f"The uploaded object has {size} bytes; {media.file_size_bytes} were declared.",
            code="size_mismatch",
            details={"declared_bytes": media.file_size_bytes, "uploaded_bytes": size},
        )
    refused: QuotaExceeded | None = None
    with transaction.atomic():
        # The row lock makes one confirm do the move; a concurrent one waits, then finds it done.
        row = MediaFile.objects.select_for_update().filter(pk=media.pk, status=MediaStatus.UPLOADING).first()
        if row is not None:
            try:
                used = media_bytes_used(user_id=row.user_id, excluding=row.pk)
                quota_check(name="storage_bytes", used=used, adding=size)
            except QuotaExceeded as exc:
                refused = exc
                _discard(row)
            else:
                _seal(storage, row, size)
    if refused is not None:
        logger.info("media %s: confirm refused over the storage quota; deleted", media.pk)
        raise refused
    media.refresh_from_db()
    if row is not None:
        logger.info("media %s: confirmed, probing", media.pk)
    return media


def _refuse_if_too_large(media: MediaFile, size: int) -> None:
    """An upload of undeclared size must be a file of at most the maximum size; a refused one is
    deleted (its row and object), so it holds no storage and no quota."""
    try:
        _check_size(size)
    except (MediaValidationError, FileTooLarge):
        with transaction.atomic():
            row = MediaFile.objects.select_for_update().filter(pk=media.pk, status=MediaStatus.UPLOADING).first()
            if row is not None:
                _discard(row)
        logger.info("media %s: confirm refused (%d bytes uploaded, size undeclared); deleted", media.pk, size)
        raise


def _seal(storage: ObjectStorage, row: MediaFile, size: int) -> None:
    """Move the upload to its final key and start processing it (inside the confirm's transaction).

    The move happens under the row lock and before the UPDATE commits: if it fails, the file
    stays ``uploading`` under its upload key and confirming again retries it.
    """
    from media.tasks import probe

    upload = row.storage_key
    final = confirmed_key_for(row)
    storage.move(upload, final)
    MediaFile.objects.filter(pk=row.pk).update(
        status=MediaStatus.PROCESSING, storage_key=final, file_size_bytes=size, updated_at=timezone.now()
    )
    media_id = str(row.pk)
    transaction.on_commit(lambda: probe.delay(media_id))
    schedule_upload_key_deletion(upload)


def _discard(row: MediaFile) -> None:
    """Delete a refused upload: its row now, its objects after commit (nothing is left behind)."""
    keys, prefix = object_keys(row), media_prefix(project_id=row.project_id, media_id=row.pk)
    row.delete()  # (which sets row.pk to None)
    schedule_object_deletion(keys, [prefix])
    schedule_upload_key_deletion(row.storage_key)

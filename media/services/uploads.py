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
   under the row's lock it is moved to its final key (``media.services.keys``; on S3 only the
   version that was sized), sized again there (a PUT may have landed before the move: that size
   is checked the same way and is the one recorded) and the row becomes ``processing``; the probe
   (media/probing/service.py) is enqueued after commit. Confirming again changes nothing and
   enqueues nothing.

A declared size of at least AUTEUR_MULTIPART_THRESHOLD_BYTES is a multipart upload instead of
step 2: the file is PUT in parts of ``part_size`` bytes (the last one shorter), each part to a
URL of its own (``media_sign_parts``) bound to its number, its exact size and the SHA-256 of its
bytes, so a part that does not match is refused and a dropped connection costs one part. The
parts received so far are listed by ``media_upload_parts``, so a client that restarts resumes
from them. Confirm completes the upload, refusing it while a part is missing or of the wrong
size (422 ``upload_incomplete``, with the parts to send), then goes on as above. The parts go
straight to the file's final key: completing makes the object there at once, and no part URL
can change it after. Deleting the file, or the sweep of abandoned uploads, aborts the upload.
"""

from __future__ import annotations

import base64
import binascii
import logging
import math
import unicodedata
import uuid
from dataclasses import dataclass
from typing import Any, Protocol

from django.conf import settings
from django.db import transaction

from auteur.core.errors import ApplicationError
from auteur.core.publishing import send
from auteur.core.quotas import QuotaExceeded, quota_check, quota_lock
from auteur.users.models import User
from media import task_names
from media.errors import FileTooLarge, MediaNotFound, MediaValidationError, ObjectChanged, UnsupportedMediaType
from media.models import MediaFile, MediaStatus, MediaType
from media.selectors import media_bytes_used
from media.services.deletion import schedule_multipart_abort, schedule_object_deletion, schedule_upload_key_deletion
from media.services.keys import (
    MAX_FILENAME_LENGTH,
    confirmed_key_for,
    filename_extension,
    media_key,
    media_prefix,
    normalize_content_type,
    object_keys,
    upload_key,
)
from media.status import create_uploading, to_processing
from media.storage import get_storage
from media.storage.base import ObjectStat, ObjectStorage, PresignedUpload, UploadedPart

logger = logging.getLogger(__name__)

DEFAULT_MAX_UPLOAD_BYTES = 50 * 1024**3
# The largest object one PUT may write (S3's limit); above the multipart threshold a size must
# be declared, and the file comes in parts.
SINGLE_PUT_MAX_BYTES = 5 * 1024**3
MAX_PARTS = 10_000  # S3's limit
MAX_PARTS_PER_REQUEST = 100

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


def single_put_max_bytes() -> int:
    return min(max_upload_bytes(), SINGLE_PUT_MAX_BYTES)


@dataclass(frozen=True)
class MultipartUpload:
    """How a multipart upload is cut: every part `part_size` bytes but the last."""

    size: int
    part_size: int

    @classmethod
    def of(cls, size: int) -> MultipartUpload:
        """The configured part size, or a larger one (whole MiB) where that would need more than MAX_PARTS."""
        least = math.ceil(size / MAX_PARTS / 1024**2) * 1024**2
        return cls(size=size, part_size=max(int(settings.AUTEUR_MULTIPART_PART_BYTES), least))

    @property
    def part_count(self) -> int:
        return math.ceil(self.size / self.part_size)

    def part_bytes(self, number: int) -> int:
        """The exact size of part `number` (1 to part_count)."""
        return min(self.part_size, self.size - (number - 1) * self.part_size)


def multipart_of(media: MediaFile) -> MultipartUpload | None:
    if not media.upload_id or not media.part_size:
        return None
    return MultipartUpload(size=media.file_size_bytes, part_size=media.part_size)


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
    *, user: User, project: ProjectLike, filename: str, content_type: str, size_bytes: int | None = None,
    member_id: uuid.UUID | None = None,
) -> tuple[MediaFile, PresignedUpload | MultipartUpload]:
    """A new ``uploading`` MediaFile and the signed PUT that fills it, or, for a declared size of
    at least AUTEUR_MULTIPART_THRESHOLD_BYTES, its multipart upload (its parts are signed by
    ``media_sign_parts``).

    The declared size is reserved against the ``storage_bytes`` quota from now on; an
    undeclared one (None) reserves nothing and is checked at confirm.
    """
    if project.user_id != user.pk:
        raise MediaNotFound("No such project.", code="project_not_found")
    normalized, media_type = validate_upload(filename=filename, content_type=content_type, size_bytes=size_bytes)
    media_id = uuid.uuid4()
    storage = get_storage()
    if size_bytes is not None and size_bytes >= settings.AUTEUR_MULTIPART_THRESHOLD_BYTES:
        return _create_multipart(user, project, filename, normalized, media_type, size_bytes, media_id, storage,
                                 member_id)
    key = upload_key(project_id=project.pk, media_id=media_id, filename=filename)
    with transaction.atomic():
        quota_lock(user_id=user.pk)
        quota_check(name="storage_bytes", used=media_bytes_used(user_id=user.pk), adding=size_bytes or 0)
        # Sign before the insert: a storage misconfiguration fails the request before a row exists.
        ticket = storage.presign_put(key, normalized, size_bytes or single_put_max_bytes(),
                                     exact=size_bytes is not None)
        media = create_uploading(
            id=media_id,
            project_id=project.pk,
            user=user,
            name=filename.strip(),
            type=media_type,
            mime_type=normalized,
            file_size_bytes=size_bytes or 0,
            storage_key=key,
            member_id=member_id,
        )
    logger.info("media %s: upload URL issued (%s, %s bytes)", media.pk, normalized, size_bytes or "undeclared")
    return media, ticket


def _create_multipart(
    user: User, project: ProjectLike, filename: str, content_type: str, media_type: str, size: int,
    media_id: uuid.UUID, storage: ObjectStorage, member_id: uuid.UUID | None,
) -> tuple[MediaFile, MultipartUpload]:
    plan = MultipartUpload.of(size)
    # The parts go to the final key: completing makes the object there, after which no part URL
    # writes anything. Begun before the row (a storage misconfiguration fails the request first),
    # aborted if the row is refused.
    key = media_key(project_id=project.pk, media_id=media_id, filename=filename)
    upload_id = storage.multipart_start(key, content_type, plan.part_size)
    try:
        with transaction.atomic():
            quota_lock(user_id=user.pk)
            quota_check(name="storage_bytes", used=media_bytes_used(user_id=user.pk), adding=size)
            media = create_uploading(
                id=media_id, project_id=project.pk, user=user, name=filename.strip(), type=media_type,
                mime_type=content_type, file_size_bytes=size, storage_key=key,
                upload_id=upload_id, part_size=plan.part_size, member_id=member_id,
            )
    except BaseException:
        storage.multipart_abort(key, upload_id)
        raise
    logger.info("media %s: multipart upload begun (%s, %d bytes in %d parts)", media.pk, content_type, size,
                plan.part_count)
    return media, plan


def _open_multipart(media: MediaFile) -> MultipartUpload:
    """The file's multipart upload while it can take parts: 409 otherwise."""
    if media.status != MediaStatus.UPLOADING:
        raise MediaValidationError("This upload was already completed.", code="upload_closed")
    plan = multipart_of(media)
    if plan is None:
        raise MediaValidationError("This file is not a multipart upload: PUT it to its upload URL.",
                                   code="not_multipart")
    return plan


def _sha256_b64(value: str) -> bool:
    try:
        return len(base64.b64decode(value, validate=True)) == 32
    except (binascii.Error, ValueError):
        return False


def media_sign_parts(*, media: MediaFile, parts: list[tuple[int, str]]) -> list[tuple[int, PresignedUpload]]:
    """A signed PUT for each (part number, SHA-256 of its bytes in base64), bound to both and to
    the part's exact size. 422 `invalid_part` for a number out of range or given twice, 422
    `invalid_checksum` for a checksum that is not a SHA-256."""
    plan = _open_multipart(media)
    numbers = [number for number, _ in parts]
    bad = sorted({n for n in numbers if not 1 <= n <= plan.part_count} | {n for n in numbers if numbers.count(n) > 1})
    if bad:
        raise MediaValidationError(f"Part numbers run from 1 to {plan.part_count}, each once.", code="invalid_part",
                                   details={"parts": bad[:100], "part_count": plan.part_count})
    wrong = [number for number, sha256 in parts if not _sha256_b64(sha256)]
    if wrong:
        raise MediaValidationError("sha256 must be the base64 of the part's SHA-256 (32 bytes).",
                                   code="invalid_checksum", details={"parts": wrong[:100]})
    storage = get_storage()
    return [(number, storage.presign_part(media.storage_key, media.upload_id, number, plan.part_bytes(number),
                                          sha256)) for number, sha256 in parts]


def media_upload_parts(*, media: MediaFile) -> tuple[MultipartUpload, list[UploadedPart]]:
    """The upload's cut and the parts stored so far: what a resuming client need not send again."""
    plan = _open_multipart(media)
    try:
        return plan, get_storage().multipart_parts(media.storage_key, media.upload_id)
    except FileNotFoundError:
        raise MediaValidationError("This upload was already completed.", code="upload_closed") from None


def _complete_multipart(storage: ObjectStorage, media: MediaFile, plan: MultipartUpload) -> None:
    """Make the object from its parts, every one present and of its size; 422 otherwise."""
    try:
        stored = {part.number: part for part in storage.multipart_parts(media.storage_key, media.upload_id)}
    except FileNotFoundError:
        return  # completed by a concurrent confirm (the object is there), or aborted (it is not)
    missing = [n for n in range(1, plan.part_count + 1) if n not in stored]
    wrong = [n for n, part in sorted(stored.items()) if n <= plan.part_count and part.size != plan.part_bytes(n)]
    if missing or wrong:
        raise MediaValidationError(
            f"The upload is missing {len(missing)} of its {plan.part_count} parts"
            + (f" and {len(wrong)} are not their size" if wrong else "") + ": send them, then confirm again.",
            code="upload_incomplete",
            details={"part_count": plan.part_count, "missing_parts": missing[:1000], "wrong_size_parts": wrong[:1000]},
        )
    try:
        storage.multipart_complete(media.storage_key, media.upload_id,
                                   [stored[n] for n in range(1, plan.part_count + 1)])
    except FileNotFoundError:
        return


def media_confirm_upload(*, media: MediaFile) -> MediaFile:
    """``uploading`` -> ``processing`` once the object is there, whole; then probe it.

    The object is moved from its upload key to its final key first, so that the signed PUT URL,
    which stays valid until it expires, can no longer change what is probed, priced and
    processed. Over the ``storage_bytes`` quota (the limit was lowered, or job outputs filled
    it since the upload began) the file and its object are deleted and QuotaExceeded raised.
    Harmless to repeat: a file already past ``uploading`` is returned as it is.

    A PUT through the URL may still land between the size check and the move. On S3 the move
    copies only the version that was sized (its ETag): 409 ``upload_changed`` otherwise, nothing
    moved, and confirming again sizes the new object. Whatever the store, the moved object is
    sized again under the row lock, and that size is what the row records and the quota counts,
    after the same checks (a size now refused deletes the file and its objects).
    """
    if media.status != MediaStatus.UPLOADING:
        return media
    storage = get_storage()
    # Outside any transaction: a storage round trip must not hold database locks.
    plan = multipart_of(media)
    if plan is not None:
        _complete_multipart(storage, media, plan)
    uploaded = storage.stat(media.storage_key)
    if uploaded is None:
        media.refresh_from_db()
        if media.status != MediaStatus.UPLOADING:
            return media  # a concurrent confirm moved it away meanwhile
        raise MediaValidationError(
            "Nothing was uploaded yet: PUT the file to the upload URL first.", code="upload_incomplete"
        )
    if not media.file_size_bytes:  # undeclared: whatever was PUT, up to the maximum
        _refuse_if_too_large(media, uploaded.size)
    else:
        _check_declared(media, uploaded.size)
    refused: ApplicationError | None = None
    try:
        with transaction.atomic():
            # The row lock makes one confirm do the move; a concurrent one waits, then finds it done.
            row = MediaFile.objects.select_for_update().filter(pk=media.pk, status=MediaStatus.UPLOADING).first()
            if row is not None:
                try:
                    _check_quota(row, uploaded.size)
                    _seal(storage, row, uploaded)
                except (QuotaExceeded, FileTooLarge, MediaValidationError) as exc:
                    refused = exc
                    _discard(row)
    except ObjectChanged:
        # (Rolled back: the file is still `uploading`, its object where the URL put it.)
        logger.info("media %s: confirm refused, the upload changed after it was sized", media.pk)
        raise MediaValidationError("The file was uploaded again while it was being confirmed: confirm again.",
                                   code="upload_changed") from None
    if refused is not None:
        logger.info("media %s: confirm refused (%s); deleted", media.pk, refused.code)
        raise refused
    media.refresh_from_db()
    if row is not None:
        logger.info("media %s: confirmed, probing", media.pk)
    return media


def _check_declared(media: MediaFile, size: int) -> None:
    if size != media.file_size_bytes:
        raise MediaValidationError(
            f"The uploaded object has {size} bytes; {media.file_size_bytes} were declared.",
            code="size_mismatch",
            details={"declared_bytes": media.file_size_bytes, "uploaded_bytes": size},
        )


def _check_quota(row: MediaFile, size: int) -> None:
    quota_check(name="storage_bytes", used=media_bytes_used(user_id=row.user_id, excluding=row.pk), adding=size)


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


def _seal(storage: ObjectStorage, row: MediaFile, uploaded: ObjectStat) -> None:
    """Move the upload to its final key and start processing it (inside the confirm's transaction).

    The move happens under the row lock and before the UPDATE commits: if it fails, the file
    stays ``uploading`` under its upload key and confirming again retries it.
    """
    upload = row.storage_key
    final = confirmed_key_for(row)
    size = uploaded.size
    if not row.upload_id:  # (a multipart upload was made at its final key, which no URL writes)
        # Only the version that was sized, where the store tags versions (S3's ETag: ObjectChanged
        # otherwise); the local store's rename moves whatever is there now.
        storage.move(upload, final, if_etag=uploaded.etag)
        # What lies at the final key now, which no URL can change, is what the row and the quota
        # count: a PUT may have landed between the size check and the move.
        moved = storage.head(final)
        if moved is None:
            raise MediaValidationError("The uploaded object is gone: upload the file again.",
                                       code="upload_incomplete")
        if moved != size:
            if row.file_size_bytes:
                _check_declared(row, moved)
            else:
                _check_size(moved)
            _check_quota(row, moved)
            logger.info("media %s: the upload changed from %d to %d bytes before its move", row.pk, size, moved)
            size = moved
    to_processing(row.pk, storage_key=final, file_size_bytes=size, upload_id="")
    media_id = str(row.pk)
    # A probe not sent (the broker out of reach) is sent again by the media sweep.
    transaction.on_commit(lambda: send(task_names.PROBE, (media_id,), what=f"probe of media {media_id}"))
    if not row.upload_id:
        schedule_upload_key_deletion(upload)


def _discard(row: MediaFile) -> None:
    """Delete a refused upload: its row now, its objects after commit (nothing is left behind)."""
    keys, prefix = object_keys(row), media_prefix(project_id=row.project_id, media_id=row.pk)
    schedule_multipart_abort(row)
    row.delete()  # (which sets row.pk to None)
    schedule_object_deletion(keys, [prefix])
    schedule_upload_key_deletion(row.storage_key)

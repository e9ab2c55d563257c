"""Deleting media files and their objects (the sweep, media/services/sweep.py, ends abandoned
uploads and probes).

Storage objects are deleted only after the deleting transaction commits (``media.delete_objects``
retries until the store answers), so a rolled-back delete never loses a file. The media tasks
(media/tasks.py) sit above these services: they are sent here by name. A published file's public
copies go with it: a key or folder under ``pub/`` is deleted from the public store.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable
from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from auteur.core.publishing import send
from media import task_names
from media.errors import MediaInUse
from media.hooks import media_in_use_reasons
from media.models import MediaFile, MediaStatus, PendingObjectDeletion
from media.services.keys import is_public_key, media_prefix, object_keys, public_folder, public_folders
from media.storage import get_public_storage, get_storage
from media.storage.base import ObjectStorage, url_expiry

logger = logging.getLogger(__name__)

# Past an upload URL's expiry, before its upload key is deleted (API and worker clocks differ).
UPLOAD_KEY_GRACE_SECONDS = 60


def schedule_object_deletion(keys: list[str], prefixes: list[str]) -> None:
    """Delete after commit: a rolled-back transaction must not have lost its objects."""
    if keys or prefixes:
        transaction.on_commit(lambda: send(task_names.DELETE_OBJECTS, (keys, prefixes), what="a deletion of objects"))


# A publication's copy may still be running when its file goes, and write after the deletion (its
# worker may then die before it deletes what it wrote): its folder is deleted again once any copy
# must have ended (the copy's hard time limit is 1,560 s).
LATE_PUBLIC_DELETION_SECONDS = 1800


def schedule_public_deletion(rows: Iterable[MediaFile]) -> list[str]:
    """The public folders of deleted rows (published, or a publication in progress), to delete after
    commit; a publication in progress is also deleted again later, by a row the media sweep reads."""
    folders: list[str] = []
    due_at = timezone.now() + timedelta(seconds=LATE_PUBLIC_DELETION_SECONDS)
    for media in rows:
        folders.extend(public_folders(media))
        if media.publishing_key:
            PendingObjectDeletion.objects.create(key=public_folder(media.publishing_key) + PREFIX_MARK, due_at=due_at)
    return folders


def schedule_upload_key_deletion(key: str) -> None:
    """Once the upload URL has expired, delete what a PUT through it wrote under the upload key.

    S3 cannot revoke a presigned URL, so a PUT may still land after confirm or delete; nothing
    reads that key any more, and the deletion bounds what it costs. A row in the caller's
    transaction, swept by beat, rather than a message held for the URL's whole lifetime."""
    due_at = timezone.now() + timedelta(seconds=url_expiry(None)[0] + UPLOAD_KEY_GRACE_SECONDS)
    PendingObjectDeletion.objects.create(key=key, due_at=due_at)


def schedule_multipart_abort(media: MediaFile) -> None:
    """After commit, abort the file's multipart upload if one is in progress: on S3 its parts are no
    objects, which no deletion of keys or prefixes reaches. A failure is logged; the bucket's
    AbortIncompleteMultipartUpload lifecycle rule is the backstop."""
    if not media.upload_id or media.status != MediaStatus.UPLOADING:
        return
    key, upload_id, media_id = media.storage_key, media.upload_id, media.pk

    def abort() -> None:
        try:
            get_storage().multipart_abort(key, upload_id)
        except Exception as exc:  # noqa: BLE001 - logged; the lifecycle rule ends it
            logger.warning("media %s: multipart upload not aborted: %s", media_id, type(exc).__name__)

    transaction.on_commit(abort)


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
        keys = object_keys(locked)
        prefixes = [media_prefix(project_id=locked.project_id, media_id=locked.pk), *schedule_public_deletion([locked])]
        locked.delete()
        schedule_object_deletion(keys, prefixes)
        schedule_multipart_abort(locked)
        if locked.status == MediaStatus.UPLOADING:
            schedule_upload_key_deletion(locked.storage_key)
    logger.info("media %s: deleted", media.pk)


def media_delete_project_objects(*, project_id: uuid.UUID | str) -> list[str]:
    """For project deletion: schedule removal of every object of the project, after commit.

    Call it inside the transaction that deletes the project, before the delete (the media rows
    go with the project by cascade). The whole ``projects/<id>/`` prefix is swept too, which
    catches objects no row names (an upload never confirmed, a thumbnail of a racing probe).
    """
    keys: list[str] = []
    # Locked: a publication that records itself now waits for the deletion, then finds its row
    # gone and deletes its copy; one recorded before is read here.
    rows = MediaFile.objects.select_for_update().filter(project_id=project_id).only(
        "storage_key", "thumbnail_key", "caption_key", "public_key", "publishing_key")
    for media in rows:
        keys.extend(object_keys(media))
    published = schedule_public_deletion(rows)
    schedule_object_deletion(keys, [f"projects/{project_id}", *published])
    return keys


def _store_of(key: str) -> ObjectStorage | None:
    """The store a key or prefix names: the public one for ``pub/...``, else the media storage."""
    if not is_public_key(key):
        return get_storage()
    public = get_public_storage()
    if public is None:
        # AUTEUR_PUBLIC_BUCKET_NAME was unset since: the copies are out of this server's reach.
        logger.warning("public objects not deleted (no public store configured): %s", key)
    return public


def media_delete_objects(*, keys: Iterable[str], prefixes: Iterable[str] = ()) -> int:
    """Remove objects (the body of the ``media.delete_objects`` task); absent ones are fine."""
    removed = 0
    for key in keys:
        storage = _store_of(key)
        if storage is not None:
            storage.delete(key)
            removed += 1
    for prefix in prefixes:
        storage = _store_of(prefix)
        if storage is not None:
            removed += storage.delete_prefix(prefix)
    return removed


# A pending deletion of a whole folder is its prefix with a trailing "/", which no object key has.
PREFIX_MARK = "/"


def media_defer_object_deletion(*, keys: Iterable[str], prefixes: Iterable[str] = ()) -> None:
    """Leave objects to beat's ``media.sweep`` (due now, tried at every sweep until the store
    answers): for a deletion whose own retries are spent, so its objects are not orphaned."""
    now = timezone.now()
    rows = [*keys, *(prefix.rstrip("/") + PREFIX_MARK for prefix in prefixes)]
    PendingObjectDeletion.objects.bulk_create(PendingObjectDeletion(key=key, due_at=now) for key in rows)

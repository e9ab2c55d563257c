"""Publishing a media file: a public copy, served by a CDN from AUTEUR_CDN_BASE_URL, beside the
private object that stays behind signed URLs.

Publishing copies the file (and its thumbnail) into the public store (media.storage.
get_public_storage(): the public bucket, or the local backend's public folder) under
``pub/<random token>/<sanitized name>``: the URL shows nothing of the private key, which names the
project and the file, and cannot be guessed from another publication's. The copy is made with
``Cache-Control: public, max-age=AUTEUR_CDN_CACHE_MAX_AGE_SECONDS`` and the file's Content-Type
when it is plain media (anything else is served as binary: media.services.keys.public_content_type).

A publish request never copies: a copy of a large render takes minutes, and would hold an API
worker that long. Under the row's lock it records the key the copy will have (``publishing_key``)
and sends the ``media.publish`` task after commit; the request answers at once, the file
``publishing``. A user has at most AUTEUR_MEDIA_PUBLISHING_PER_USER publications in progress
(checked under the user's lock, so concurrent requests cannot pass it together). The task copies
with no lock held, then locks the row and records the publication if the file is still there,
still ready and still publishing under that key; otherwise it deletes its copy again, so a
publication that lost a race (an unpublish, a deletion) leaves nothing public. The task is
idempotent: a redelivered one finds the publication done, or copies again over its own key. The
media sweep sends it again for a publication still in progress after
AUTEUR_MEDIA_PUBLISH_RETRY_SECONDS, and gives the publication up after
AUTEUR_MEDIA_PUBLISH_DEADLINE_SECONDS.

Unpublishing and deleting the file delete the public copies after commit (media.delete_objects,
which sends a key under ``pub/`` to the public store), and end a publication in progress. A CDN's
edge caches may keep serving a copy until its max-age has passed, unless the CDN is told to purge
it: the store cannot reach them.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import quote

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.utils import timezone
from redis.exceptions import RedisError

from auteur.core.publishing import send
from auteur.core.quotas import quota_lock
from media import task_names
from media.errors import (
    MediaNotFound,
    MediaNotReady,
    PublicationEnding,
    PublishingUnavailable,
    TooManyPublications,
)
from media.models import MediaFile, MediaStatus
from media.services.deletion import schedule_object_deletion
from media.services.keys import (
    THUMBNAIL_CONTENT_TYPE,
    public_content_type,
    public_folder,
    public_folders,
    public_keys_for,
    public_thumbnail_key,
)
from media.storage import get_public_storage, get_storage
from media.storage.base import ObjectStorage

logger = logging.getLogger(__name__)

# How long one delivery holds the right to copy a publication: past its task's hard time limit.
COPY_LOCK_SECONDS = 1600


@dataclass(frozen=True)
class PublicUrls:
    publication: str
    public_url: str | None
    public_thumbnail_url: str | None
    published_at: datetime | None


def cache_control() -> str:
    return f"public, max-age={settings.AUTEUR_CDN_CACHE_MAX_AGE_SECONDS}"


def publishing_store() -> ObjectStorage:
    """The public store, when publishing is on (a CDN base URL and a store to put copies in)."""
    public = get_public_storage()
    if not settings.AUTEUR_CDN_BASE_URL or public is None:
        raise PublishingUnavailable
    return public


def public_url(key: str) -> str | None:
    """Where the CDN serves a public key; None for no key, or while publishing is off (no base)."""
    base = settings.AUTEUR_CDN_BASE_URL
    return f"{base}/{quote(key)}" if key and base else None


PUBLICATION_STATES = ("unpublished", "publishing", "published")


def publication_state(media: MediaFile) -> str:
    """``published``, ``publishing`` (its copy is being made) or ``unpublished``."""
    if media.public_key:
        return "published"
    return "publishing" if media.publishing_key and not media.publishing_canceled else "unpublished"


def media_public_urls(*, media: MediaFile) -> PublicUrls:
    return PublicUrls(
        publication=publication_state(media),
        public_url=public_url(media.public_key),
        public_thumbnail_url=public_url(media.public_thumbnail_key),
        published_at=media.published_at,
    )


def media_publish(*, media: MediaFile) -> MediaFile:
    """Start publishing a ready file (503 ``publishing_unavailable`` while publishing is off, 422
    ``media_not_ready`` before the file is ready, 429 ``too_many_publications`` past the user's
    limit of publications in progress). Idempotent: a file published or publishing is returned as
    it is. The copy is made by the ``media.publish`` task, sent after commit."""
    publishing_store()
    with transaction.atomic():
        quota_lock(user_id=media.user_id)  # the limit's count and this publication take turns
        locked = MediaFile.objects.select_for_update().filter(pk=media.pk).first()
        if locked is None:
            raise MediaNotFound("No such media file.")
        if locked.publishing_canceled:
            raise PublicationEnding("This file was unpublished while its copy was being made; publish it "
                                    "again once that copy has ended (seconds, or minutes for a large file).")
        if locked.public_key or locked.publishing_key:
            return locked
        if locked.status != MediaStatus.READY:
            raise MediaNotReady(f"Only a ready file can be published (status: {locked.status}).",
                                details={"status": locked.status})
        limit = settings.AUTEUR_MEDIA_PUBLISHING_PER_USER
        in_progress = MediaFile.objects.filter(user_id=locked.user_id).exclude(publishing_key="").count()
        if in_progress >= limit:
            raise TooManyPublications(
                f"{in_progress} of your files are being published; publish this one once one of them is done.",
                details={"limit": limit, "in_progress": in_progress})
        key, _ = public_keys_for(locked)
        locked.publishing_key, locked.publishing_since = key, timezone.now()
        locked.save(update_fields=["publishing_key", "publishing_since", "updated_at"])
        transaction.on_commit(lambda: send_publication(locked.pk, key))
    logger.info("media %s: publishing", media.pk)
    return locked


def send_publication(media_id: uuid.UUID, key: str, *, resend: bool = True) -> bool:
    return send(task_names.PUBLISH, (str(media_id), key), what=f"publication of media {media_id}", resend=resend)


def media_publication_copy(*, media_id: uuid.UUID | str, key: str) -> MediaFile | None:
    """The body of the ``media.publish`` task: copy the file (and its thumbnail) to ``key``, then
    record the publication if it is still the one in progress; else delete the copy. Returns the
    published row, or None when nothing was published. A StorageError propagates (the task retries
    it); a file whose object is gone is given up."""
    media = MediaFile.objects.filter(pk=media_id).first()
    if media is None or media.publishing_key != key:
        if media is None or media.public_key != key:  # done already by an earlier delivery, or ended
            _discard(key)
        return None
    if media.publishing_canceled:
        media_publication_abandon(media_id=media_id, key=key, why="unpublished")
        return None
    with _copying(key) as alone:
        if not alone:
            return None  # another delivery of this publication is copying: it records or ends it
        return _copy_and_record(media, key)


@contextlib.contextmanager
def _copying(key: str) -> Iterator[bool]:
    """Whether this delivery is the only one copying to ``key`` now (a sweep's resend may arrive
    while the first still copies); without Redis, each goes on (their copies are the same bytes)."""
    lock = f"publish-copy:{key}"
    try:
        alone = bool(cache.add(lock, 1, timeout=COPY_LOCK_SECONDS))
    except RedisError:
        alone, lock = True, ""
    try:
        yield alone
    finally:
        if alone and lock:
            with contextlib.suppress(RedisError):
                cache.delete(lock)


def _copy_and_record(media: MediaFile, key: str) -> MediaFile | None:
    media_id = media.pk
    thumbnail_key = public_thumbnail_key(key, media)
    storage, public = get_storage(), get_public_storage()
    if public is None:  # the public store was configured away since the request
        media_publication_abandon(media_id=media_id, key=key, why="no public store")
        return None
    try:
        storage.copy_public(public, media.storage_key, key, content_type=public_content_type(media.mime_type),
                            cache_control=cache_control())
        if thumbnail_key:
            storage.copy_public(public, media.thumbnail_key, thumbnail_key, content_type=THUMBNAIL_CONTENT_TYPE,
                                cache_control=cache_control())
    except FileNotFoundError:
        # A ready file's object is gone only once its row was deleted (its objects go after that commit).
        media_publication_abandon(media_id=media_id, key=key, why="its object is gone")
        return None

    with transaction.atomic():
        locked = MediaFile.objects.select_for_update().filter(pk=media_id).first()
        if locked is not None and locked.public_key == key:
            return None  # recorded meanwhile by another delivery of this publication: the copy is its
        ours = locked is not None and locked.publishing_key == key
        kept = ours and locked is not None and locked.status == MediaStatus.READY and not locked.publishing_canceled
        if locked is not None and ours:
            if kept:
                locked.public_key, locked.public_thumbnail_key = key, thumbnail_key
                locked.published_at = timezone.now()
            locked.publishing_key, locked.publishing_since, locked.publishing_canceled = "", None, False
            locked.save(update_fields=["public_key", "public_thumbnail_key", "published_at", "publishing_key",
                                       "publishing_since", "publishing_canceled", "updated_at"])
    if not kept:
        _discard(key)  # outside the transaction: a deletion scheduled in it would be dropped with a rollback
        return None
    logger.info("media %s: published", media_id)
    return locked


def media_publication_abandon(*, media_id: uuid.UUID | str, key: str, why: str) -> None:
    """End the publication in progress under ``key`` without publishing (the file stays unpublished)
    and delete whatever was copied for it."""
    with transaction.atomic():
        ended = MediaFile.objects.filter(pk=media_id, publishing_key=key).update(
            publishing_key="", publishing_since=None, publishing_canceled=False, updated_at=timezone.now())
    _discard(key)
    if ended:
        logger.warning("media %s: publication given up (%s)", media_id, why)


def media_unpublish(*, media: MediaFile) -> MediaFile:
    """Take a file's public copies down (the row now, the copies after commit), and cancel a
    publication in progress: its copy is deleted when it ends, and counts against the owner's
    publications in progress until then (so publishing and unpublishing in turn cannot run more
    copies at once than the limit). Unpublishing a file that is not published does nothing; it
    works whether publishing is on or off."""
    with transaction.atomic():
        locked = MediaFile.objects.select_for_update().filter(pk=media.pk).first()
        if locked is None:
            raise MediaNotFound("No such media file.")
        cancel = bool(locked.publishing_key) and not locked.publishing_canceled
        if not locked.public_key and not cancel:
            return locked
        folders = public_folders(locked)
        locked.public_key, locked.public_thumbnail_key, locked.published_at = "", "", None
        locked.publishing_canceled = locked.publishing_canceled or cancel
        locked.save(update_fields=["public_key", "public_thumbnail_key", "published_at", "publishing_canceled",
                                   "updated_at"])
        schedule_object_deletion([], folders)
    logger.info("media %s: unpublished", media.pk)
    return locked


def _discard(key: str) -> None:
    """Delete what a publication copied (its whole folder); at once when called outside a transaction."""
    schedule_object_deletion([], [public_folder(key)])

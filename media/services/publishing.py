"""Publishing a media file: a public copy, served by a CDN from AUTEUR_CDN_BASE_URL, beside the
private object that stays behind signed URLs.

Publishing copies the file (and its thumbnail) into the public store (media.storage.
get_public_storage(): the public bucket, or the local backend's public folder) under
``pub/<random token>/<sanitized name>``: the URL shows nothing of the private key, which names the
project and the file, and cannot be guessed from another publication's. The copy is made with
``Cache-Control: public, max-age=AUTEUR_CDN_CACHE_MAX_AGE_SECONDS`` and the file's Content-Type.

The copy is made before the row is locked (it may take seconds for a large render, and no lock is
held across it), then the row records it, if the file is still there, still ready and still
unpublished; otherwise the copy is deleted again, so a publication that lost a race leaves nothing
public. Publishing a published file returns it as it is: the same URL.

Unpublishing and deleting the file delete the public copies after commit (media.delete_objects,
which sends a key under ``pub/`` to the public store). A CDN's edge caches may keep serving a copy
until its max-age has passed, unless the CDN is told to purge it: the store cannot reach them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import quote

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from media.errors import MediaNotFound, MediaNotReady, PublishingUnavailable
from media.models import MediaFile, MediaStatus
from media.services.deletion import schedule_object_deletion
from media.services.keys import THUMBNAIL_CONTENT_TYPE, public_folder, public_keys_for
from media.storage import get_public_storage, get_storage
from media.storage.base import ObjectStorage

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PublicUrls:
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


def media_public_urls(*, media: MediaFile) -> PublicUrls:
    return PublicUrls(
        public_url=public_url(media.public_key),
        public_thumbnail_url=public_url(media.public_thumbnail_key),
        published_at=media.published_at,
    )


def media_publish(*, media: MediaFile) -> MediaFile:
    """Publish a ready file (503 ``publishing_unavailable`` while publishing is off, 422
    ``media_not_ready`` before the file is ready); idempotent: a published file is returned as is."""
    public = publishing_store()
    if media.public_key:
        return media
    if media.status != MediaStatus.READY:
        raise MediaNotReady(f"Only a ready file can be published (status: {media.status}).",
                            details={"status": media.status})
    key, thumbnail_key = public_keys_for(media)
    storage = get_storage()
    try:
        storage.copy_public(public, media.storage_key, key, content_type=media.mime_type,
                            cache_control=cache_control())
        if thumbnail_key:
            storage.copy_public(public, media.thumbnail_key, thumbnail_key, content_type=THUMBNAIL_CONTENT_TYPE,
                                cache_control=cache_control())
    except FileNotFoundError:
        # A ready file's object is gone only once its row was deleted (its objects go after that commit).
        _discard(key)
        raise MediaNotFound("No such media file.") from None
    except BaseException:
        _discard(key)
        raise

    with transaction.atomic():
        locked = MediaFile.objects.select_for_update().filter(pk=media.pk).first()
        kept = locked is not None and locked.status == MediaStatus.READY and not locked.public_key
        if locked is not None and kept:
            locked.public_key, locked.public_thumbnail_key = key, thumbnail_key
            locked.published_at = timezone.now()
            locked.save(update_fields=["public_key", "public_thumbnail_key", "published_at", "updated_at"])
    if locked is None or not kept:
        # Outside the transaction: a deletion scheduled in it would be dropped with a rollback.
        _discard(key)
        if locked is None:
            raise MediaNotFound("No such media file.")
        if not locked.public_key:
            raise MediaNotReady(f"Only a ready file can be published (status: {locked.status}).",
                                details={"status": locked.status})
        return locked  # published meanwhile by another request: its URL is the file's
    logger.info("media %s: published", media.pk)
    return locked


def media_unpublish(*, media: MediaFile) -> MediaFile:
    """Take a file's public copies down: the row now, the copies after commit. Unpublishing a file
    that is not published does nothing; it works whether publishing is on or off."""
    with transaction.atomic():
        locked = MediaFile.objects.select_for_update().filter(pk=media.pk).first()
        if locked is None:
            raise MediaNotFound("No such media file.")
        if not locked.public_key:
            return locked
        folder = public_folder(locked.public_key)
        locked.public_key, locked.public_thumbnail_key, locked.published_at = "", "", None
        locked.save(update_fields=["public_key", "public_thumbnail_key", "published_at", "updated_at"])
        schedule_object_deletion([], [folder])
    logger.info("media %s: unpublished", media.pk)
    return locked


def _discard(key: str) -> None:
    """Delete what a publication copied (its whole folder); at once when called outside a transaction."""
    schedule_object_deletion([], [public_folder(key)])

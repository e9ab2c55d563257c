"""Signed download URLs of a media file and its thumbnail, for the API and the admin."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from media.models import MediaFile, MediaStatus
from media.storage import get_storage


@dataclass(frozen=True)
class MediaUrls:
    download_url: str | None
    thumbnail_url: str | None
    expires_at: datetime | None


def media_urls(*, media: MediaFile) -> MediaUrls:
    """Signed download (and thumbnail) URLs, valid AUTEUR_SIGNED_URL_TTL_SECONDS (15 minutes).

    None while the file is still ``uploading``: there may be nothing to download yet.
    """
    if media.status == MediaStatus.UPLOADING:
        return MediaUrls(download_url=None, thumbnail_url=None, expires_at=None)
    storage = get_storage()
    download = storage.presign_get(media.storage_key, filename=media.name)
    thumbnail = storage.presign_get(media.thumbnail_key) if media.thumbnail_key else None
    return MediaUrls(
        download_url=download.url,
        thumbnail_url=thumbnail.url if thumbnail else None,
        expires_at=download.expires_at,
    )

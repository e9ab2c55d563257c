"""What the application needs from object storage: one small interface and its value types.

Two backends implement it (media/storage/local.py, media/storage/s3.py); media/storage/__init__.py
picks the configured one. Workers use ``open`` / ``save`` / ``local_path`` (ffmpeg and PyAV want
a file on disk); clients get presigned URLs. Signed URLs are credentials: never log one.
"""

from __future__ import annotations

import contextlib
import re
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO
from urllib.parse import quote

from django.conf import settings

from media.errors import InvalidKey

DEFAULT_URL_TTL_SECONDS = 15 * 60
CHUNK_SIZE = 1024 * 1024
# /readyz must answer quickly whatever the storage does.
CHECK_TIMEOUT_SECONDS = 2
# A key is a relative path of safe segments; no segment may start with "." (no "..", and the
# local backend keeps its sidecar files under dot-names, which no key can then reach).
KEY_RE = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]*(/[A-Za-z0-9_-][A-Za-z0-9._-]*)*$")
MAX_KEY_LENGTH = 500


@dataclass(frozen=True)
class PresignedUpload:
    url: str
    expires_at: datetime
    # Headers the client must send with the PUT, exactly (they are part of the signature).
    headers: dict[str, str] = field(default_factory=dict)
    method: str = "PUT"


@dataclass(frozen=True)
class PresignedDownload:
    url: str
    expires_at: datetime


def validate_key(key: str) -> str:
    if not isinstance(key, str) or len(key) > MAX_KEY_LENGTH or not KEY_RE.match(key):
        raise InvalidKey("Invalid storage key.")
    return key


def url_expiry(expires_in: int | None) -> tuple[int, datetime]:
    """(seconds a signed URL lives, when it expires); AUTEUR_SIGNED_URL_TTL_SECONDS by default."""
    ttl = int(getattr(settings, "AUTEUR_SIGNED_URL_TTL_SECONDS", DEFAULT_URL_TTL_SECONDS))
    if expires_in is not None:
        ttl = expires_in
    return ttl, datetime.fromtimestamp(int(time.time()) + ttl, UTC)


def content_disposition(filename: str | None) -> str | None:
    """An attachment header that survives any filename (RFC 6266: ASCII fallback + UTF-8)."""
    if not filename:
        return None
    ascii_name = re.sub(r'[^A-Za-z0-9._ -]', "_", filename)[:150] or "download"
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(filename[:150], safe='')}"


class ObjectStorage(ABC):
    """What the application needs from object storage, and nothing more."""

    name: str

    @abstractmethod
    def check(self) -> None:
        """Raise unless the storage answers within CHECK_TIMEOUT_SECONDS (for /readyz)."""

    def presign_put(
        self, key: str, content_type: str, size_bytes: int, *, exact: bool = True, expires_in: int | None = None
    ) -> PresignedUpload:
        """A URL that PUTs exactly this object: this key, this content type, at most this size
        (`exact`: a declared size; otherwise only a limit, which a store that can sign nothing
        but an exact length leaves to the check at confirm)."""
        ttl, expires_at = url_expiry(expires_in)
        url = self._put_url(validate_key(key), content_type, size_bytes, exact, ttl=ttl, expires_at=expires_at)
        return PresignedUpload(url=url, expires_at=expires_at, headers={"Content-Type": content_type})

    def presign_get(
        self, key: str, filename: str | None = None, *, expires_in: int | None = None
    ) -> PresignedDownload:
        """A URL that GETs the object, offered for download as ``filename`` when one is given."""
        ttl, expires_at = url_expiry(expires_in)
        url = self._get_url(validate_key(key), filename or "", ttl=ttl, expires_at=expires_at)
        return PresignedDownload(url=url, expires_at=expires_at)

    @abstractmethod
    def _put_url(
        self, key: str, content_type: str, size_bytes: int, exact: bool, *, ttl: int, expires_at: datetime
    ) -> str: ...

    @abstractmethod
    def _get_url(self, key: str, filename: str, *, ttl: int, expires_at: datetime) -> str: ...

    @abstractmethod
    def head(self, key: str) -> int | None:
        """The object's size in bytes, or None when there is no such object."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove the object; removing an absent object is not an error."""

    @abstractmethod
    def delete_prefix(self, prefix: str) -> int:
        """Remove every object under ``prefix/``; returns how many were removed."""

    @abstractmethod
    def list_folders(self, prefix: str) -> Iterator[str]:
        """The names of the folders directly under ``prefix/`` (``projects`` -> each project id),
        in key order, read page by page (a store's listing is never held whole)."""

    @abstractmethod
    def open(self, key: str) -> IO[bytes]:
        """A binary stream of the object's bytes (FileNotFoundError if absent)."""

    @abstractmethod
    def save(self, key: str, fileobj: IO[bytes], content_type: str) -> None: ...

    @abstractmethod
    def copy(self, src_key: str, dst_key: str) -> None: ...

    def move(self, src_key: str, dst_key: str) -> None:
        """Put the object under ``dst_key`` and remove ``src_key`` (FileNotFoundError if absent).

        By default a server-side copy then a delete: a failure in between leaves both objects,
        and moving again repeats the copy from the same source.
        """
        self.copy(src_key, dst_key)
        self.delete(src_key)

    @abstractmethod
    def local_path(self, key: str) -> contextlib.AbstractContextManager[Path]:
        """A path on this machine holding the object's bytes, for ffmpeg and PyAV (a context manager)."""

    @abstractmethod
    def content_type(self, key: str) -> str | None:
        """The Content-Type the object was stored with, or None."""

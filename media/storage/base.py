"""What the application needs from object storage: one small interface and its value types.

``ObjectStorage`` is the one entry point the apps use (media.storage.get_storage() returns the
configured one). It is built on the Django storage configured under ``settings.MEDIA_STORAGE_ALIAS``
in STORAGES (``django.core.files.storage.storages``): reads, writes, deletes, existence and sizes
go through that storage object. Two subclasses add what differs: media/storage/local.py
(FileSystemStorage, with URLs the API signs) and media/storage/s3.py (django-storages' S3Storage).
Workers use ``open`` / ``save`` / ``local_path`` (ffmpeg and PyAV want a file on disk); clients
get signed URLs. Signed URLs are credentials: never log one.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import tempfile
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO
from urllib.parse import quote

from django.conf import settings
from django.core.files import File
from django.core.files.storage import Storage

from media.errors import InvalidKey

DEFAULT_URL_TTL_SECONDS = 15 * 60
CHUNK_SIZE = 1024 * 1024
# /readyz must answer quickly whatever the storage does.
CHECK_TIMEOUT_SECONDS = 2
# A key is a relative path of safe segments; no segment may start with "." (no "..", and the
# local backend keeps its sidecar files under dot-names, which no key can then reach).
KEY_RE = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]*(/[A-Za-z0-9_-][A-Za-z0-9._-]*)*\Z")
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


# The checksum header of a part's PUT: S3's own name for a SHA-256 in base64, which the local
# backend takes too.
CHECKSUM_HEADER = "x-amz-checksum-sha256"


@dataclass(frozen=True)
class UploadedPart:
    """A part of a multipart upload, as the store holds it."""

    number: int  # 1 to 10,000
    size: int
    etag: str
    sha256: str  # base64, as CHECKSUM_HEADER carries it


@dataclass(frozen=True)
class ObjectStat:
    """What a HEAD of an object says."""

    size: int
    # The version the store tags it with (S3's ETag), which a copy can be made conditional on;
    # "" where the store has none (the local backend, whose move is a rename: nothing to race).
    etag: str = ""


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


class PartsRefused(Exception):
    """The store would not make the object from the parts listed (one was PUT again since)."""


class ObjectStorage(ABC):
    """What the application needs from object storage, and nothing more, on a Django storage."""

    name: str

    def __init__(self, backend: Storage) -> None:
        self.backend = backend

    def for_engines(self) -> ObjectStorage:
        """The storage whose URLs the GPU engines are given: the address they reach it at."""
        return self

    @abstractmethod
    def check(self) -> None:
        """Raise unless the storage answers within CHECK_TIMEOUT_SECONDS (for /readyz)."""

    # ---- signed URLs
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

    # ---- multipart uploads: a large object PUT in parts, each part a signed URL of its own,
    # bound to its number, its size and the SHA-256 of its bytes (a mismatching part is refused).
    # Completing makes the object from the parts, at once; the parts' URLs are then worthless.
    @abstractmethod
    def multipart_start(self, key: str, content_type: str, part_size: int, *, checksums: bool = True) -> str:
        """Begin a multipart upload of ``key`` whose parts but the last are ``part_size`` bytes; its
        upload id. ``checksums``: each part is PUT with its SHA-256 (`presign_part`); without, its
        parts go to URLs from `presign_part_upto`."""

    def presign_part(
        self, key: str, upload_id: str, number: int, size: int, sha256: str, *, expires_in: int | None = None
    ) -> PresignedUpload:
        """A URL that PUTs part ``number``: exactly ``size`` bytes whose SHA-256 (base64) is ``sha256``."""
        if not sha256:
            raise ValueError("a part's SHA-256 is required here: presign_part_upto signs parts without one")
        ttl, expires_at = url_expiry(expires_in)
        url = self._part_url(validate_key(key), upload_id, number, size, sha256, ttl=ttl, expires_at=expires_at)
        return PresignedUpload(url=url, expires_at=expires_at, headers={CHECKSUM_HEADER: sha256})

    def presign_part_upto(
        self, key: str, upload_id: str, number: int, max_size: int, *, expires_in: int | None = None
    ) -> PresignedUpload:
        """A URL that PUTs part ``number`` of an upload started without checksums: at most
        ``max_size`` bytes, whatever they are, for a writer that cannot say its parts in advance (a
        GPU call's output). Whoever completes the upload checks the parts' sizes, then the whole
        object's. A store that can sign no maximum (S3: any part up to 5 GiB) leaves it to that check."""
        ttl, expires_at = url_expiry(expires_in)
        url = self._part_url(validate_key(key), upload_id, number, max_size, "", ttl=ttl, expires_at=expires_at)
        return PresignedUpload(url=url, expires_at=expires_at, headers={})

    @abstractmethod
    def _part_url(
        self, key: str, upload_id: str, number: int, size: int, sha256: str, *, ttl: int, expires_at: datetime
    ) -> str:
        """Part ``number``'s URL: exactly ``size`` bytes of SHA-256 ``sha256``, or (``sha256`` empty)
        at most ``size`` bytes of any SHA-256."""

    @abstractmethod
    def multipart_parts(self, key: str, upload_id: str) -> list[UploadedPart]:
        """The parts stored so far, by number (FileNotFoundError if the upload is not open)."""

    @abstractmethod
    def multipart_complete(self, key: str, upload_id: str, parts: list[UploadedPart]) -> None:
        """Make the object from ``parts``, in order (FileNotFoundError if the upload is not open,
        PartsRefused if the store holds other parts than those)."""

    @abstractmethod
    def multipart_abort(self, key: str, upload_id: str) -> None:
        """Discard the upload and its parts; aborting one that is not open is not an error."""

    # ---- objects, through the Django storage
    def head(self, key: str) -> int | None:
        """The object's size in bytes, or None when there is no such object."""
        validate_key(key)
        try:
            return int(self.backend.size(key))
        except FileNotFoundError:
            return None

    def stat(self, key: str) -> ObjectStat | None:
        """The object's size and version tag, or None when there is no such object."""
        size = self.head(key)
        return None if size is None else ObjectStat(size)

    def exists(self, key: str) -> bool:
        return bool(self.backend.exists(validate_key(key)))

    def open(self, key: str) -> IO[bytes]:
        """A binary stream of the object's bytes (FileNotFoundError if absent)."""
        return self.backend.open(validate_key(key), "rb")

    def save(self, key: str, fileobj: IO[bytes], content_type: str) -> None:
        """Store the bytes under ``key`` with this Content-Type, replacing any object there."""
        validate_key(key)
        content = File(fileobj, name=key)
        content.content_type = content_type  # type: ignore[attr-defined]  # read by S3Storage
        self._saved(key, self.backend.save(key, content))

    def save_file(self, key: str, path: Path, content_type: str) -> None:
        """Store the file at ``path`` under ``key``, as `save`; the file is the storage's afterwards
        (moved into place where the storage can, else stored and removed), so a caller that wrote
        it only to store it writes its bytes once."""
        with path.open("rb") as fh:
            self.save(key, fh, content_type)
        path.unlink(missing_ok=True)

    @staticmethod
    def _saved(key: str, name: str) -> None:
        # Both backends are configured to overwrite; a storage that chose another name would leave
        # the object where no record points.
        if name != key:
            raise RuntimeError(f"the storage saved {key!r} under another name")

    def delete(self, key: str) -> None:
        """Remove the object; removing an absent object is not an error."""
        self.backend.delete(validate_key(key))

    def delete_prefix(self, prefix: str) -> int:
        """Remove every object under ``prefix/``; returns how many were removed."""
        removed = 0
        for key in self._walk(validate_key(prefix.rstrip("/"))):
            self.delete(key)
            removed += 1
        return removed

    def _walk(self, folder: str) -> Iterator[str]:
        try:
            folders, files = self.backend.listdir(folder)
        except FileNotFoundError:
            return
        # A dot-name is no key (KEY_RE): the local backend's sidecars and uploads in progress.
        for name in files:
            if not name.startswith("."):
                yield f"{folder}/{name}"
        for name in folders:
            if not name.startswith("."):
                yield from self._walk(f"{folder}/{name}")

    def list_folders(self, prefix: str) -> Iterator[str]:
        """The names of the folders directly under ``prefix/`` (``projects`` -> each project id),
        in key order (a store's listing is read page by page, never held whole: media/storage/s3.py)."""
        try:
            folders, _files = self.backend.listdir(validate_key(prefix.rstrip("/")))
        except FileNotFoundError:
            return
        yield from sorted(folders)

    def copy(self, src_key: str, dst_key: str, *, if_etag: str = "") -> None:
        """Put a copy of the object under ``dst_key`` (FileNotFoundError if absent). `if_etag`:
        only if the object is still that version (ObjectChanged otherwise), for a store whose
        `stat` gives one; this generic copy reads and writes the bytes and cannot make it."""
        if if_etag:
            raise NotImplementedError(f"{self.name} storage cannot copy conditionally")
        content_type = self.content_type(src_key) or "application/octet-stream"
        with self.open(src_key) as src:
            self.save(dst_key, src, content_type)

    def copy_public(
        self, public: ObjectStorage, src_key: str, dst_key: str, *, content_type: str, cache_control: str
    ) -> None:
        """Put a copy of the object under ``dst_key`` in the public store ``public``, served with this
        Content-Type and Cache-Control (FileNotFoundError if absent). This generic copy reads and
        writes the bytes, and leaves Cache-Control to whatever serves the public store (the local
        backend's view); a store that keeps headers on its objects overrides it."""
        with self.open(src_key) as src:
            public.save(validate_key(dst_key), src, content_type)

    def move(self, src_key: str, dst_key: str, *, if_etag: str = "") -> None:
        """Put the object under ``dst_key`` and remove ``src_key`` (FileNotFoundError if absent);
        `if_etag` as for `copy`.

        By default a copy then a delete: a failure in between leaves both objects, and moving
        again repeats the copy from the same source.
        """
        self.copy(src_key, dst_key, if_etag=if_etag)
        self.delete(src_key)

    @contextlib.contextmanager
    def local_path(self, key: str) -> Iterator[Path]:
        """A path on this machine holding the object's bytes, for ffmpeg and PyAV (a context manager)."""
        suffix = Path(validate_key(key)).suffix[:16]
        with tempfile.TemporaryDirectory(prefix="auteur-media-") as tmpdir:
            path = Path(tmpdir) / f"object{suffix}"
            with self.open(key) as src, path.open("wb") as dst:
                shutil.copyfileobj(src, dst, CHUNK_SIZE)
            yield path

    @abstractmethod
    def content_type(self, key: str) -> str | None:
        """The Content-Type the object was stored with, or None."""

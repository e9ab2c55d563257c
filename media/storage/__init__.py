"""Object storage: the one entry point the apps use, on the Django storage STORAGES configures.

Callers use ``get_storage()`` (or ``get_local_storage()`` for what only the local backend has);
the interface is in media/storage/base.py. It wraps ``storages[settings.MEDIA_STORAGE_ALIAS]``:
django-storages' S3Storage when a bucket is configured (media/storage/s3.py), else Django's
FileSystemStorage (media/storage/local.py). Nothing else in the apps touches a storage directly.
"""

from __future__ import annotations

from django.conf import settings
from django.core.files.storage import FileSystemStorage, Storage, storages

from media.storage.base import ObjectStorage
from media.storage.local import LocalStorage
from media.storage.s3 import S3ObjectStorage

# The wrapper of the storage Django holds now: Django builds each storage once and builds it
# again when STORAGES changes (tests), and the S3 wrapper keeps a client for /readyz.
_current: ObjectStorage | None = None


def _wrap(backend: Storage) -> ObjectStorage:
    if isinstance(backend, FileSystemStorage):
        return LocalStorage(backend)
    from storages.backends.s3 import S3Storage

    if isinstance(backend, S3Storage):
        return S3ObjectStorage(backend)
    raise TypeError(f"no object storage for {type(backend).__name__}: configure FileSystemStorage or S3Storage")


def get_storage() -> ObjectStorage:
    """The configured storage: S3/R2 when a bucket is set, else local files."""
    global _current
    backend = storages[settings.MEDIA_STORAGE_ALIAS]
    current = _current
    if current is None or current.backend is not backend:
        # Two threads may both build one here: either will do, and the storage under it is the same.
        current = _current = _wrap(backend)
    return current


def get_local_storage() -> LocalStorage | None:
    """The local backend when it is the configured one (its URL views are off otherwise)."""
    storage = get_storage()
    return storage if isinstance(storage, LocalStorage) else None

"""Object storage: the one entry point the apps use, on the Django storage STORAGES configures.

Callers use ``get_storage()`` (or ``get_local_storage()`` for what only the local backend has);
the interface is in media/storage/base.py. It wraps ``storages[settings.MEDIA_STORAGE_ALIAS]``:
django-storages' S3Storage when a bucket is configured (media/storage/s3.py), else Django's
FileSystemStorage (media/storage/local.py). Nothing else in the apps touches a storage directly.

``get_public_storage()`` is the second store, of the same kind, that holds the public copies of
published files (``storages[settings.PUBLIC_STORAGE_ALIAS]``: the public bucket, or the public
folder); media/services/publishing.py is what writes it.
"""

from __future__ import annotations

from django.conf import settings
from django.core.files.storage import FileSystemStorage, Storage, storages
from django.core.files.storage.handler import InvalidStorageError

from media.storage.base import ObjectStorage
from media.storage.local import LocalStorage
from media.storage.s3 import S3ObjectStorage

# The wrapper of the storage Django holds now: Django builds each storage once and builds it
# again when STORAGES changes (tests), and the S3 wrapper keeps a client for /readyz.
_current: ObjectStorage | None = None
_current_public: ObjectStorage | None = None


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


def get_public_storage() -> ObjectStorage | None:
    """The store of published files' public copies; None where there is none (S3/R2 without
    AUTEUR_PUBLIC_BUCKET_NAME)."""
    global _current_public
    try:
        backend = storages[settings.PUBLIC_STORAGE_ALIAS]
    except InvalidStorageError:
        return None
    current = _current_public
    if current is None or current.backend is not backend:
        current = _current_public = _wrap(backend)
    return current

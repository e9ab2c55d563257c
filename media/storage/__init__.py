"""Object storage: the configured backend, S3/R2 when a bucket is set, else local files.

Callers use ``get_storage()`` (or ``get_local_storage()`` for what only the local backend has);
the interface is in media/storage/base.py, the backends in local.py and s3.py.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver

from media.storage.base import ObjectStorage
from media.storage.local import LocalStorage
from media.storage.s3 import S3ObjectStorage

# One client per configuration: building one costs tens of milliseconds; clients are thread-safe.
_s3_storage = functools.lru_cache(maxsize=4)(S3ObjectStorage)


def get_storage() -> ObjectStorage:
    """The configured backend: S3/R2 when AWS_STORAGE_BUCKET_NAME is set, else local files."""
    bucket = getattr(settings, "AWS_STORAGE_BUCKET_NAME", "")
    if bucket:
        return _s3_storage(
            bucket=bucket,
            endpoint_url=getattr(settings, "AWS_S3_ENDPOINT_URL", None) or None,
            region=getattr(settings, "AWS_S3_REGION_NAME", None) or None,
            access_key=getattr(settings, "AWS_ACCESS_KEY_ID", None) or None,
            secret_key=getattr(settings, "AWS_SECRET_ACCESS_KEY", None) or None,
            addressing_style=getattr(settings, "AWS_S3_ADDRESSING_STYLE", None) or None,
        )
    return LocalStorage(
        Path(settings.MEDIA_ROOT),
        getattr(settings, "AUTEUR_PUBLIC_BASE_URL", "http://localhost:8000"),
    )


def get_local_storage() -> LocalStorage | None:
    """The local backend when it is the configured one (its URL views are off otherwise)."""
    storage = get_storage()
    return storage if isinstance(storage, LocalStorage) else None


@receiver(setting_changed)
def _forget_clients(setting: str, **kwargs: Any) -> None:
    if setting.startswith("AWS_"):
        _s3_storage.cache_clear()

"""The STORAGES entry of the media storage, built in one place: settings call it with the
environment's values, tests with theirs (a moto bucket, a temporary directory), so a test runs the
configuration production runs. No Django here: settings import it.
"""

from __future__ import annotations

from typing import Any

S3_BACKEND = "storages.backends.s3.S3Storage"
LOCAL_BACKEND = "django.core.files.storage.FileSystemStorage"
# A file read through the S3 storage spills to disk past this size; it is never held whole in memory.
S3_READ_MEMORY_BYTES = 8 * 1024**2


def s3_media_storage(
    *,
    bucket: str,
    endpoint_url: str | None,
    region: str | None,
    access_key: str | None,
    secret_key: str | None,
    addressing_style: str | None,
    url_ttl_seconds: int,
) -> dict[str, Any]:
    """django-storages' S3 backend for S3, R2 or MinIO: private objects, presigned GET URLs."""
    from botocore.config import Config

    return {
        "BACKEND": S3_BACKEND,
        "OPTIONS": {
            "bucket_name": bucket,
            "endpoint_url": endpoint_url or None,
            "region_name": region or None,
            # None: boto3's own chain (instance role, environment) supplies the credentials.
            "access_key": access_key or None,
            "secret_key": secret_key or None,
            "querystring_auth": True,
            "querystring_expire": url_ttl_seconds,
            "default_acl": None,
            "file_overwrite": True,
            "max_memory_size": S3_READ_MEMORY_BYTES,
            # Every outbound call has a timeout; botocore retries throttling and 5xx itself.
            "client_config": Config(
                signature_version="s3v4",
                s3={"addressing_style": addressing_style or "auto"},
                connect_timeout=5,
                read_timeout=60,
                retries={"max_attempts": 4, "mode": "standard"},
            ),
        },
    }


def local_media_storage(location: str | None = None) -> dict[str, Any]:
    """Django's FileSystemStorage; without a location it reads MEDIA_ROOT when used. A key is
    written in place (a second save of a key replaces the object, as on S3)."""
    options: dict[str, Any] = {"allow_overwrite": True}
    if location is not None:
        options["location"] = location
    return {"BACKEND": LOCAL_BACKEND, "OPTIONS": options}


# A year: the longest max-age a cache is asked to keep a response (RFC 9111 caches may cap it there).
MAX_CDN_CACHE_SECONDS = 365 * 24 * 3600


def cdn_base_url(value: str, *, debug: bool) -> str:
    """The base of public URLs (AUTEUR_CDN_BASE_URL) as kept: no trailing slash, so that
    ``f"{base}/{key}"`` names the key and nothing else. Raises ValueError saying what is wrong.

    An absolute http(s) address with a host and nothing a key would be appended after (no query,
    no fragment) and no credentials; https outside debug, since a public URL is handed to
    browsers that may embed it in an https page."""
    from urllib.parse import urlsplit

    base = value.strip().rstrip("/")
    if not base:
        return ""
    parts = urlsplit(base)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an absolute http(s) URL, e.g. https://cdn.example.com")
    if parts.query or parts.fragment or "?" in base or "#" in base:
        raise ValueError("must not have a query or a fragment: object keys are appended to it")
    if parts.username is not None or parts.password is not None:
        raise ValueError("must not carry credentials")
    if parts.scheme != "https" and not debug:
        raise ValueError("must be https when DJANGO_DEBUG is off (production)")
    return base


def public_endpoint_url(value: str, *, debug: bool) -> str:
    """The public address of the S3 endpoint (AWS_S3_PUBLIC_ENDPOINT_URL) as kept: scheme, host and
    port only, since signed URLs append the bucket and key to it and sign its host. Raises
    ValueError saying what is wrong; https outside debug (signed URLs are credentials)."""
    from urllib.parse import urlsplit

    base = value.strip().rstrip("/")
    if not base:
        return ""
    parts = urlsplit(base)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an absolute http(s) URL, e.g. https://media.example.com")
    if parts.path or parts.query or parts.fragment or "?" in base or "#" in base:
        raise ValueError("must be a scheme, a host and a port only: signed URLs add the bucket and key")
    if parts.username is not None or parts.password is not None:
        raise ValueError("must not carry credentials")
    if parts.scheme != "https" and not debug:
        raise ValueError("must be https when DJANGO_DEBUG is off (production)")
    return base

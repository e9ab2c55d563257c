"""Object storage: the media bucket (or the local folder), signed URLs, uploads in parts, the
public store a CDN serves, and the plain-text check of every data store's URL."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ImproperlyConfigured

from auteur.core.secret_values import env_value
from auteur.core.storage_settings import (
    MAX_CDN_CACHE_SECONDS,
    cdn_base_url,
    local_media_storage,
    public_endpoint_url,
    s3_media_storage,
)
from auteur.core.tls import plaintext_connections
from auteur.settings.datastores import DATABASE_API_URL, MONGODB_URI, REDIS_URL
from auteur.settings.environment import DEBUG, VAR_DIR, env, secret

# ---- Object storage: the Django storage under MEDIA_STORAGE_ALIAS in STORAGES (below), which
# media.storage.get_storage() wraps: django-storages' S3 backend when a bucket is configured (S3,
# R2, MinIO), else Django's FileSystemStorage under MEDIA_ROOT (var/storage).
AWS_STORAGE_BUCKET_NAME: str = env.str("AWS_STORAGE_BUCKET_NAME", default="")
AWS_S3_ENDPOINT_URL: str | None = env.str("AWS_S3_ENDPOINT_URL", default="") or None
AWS_S3_REGION_NAME: str | None = env.str("AWS_S3_REGION_NAME", default="") or None
if AWS_STORAGE_BUCKET_NAME:
    AWS_ACCESS_KEY_ID = secret("AWS_ACCESS_KEY_ID", "")
    AWS_SECRET_ACCESS_KEY = secret("AWS_SECRET_ACCESS_KEY", "")
AWS_S3_ADDRESSING_STYLE: str | None = env.str("AWS_S3_ADDRESSING_STYLE", default="") or None  # MinIO: path
# The address clients outside the store's network reach its endpoint at, which signed URLs name
# (S3ObjectStorage: SigV4 signs the host name, so a URL cannot be pointed elsewhere afterwards).
# docker-compose.yml: https://<AUTEUR_MEDIA_DOMAIN>, the media site Caddy serves in front of MinIO.
# Empty: AWS_S3_ENDPOINT_URL (S3 and R2 are public already). Engines that run in the workers are
# given URLs for the endpoint itself, which they reach (media.storage.s3 `for_engines`).
try:
    AWS_S3_PUBLIC_ENDPOINT_URL: str = public_endpoint_url(
        env.str("AWS_S3_PUBLIC_ENDPOINT_URL", default=""), debug=DEBUG)
except ValueError as _exc:
    raise ImproperlyConfigured(f"AWS_S3_PUBLIC_ENDPOINT_URL {_exc}.") from None

# Production connects to its data stores over TLS unless told otherwise: a URL that reaches another
# machine unencrypted stops start-up, naming the setting (auteur/core/tls.py: sslmode=require or
# verify-*, rediss://, amqps://, tls=true, https://; loopback is exempt). A private network whose
# servers offer no TLS (docker-compose.yml's) says so with AUTEUR_ALLOW_PLAINTEXT_DATASTORES=1.
AUTEUR_ALLOW_PLAINTEXT_DATASTORES = env.bool("AUTEUR_ALLOW_PLAINTEXT_DATASTORES", default=False)
if not DEBUG and not AUTEUR_ALLOW_PLAINTEXT_DATASTORES and (_plain := plaintext_connections({
    "DATABASE_URL": env_value("DATABASE_URL"), "DATABASE_API_URL": DATABASE_API_URL, "REDIS_URL": REDIS_URL,
    "CELERY_BROKER_URL": env_value("CELERY_BROKER_URL"),
    "AUTEUR_GPU_ANNOUNCE_URL": env_value("AUTEUR_GPU_ANNOUNCE_URL"), "MONGODB_URI": MONGODB_URI,
    "AWS_S3_ENDPOINT_URL": AWS_S3_ENDPOINT_URL,
})):
    raise ImproperlyConfigured(
        f"{', '.join(_plain)} would reach another machine unencrypted. Use TLS (docs/security.md, \"TLS to the "
        f"data stores\"), or set AUTEUR_ALLOW_PLAINTEXT_DATASTORES=1 where the network itself is private.")
AUTEUR_MAX_UPLOAD_BYTES = env.int("AUTEUR_MAX_UPLOAD_BYTES", default=50 * 1024**3)
# A declared size of at least this is uploaded in parts of AUTEUR_MULTIPART_PART_BYTES (more when a
# file would need over 10,000), each resumable on its own (media/services/uploads.py). S3 takes
# parts of 5 MiB to 5 GiB, and a single PUT of at most 5 GiB.
AUTEUR_MULTIPART_THRESHOLD_BYTES = env.int("AUTEUR_MULTIPART_THRESHOLD_BYTES", default=64 * 1024**2)
AUTEUR_MULTIPART_PART_BYTES = env.int("AUTEUR_MULTIPART_PART_BYTES", default=64 * 1024**2)
if not 5 * 1024**2 <= AUTEUR_MULTIPART_PART_BYTES <= 5 * 1024**3:
    raise ImproperlyConfigured("AUTEUR_MULTIPART_PART_BYTES must be 5 MiB to 5 GiB.")
if not 1 <= AUTEUR_MULTIPART_THRESHOLD_BYTES <= 5 * 1024**3:
    raise ImproperlyConfigured("AUTEUR_MULTIPART_THRESHOLD_BYTES must be at most 5 GiB (S3's largest single PUT).")
AUTEUR_SIGNED_URL_TTL_SECONDS = env.int("AUTEUR_SIGNED_URL_TTL_SECONDS", default=15 * 60)
# Absolute base of the URLs the local storage backend signs (the API serves them).
AUTEUR_PUBLIC_BASE_URL = env.str("AUTEUR_PUBLIC_BASE_URL", default="http://localhost:8000").rstrip("/")
MEDIA_ROOT = str(VAR_DIR / "storage")
MEDIA_STORAGE_ALIAS = "media"


def _s3_bucket(bucket: str) -> dict[str, Any]:
    """A bucket of ours on S3/R2: every one (the media bucket, the public one) on the same connection.
    Called only once a media bucket is set (its keys are read then)."""
    return s3_media_storage(
        bucket=bucket,
        endpoint_url=AWS_S3_ENDPOINT_URL,
        region=AWS_S3_REGION_NAME,
        access_key=AWS_ACCESS_KEY_ID,
        secret_key=AWS_SECRET_ACCESS_KEY,
        addressing_style=AWS_S3_ADDRESSING_STYLE,
        url_ttl_seconds=AUTEUR_SIGNED_URL_TTL_SECONDS,
    )


MEDIA_STORAGE = (
    _s3_bucket(AWS_STORAGE_BUCKET_NAME)
    if AWS_STORAGE_BUCKET_NAME
    else local_media_storage()
)

# ---- Publishing through a CDN (media/services/publishing.py; docs/media.md, "Publishing through a
# CDN"). A published file is copied into a public store that a CDN serves at AUTEUR_CDN_BASE_URL:
# a bucket of its own on S3/R2 (same endpoint and credentials as the media bucket), or the folder
# PUBLIC_MEDIA_ROOT with the local backend, which the API serves at /public/. Everything else
# stays private. Base of the public URLs, e.g. https://cdn.example.com (make run: http://localhost:8000/public);
# empty: publishing is off, and publishing a file answers 503 `publishing_unavailable`.
try:
    AUTEUR_CDN_BASE_URL = cdn_base_url(env.str("AUTEUR_CDN_BASE_URL", default=""), debug=DEBUG)
except ValueError as _exc:
    raise ImproperlyConfigured(f"AUTEUR_CDN_BASE_URL {_exc}.") from None
# The public bucket on S3/R2, required with a media bucket once AUTEUR_CDN_BASE_URL is set; never the media bucket.
AUTEUR_PUBLIC_BUCKET_NAME: str = env.str("AUTEUR_PUBLIC_BUCKET_NAME", default="")
# `Cache-Control: public, max-age=<this>` of a published object (S3/R2: written on it when published).
AUTEUR_CDN_CACHE_MAX_AGE_SECONDS = env.int("AUTEUR_CDN_CACHE_MAX_AGE_SECONDS", default=24 * 3600)
if not 0 <= AUTEUR_CDN_CACHE_MAX_AGE_SECONDS <= MAX_CDN_CACHE_SECONDS:
    raise ImproperlyConfigured(f"AUTEUR_CDN_CACHE_MAX_AGE_SECONDS must be 0 to {MAX_CDN_CACHE_SECONDS} (a year).")
# A publication is a copy a worker makes (the `media.publish` task): at most this many of one user's
# are in progress at once (more answer 429 `too_many_publications`). One still in progress after
# AUTEUR_MEDIA_PUBLISH_RETRY_SECONDS (longer than a copy may run) is sent to a worker again by the
# media sweep, and given up (the file stays unpublished) after AUTEUR_MEDIA_PUBLISH_DEADLINE_SECONDS.
AUTEUR_MEDIA_PUBLISHING_PER_USER = env.int("AUTEUR_MEDIA_PUBLISHING_PER_USER", default=3)
AUTEUR_MEDIA_PUBLISH_RETRY_SECONDS = env.int("AUTEUR_MEDIA_PUBLISH_RETRY_SECONDS", default=30 * 60)
AUTEUR_MEDIA_PUBLISH_DEADLINE_SECONDS = env.int("AUTEUR_MEDIA_PUBLISH_DEADLINE_SECONDS", default=2 * 3600)
if AWS_STORAGE_BUCKET_NAME and AUTEUR_CDN_BASE_URL and not AUTEUR_PUBLIC_BUCKET_NAME:
    raise ImproperlyConfigured(
        "AUTEUR_PUBLIC_BUCKET_NAME is not set. Publishing through a CDN (AUTEUR_CDN_BASE_URL) with a media "
        "bucket needs a public bucket of its own; unset AUTEUR_CDN_BASE_URL to leave publishing off.")
if AUTEUR_PUBLIC_BUCKET_NAME and AUTEUR_PUBLIC_BUCKET_NAME == AWS_STORAGE_BUCKET_NAME:
    raise ImproperlyConfigured(
        "AUTEUR_PUBLIC_BUCKET_NAME must not be AWS_STORAGE_BUCKET_NAME: the media bucket holds private files.")
PUBLIC_MEDIA_ROOT = str(VAR_DIR / "public")
PUBLIC_STORAGE_ALIAS = "public"
PUBLIC_STORAGE: dict[str, Any] | None = (
    (
        _s3_bucket(AUTEUR_PUBLIC_BUCKET_NAME)
        if AUTEUR_PUBLIC_BUCKET_NAME
        else None
    )
    if AWS_STORAGE_BUCKET_NAME
    else local_media_storage(PUBLIC_MEDIA_ROOT)
)

STORAGES = {
    # Anything that asks Django for its default storage gets the media storage, not a second one.
    "default": MEDIA_STORAGE,
    MEDIA_STORAGE_ALIAS: MEDIA_STORAGE,
    # The public copies of published files (none on S3/R2 without a public bucket).
    **({PUBLIC_STORAGE_ALIAS: PUBLIC_STORAGE} if PUBLIC_STORAGE else {}),
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

"""Settings, read from the environment in this one place (docs/configuration.md lists them all).

Celery's own settings (celeryconfig.py) take their values from here; the benchmarks' settings
(bench/settings.py) import these and add what only drills may use.

Production is the default: with ``DJANGO_DEBUG`` off, every secret must come from the environment
and start-up fails naming the first one missing. ``make run`` and ``make test`` turn debug on,
where development stand-ins are used instead.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import environ
from corsheaders.defaults import default_headers as default_cors_headers
from django.core.exceptions import ImproperlyConfigured

from auteur.envfile import read_env_file
from auteur.secret_values import env_value
from auteur.storage_settings import MAX_CDN_CACHE_SECONDS, cdn_base_url, local_media_storage, s3_media_storage
from auteur.tls import TlsConfigError, broker_tls, plaintext_connections, redis_tls_options

_T = TypeVar("_T")

BASE_DIR = Path(__file__).resolve().parent.parent

# `.env` at the project root fills in what the environment does not set (auteur/envfile.py).
read_env_file()
env = environ.Env()

DEBUG = env.bool("DJANGO_DEBUG", default=False)


# Every setting that is a secret or may carry one (a password in a URL): each is read by
# env_value (auteur/secret_values.py), so it may also come from a file, as Docker and Kubernetes
# mount secrets. The last four are read from the environment by libraries (Modal's client,
# huggingface_hub, Flower) and are put there from their file.
SECRET_NAMES = (
    "DJANGO_SECRET_KEY", "AUTEUR_JWT_SECRET", "DATABASE_URL", "DATABASE_API_URL", "REDIS_URL", "CELERY_BROKER_URL",
    "AUTEUR_GPU_ANNOUNCE_URL", "MONGODB_URI",
    "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "STRIPE_SECRET_KEY", "STRIPE_WEBHOOK_SECRET",
    "AUTEUR_METRICS_TOKEN", "MODAL_TOKEN_ID", "MODAL_TOKEN_SECRET", "HF_TOKEN", "FLOWER_BASIC_AUTH",
)
LIBRARY_SECRET_NAMES = ("MODAL_TOKEN_ID", "MODAL_TOKEN_SECRET", "HF_TOKEN", "FLOWER_BASIC_AUTH")


def secret(name: str, dev_default: str) -> str:
    """A secret from the environment (or NAME_FILE); outside debug there is no default."""
    value = env_value(name)
    if value:
        return value
    if DEBUG:
        return dev_default
    raise ImproperlyConfigured(
        f"{name} is not set. It is required when DJANGO_DEBUG is off (production); "
        f"set it (or {name}_FILE) in the environment, or set DJANGO_DEBUG=1 for development."
    )


def required(name: str) -> str:
    value = env_value(name)
    if not value:
        raise ImproperlyConfigured(
            f"{name} is not set. `make run` / `make test` start embedded servers and set it; "
            f"otherwise point it at your server."
        )
    return value


# A signing secret anyone can read (a placeholder from .env.example or Django's template, a
# development stand-in) or one short enough to guess signs nothing in production: start-up
# fails naming the variable, as it does for a missing one.
MIN_SIGNING_SECRET_BYTES = 32
_DEV_SECRET_KEY = "dev-insecure-django-secret-key-not-for-production"
_DEV_JWT_SECRET = "dev-insecure-jwt-secret-not-for-production-000"
_PLACEHOLDER_PREFIXES = ("change-me", "changeme", "replace-me", "django-insecure", "dev-insecure", "build-only")


def signing_secret(name: str, dev_default: str) -> str:
    value = secret(name, dev_default)
    if DEBUG:
        return value
    if value.strip().lower().startswith(_PLACEHOLDER_PREFIXES):
        raise ImproperlyConfigured(
            f"{name} is a placeholder value. Set it to a random secret, e.g. "
            f"python -c 'import secrets; print(secrets.token_urlsafe(48))'."
        )
    if len(value.encode()) < MIN_SIGNING_SECRET_BYTES:
        raise ImproperlyConfigured(
            f"{name} is too short: at least {MIN_SIGNING_SECRET_BYTES} bytes are required when "
            f"DJANGO_DEBUG is off (production)."
        )
    return value


SECRET_KEY = signing_secret("DJANGO_SECRET_KEY", _DEV_SECRET_KEY)
AUTEUR_JWT_SECRET = signing_secret("AUTEUR_JWT_SECRET", _DEV_JWT_SECRET)

_DEV_HOSTS = ["localhost", "127.0.0.1", "[::1]"]
ALLOWED_HOSTS: list[str] = env.list("DJANGO_ALLOWED_HOSTS", default=_DEV_HOSTS if DEBUG else [])
CSRF_TRUSTED_ORIGINS: list[str] = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])
CORS_ALLOWED_ORIGINS: list[str] = env.list("CORS_ALLOWED_ORIGINS", default=[])
CORS_ALLOW_HEADERS = (*default_cors_headers, "idempotency-key", "if-match")
CORS_EXPOSE_HEADERS = ["Idempotent-Replayed", "X-Request-ID", "ETag", "Retry-After"]

VAR_DIR = Path(env.str("AUTEUR_VAR_DIR", default=str(BASE_DIR / "var")))

INSTALLED_APPS = [
    "auteur.users.apps.AuteurAdminConfig",  # django.contrib.admin, with the OTP-aware site
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "corsheaders",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "axes",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "auteur.users",
    "credits",
    "media",
    "projects",
    "jobs",
    "realtime",  # live job events: SSE, the WebSocket, `Prefer: wait`
    "metrics_exporter",  # `manage.py metrics_exporter`: Celery and business metrics for Prometheus
    "webhooks",
    "billing.apps.BillingConfig",
    "django_prometheus",  # the API's request metrics (auteur/metrics.py)
]

MIDDLEWARE = [
    # First and (but for axes) last: every request's latency and response, by view and status.
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    # Before anything reads the client's address or scheme: X-Forwarded-* only from the proxy.
    "auteur.proxies.ForwardedHeadersMiddleware",
    "auteur.middleware.RequestContextMiddleware",
    # Before anything reads the database: each request's queries see only its caller's rows.
    "auteur.rls.RowLevelSecurityMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "auteur.middleware.ContentSecurityPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "corsheaders.middleware.CorsMiddleware",
    "auteur.middleware.ApiErrorMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_otp.middleware.OTPMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
    "axes.middleware.AxesMiddleware",  # last, as django-axes requires
]

ROOT_URLCONF = "auteur.urls"
WSGI_APPLICATION = "auteur.wsgi.application"
AUTH_USER_MODEL = "users.User"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# ---- Data stores
DATABASES = {"default": env.db_url_config(required("DATABASE_URL"))}
# The API's own login (auteur/rls.py), read only by the processes that serve requests (auteur/wsgi.py
# and auteur/asgi.py set AUTEUR_SERVES_REQUESTS): their connections log in as auteur_api, and the
# owner's (DATABASE_URL) serves only the views that act across users (the admin, Stripe's webhook).
# Workers, beat and management commands keep the owner's login, whatever the environment holds.
DATABASE_API_URL: str = env_value("DATABASE_API_URL") if env.bool("AUTEUR_SERVES_REQUESTS", False) else ""
if DATABASE_API_URL:
    DATABASES["owner"] = DATABASES["default"]
    DATABASES["default"] = env.db_url_config(DATABASE_API_URL)
for _db in DATABASES.values():
    _db["CONN_MAX_AGE"] = env.int("DATABASE_CONN_MAX_AGE", default=60)
    _db["CONN_HEALTH_CHECKS"] = True
    _db.setdefault("OPTIONS", {})["connect_timeout"] = 5

REDIS_URL = required("REDIS_URL")
# The Celery broker: Redis by default, or RabbitMQ (amqp://) with quorum queues (celeryconfig.py;
# docs/broker.md). Only the job queues move: event streams, rate limits, the GPU
# announcements, the cache and beat's schedule stay on REDIS_URL whatever the broker.
CELERY_BROKER_URL: str = env_value("CELERY_BROKER_URL") or REDIS_URL
# The Redis the local GPU runner's child processes (which run engines on users' files) announce a
# call's progress and end on: REDIS_URL unless a login that may only append to that list is given
# (deploy/redis_acl.py's `gpu` user). Modal's calls announce through Modal, not Redis.
AUTEUR_GPU_ANNOUNCE_URL: str = env_value("AUTEUR_GPU_ANNOUNCE_URL") or REDIS_URL
MONGODB_URI = required("MONGODB_URI")


def _tls(name: str, derive: Callable[[str], _T], url: str) -> _T:
    try:
        return derive(url)
    except TlsConfigError as exc:
        raise ImproperlyConfigured(f"{name}: {exc}.") from None


# TLS (auteur/tls.py; docs/security.md, "TLS to the data stores"): a rediss:// or amqps:// URL turns it on and
# its query names the CA file. redis-py reads that itself; Celery's broker, its result backend and
# RedBeat are handed these options (celeryconfig.py), which check the server by default.
REDIS_TLS = _tls("REDIS_URL", redis_tls_options, REDIS_URL)
CELERY_BROKER_URL, CELERY_BROKER_TLS = _tls("CELERY_BROKER_URL", broker_tls, CELERY_BROKER_URL)

CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "OPTIONS": {"socket_timeout": 2, "socket_connect_timeout": 2},
    }
}

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

# Production connects to its data stores over TLS unless told otherwise: a URL that reaches another
# machine unencrypted stops start-up, naming the setting (auteur/tls.py: sslmode=require or
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
AUTEUR_MEDIA_STALE_UPLOAD_SECONDS = env.int("AUTEUR_MEDIA_STALE_UPLOAD_SECONDS", default=24 * 3600)
AUTEUR_MEDIA_PROBE_RETRY_SECONDS = env.int("AUTEUR_MEDIA_PROBE_RETRY_SECONDS", default=30 * 60)
AUTEUR_MEDIA_PROBE_DEADLINE_SECONDS = env.int("AUTEUR_MEDIA_PROBE_DEADLINE_SECONDS", default=2 * 3600)
# A voice's sample is stored as a mono 24 kHz WAV of at most this many seconds (the start of the file).
AUTEUR_VOICE_SAMPLE_MAX_SECONDS = env.int("AUTEUR_VOICE_SAMPLE_MAX_SECONDS", default=30)
# Requests per minute per client IP to the local backend's signed URLs (/storage/*).
AUTEUR_RATE_LIMIT_STORAGE_PER_MINUTE = env.int("AUTEUR_RATE_LIMIT_STORAGE_PER_MINUTE", default=300)
# The same for the parts of multipart uploads, counted apart: 1,200 parts of 64 MiB a minute is
# 1.3 GB/s from one client.
AUTEUR_RATE_LIMIT_STORAGE_PARTS_PER_MINUTE = env.int("AUTEUR_RATE_LIMIT_STORAGE_PARTS_PER_MINUTE", default=1200)

# ---- Per-user quotas (auteur/quotas.py; EDL history is AUTEUR_EDL_HISTORY below)
AUTEUR_QUOTA_STORAGE_BYTES = env.int("AUTEUR_QUOTA_STORAGE_BYTES", default=50 * 1024**3)
AUTEUR_QUOTA_VOICES = env.int("AUTEUR_QUOTA_VOICES", default=20)
AUTEUR_QUOTA_PROJECTS = env.int("AUTEUR_QUOTA_PROJECTS", default=200)
# The probe runs in a child process with these limits (media/probing/sandbox.py); a file it cannot
# examine within them is rejected. A picture above AUTEUR_MEDIA_MAX_PIXELS is refused before
# anything decodes it; a file whose probe keeps killing its worker is rejected after
# AUTEUR_MEDIA_PROBE_MAX_ATTEMPTS runs.
AUTEUR_MEDIA_PROBE_MEMORY_MB = env.int("AUTEUR_MEDIA_PROBE_MEMORY_MB", default=2048)
AUTEUR_MEDIA_PROBE_CPU_SECONDS = env.int("AUTEUR_MEDIA_PROBE_CPU_SECONDS", default=120)
AUTEUR_MEDIA_PROBE_TIMEOUT_SECONDS = env.float("AUTEUR_MEDIA_PROBE_TIMEOUT_SECONDS", default=300.0)
AUTEUR_MEDIA_PROBE_MAX_ATTEMPTS = env.int("AUTEUR_MEDIA_PROBE_MAX_ATTEMPTS", default=3)
AUTEUR_MEDIA_MAX_PIXELS = env.int("AUTEUR_MEDIA_MAX_PIXELS", default=8192 * 8192)
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

STATIC_URL = "/static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
# In development whitenoise serves straight from the apps' static folders (no collectstatic).
WHITENOISE_USE_FINDERS = DEBUG
WHITENOISE_AUTOREFRESH = DEBUG

# ---- GPU backend
AUTEUR_GPU_BACKEND = env.str("AUTEUR_GPU_BACKEND", default="local")
# The values AUTEUR_GPU_BACKEND may take (checked when the jobs app starts). The benchmarks'
# settings (bench/settings.py) add `noop`, which returns canned results and runs no model.
AUTEUR_GPU_BACKENDS: tuple[str, ...] = ("local", "modal")
# Where the local backend keeps each call's payload, progress and outputs.
AUTEUR_GPU_LOCAL_DIR = env.str("AUTEUR_GPU_LOCAL_DIR", default=str(VAR_DIR / "gpu-local"))
# The local runners on this machine: at most this many engines at once, across every worker
# process (one per CPU by default: each runs a CPU-bound engine); the rest wait in line.
AUTEUR_LOCAL_RUNNER_SLOTS = env.int("AUTEUR_LOCAL_RUNNER_SLOTS", default=os.cpu_count() or 1)
# Memory each engine process (and its ffmpeg) may allocate, in MiB. By default the slots share
# 80% of the machine's memory, and each gets at least 2 GiB (what ffmpeg needs for a 1080p
# render, plus headroom; docs/jobs.md, "Local runners", has the measured figures).
AUTEUR_LOCAL_RUNNER_MEMORY_MB = env.int(
    "AUTEUR_LOCAL_RUNNER_MEMORY_MB",
    default=max(2048, int(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") * 0.8 / 2**20
                          / max(1, AUTEUR_LOCAL_RUNNER_SLOTS))),
)
AUTEUR_MODAL_APP = env.str("AUTEUR_MODAL_APP", default="auteur-gpu")
for _name in LIBRARY_SECRET_NAMES:  # read by Modal's client and huggingface_hub themselves
    if _value := env_value(_name):
        os.environ[_name] = _value
# A GPU call's result is input (gpu_tasks/results.py): the largest output file, inline output
# (bytes in a Modal result) and result JSON (transcript, answer, metadata) that are accepted; a
# larger one fails the job (`invalid_result`, refunded).
AUTEUR_GPU_OUTPUT_MAX_BYTES = env.int("AUTEUR_GPU_OUTPUT_MAX_BYTES", default=8 * 1024**3)
AUTEUR_GPU_INLINE_OUTPUT_MAX_BYTES = env.int("AUTEUR_GPU_INLINE_OUTPUT_MAX_BYTES", default=256 * 1024**2)
AUTEUR_GPU_RESULT_MAX_BYTES = env.int("AUTEUR_GPU_RESULT_MAX_BYTES", default=16 * 1024**2)
# How the probe's children and the local engines are isolated (gpu_tasks/sandbox.py): "auto"
# takes the best this machine allows (a uid of their own from AUTEUR_SANDBOX_UID_BASE + 0..COUNT
# and no network as root or with CAP_SETUID; a user and network namespace otherwise; none where
# neither works), and each process that starts them logs which once; "off" is for benchmarks.
AUTEUR_SANDBOX = env.str("AUTEUR_SANDBOX", default="auto")
AUTEUR_SANDBOX_UID_BASE = env.int("AUTEUR_SANDBOX_UID_BASE", default=2_000_000)
AUTEUR_SANDBOX_UID_COUNT = env.int("AUTEUR_SANDBOX_UID_COUNT", default=64)
# Model weights for the local backend's engines, one folder per model (manage.py download_models).
AUTEUR_MODELS_DIR = env.str("AUTEUR_MODELS_DIR", default=str(VAR_DIR / "models"))

# ---- Jobs (jobs/)
# At most this many jobs `processing` at once per user, by plan (None: no active subscription);
# the rest wait `queued` and start in submission order as slots free.
AUTEUR_JOB_CONCURRENCY = {
    None: env.int("AUTEUR_JOB_CONCURRENCY_FREE", default=1),
    "starter": env.int("AUTEUR_JOB_CONCURRENCY_STARTER", default=2),
    "pro": env.int("AUTEUR_JOB_CONCURRENCY_PRO", default=5),
}
AUTEUR_IDEMPOTENCY_WINDOW_SECONDS = env.int("AUTEUR_IDEMPOTENCY_WINDOW_SECONDS", default=24 * 3600)
# The reaper (jobs.reap, run by beat every AUTEUR_REAPER_INTERVAL_SECONDS, celeryconfig.py):
# re-publish a job still `pending` after this long (its publish was lost), and poll again a
# `processing` job with no sign of life for this long (its poll message was lost). Lower them
# for drills (bench/chaos.py); a repoll threshold below a few poll intervals only adds polls.
AUTEUR_REAPER_INTERVAL_SECONDS = env.float("AUTEUR_REAPER_INTERVAL_SECONDS", default=60.0)
AUTEUR_REAPER_PENDING_AFTER_SECONDS = env.int("AUTEUR_REAPER_PENDING_AFTER_SECONDS", default=60)
# A GPU call still running this long past its type's time limit is cancelled and its job fails
# (`timeout`); the grace covers a container's start and the result's upload.
AUTEUR_GPU_TIME_LIMIT_GRACE_SECONDS = env.int("AUTEUR_GPU_TIME_LIMIT_GRACE_SECONDS", default=30)
# A job step whose message keeps coming back without finishing (its worker process killed each
# time: out of memory, a crash) runs at most this many times; its next delivery fails the job
# `crash_loop`, refunded once, instead of taking another worker down (jobs/life/deliveries.py).
AUTEUR_STEP_MAX_DELIVERIES = env.int("AUTEUR_STEP_MAX_DELIVERIES", default=3)
if AUTEUR_STEP_MAX_DELIVERIES < 1:
    raise ImproperlyConfigured("AUTEUR_STEP_MAX_DELIVERIES must be at least 1.")
# Check every job event's data against the published event schema as it is recorded (the tests
# turn it on; a mismatch raises): jobs/event_schema.py.
AUTEUR_CHECK_EVENT_SCHEMA = env.bool("AUTEUR_CHECK_EVENT_SCHEMA", default=False)
# AI features switched off by the operator, by job type ("video-generation,lip-sync"), whatever
# the backend and its weights: submissions and quotes are 503 `feature_unavailable`, GET
# /jobs/types shows them unavailable, and jobs already accepted run to their end.
AUTEUR_FEATURES_OFF = frozenset(name.strip() for name in env.list("AUTEUR_FEATURES_OFF", default=[]) if name.strip())
AUTEUR_REAPER_REPOLL_AFTER_SECONDS = env.int("AUTEUR_REAPER_REPOLL_AFTER_SECONDS", default=120)
# Deadlines (jobs.life.deadlines): a job not started this long after its submission is aborted
# and refunded in full, whatever the client asked (0: no limit); per type in
# AUTEUR_QUEUE_TTL_BY_TYPE, e.g. "render=7200,tts=600" (a type not named takes the default).
AUTEUR_QUEUE_TTL_SECONDS = env.int("AUTEUR_QUEUE_TTL_SECONDS", default=24 * 3600)
AUTEUR_QUEUE_TTL_BY_TYPE = {
    name: int(value) for name, value in env.dict("AUTEUR_QUEUE_TTL_BY_TYPE", default={}).items()
}
# Fair share (jobs.life.fairshare): at most a type's capacity of its jobs are in inference at once:
# by default its Modal function's max_containers (gpu_tasks/types.py), or as named here, e.g.
# "lip-sync=4,tts=50" (0: no limit). While a type is full, its next job to start is the head job of
# the user with the least virtual time there (the credits started for them, over their plan's
# weight below): "weighted". "arrival" starts the oldest waiting job instead (first in, first out).
AUTEUR_TYPE_CAPACITY = {
    name: int(value) for name, value in env.dict("AUTEUR_TYPE_CAPACITY", default={}).items()
}
AUTEUR_FAIR_SHARE = env.str("AUTEUR_FAIR_SHARE", default="weighted")
if AUTEUR_FAIR_SHARE not in ("weighted", "arrival"):
    raise ImproperlyConfigured("AUTEUR_FAIR_SHARE must be weighted or arrival.")
if any(value < 0 for value in AUTEUR_TYPE_CAPACITY.values()):
    raise ImproperlyConfigured("AUTEUR_TYPE_CAPACITY: a capacity is a number of jobs, 0 for no limit.")
AUTEUR_FAIR_SHARE_WEIGHTS = {
    None: env.float("AUTEUR_FAIR_SHARE_WEIGHT_FREE", default=1.0),
    "starter": env.float("AUTEUR_FAIR_SHARE_WEIGHT_STARTER", default=2.0),
    "pro": env.float("AUTEUR_FAIR_SHARE_WEIGHT_PRO", default=4.0),
}
if not all(weight > 0 for weight in AUTEUR_FAIR_SHARE_WEIGHTS.values()):
    raise ImproperlyConfigured("AUTEUR_FAIR_SHARE_WEIGHT_*: a plan's weight must be above 0.")
# Long files in pieces (jobs/life/pieces.py): a transcription of a file longer than this runs as
# pieces of about AUTEUR_PIECES_TARGET_MS, cut at silences, at once (0: never).
AUTEUR_PIECES_MIN_MS = env.int("AUTEUR_PIECES_MIN_MS", default=20 * 60_000)
AUTEUR_PIECES_TARGET_MS = env.int("AUTEUR_PIECES_TARGET_MS", default=10 * 60_000)
# Quotes (jobs/services/quotes.py): how long a quoted price holds for a submission that names it.
AUTEUR_QUOTE_TTL_SECONDS = env.int("AUTEUR_QUOTE_TTL_SECONDS", default=600)
if AUTEUR_QUOTE_TTL_SECONDS < 1:
    raise ImproperlyConfigured("AUTEUR_QUOTE_TTL_SECONDS must be at least 1.")
# The result cache (jobs/services/result_cache.py): a job served from it costs this percentage of
# its price, rounded up, at least 1 credit.
AUTEUR_RESULT_CACHE_PRICE_PERCENT = env.int("AUTEUR_RESULT_CACHE_PRICE_PERCENT", default=10)
if not 1 <= AUTEUR_RESULT_CACHE_PRICE_PERCENT <= 100:
    raise ImproperlyConfigured("AUTEUR_RESULT_CACHE_PRICE_PERCENT must be 1 to 100.")
# How often beat sends the deadline sweep: a deadline is enforced at most this late (a job's start
# checks its own deadline exactly).
AUTEUR_DEADLINE_INTERVAL_SECONDS = env.float("AUTEUR_DEADLINE_INTERVAL_SECONDS", default=5.0)
# Beat (celeryconfig.py) schedules through RedBeat: its schedule lives in Redis, and a beat sends
# only while it holds a Redis lock it renews every tick, so a second replica waits as a standby
# and takes over within AUTEUR_BEAT_LOCK_SECONDS of the first one's death.
AUTEUR_BEAT_MAX_LOOP_SECONDS = env.float("AUTEUR_BEAT_MAX_LOOP_SECONDS", default=5.0)
AUTEUR_BEAT_LOCK_SECONDS = env.int("AUTEUR_BEAT_LOCK_SECONDS", default=30)
# ledger_check runs nightly at this UTC hour; its result is a metric (credits_ledger_check_*).
AUTEUR_LEDGER_CHECK_HOUR_UTC = env.int("AUTEUR_LEDGER_CHECK_HOUR_UTC", default=3)
# /readyz (auteur/health.py): checks whose failure degrades the service (200, "degraded") rather
# than making it unavailable; their result is cached this long and refreshed by one request.
AUTEUR_READYZ_DEGRADED_CHECKS = {
    "workers": "auteur.health.check_workers",
    "gpu_backend": "jobs.gpu_client.check",
}
if CELERY_BROKER_URL != REDIS_URL:
    # A broker of its own: without it jobs are still accepted (and charged), and wait for the
    # reaper to publish them again, so it degrades the service rather than making it unavailable.
    AUTEUR_READYZ_DEGRADED_CHECKS["broker"] = "auteur.health.check_broker"
AUTEUR_READYZ_DEGRADED_CACHE_SECONDS = env.int("AUTEUR_READYZ_DEGRADED_CACHE_SECONDS", default=15)
# ---- Metrics. The exporter (metrics_exporter/, `manage.py metrics_exporter`) serves the queues,
# workers, tasks and business state here (an internal address: never publish its port); it polls
# every AUTEUR_METRICS_POLL_SECONDS and, on start, counts the jobs that ended in the last
# AUTEUR_METRICS_BACKFILL_SECONDS. The API's own /metrics answers only a bearer token equal to
# AUTEUR_METRICS_TOKEN (404 while unset).
AUTEUR_METRICS_EXPORTER_ADDRESS = env.str("AUTEUR_METRICS_EXPORTER_ADDRESS", default="127.0.0.1")
AUTEUR_METRICS_EXPORTER_PORT = env.int("AUTEUR_METRICS_EXPORTER_PORT", default=9808)
AUTEUR_METRICS_POLL_SECONDS = env.float("AUTEUR_METRICS_POLL_SECONDS", default=15.0)
AUTEUR_METRICS_BACKFILL_SECONDS = env.float("AUTEUR_METRICS_BACKFILL_SECONDS", default=3600.0)
PROMETHEUS_EXPORT_MIGRATIONS = False  # no database query at every start
AUTEUR_METRICS_TOKEN = env_value("AUTEUR_METRICS_TOKEN")
# Cancels per user per minute, beside the general limit: a cancel refunds, so a flood of
# submit-then-cancel is refused early (429) rather than run as free work.
AUTEUR_RATE_LIMIT_CANCELS_PER_MINUTE = env.int("AUTEUR_RATE_LIMIT_CANCELS_PER_MINUTE", default=20)

# ---- Webhooks (webhooks/): outbound deliveries of job events, signed (Standard Webhooks).
# Plain http and loopback targets are refused unless this is on (development and the tests'
# local receiver); private, link-local and reserved addresses are refused always.
AUTEUR_WEBHOOK_ALLOW_LOOPBACK = env.bool("AUTEUR_WEBHOOK_ALLOW_LOOPBACK", default=DEBUG)
# One attempt's wall-clock deadline (connect, TLS, request and answer together); at most 30 s, so
# that it always ends well inside the delivery task's soft time limit (60 s).
AUTEUR_WEBHOOK_TIMEOUT_SECONDS = env.float("AUTEUR_WEBHOOK_TIMEOUT_SECONDS", default=10.0)
if not 0 < AUTEUR_WEBHOOK_TIMEOUT_SECONDS <= 30:
    raise ImproperlyConfigured("AUTEUR_WEBHOOK_TIMEOUT_SECONDS must be above 0 and at most 30.")
# A webhook host's name resolution is given up after this long (the URL is then refused).
AUTEUR_WEBHOOK_RESOLVE_TIMEOUT_SECONDS = env.float("AUTEUR_WEBHOOK_RESOLVE_TIMEOUT_SECONDS", default=5.0)
# A failed attempt is retried after base * 2**(n-1) seconds (with jitter, at most 10 minutes)
# for 24 hours; a target failing for 24 hours is disabled.
AUTEUR_WEBHOOK_RETRY_BASE_SECONDS = env.float("AUTEUR_WEBHOOK_RETRY_BASE_SECONDS", default=5.0)
AUTEUR_WEBHOOK_SWEEP_INTERVAL_SECONDS = env.float("AUTEUR_WEBHOOK_SWEEP_INTERVAL_SECONDS", default=15.0)

# ---- Retention (auteur/retention.py; docs/retention.md): beat runs every sweep this often, each
# deleting at most BATCH_SIZE rows per statement and transaction. Job events go this long after
# their job ended (the job row stays); job outputs after this many days (0: never).
AUTEUR_RETENTION_INTERVAL_SECONDS = env.float("AUTEUR_RETENTION_INTERVAL_SECONDS", default=3600.0)
AUTEUR_RETENTION_BATCH_SIZE = env.int("AUTEUR_RETENTION_BATCH_SIZE", default=1000)
AUTEUR_RETENTION_JOB_EVENTS_DAYS = env.int("AUTEUR_RETENTION_JOB_EVENTS_DAYS", default=30)
# Usage analytics (jobs.services.usage): one event per ended job, deleted this many days after it.
AUTEUR_USAGE_RETENTION_DAYS = env.int("AUTEUR_USAGE_RETENTION_DAYS", default=90)
AUTEUR_RETENTION_JOB_OUTPUTS_DAYS = env.int("AUTEUR_RETENTION_JOB_OUTPUTS_DAYS", default=0)

# ---- Real time: every job event is appended after commit to its owner's Redis Stream
# (jobs/services/stream.py), capped by length and by age; SSE and the WebSocket (realtime/) read
# it (resume from an event id within the window; /jobs/{id}/events is the record).
AUTEUR_EVENT_STREAM_MAXLEN = env.int("AUTEUR_EVENT_STREAM_MAXLEN", default=10_000)
AUTEUR_EVENT_STREAM_MAX_AGE_SECONDS = env.int("AUTEUR_EVENT_STREAM_MAX_AGE_SECONDS", default=24 * 3600)
AUTEUR_STREAM_HEARTBEAT_SECONDS = env.float("AUTEUR_STREAM_HEARTBEAT_SECONDS", default=15.0)
# Events a connection may have waiting; a client that falls this far behind is disconnected.
AUTEUR_STREAM_CLIENT_BUFFER = env.int("AUTEUR_STREAM_CLIENT_BUFFER", default=256)
AUTEUR_WS_AUTH_TIMEOUT_SECONDS = env.float("AUTEUR_WS_AUTH_TIMEOUT_SECONDS", default=5.0)
# Event streams and WebSockets one user may hold open at once, across every ASGI process
# (realtime/leases.py); one more is refused (SSE: 429 too_many_streams, WebSocket:
# close 4429). Each holds a lease in Redis, renewed while open: a crashed server's connections
# stop counting after AUTEUR_STREAM_LEASE_SECONDS.
AUTEUR_MAX_STREAMS_PER_USER = env.int("AUTEUR_MAX_STREAMS_PER_USER", default=20)
AUTEUR_STREAM_LEASE_SECONDS = env.float("AUTEUR_STREAM_LEASE_SECONDS", default=60.0)

# ---- Authentication: Supabase-compatible JWTs (auteur/users/authentication.py)
AUTEUR_JWT_AUDIENCE = env.str("AUTEUR_JWT_AUDIENCE", default="authenticated")
# In production every token must name its issuer: a token minted for another project that
# shares the audience (Supabase's is always `authenticated`) is refused.
AUTEUR_JWT_ISSUER = env.str("AUTEUR_JWT_ISSUER", default="")
if not DEBUG and not AUTEUR_JWT_ISSUER:
    raise ImproperlyConfigured(
        "AUTEUR_JWT_ISSUER is not set. It is required when DJANGO_DEBUG is off (production): the "
        "identity provider's `iss`, e.g. https://<project>.supabase.co/auth/v1."
    )
AUTEUR_JWKS_URL = env.str("AUTEUR_JWKS_URL", default="")
# Turn HS256 (tokens signed with the shared AUTEUR_JWT_SECRET) off once the provider signs with
# the keys of AUTEUR_JWKS_URL: a leaked shared secret then forges nothing.
AUTEUR_JWT_HS256_ENABLED = env.bool("AUTEUR_JWT_HS256_ENABLED", default=True)
if not AUTEUR_JWT_HS256_ENABLED and not AUTEUR_JWKS_URL:
    raise ImproperlyConfigured("AUTEUR_JWT_HS256_ENABLED is off but AUTEUR_JWKS_URL is not set: no token could verify.")
# JWKS keys are kept this long; the JWKS is fetched at most once per MIN_REFETCH, whatever
# tokens arrive, and a kid it did not have is refused without a fetch for UNKNOWN_KID_TTL.
AUTEUR_JWKS_CACHE_SECONDS = env.int("AUTEUR_JWKS_CACHE_SECONDS", default=300)
AUTEUR_JWKS_MIN_REFETCH_SECONDS = env.int("AUTEUR_JWKS_MIN_REFETCH_SECONDS", default=30)
AUTEUR_JWKS_UNKNOWN_KID_TTL_SECONDS = env.int("AUTEUR_JWKS_UNKNOWN_KID_TTL_SECONDS", default=300)
AUTEUR_RATE_LIMIT_USER_PER_MINUTE = env.int("AUTEUR_RATE_LIMIT_USER_PER_MINUTE", default=100)
AUTEUR_RATE_LIMIT_ANON_PER_MINUTE = env.int("AUTEUR_RATE_LIMIT_ANON_PER_MINUTE", default=30)
# /readyz probes per client IP per minute (a load balancer probes every few seconds).
AUTEUR_READYZ_RATE_LIMIT_PER_MINUTE = env.int("AUTEUR_READYZ_RATE_LIMIT_PER_MINUTE", default=60)

# ---- EDL documents (projects/edl/): bounded undo history and size limits per document
# Undo steps kept per project, a quota that prunes the oldest rather than refusing a save.
AUTEUR_EDL_HISTORY = env.int("AUTEUR_EDL_HISTORY", default=20)
AUTEUR_EDL_MAX_BYTES = env.int("AUTEUR_EDL_MAX_BYTES", default=2 * 1024 * 1024)
AUTEUR_EDL_MAX_TRACKS = env.int("AUTEUR_EDL_MAX_TRACKS", default=50)
AUTEUR_EDL_MAX_CLIPS = env.int("AUTEUR_EDL_MAX_CLIPS", default=5000)
AUTEUR_EDL_MAX_SEGMENTS = env.int("AUTEUR_EDL_MAX_SEGMENTS", default=20000)
# Why these defaults: projects/edl/documents.py EdlLimits. The render's pieces (clips after the
# transcript's cuts) must not exceed what its engine takes (gpu_tasks/engines/timeline.py).
AUTEUR_EDL_MAX_WORDS = env.int("AUTEUR_EDL_MAX_WORDS", default=50000)
AUTEUR_EDL_MAX_PAUSES = env.int("AUTEUR_EDL_MAX_PAUSES", default=50000)
AUTEUR_RENDER_MAX_PIECES = env.int("AUTEUR_RENDER_MAX_PIECES", default=400)

# ---- Plans and credits (credits/)
AUTEUR_PLAN_ALLOWANCES = {
    "starter": env.int("AUTEUR_PLAN_STARTER_MONTHLY_CREDITS", default=500),
    "pro": env.int("AUTEUR_PLAN_PRO_MONTHLY_CREDITS", default=3000),
}

# ---- Billing through Stripe (billing/). Without STRIPE_SECRET_KEY every billing endpoint
# answers 503 `billing_unavailable` and nothing else changes; there is no default for a secret.
STRIPE_SECRET_KEY = env_value("STRIPE_SECRET_KEY")
STRIPE_WEBHOOK_SECRET = env_value("STRIPE_WEBHOOK_SECRET")
# A signed event older than this is refused (a replayed capture), as Stripe's libraries do.
STRIPE_WEBHOOK_TOLERANCE_SECONDS = env.int("STRIPE_WEBHOOK_TOLERANCE_SECONDS", default=300)
STRIPE_TIMEOUT_SECONDS = env.float("STRIPE_TIMEOUT_SECONDS", default=20.0)
# Another address for Stripe's API (stripe-mock, `http://localhost:12111`); empty: Stripe's own.
STRIPE_API_BASE: str = env.str("STRIPE_API_BASE", default="")
# The Stripe price of each plan (plan -> price id); a plan without one cannot be bought.
STRIPE_PLAN_PRICES: dict[str, str] = {
    plan: price for plan, price in (
        ("starter", env.str("STRIPE_PRICE_STARTER", default="")),
        ("pro", env.str("STRIPE_PRICE_PRO", default="")),
    ) if price
}


def _credit_packs(value: str) -> dict[str, tuple[str, int]]:
    """`pack_500:price_abc:500,pack_2000:price_def:2000` -> {pack id: (Stripe price id, credits)}."""
    packs: dict[str, tuple[str, int]] = {}
    for item in filter(None, (part.strip() for part in value.split(","))):
        try:
            pack_id, price, credits = item.split(":")
            amount = int(credits)
        except ValueError:
            raise ImproperlyConfigured(f"AUTEUR_CREDIT_PACKS: {item!r} is not <id>:<price id>:<credits>") from None
        if amount <= 0:
            raise ImproperlyConfigured(f"AUTEUR_CREDIT_PACKS: {item!r} must grant a positive number of credits")
        packs[pack_id] = (price, amount)
    return packs


AUTEUR_CREDIT_PACKS = _credit_packs(env.str("AUTEUR_CREDIT_PACKS", default=""))
# Where Stripe's hosted pages send the user back to (the web app's pages).
STRIPE_CHECKOUT_SUCCESS_URL = env.str("STRIPE_CHECKOUT_SUCCESS_URL", default="http://localhost:3000/billing/success")
STRIPE_CHECKOUT_CANCEL_URL = env.str("STRIPE_CHECKOUT_CANCEL_URL", default="http://localhost:3000/billing")
STRIPE_PORTAL_RETURN_URL = env.str("STRIPE_PORTAL_RETURN_URL", default="http://localhost:3000/billing")

# ---- API
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["auteur.users.authentication.JWTAuthentication"],
    "DEFAULT_THROTTLE_CLASSES": ["auteur.throttling.SlidingWindowThrottle"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PARSER_CLASSES": ["auteur.parsers.JSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_SCHEMA_CLASS": "auteur.schema.AutoSchema",
    "EXCEPTION_HANDLER": "auteur.errors.api_exception_handler",
    "UNAUTHENTICATED_USER": None,
    # Client IP for per-IP limits: REMOTE_ADDR unless this many trusted proxies (Caddy: 1) sit in
    # front; DRF's default would trust any X-Forwarded-For a client sends.
    "NUM_PROXIES": env.int("AUTEUR_NUM_PROXIES", default=0),
}
# The reverse proxy's addresses or networks (Caddy, the ingress controller): the only peer whose
# X-Forwarded-For/-Proto are believed (auteur/proxies.py). gunicorn and uvicorn read this same
# variable for their own handling of those headers. Never `*`: a client that reached the server
# past the proxy could then forge its address (and escape per-IP limits) and its scheme.
FORWARDED_ALLOW_IPS: list[str] = env.list("FORWARDED_ALLOW_IPS", default=["127.0.0.1", "::1"])
for _entry in FORWARDED_ALLOW_IPS:
    try:
        if _entry.strip() == "*":
            raise ValueError(_entry)
        ipaddress.ip_network(_entry.strip(), strict=False)
    except ValueError:
        raise ImproperlyConfigured(
            f"FORWARDED_ALLOW_IPS: {_entry!r} is not an address or network. List the reverse proxy's "
            f"addresses (never '*', which would believe any client that bypasses the proxy)."
        ) from None
SPECTACULAR_SETTINGS = {
    "TITLE": "Auteur API",
    "DESCRIPTION": "Projects, media, EDL documents, credits and AI jobs for Auteur.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "SCHEMA_PATH_PREFIX": r"/api/v1",
    # Request bodies get their own components: without read-only fields, and with blank strings
    # refused (`minLength: 1`) where the API refuses them.
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {
        "MediaTypeEnum": "media.models.MediaType",
        "MediaStatusEnum": "media.models.MediaStatus",
        "TransactionTypeEnum": "credits.models.TransactionType",
        "SubscriptionStatusEnum": "credits.models.SubscriptionStatus",
        "JobStatusEnum": "jobs.models.JobStatus",
        "JobTypeEnum": "jobs.specs.JOB_TYPE_CHOICES",
        "TimelineFormatEnum": "projects.edl.interchange.FORMAT_NAMES",
    },
    # The event streams (plain ASGI views) and the event schema's link (realtime/openapi.py).
    "POSTPROCESSING_HOOKS": ["drf_spectacular.hooks.postprocess_schema_enums", "realtime.openapi.add_event_streams"],
}
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("AUTEUR_MAX_BODY_BYTES", default=5 * 1024 * 1024)
# A JSON body with more objects and arrays than this (counted by their brackets before it is read)
# is refused, 400; one nested deeper than the interpreter's recursion limit too.
AUTEUR_JSON_MAX_CONTAINERS = env.int("AUTEUR_JSON_MAX_CONTAINERS", default=500_000)
# What reading a user's document in a confined child may take (auteur/untrusted.py): address space,
# CPU and wall time; past them the request is refused, 422 input_too_complex. Within the API's own
# request timeout (gunicorn's 30 s), which the wall time must stay under.
AUTEUR_PARSE_MEMORY_MB = env.int("AUTEUR_PARSE_MEMORY_MB", default=1024)
AUTEUR_PARSE_CPU_SECONDS = env.int("AUTEUR_PARSE_CPU_SECONDS", default=10)
AUTEUR_PARSE_TIMEOUT_SECONDS = env.float("AUTEUR_PARSE_TIMEOUT_SECONDS", default=15.0)
# The largest timeline file an import reads (413 above it).
AUTEUR_INTERCHANGE_MAX_BYTES = env.int("AUTEUR_INTERCHANGE_MAX_BYTES", default=5 * 1024 * 1024)

# ---- Security
SESSION_COOKIE_SECURE = not DEBUG
CSRF_COOKIE_SECURE = not DEBUG
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
X_FRAME_OPTIONS = "DENY"
# HSTS on HTTPS answers: browsers then refuse plain HTTP to this host for that long. On by default
# in production (a year), off in debug; 0 turns it off.
SECURE_HSTS_SECONDS = env.int("DJANGO_SECURE_HSTS_SECONDS", default=0 if DEBUG else 365 * 24 * 3600)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", default=False)
SECURE_HSTS_PRELOAD = env.bool("DJANGO_SECURE_HSTS_PRELOAD", default=False)
# Pages served with the strict Content-Security-Policy (auteur/middleware.py): the HTML ones.
AUTEUR_CSP_PATH_PREFIXES = ("/admin/", "/api/docs/")

# ---- Admin login (auteur/users/admin_site.py). Passwords are checked through django-axes: after
# AUTEUR_ADMIN_LOGIN_FAILURE_LIMIT failures from one client address, or for one account, further
# attempts are refused (429) for AUTEUR_ADMIN_LOCKOUT_MINUTES. Attempts and lockouts are rows in
# Postgres, shared by every API process and listed in the admin.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env.int("AUTEUR_ADMIN_LOGIN_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=env.int("AUTEUR_ADMIN_LOCKOUT_MINUTES", default=15))
AXES_LOCKOUT_PARAMETERS = ["ip_address", "username"]
AXES_USERNAME_FORM_FIELD = "username"  # the admin form's field (it holds the email)
AXES_RESET_ON_SUCCESS = True
AXES_CLIENT_IP_CALLABLE = "auteur.users.admin_site.client_ip"
AXES_VERBOSE = False
# Staff with a confirmed TOTP device give its code at the admin login; with this on, every staff
# member must (enrol with `manage.py totp_enroll <email>` or in the admin's TOTP devices).
AUTEUR_ADMIN_REQUIRE_OTP = env.bool("AUTEUR_ADMIN_REQUIRE_OTP", default=False)
OTP_TOTP_ISSUER = "Auteur"
OTP_ADMIN_HIDE_SENSITIVE_DATA = True  # a device's secret is shown once, by totp_enroll, never in the admin

# The admin's password login names an account by email, which is unique among staff only (a
# database constraint): UserManager.get_by_natural_key looks among staff alone, so the
# non-unique USERNAME_FIELD that auth.W004 warns of is handled.
SILENCED_SYSTEM_CHECKS = ["auth.W004"]

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
# Dates as ISO 8601 in the admin's lists and pages ("2026-11-26 20:31:05", not "Nov. 26, 2026, 8:31 p.m.").
FORMAT_MODULE_PATH = ["auteur.formats"]
USE_TZ = True

# ---- Logging: JSON lines outside debug; request, user and job ids attached by the filter.
LOG_LEVEL = env.str("DJANGO_LOG_LEVEL", default="INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"context": {"()": "auteur.logging.ContextFilter"},
                "clock_tasks": {"()": "auteur.logging.ClockTaskFilter"}},
    "formatters": {
        "json": {"()": "auteur.logging.JsonFormatter"},
        "text": {"format": "%(asctime)s %(levelname)s %(name)s [req=%(request_id)s user=%(user_id)s "
                           "job=%(job_id)s] %(message)s"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "text" if DEBUG else "json",
            "filters": ["context", "clock_tasks"],
        }
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "INFO"},
        "botocore": {"level": "WARNING"},
        "urllib3": {"level": "WARNING"},
    },
}

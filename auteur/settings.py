"""Settings, read from the environment in this one place (README "Configuration" lists them all).

Celery's own settings (celeryconfig.py) take their values from here; the benchmarks' settings
(bench/settings.py) import these and add what only drills may use.

Production is the default: with ``DJANGO_DEBUG`` off, every secret must come from the environment
and start-up fails naming the first one missing. ``make run`` and ``make test`` turn debug on,
where development stand-ins are used instead.
"""

from __future__ import annotations

from pathlib import Path

import environ
from corsheaders.defaults import default_headers as default_cors_headers
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()

DEBUG = env.bool("DJANGO_DEBUG", default=False)


def secret(name: str, dev_default: str) -> str:
    """A secret from the environment; outside debug there is no default."""
    value: str = env.str(name, default="")
    if value:
        return value
    if DEBUG:
        return dev_default
    raise ImproperlyConfigured(
        f"{name} is not set. It is required when DJANGO_DEBUG is off (production); "
        f"set it in the environment, or set DJANGO_DEBUG=1 for development."
    )


def required(name: str) -> str:
    value: str = env.str(name, default="")
    if not value:
        raise ImproperlyConfigured(
            f"{name} is not set. `make run` / `make test` start embedded servers and set it; "
            f"otherwise point it at your server."
        )
    return value


SECRET_KEY = secret("DJANGO_SECRET_KEY", "dev-insecure-django-secret-key-not-for-production")
AUTEUR_JWT_SECRET = secret("AUTEUR_JWT_SECRET", "dev-insecure-jwt-secret-not-for-production-000")

_DEV_HOSTS = ["localhost", "127.0.0.1", "[::1]"]
ALLOWED_HOSTS: list[str] = env.list("DJANGO_ALLOWED_HOSTS", default=_DEV_HOSTS if DEBUG else [])
CSRF_TRUSTED_ORIGINS: list[str] = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])
CORS_ALLOWED_ORIGINS: list[str] = env.list("CORS_ALLOWED_ORIGINS", default=[])
CORS_ALLOW_HEADERS = (*default_cors_headers, "idempotency-key", "if-match")
CORS_EXPOSE_HEADERS = ["Idempotent-Replayed", "X-Request-ID", "ETag", "Retry-After"]

VAR_DIR = Path(env.str("AUTEUR_VAR_DIR", default=str(BASE_DIR / "var")))

INSTALLED_APPS = [
    "django.contrib.admin",
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
    "auteur.users",
    "credits",
    "media",
    "projects",
    "jobs",
]

MIDDLEWARE = [
    "auteur.middleware.RequestContextMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "corsheaders.middleware.CorsMiddleware",
    "auteur.middleware.ApiErrorMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
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
DATABASES["default"]["CONN_MAX_AGE"] = env.int("DATABASE_CONN_MAX_AGE", default=60)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DATABASES["default"].setdefault("OPTIONS", {})["connect_timeout"] = 5

REDIS_URL = required("REDIS_URL")
MONGODB_URI = required("MONGODB_URI")

CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "OPTIONS": {"socket_timeout": 2, "socket_connect_timeout": 2},
    }
}

# ---- Object storage (media/storage/): S3/R2 when a bucket is configured, else local files under
# var/. media.storage.get_storage() reads these and holds the one S3 client; Django's own
# default_storage is not configured, so nothing can write to a second storage by mistake.
AWS_STORAGE_BUCKET_NAME: str = env.str("AWS_STORAGE_BUCKET_NAME", default="")
AWS_S3_ENDPOINT_URL: str | None = env.str("AWS_S3_ENDPOINT_URL", default="") or None
AWS_S3_REGION_NAME: str | None = env.str("AWS_S3_REGION_NAME", default="") or None
if AWS_STORAGE_BUCKET_NAME:
    AWS_ACCESS_KEY_ID = secret("AWS_ACCESS_KEY_ID", "")
    AWS_SECRET_ACCESS_KEY = secret("AWS_SECRET_ACCESS_KEY", "")
AWS_S3_ADDRESSING_STYLE: str | None = env.str("AWS_S3_ADDRESSING_STYLE", default="") or None  # MinIO: path
AUTEUR_MAX_UPLOAD_BYTES = env.int("AUTEUR_MAX_UPLOAD_BYTES", default=5 * 1024**3)
AUTEUR_SIGNED_URL_TTL_SECONDS = env.int("AUTEUR_SIGNED_URL_TTL_SECONDS", default=15 * 60)
AUTEUR_MEDIA_STALE_UPLOAD_SECONDS = env.int("AUTEUR_MEDIA_STALE_UPLOAD_SECONDS", default=24 * 3600)
AUTEUR_MEDIA_PROBE_RETRY_SECONDS = env.int("AUTEUR_MEDIA_PROBE_RETRY_SECONDS", default=30 * 60)
AUTEUR_MEDIA_PROBE_DEADLINE_SECONDS = env.int("AUTEUR_MEDIA_PROBE_DEADLINE_SECONDS", default=2 * 3600)
# The probe runs in a child process with these limits (media/probe_sandbox.py); a file it cannot
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
STORAGES = {
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
MEDIA_ROOT = str(VAR_DIR / "storage")

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
AUTEUR_MODAL_APP = env.str("AUTEUR_MODAL_APP", default="auteur-gpu")
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
AUTEUR_IDEMPOTENCY_WINDOW_SECONDS = 24 * 3600
# The reaper (jobs.reap, run by beat every AUTEUR_REAPER_INTERVAL_SECONDS, celeryconfig.py):
# re-publish a job still `pending` after this long (its publish was lost), and poll again a
# `processing` job with no sign of life for this long (its poll message was lost). Lower them
# for drills (bench/chaos.py); a repoll threshold below a few poll intervals only adds polls.
AUTEUR_REAPER_INTERVAL_SECONDS = env.float("AUTEUR_REAPER_INTERVAL_SECONDS", default=60.0)
AUTEUR_REAPER_PENDING_AFTER_SECONDS = env.int("AUTEUR_REAPER_PENDING_AFTER_SECONDS", default=60)
AUTEUR_REAPER_REPOLL_AFTER_SECONDS = env.int("AUTEUR_REAPER_REPOLL_AFTER_SECONDS", default=120)

# ---- Authentication: Supabase-compatible JWTs (auteur/users/authentication.py)
AUTEUR_JWT_AUDIENCE = env.str("AUTEUR_JWT_AUDIENCE", default="authenticated")
AUTEUR_JWT_ISSUER = env.str("AUTEUR_JWT_ISSUER", default="")
AUTEUR_JWKS_URL = env.str("AUTEUR_JWKS_URL", default="")
AUTEUR_RATE_LIMIT_USER_PER_MINUTE = env.int("AUTEUR_RATE_LIMIT_USER_PER_MINUTE", default=100)
AUTEUR_RATE_LIMIT_ANON_PER_MINUTE = env.int("AUTEUR_RATE_LIMIT_ANON_PER_MINUTE", default=30)

# ---- EDL documents (projects/edl/): bounded undo history and size limits per document
AUTEUR_EDL_HISTORY = env.int("AUTEUR_EDL_HISTORY", default=20)
AUTEUR_EDL_MAX_BYTES = env.int("AUTEUR_EDL_MAX_BYTES", default=2 * 1024 * 1024)
AUTEUR_EDL_MAX_TRACKS = env.int("AUTEUR_EDL_MAX_TRACKS", default=50)
AUTEUR_EDL_MAX_CLIPS = env.int("AUTEUR_EDL_MAX_CLIPS", default=5000)
AUTEUR_EDL_MAX_SEGMENTS = env.int("AUTEUR_EDL_MAX_SEGMENTS", default=20000)

# ---- Plans and credits (credits/)
AUTEUR_PLAN_ALLOWANCES = {
    "starter": env.int("AUTEUR_PLAN_STARTER_MONTHLY_CREDITS", default=500),
    "pro": env.int("AUTEUR_PLAN_PRO_MONTHLY_CREDITS", default=3000),
}

# ---- API
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["auteur.users.authentication.JWTAuthentication"],
    "DEFAULT_THROTTLE_CLASSES": ["auteur.throttling.SlidingWindowThrottle"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PARSER_CLASSES": ["auteur.parsers.JSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_SCHEMA_CLASS": "auteur.api.AutoSchema",
    "EXCEPTION_HANDLER": "auteur.errors.api_exception_handler",
    "UNAUTHENTICATED_USER": None,
    # Client IP for per-IP limits: REMOTE_ADDR unless this many trusted proxies (Caddy: 1) sit in
    # front; DRF's default would trust any X-Forwarded-For a client sends.
    "NUM_PROXIES": env.int("AUTEUR_NUM_PROXIES", default=0),
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Auteur API",
    "DESCRIPTION": "Projects, media, EDL documents, credits and AI jobs for Auteur.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "SCHEMA_PATH_PREFIX": r"/api/v1",
    "ENUM_NAME_OVERRIDES": {
        "MediaTypeEnum": "media.models.MediaType",
        "MediaStatusEnum": "media.models.MediaStatus",
        "TransactionTypeEnum": "credits.models.TransactionType",
        "SubscriptionStatusEnum": "credits.models.SubscriptionStatus",
        "JobStatusEnum": "jobs.models.JobStatus",
        "JobTypeEnum": "jobs.models.JOB_TYPE_CHOICES",
    },
}
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("AUTEUR_MAX_BODY_BYTES", default=5 * 1024 * 1024)

# ---- Security
SESSION_COOKIE_SECURE = not DEBUG
CSRF_COOKIE_SECURE = not DEBUG
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
X_FRAME_OPTIONS = "DENY"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

# ---- Logging: JSON lines outside debug; request, user and job ids attached by the filter.
LOG_LEVEL = env.str("DJANGO_LOG_LEVEL", default="INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"context": {"()": "auteur.logging.ContextFilter"}},
    "formatters": {
        "json": {"()": "auteur.logging.JsonFormatter"},
        "text": {"format": "%(asctime)s %(levelname)s %(name)s [req=%(request_id)s user=%(user_id)s "
                           "job=%(job_id)s] %(message)s"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "text" if DEBUG else "json",
            "filters": ["context"],
        }
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "INFO"},
        "botocore": {"level": "WARNING"},
        "urllib3": {"level": "WARNING"},
    },
}

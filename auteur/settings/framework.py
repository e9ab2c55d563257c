"""Django itself: the apps, the middleware, hosts, templates, static files, passwords, time."""

from __future__ import annotations

from corsheaders.defaults import default_headers as default_cors_headers

from auteur.settings.environment import _DEV_JWT_SECRET, _DEV_SECRET_KEY, BASE_DIR, DEBUG, env, signing_secret

SECRET_KEY = signing_secret("DJANGO_SECRET_KEY", _DEV_SECRET_KEY)
AUTEUR_JWT_SECRET = signing_secret("AUTEUR_JWT_SECRET", _DEV_JWT_SECRET)

_DEV_HOSTS = ["localhost", "127.0.0.1", "[::1]"]
ALLOWED_HOSTS: list[str] = env.list("DJANGO_ALLOWED_HOSTS", default=_DEV_HOSTS if DEBUG else [])
CSRF_TRUSTED_ORIGINS: list[str] = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])
CORS_ALLOWED_ORIGINS: list[str] = env.list("CORS_ALLOWED_ORIGINS", default=[])
CORS_ALLOW_HEADERS = (*default_cors_headers, "idempotency-key", "if-match", "auteur-workspace")
CORS_EXPOSE_HEADERS = ["Idempotent-Replayed", "X-Request-ID", "ETag", "Retry-After"]

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
    "auteur.core.proxies.ForwardedHeadersMiddleware",
    "auteur.middleware.RequestContextMiddleware",
    # Before anything reads the database: each request's queries see only its caller's rows.
    "auteur.core.rls.RowLevelSecurityMiddleware",
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

STATIC_URL = "/static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
# In development whitenoise serves straight from the apps' static folders (no collectstatic).
WHITENOISE_USE_FINDERS = DEBUG
WHITENOISE_AUTOREFRESH = DEBUG

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

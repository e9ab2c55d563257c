"""The API: authentication (JWTs), every rate limit, request bodies and the documents users send,
the proxy in front, and the schema."""

from __future__ import annotations

import ipaddress

from django.core.exceptions import ImproperlyConfigured

from auteur.settings.environment import DEBUG, env

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
# An API key's requests per minute, unless the key names its own (each key has its own window).
AUTEUR_RATE_LIMIT_KEY_PER_MINUTE = env.int("AUTEUR_RATE_LIMIT_KEY_PER_MINUTE", default=300)
# Requests per minute of one paying account: every person and key acting in the workspaces it pays
# for (its personal one and the team workspaces it created) together, each also within their own
# limit above; never below one of those (auteur/core/throttling.py). So more keys or more
# workspaces do not multiply what one sign-up may send.
AUTEUR_RATE_LIMIT_ACCOUNT_PER_MINUTE = env.int("AUTEUR_RATE_LIMIT_ACCOUNT_PER_MINUTE", default=1000)
# API keys in use (neither revoked nor expired) per workspace (409 key_limit_reached past it).
AUTEUR_MAX_KEYS_PER_WORKSPACE = env.int("AUTEUR_MAX_KEYS_PER_WORKSPACE", default=50)
# API keys in use across the workspaces one account pays for (409 key_limit_reached past it).
AUTEUR_MAX_KEYS_PER_ACCOUNT = env.int("AUTEUR_MAX_KEYS_PER_ACCOUNT", default=100)
# API keys one person may make per hour (429 rate_limited past it): a key is never deleted, so
# making and revoking keys in a loop would otherwise grow the table without bound.
AUTEUR_RATE_LIMIT_KEY_CREATES_PER_HOUR = env.int("AUTEUR_RATE_LIMIT_KEY_CREATES_PER_HOUR", default=20)
AUTEUR_RATE_LIMIT_ANON_PER_MINUTE = env.int("AUTEUR_RATE_LIMIT_ANON_PER_MINUTE", default=30)
# /readyz probes per client IP per minute (a load balancer probes every few seconds).
AUTEUR_READYZ_RATE_LIMIT_PER_MINUTE = env.int("AUTEUR_READYZ_RATE_LIMIT_PER_MINUTE", default=60)
# Requests per minute per client IP to the local backend's signed URLs (/storage/*).
AUTEUR_RATE_LIMIT_STORAGE_PER_MINUTE = env.int("AUTEUR_RATE_LIMIT_STORAGE_PER_MINUTE", default=300)
# The same for the parts of multipart uploads, counted apart: 1,200 parts of 64 MiB a minute is
# 1.3 GB/s from one client.
AUTEUR_RATE_LIMIT_STORAGE_PARTS_PER_MINUTE = env.int("AUTEUR_RATE_LIMIT_STORAGE_PARTS_PER_MINUTE", default=1200)
# Cancels per user per minute, beside the general limit: a cancel refunds, so a flood of
# submit-then-cancel is refused early (429) rather than run as free work.
AUTEUR_RATE_LIMIT_CANCELS_PER_MINUTE = env.int("AUTEUR_RATE_LIMIT_CANCELS_PER_MINUTE", default=20)
# Publish requests per user per minute, beside the general limit (each may start a copy of a large file).
AUTEUR_RATE_LIMIT_PUBLISHES_PER_MINUTE = env.int("AUTEUR_RATE_LIMIT_PUBLISHES_PER_MINUTE", default=10)

# ---- API
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["auteur.users.authentication.JWTAuthentication"],
    "DEFAULT_THROTTLE_CLASSES": ["auteur.core.throttling.SlidingWindowThrottle"],
    "DEFAULT_PERMISSION_CLASSES": ["auteur.users.permissions.WorkspacePermission"],
    "DEFAULT_PARSER_CLASSES": ["auteur.core.parsers.JSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_SCHEMA_CLASS": "auteur.core.schema.AutoSchema",
    "EXCEPTION_HANDLER": "auteur.core.errors.api_exception_handler",
    "UNAUTHENTICATED_USER": None,
    # Client IP for per-IP limits: REMOTE_ADDR unless this many trusted proxies (Caddy: 1) sit in
    # front; DRF's default would trust any X-Forwarded-For a client sends.
    "NUM_PROXIES": env.int("AUTEUR_NUM_PROXIES", default=0),
}
# The reverse proxy's addresses or networks (Caddy, the ingress controller): the only peer whose
# X-Forwarded-For/-Proto are believed (auteur/core/proxies.py). gunicorn and uvicorn read this same
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
        "TimelineFormatEnum": "projects.edl.interchange.formats.FORMAT_NAMES",
    },
    # The event streams (plain ASGI views) and the event schema's link (realtime/openapi.py).
    "POSTPROCESSING_HOOKS": ["drf_spectacular.hooks.postprocess_schema_enums", "realtime.openapi.add_event_streams"],
}
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("AUTEUR_MAX_BODY_BYTES", default=5 * 1024 * 1024)
# A JSON body with more objects and arrays than this (counted by their brackets before it is read)
# is refused, 400; one nested deeper than the interpreter's recursion limit too.
AUTEUR_JSON_MAX_CONTAINERS = env.int("AUTEUR_JSON_MAX_CONTAINERS", default=500_000)
# What reading a user's document in a confined child may take (auteur/core/untrusted.py): address space,
# CPU and wall time; past them the request is refused, 422 input_too_complex. Within the API's own
# request timeout (gunicorn's 30 s), which the wall time must stay under.
AUTEUR_PARSE_MEMORY_MB = env.int("AUTEUR_PARSE_MEMORY_MB", default=1024)
AUTEUR_PARSE_CPU_SECONDS = env.int("AUTEUR_PARSE_CPU_SECONDS", default=10)
AUTEUR_PARSE_TIMEOUT_SECONDS = env.float("AUTEUR_PARSE_TIMEOUT_SECONDS", default=15.0)
# The largest timeline file an import reads (413 above it).
AUTEUR_INTERCHANGE_MAX_BYTES = env.int("AUTEUR_INTERCHANGE_MAX_BYTES", default=5 * 1024 * 1024)

"""The data stores: Postgres, Redis (cache, streams, rate limits, the broker by default), MongoDB,
and TLS to each."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from django.core.exceptions import ImproperlyConfigured

from auteur.core.secret_values import env_value
from auteur.core.tls import TlsConfigError, broker_tls, redis_tls_options
from auteur.settings.environment import env, required

_T = TypeVar("_T")

# Postgres, as the tables' owner (the processes that serve requests log in as the API, below).
DATABASES = {"default": env.db_url_config(required("DATABASE_URL"))}
# The API's own login (auteur/core/rls.py), read only by the processes that serve requests (auteur/wsgi.py
# and auteur/asgi.py set AUTEUR_SERVES_REQUESTS): their connections log in as auteur_api, and the
# owner's (DATABASE_URL) serves only the views that act across users (the admin, Stripe's webhook).
# Workers, beat and management commands keep the owner's login, whatever the environment holds.
DATABASE_API_URL: str = env_value("DATABASE_API_URL") if env.bool("AUTEUR_SERVES_REQUESTS", False) else ""
if DATABASE_API_URL:
    DATABASES["owner"] = DATABASES["default"]
    DATABASES["default"] = env.db_url_config(DATABASE_API_URL)
for _db in DATABASES.values():
    # Django's backend with a health check that polls the socket instead of a round trip.
    if _db.get("ENGINE") == "django.db.backends.postgresql":
        _db["ENGINE"] = "auteur.core.postgres"
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


# TLS (auteur/core/tls.py; docs/security.md, "TLS to the data stores"): a rediss:// or amqps:// URL turns it on and
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

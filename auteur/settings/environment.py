"""The environment the settings are read from: `.env`, DEBUG, where files live, and the secrets.

Production is the default: with ``DJANGO_DEBUG`` off, every secret must come from the environment
(or a file: auteur/core/secret_values.py) and start-up fails naming the first one missing. ``make run``
and ``make test`` turn debug on, where development stand-ins are used instead.
"""

from __future__ import annotations

import os
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

from auteur.core.envfile import read_env_file
from auteur.core.secret_values import env_value

BASE_DIR = Path(__file__).resolve().parent.parent.parent

# `.env` at the project root fills in what the environment does not set (auteur/core/envfile.py).
read_env_file()
env = environ.Env()

DEBUG = env.bool("DJANGO_DEBUG", default=False)
VAR_DIR = Path(env.str("AUTEUR_VAR_DIR", default=str(BASE_DIR / "var")))


# Every setting that is a secret or may carry one (a password in a URL): each is read by
# env_value (auteur/core/secret_values.py), so it may also come from a file, as Docker and Kubernetes
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


for _name in LIBRARY_SECRET_NAMES:  # read by Modal's client, huggingface_hub and Flower themselves
    if _value := env_value(_name):
        os.environ[_name] = _value

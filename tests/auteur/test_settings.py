"""Production mode refuses to start without its secrets, or with a guessable one, naming the variable."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROD_ENV = {
    "DJANGO_SETTINGS_MODULE": "auteur.settings",
    "DJANGO_DEBUG": "0",
    "DJANGO_SECRET_KEY": "s" * 50,
    "AUTEUR_JWT_SECRET": "j" * 40,
    "AUTEUR_JWT_ISSUER": "https://project.supabase.co/auth/v1",
    "DATABASE_URL": "postgres://u@127.0.0.1:1/db",
    "REDIS_URL": "redis://127.0.0.1:1/0",
    "MONGODB_URI": "mongodb://127.0.0.1:1/db",
}


def load_settings(env: dict[str, str], show: str = "settings.DEBUG") -> subprocess.CompletedProcess[str]:
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DJANGO_", "AUTEUR_", "AWS_")) and k not in ("DATABASE_URL", "REDIS_URL", "MONGODB_URI")
    }
    clean.update(env)
    return subprocess.run(
        [
            sys.executable,
            "-c",
            f"import django; django.setup(); from django.conf import settings; print({show})",
        ],
        env=clean,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_production_settings_load_with_every_secret():
    result = load_settings(PROD_ENV)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


@pytest.mark.parametrize("name", ["DJANGO_SECRET_KEY", "AUTEUR_JWT_SECRET"])
def test_production_refuses_to_start_without_a_secret(name):
    env = {k: v for k, v in PROD_ENV.items() if k != name}
    result = load_settings(env)
    assert result.returncode != 0
    assert f"{name} is not set" in result.stderr


def test_debug_is_off_unless_asked_for():
    env = {k: v for k, v in PROD_ENV.items() if k != "DJANGO_DEBUG"}
    env.pop("DJANGO_SECRET_KEY")
    result = load_settings(env)
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY is not set" in result.stderr


def test_a_bucket_without_keys_is_refused_in_production():
    result = load_settings({**PROD_ENV, "AWS_STORAGE_BUCKET_NAME": "media"})
    assert result.returncode != 0
    assert "AWS_ACCESS_KEY_ID is not set" in result.stderr


def test_development_mode_starts_without_secrets():
    env = {k: v for k, v in PROD_ENV.items() if k not in ("DJANGO_SECRET_KEY", "AUTEUR_JWT_SECRET")}
    result = load_settings({**env, "DJANGO_DEBUG": "1"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "True"


@pytest.mark.parametrize("name", ["DATABASE_URL", "REDIS_URL", "MONGODB_URI"])
def test_a_missing_server_url_is_named(name):
    result = load_settings({k: v for k, v in PROD_ENV.items() if k != name})
    assert result.returncode != 0
    assert f"{name} is not set" in result.stderr


def test_unknown_gpu_backend_is_refused():
    result = load_settings({**PROD_ENV, "AUTEUR_GPU_BACKEND": "cloud9"})
    assert result.returncode != 0
    assert "AUTEUR_GPU_BACKEND" in result.stderr
    assert "'local', 'modal'" in result.stderr, "the message names every accepted value"


def test_the_bench_backend_and_faults_are_refused_by_the_production_settings():
    result = load_settings({**PROD_ENV, "AUTEUR_GPU_BACKEND": "noop"})
    assert result.returncode != 0
    assert "bench.settings" in result.stderr
    # Fault injection is not even read outside the bench settings: nothing can switch it on.
    result = load_settings({**PROD_ENV, "AUTEUR_FAULT_INJECTION": "*:permanent=1.0"},
                           show="hasattr(settings, 'AUTEUR_FAULT_INJECTION')")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


def test_the_bench_settings_accept_the_noop_backend_and_faults():
    env = {**PROD_ENV, "DJANGO_SETTINGS_MODULE": "bench.settings", "AUTEUR_GPU_BACKEND": "noop",
           "AUTEUR_FAULT_INJECTION": "tts:permanent=0.5"}
    result = load_settings(env)
    assert result.returncode == 0, result.stderr


def env_file_values(path: Path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line and not line.startswith("#"))
    return {name.strip(): value.strip() for name, value in pairs}


SIGNING_SECRETS = ("DJANGO_SECRET_KEY", "AUTEUR_JWT_SECRET")
PLACEHOLDERS = [
    "change-me",
    "CHANGE-ME-please-0123456789abcdef0123456789",
    "changeme-0123456789abcdef0123456789abcdef",
    "django-insecure-0123456789abcdef0123456789abcdef",  # Django's startproject template
    "dev-insecure-django-secret-key-not-for-production",  # the development stand-ins
    "dev-insecure-jwt-secret-not-for-production-000",
    *(env_file_values(ROOT / ".env.example")[name] for name in SIGNING_SECRETS),
]


@pytest.mark.parametrize("name", SIGNING_SECRETS)
@pytest.mark.parametrize("value", PLACEHOLDERS)
def test_production_refuses_a_placeholder_secret(name, value):
    result = load_settings({**PROD_ENV, name: value})
    assert result.returncode != 0
    assert f"{name} is " in result.stderr and "ImproperlyConfigured" in result.stderr


@pytest.mark.parametrize("name", SIGNING_SECRETS)
def test_production_refuses_a_secret_shorter_than_32_bytes(name):
    result = load_settings({**PROD_ENV, name: "k" * 31})
    assert result.returncode != 0
    assert f"{name} is too short" in result.stderr
    assert load_settings({**PROD_ENV, name: "k" * 32}).returncode == 0


def test_production_requires_the_jwt_issuer():
    result = load_settings({k: v for k, v in PROD_ENV.items() if k != "AUTEUR_JWT_ISSUER"})
    assert result.returncode != 0
    assert "AUTEUR_JWT_ISSUER is not set" in result.stderr


def test_development_accepts_its_stand_ins_without_an_issuer():
    env = {k: v for k, v in PROD_ENV.items() if k not in ("AUTEUR_JWT_ISSUER", *SIGNING_SECRETS)}
    result = load_settings({**env, "DJANGO_DEBUG": "1", "DJANGO_SECRET_KEY": "short"},
                           show="settings.AUTEUR_JWT_ISSUER")
    assert result.returncode == 0, result.stderr


def test_hs256_cannot_be_turned_off_without_a_jwks():
    result = load_settings({**PROD_ENV, "AUTEUR_JWT_HS256_ENABLED": "0"})
    assert result.returncode != 0
    assert "AUTEUR_JWKS_URL is not set" in result.stderr
    ok = load_settings({**PROD_ENV, "AUTEUR_JWT_HS256_ENABLED": "0", "AUTEUR_JWKS_URL": "https://idp.example/jwks"},
                       show="settings.AUTEUR_JWT_HS256_ENABLED")
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip() == "False"


def test_the_makefile_test_environment_passes_the_production_checks():
    makefile = (ROOT / "Makefile").read_text().replace("\\\n", " ")
    assignments = re.search(r"^TEST_ENV := (.*)$", makefile, re.MULTILINE)
    assert assignments is not None
    test_env = dict(pair.split("=", 1) for pair in shlex.split(assignments.group(1)))
    assert set(SIGNING_SECRETS) | {"AUTEUR_JWT_ISSUER"} <= set(test_env)
    result = load_settings({**PROD_ENV, **test_env})
    assert result.returncode == 0, result.stderr


def test_with_database_api_url_the_api_logs_in_as_its_own_role_and_keeps_the_owners_login():
    env = {**PROD_ENV, "DATABASE_API_URL": "postgres://auteur_api:pw@127.0.0.1:1/db"}
    show = "[(a, d['USER'], d['CONN_MAX_AGE']) for a, d in sorted(settings.DATABASES.items())]"
    result = load_settings({**env, "AUTEUR_SERVES_REQUESTS": "1"}, show=show)  # as auteur/wsgi.py sets it
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[('default', 'auteur_api', 60), ('owner', 'u', 60)]"
    # A worker, beat or a management command: the owner's login, DATABASE_API_URL or not.
    assert load_settings(env, show="list(settings.DATABASES)").stdout.strip() == "['default']"

"""Production mode refuses to start without its secrets, naming the variable that is missing."""

from __future__ import annotations

import os
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

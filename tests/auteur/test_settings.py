"""Production mode refuses to start without its secrets, or with a guessable one, naming the variable."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest

from tests.settings_fork import run_python

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
    return run_python(f"import django; django.setup(); from django.conf import settings; print({show})", clean, ROOT)


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
    # What .env.example held before secrets moved to files: a .env copied then may still say so.
    "change-me-django-secret-key",
    "change-me-jwt-secret-at-least-32-characters",
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


# ---------------------------------------------------------------- secrets from files (NAME_FILE)

BUCKET = {"AWS_STORAGE_BUCKET_NAME": "media", "AWS_ACCESS_KEY_ID": "key-id", "AWS_SECRET_ACCESS_KEY": "key-secret"}
# name -> (the value its file holds, what to print to see it, other variables it needs)
SECRET_FILE_CASES: dict[str, tuple[str, str, dict[str, str]]] = {
    "DJANGO_SECRET_KEY": ("f" * 50, "settings.SECRET_KEY", {}),
    "AUTEUR_JWT_SECRET": ("g" * 40, "settings.AUTEUR_JWT_SECRET", {}),
    "DATABASE_URL": ("postgres://u:pw-from-file@127.0.0.1:1/db", "settings.DATABASES['default']['PASSWORD']", {}),
    # Read only where requests are served: the start-ups below say they serve requests.
    "DATABASE_API_URL": ("postgres://auteur_api:api-pw@127.0.0.1:1/db", "settings.DATABASE_API_URL", {}),
    "REDIS_URL": ("redis://:pw-from-file@127.0.0.1:1/0", "settings.REDIS_URL", {}),
    "CELERY_BROKER_URL": ("redis://:broker-pw@127.0.0.1:2/0", "settings.CELERY_BROKER_URL", {}),
    "AUTEUR_GPU_ANNOUNCE_URL": ("redis://gpu:gpu-pw@127.0.0.1:1/0", "settings.AUTEUR_GPU_ANNOUNCE_URL", {}),
    "MONGODB_URI": ("mongodb://u:pw-from-file@127.0.0.1:1/db", "settings.MONGODB_URI", {}),
    "AWS_ACCESS_KEY_ID": ("id-from-file", "settings.AWS_ACCESS_KEY_ID", BUCKET),
    "AWS_SECRET_ACCESS_KEY": ("secret-from-file", "settings.AWS_SECRET_ACCESS_KEY", BUCKET),
    "STRIPE_SECRET_KEY": ("sk_test_from_file", "settings.STRIPE_SECRET_KEY", {}),
    "STRIPE_WEBHOOK_SECRET": ("whsec_from_file", "settings.STRIPE_WEBHOOK_SECRET", {}),
    "AUTEUR_METRICS_TOKEN": ("metrics-token-from-file", "settings.AUTEUR_METRICS_TOKEN", {}),
    # Read by their libraries from the environment: the settings put them there.
    "MODAL_TOKEN_ID": ("ak-from-file", "__import__('os').environ['MODAL_TOKEN_ID']", {}),
    "MODAL_TOKEN_SECRET": ("as-from-file", "__import__('os').environ['MODAL_TOKEN_SECRET']", {}),
    "HF_TOKEN": ("hf_from_file", "__import__('os').environ['HF_TOKEN']", {}),
    "FLOWER_BASIC_AUTH": ("ops:pw-from-file", "__import__('os').environ['FLOWER_BASIC_AUTH']", {}),
}
LIBRARY_NAMES = ("MODAL_TOKEN_ID", "MODAL_TOKEN_SECRET", "HF_TOKEN", "FLOWER_BASIC_AUTH")


def without(name: str, extra: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in {**PROD_ENV, **extra}.items() if k != name}


def load_settings_clean(env: dict[str, str], show: str) -> subprocess.CompletedProcess[str]:
    # The library secrets and any NAME_FILE of the calling environment stay out of the child's.
    for name in (*LIBRARY_NAMES, *(f"{n}_FILE" for n in SECRET_FILE_CASES),
                 "STRIPE_SECRET_KEY", "STRIPE_WEBHOOK_SECRET"):
        env.setdefault(name, "")
    return load_settings(env, show=show)


def test_every_secret_setting_is_covered_here():
    result = load_settings(PROD_ENV, show="','.join(settings.SECRET_NAMES)")
    assert result.returncode == 0, result.stderr
    assert set(result.stdout.strip().split(",")) == set(SECRET_FILE_CASES)


def test_every_secret_is_read_from_the_file_its_FILE_variable_names(tmp_path):
    """All at once, in one start-up: each NAME unset, NAME_FILE naming a file as `echo` writes it."""
    env = {**PROD_ENV, "AWS_STORAGE_BUCKET_NAME": "media", "AUTEUR_SERVES_REQUESTS": "1"}
    for name, (value, _show, _extra) in SECRET_FILE_CASES.items():
        env.pop(name, None)
        path = tmp_path / name.lower()
        path.write_text(value + "\n")
        env[f"{name}_FILE"] = str(path)
    show = "__import__('json').dumps([" + ", ".join(show for _v, show, _e in SECRET_FILE_CASES.values()) + "])"
    # DATABASE_URL is the owner's login, which a process that serves requests keeps as "owner".
    show = show.replace("settings.DATABASES['default']['PASSWORD']", "settings.DATABASES['owner']['PASSWORD']")
    result = load_settings_clean(env, show)
    assert result.returncode == 0, result.stderr
    expected = ["pw-from-file" if name == "DATABASE_URL" else value
                for name, (value, _show, _extra) in SECRET_FILE_CASES.items()]
    assert json.loads(result.stdout) == expected


def test_every_secret_is_read_from_the_secrets_folder_by_its_name(tmp_path):
    """As Docker secrets and a Kubernetes Secret volume lay them out: AUTEUR_SECRETS_DIR/<NAME>."""
    env = {**PROD_ENV, "AWS_STORAGE_BUCKET_NAME": "media", "AUTEUR_SERVES_REQUESTS": "1",
           "AUTEUR_SECRETS_DIR": str(tmp_path)}
    for name, (value, _show, _extra) in SECRET_FILE_CASES.items():
        env.pop(name, None)
        (tmp_path / name).write_text(value + "\n")
    show = "__import__('json').dumps([" + ", ".join(show for _v, show, _e in SECRET_FILE_CASES.values()) + "])"
    show = show.replace("settings.DATABASES['default']['PASSWORD']", "settings.DATABASES['owner']['PASSWORD']")
    result = load_settings_clean(env, show)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == ["pw-from-file" if name == "DATABASE_URL" else value
                                         for name, (value, _show, _extra) in SECRET_FILE_CASES.items()]


def test_a_secret_missing_from_the_folder_is_unset_and_a_required_one_is_named(tmp_path):
    env = {**without("STRIPE_SECRET_KEY", {}), "AUTEUR_SECRETS_DIR": str(tmp_path)}
    env.pop("DJANGO_SECRET_KEY")
    (tmp_path / "DJANGO_SECRET_KEY").write_text("k" * 50)
    result = load_settings_clean(env, "repr(settings.STRIPE_SECRET_KEY)")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "''"  # billing off, as without the variable
    (tmp_path / "STRIPE_SECRET_KEY").write_text("\n")  # an empty file (Docker needs one to exist) is unset too
    result = load_settings_clean(env, "repr(settings.STRIPE_SECRET_KEY)")
    assert result.returncode == 0 and result.stdout.strip() == "''", result.stderr
    (tmp_path / "DJANGO_SECRET_KEY").unlink()
    result = load_settings_clean(env, "settings.SECRET_KEY")
    assert result.returncode != 0 and "DJANGO_SECRET_KEY is not set" in result.stderr


@pytest.mark.parametrize("also", ["variable", "file variable"])
def test_a_secret_in_the_folder_and_in_the_environment_is_refused(also, tmp_path):
    value = "s" * 50
    (tmp_path / "DJANGO_SECRET_KEY").write_text(value)
    other = tmp_path / "other"
    other.write_text(value)
    env = {**without("DJANGO_SECRET_KEY", {}), "AUTEUR_SECRETS_DIR": str(tmp_path),
           **({"DJANGO_SECRET_KEY": value} if also == "variable" else {"DJANGO_SECRET_KEY_FILE": str(other)})}
    result = load_settings_clean(env, "settings.SECRET_KEY")
    assert result.returncode != 0
    named = "DJANGO_SECRET_KEY" if also == "variable" else "DJANGO_SECRET_KEY_FILE"
    assert f"{named} is set and AUTEUR_SECRETS_DIR holds DJANGO_SECRET_KEY too" in result.stderr
    assert value not in result.stderr


def test_only_the_trailing_newline_of_a_secret_file_is_dropped(tmp_path):
    path = tmp_path / "secret"
    path.write_bytes(b"  spaced secret value of more than 32 bytes \r\n")
    result = load_settings_clean({**without("DJANGO_SECRET_KEY", {}), "DJANGO_SECRET_KEY_FILE": str(path)},
                                 "repr(settings.SECRET_KEY)")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == repr("  spaced secret value of more than 32 bytes ")


@pytest.mark.parametrize("name", ["DJANGO_SECRET_KEY", "DATABASE_URL", "STRIPE_SECRET_KEY", "HF_TOKEN"])
def test_a_secret_set_both_ways_is_refused(name, tmp_path):
    value, show, extra = SECRET_FILE_CASES[name]
    path = tmp_path / "secret"
    path.write_text(value)
    env = {**PROD_ENV, **extra, name: value, f"{name}_FILE": str(path)}
    result = load_settings_clean(env, show)
    assert result.returncode != 0
    assert f"{name} and {name}_FILE are both set" in result.stderr
    assert value not in result.stderr.replace(f"{name}_FILE", "")  # the error names, never shows, the secret


@pytest.mark.parametrize("content", [None, ""], ids=["missing-file", "empty-file"])
def test_a_secret_file_that_is_missing_or_empty_is_refused(content, tmp_path):
    path = tmp_path / "secret"
    if content is not None:
        path.write_text(content)
    env = {**without("AUTEUR_JWT_SECRET", {}), "AUTEUR_JWT_SECRET_FILE": str(path)}
    result = load_settings_clean(env, "settings.AUTEUR_JWT_SECRET")
    assert result.returncode != 0
    assert "AUTEUR_JWT_SECRET_FILE names" in result.stderr
    assert ("empty" if content is not None else "cannot be read") in result.stderr


def test_a_secret_from_a_file_gets_the_same_checks(tmp_path):
    path = tmp_path / "secret"
    path.write_text("change-me\n")
    result = load_settings_clean({**without("DJANGO_SECRET_KEY", {}), "DJANGO_SECRET_KEY_FILE": str(path)},
                                 "settings.SECRET_KEY")
    assert result.returncode != 0 and "DJANGO_SECRET_KEY is a placeholder value" in result.stderr
def test_with_database_api_url_the_api_logs_in_as_its_own_role_and_keeps_the_owners_login():
    env = {**PROD_ENV, "DATABASE_API_URL": "postgres://auteur_api:pw@127.0.0.1:1/db"}
    show = "[(a, d['USER'], d['CONN_MAX_AGE']) for a, d in sorted(settings.DATABASES.items())]"
    result = load_settings({**env, "AUTEUR_SERVES_REQUESTS": "1"}, show=show)  # as auteur/wsgi.py sets it
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[('default', 'auteur_api', 60), ('owner', 'u', 60)]"
    # A worker, beat or a management command: the owner's login, DATABASE_API_URL or not.
    assert load_settings(env, show="list(settings.DATABASES)").stdout.strip() == "['default']"


# ---------------------------------------------------------------- TLS to the data stores by default

REMOTE_PLAIN = {"DATABASE_URL": "postgres://u:p@db.example:5432/d", "REDIS_URL": "redis://:p@redis.example:6379/0",
                "MONGODB_URI": "mongodb://u:p@mongo.example:27017/d"}
REMOTE_TLS = {"DATABASE_URL": "postgres://u:p@db.example:5432/d?sslmode=verify-full",
              "REDIS_URL": "rediss://:p@redis.example:6380/0", "MONGODB_URI": "mongodb://u:p@mongo.example/d?tls=true"}


def test_production_refuses_a_data_store_reached_in_plain_text_naming_it_not_its_url():
    result = load_settings({**PROD_ENV, **REMOTE_PLAIN}, show="1")
    assert result.returncode != 0
    assert "DATABASE_URL, REDIS_URL, MONGODB_URI would reach another machine unencrypted" in result.stderr
    assert "db.example" not in result.stderr and ":p@" not in result.stderr
    allowed = load_settings({**PROD_ENV, **REMOTE_PLAIN, "AUTEUR_ALLOW_PLAINTEXT_DATASTORES": "1"}, show="1")
    assert allowed.returncode == 0, allowed.stderr
    encrypted = load_settings({**PROD_ENV, **REMOTE_TLS}, show="1")
    assert encrypted.returncode == 0, encrypted.stderr


def test_gpu_runners_announce_on_redis_url_unless_given_a_login_of_their_own():
    result = load_settings(PROD_ENV, show="settings.AUTEUR_GPU_ANNOUNCE_URL")
    assert result.returncode == 0 and result.stdout.strip() == PROD_ENV["REDIS_URL"], result.stderr
    own = "redis://gpu:pw@127.0.0.1:1/0"
    result = load_settings({**PROD_ENV, "AUTEUR_GPU_ANNOUNCE_URL": own}, show="settings.AUTEUR_GPU_ANNOUNCE_URL")
    assert result.returncode == 0 and result.stdout.strip() == own, result.stderr
    result = load_settings({**PROD_ENV, "AUTEUR_GPU_ANNOUNCE_URL": "redis://gpu:p@redis.example:6379/0"}, show="1")
    assert "AUTEUR_GPU_ANNOUNCE_URL would reach another machine unencrypted" in result.stderr


def test_what_counts_as_encrypted_and_what_as_staying_on_the_machine():
    from auteur.core.tls import plaintext_connections

    plain = {
        "a": "postgres://u@db.example/d", "b": "postgres://u@db.example/d?sslmode=prefer",
        "c": "redis://db.example:6379/0", "d": "amqp://u@mq.example//", "e": "mongodb://h1.example,h2.example/d",
        "f": "mongodb://u@m.example/d?ssl=false", "g": "http://minio.example:9000",
        "h": "postgres://u@127.0.0.1,db.example/d",
    }
    safe = {
        "i": "postgres://u@db.example/d?sslmode=require", "j": "rediss://db.example:6380/0", "k": "amqps://mq.example//",
        "l": "mongodb://u@m.example/d?tls=true", "m": "mongodb+srv://u@cluster.example/d", "n": "https://s3.example",
        "o": "postgres://u@127.0.0.1:5432/d", "p": "redis://localhost:6379/0", "q": "mongodb://[::1]:27017/d", "q2": "mongodb://[::1]/d",
        "r": "postgres://u@%2Fvar%2Frun%2Fpostgresql/d", "s": None, "t": "",
    }
    assert plaintext_connections({**plain, **safe}) == sorted(plain)

"""deploy/compose_secrets.py: the secret files docker-compose.yml mounts, and that the app's
containers start on exactly what compose gives them (their environment and their /run/secrets)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.settings_fork import run_python
from tests.test_compose import built_services, env_of, interpolate, load_compose, mounted_secrets

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "deploy/compose_secrets.py"
JWT = "j" * 40


def run(folder: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in ("AUTEUR_JWT_SECRET", "MODAL_TOKEN_ID")}
    return subprocess.run([sys.executable, str(SCRIPT), "--dir", str(folder)], capture_output=True, text=True,
                          env={**clean, **env}, timeout=60)


def contents(folder: Path) -> dict[str, str]:
    return {path.name: path.read_text() for path in sorted(folder.iterdir())}


def test_it_makes_every_file_private_to_the_folders_owner_and_readable_in_containers(tmp_path):
    folder = tmp_path / "secrets"
    done = run(folder, AUTEUR_JWT_SECRET=JWT)
    assert done.returncode == 0, done.stderr
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    modes = {path.name: stat.S_IMODE(path.stat().st_mode) for path in folder.iterdir()}
    assert set(modes.values()) == {0o444}, modes
    assert not [path for path in folder.iterdir() if path.name.startswith(".tmp-")]
    assert (folder / "AUTEUR_JWT_SECRET").read_text() == JWT + "\n"
    assert (folder / "MODAL_TOKEN_ID").read_text() == ""  # optional: present (Docker needs it) and unset
    assert len((folder / "DJANGO_SECRET_KEY").read_text().strip()) >= 50
    assert "REDIS_URL_API" in done.stdout or "files in" in done.stdout


def test_the_folder_is_never_committed_nor_built_into_the_image():
    ignored = subprocess.run(["git", "check-ignore", "--no-index", "secrets/DATABASE_URL"], cwd=ROOT,
                             capture_output=True, text=True)
    assert ignored.returncode == 0, "secrets/ must be in .gitignore"
    assert "secrets" in (ROOT / ".dockerignore").read_text().split()


def test_a_second_run_keeps_every_value_and_a_deleted_password_is_remade_with_its_url(tmp_path):
    folder = tmp_path / "secrets"
    assert run(folder, AUTEUR_JWT_SECRET=JWT).returncode == 0
    first = contents(folder)
    assert run(folder).returncode == 0  # the JWT secret is now the file's
    assert contents(folder) == first
    (folder / "POSTGRES_PASSWORD").unlink()
    (folder / "REDIS_URL_API").unlink()
    assert run(folder).returncode == 0
    again = contents(folder)
    assert again["POSTGRES_PASSWORD"] != first["POSTGRES_PASSWORD"]
    assert again["POSTGRES_PASSWORD"].strip() in again["DATABASE_URL"]
    assert again["REDIS_URL_API"] == first["REDIS_URL_API"]


def test_without_the_jwt_secret_it_says_what_to_do_and_fails(tmp_path):
    done = run(tmp_path / "secrets")
    assert done.returncode == 1
    assert "AUTEUR_JWT_SECRET is empty" in done.stderr and "AUTEUR_JWT_SECRET=..." in done.stderr
    assert (tmp_path / "secrets/DATABASE_URL").exists()  # the rest is made: fill in one file, run again


def test_a_password_of_ones_own_is_quoted_in_its_url(tmp_path):
    folder = tmp_path / "secrets"
    folder.mkdir(mode=0o700)
    (folder / "POSTGRES_PASSWORD").write_text("p@ss:w/rd?#\n")
    (folder / "MONGO_APP_PASSWORD").write_text("m%1\n")
    assert run(folder, AUTEUR_JWT_SECRET=JWT).returncode == 0
    assert (folder / "DATABASE_URL").read_text() == "postgres://auteur:p%40ss%3Aw%2Frd%3F%23@postgres:5432/auteur\n"
    assert (folder / "MONGODB_URI").read_text() == "mongodb://auteur:m%251@mongo:27017/auteur\n"


def test_a_redis_password_the_acl_file_cannot_hold_is_refused(tmp_path):
    folder = tmp_path / "secrets"
    folder.mkdir(mode=0o700)
    (folder / "REDIS_API_PASSWORD").write_text("two words\n")
    done = run(folder, AUTEUR_JWT_SECRET=JWT)
    assert done.returncode == 1 and "api user's password" in done.stderr
    assert not (folder / "redis-users.acl").exists()


# ----------------------------------------------------------------------------- the containers start


def container_secrets(service: dict[str, Any], made: Path, into: Path) -> Path:
    """/run/secrets as compose lays it out for `service`: each mount under its target's name."""
    into.mkdir()
    for target, source in mounted_secrets(service).items():
        (into / target).write_text((made / source).read_text())
    return into


def container_env(service: dict[str, Any], run_secrets: Path) -> dict[str, str]:
    env = {key: interpolate(value, {"AUTEUR_JWT_ISSUER": "https://project.supabase.co/auth/v1"})
           for key, value in env_of(service).items()}
    return {**env, "AUTEUR_SECRETS_DIR": str(run_secrets), "DJANGO_SETTINGS_MODULE": "auteur.settings",
            "PATH": os.environ["PATH"]}


@pytest.mark.parametrize(("service_name", "redis_user"),
                         [("api", "api"), ("worker-gpu", "worker"), ("flower", "worker")])
def test_an_app_container_starts_in_production_on_what_compose_mounts(service_name, redis_user, tmp_path):
    made = tmp_path / "secrets"
    assert run(made, AUTEUR_JWT_SECRET=JWT).returncode == 0
    service = built_services(load_compose()["services"])[service_name]
    env = container_env(service, container_secrets(service, made, tmp_path / "run-secrets"))
    if "PROMETHEUS_MULTIPROC_DIR" in env:  # the container's tmpfs
        env["PROMETHEUS_MULTIPROC_DIR"] = str(tmp_path)
    show = ("__import__('json').dumps([settings.DEBUG, "
            "settings.REDIS_URL.split('@')[0].split('//')[1].split(':')[0], settings.AWS_ACCESS_KEY_ID, "
            "settings.AUTEUR_JWT_SECRET == 'j' * 40, settings.DATABASES['default']['HOST']])")
    result = run_python(f"import django; django.setup(); from django.conf import settings; print({show})", env, ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f'[false, "{redis_user}", "auteur-app", true, "postgres"]'
    # The processes that serve requests (auteur/wsgi.py and asgi.py mark them) log in as the API's
    # own role; the owner's login is theirs only as the second alias, for the views that act across
    # users. Everything else logs in as the owner.
    databases = ("__import__('json').dumps({alias: [db['USER'], db['PASSWORD'], db['HOST']] "
                 "for alias, db in settings.DATABASES.items()})")
    serving = run_python(f"import django; django.setup(); from django.conf import settings; print({databases})",
                         {**env, "AUTEUR_SERVES_REQUESTS": "1"}, ROOT)
    assert serving.returncode == 0, serving.stderr
    logins = json.loads(serving.stdout)
    owner = ["auteur", (made / "POSTGRES_PASSWORD").read_text().strip(), "postgres"]
    if service_name == "api":
        assert logins == {"default": ["auteur_api", (made / "POSTGRES_API_PASSWORD").read_text().strip(), "postgres"],
                          "owner": owner}
    else:
        assert logins == {"default": owner}
    if service_name == "flower":
        login = run_python("import django; django.setup(); import runpy; "
                           "print(runpy.run_path('deploy/flowerconfig.py')['basic_auth'][0].split(':')[0])", env, ROOT)
        assert login.returncode == 0 and login.stdout.strip() == "admin", login.stderr


# ----------------------------------------------------------------------------- the API's role, on a real server


def test_db_roles_makes_the_apis_role_a_login_with_the_files_password_and_no_power(tmp_path):
    """The SQL docker-compose.yml's db-roles runs, run by psql against this run's PostgreSQL (on a
    role of its own name, so as not to touch the one the suite logs in as): the role is made when
    missing, and at every run is a login again, with the file's password (its trailing newline
    dropped) and every power taken back."""
    import base64
    import hashlib
    import hmac

    import psycopg

    from devstack.servers import _pg_bin_path

    compose = load_compose()
    [mount] = compose["services"]["db-roles"]["configs"]
    role = f"auteur_api_t{uuid.uuid4().hex[:8]}"
    sql = compose["configs"][mount["source"]]["content"].replace("auteur_api", role)
    sql = sql.replace("/run/secrets/", f"{tmp_path}/")
    (tmp_path / "api-role.sql").write_text(sql)
    url = os.environ["DATABASE_URL"]

    def run_db_roles(password: str) -> None:
        (tmp_path / "POSTGRES_API_PASSWORD").write_text(password + "\n")
        done = subprocess.run([str(_pg_bin_path() / "psql"), "--no-psqlrc", "--quiet", f"--dbname={url}",
                               f"--file={tmp_path / 'api-role.sql'}"], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr

    def role_row() -> tuple[Any, ...]:
        with psycopg.connect(url, autocommit=True) as conn:
            row = conn.execute("SELECT rolcanlogin, rolsuper, rolbypassrls, rolcreatedb, rolcreaterole, rolreplication,"
                               " rolpassword FROM pg_authid WHERE rolname = %s", [role]).fetchone()
        assert row is not None
        return tuple(row)

    def verifies(verifier: str, password: str) -> bool:
        """Whether a SCRAM-SHA-256 verifier (what PostgreSQL keeps) is the password's."""
        iterations, salt, keys = verifier.removeprefix("SCRAM-SHA-256$").replace("$", ":", 1).split(":", 2)
        stored_key = keys.split(":")[0]
        salted = hashlib.pbkdf2_hmac("sha256", password.encode(), base64.b64decode(salt), int(iterations))
        client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
        return base64.b64encode(hashlib.sha256(client_key).digest()).decode() == stored_key

    try:
        run_db_roles("first-Pw_0123456789")  # missing: created
        *powers, verifier = role_row()
        assert powers == [True, False, False, False, False, False]
        assert verifies(verifier, "first-Pw_0123456789") and not verifies(verifier, "first-Pw_0123456789\n")
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f'ALTER ROLE "{role}" NOLOGIN SUPERUSER BYPASSRLS CREATEROLE')
        run_db_roles("second-Pw_9876543210")  # there, with powers it must not have: taken back
        *powers, verifier = role_row()
        assert powers == [True, False, False, False, False, False]
        assert verifies(verifier, "second-Pw_9876543210") and not verifies(verifier, "first-Pw_0123456789")
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f'DROP ROLE IF EXISTS "{role}"')

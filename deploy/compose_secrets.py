#!/usr/bin/env python3
"""Write the secret files docker-compose.yml mounts as Docker secrets: run it next to that file.

    python3 deploy/compose_secrets.py            # makes ./secrets/, one file per secret

Standard library only (the compose host's python3). Every run keeps what exists and fills what is
missing, so it is safe to run again:

- Passwords and keys are generated once (random, URL-safe) and never changed: Postgres, MongoDB and
  MinIO take theirs only when their volume is first made, so a new one would lock the app out.
  Rotating one is deleting its file and changing it in the server too (docs/deploying.md); the
  API's Postgres password (POSTGRES_API_PASSWORD) is set on its role by docker-compose.yml's
  db-roles at every start, so deleting its file and recreating db-roles, api and asgi is enough.
- Secrets only their owner has (the identity provider's JWT secret, Modal's and Stripe's keys, a
  Hugging Face token) come from this command's environment when set there (`AUTEUR_JWT_SECRET=...
  python3 deploy/compose_secrets.py`), else from the file already there; an absent optional one is
  an empty file, which the app reads as unset (Docker needs the file to exist).
- The connection URLs and Redis's ACL file are derived from the passwords on every run, so they
  can never disagree with them.

Files are world-readable (0444) inside a folder only its owner may enter (0700): each container's
user (postgres, mongodb, redis, the app's) reads its secrets through the bind mount, and nobody
else on the host reaches them. Exits 1, naming them, while a required secret is empty.
"""

from __future__ import annotations

import argparse
import os
import secrets
import stat
import sys
import tempfile
from pathlib import Path
from urllib.parse import quote

sys.path.insert(0, str(Path(__file__).resolve().parent))
import redis_acl  # this folder's module, found through the line above

# Generated once: name -> how to make one.
GENERATED = {
    "DJANGO_SECRET_KEY": lambda: secrets.token_urlsafe(48),
    "POSTGRES_PASSWORD": lambda: secrets.token_urlsafe(32),
    # The API's own Postgres login, auteur_api (row-level security: auteur/core/rls.py); the
    # db-roles one-shot of docker-compose.yml sets it on the role at every start.
    "POSTGRES_API_PASSWORD": lambda: secrets.token_urlsafe(32),
    "MONGO_ROOT_PASSWORD": lambda: secrets.token_urlsafe(32),
    "MONGO_APP_PASSWORD": lambda: secrets.token_urlsafe(32),
    "MINIO_ROOT_USER": lambda: "root-" + secrets.token_hex(4),
    "MINIO_ROOT_PASSWORD": lambda: secrets.token_urlsafe(32),
    "MINIO_APP_USER": lambda: "auteur-app",  # the app's S3 access key id: a name, kept with its password
    "MINIO_APP_PASSWORD": lambda: secrets.token_urlsafe(32),
    **{f"REDIS_{role.upper()}_PASSWORD": (lambda: secrets.token_urlsafe(32)) for role in redis_acl.COMPOSE_ROLES},
    "AUTEUR_METRICS_TOKEN": lambda: secrets.token_urlsafe(32),
    "FLOWER_BASIC_AUTH": lambda: "admin:" + secrets.token_urlsafe(24),
}
# Given by their owner: name -> required.
PROVIDED = {
    "AUTEUR_JWT_SECRET": True,
    "MODAL_TOKEN_ID": False,
    "MODAL_TOKEN_SECRET": False,
    "STRIPE_SECRET_KEY": False,
    "STRIPE_WEBHOOK_SECRET": False,
    "HF_TOKEN": False,
}
# The API's Postgres role (auteur/core/rls.py's API_ROLE; this script runs without the app).
API_ROLE = "auteur_api"
# Where compose's own servers listen (docker-compose.yml's service names).
POSTGRES = "postgres:5432/auteur"
REDIS = "redis:6379/0"
MONGO = "mongo:27017/auteur"
DERIVED = ("DATABASE_URL", "DATABASE_API_URL", "MONGODB_URI", "REDIS_URL_API", "REDIS_URL_WORKER",
           "AUTEUR_GPU_ANNOUNCE_URL", "redis-users.acl")
ALL_FILES = (*GENERATED, *PROVIDED, *DERIVED)


def derived(values: dict[str, str]) -> dict[str, str]:
    """The URLs and the ACL file, from the passwords."""

    def redis_url(role: str) -> str:
        return f"redis://{role}:{quote(values[f'REDIS_{role.upper()}_PASSWORD'], safe='')}@{REDIS}"

    return {
        "DATABASE_URL": f"postgres://auteur:{quote(values['POSTGRES_PASSWORD'], safe='')}@{POSTGRES}",
        "DATABASE_API_URL": f"postgres://{API_ROLE}:{quote(values['POSTGRES_API_PASSWORD'], safe='')}@{POSTGRES}",
        "MONGODB_URI": f"mongodb://auteur:{quote(values['MONGO_APP_PASSWORD'], safe='')}@{MONGO}",
        "REDIS_URL_API": redis_url("api"),
        "REDIS_URL_WORKER": redis_url("worker"),
        "AUTEUR_GPU_ANNOUNCE_URL": redis_url("gpu"),
        "redis-users.acl": redis_acl.acl_file(
            {role: values[f"REDIS_{role.upper()}_PASSWORD"] for role in redis_acl.COMPOSE_ROLES}),
    }


def read(path: Path) -> str:
    return path.read_text(encoding="utf-8").rstrip("\r\n") if path.exists() else ""


def write(path: Path, value: str) -> None:
    """Replace `path` with `value` at once (a reader never sees half a file), mode 0444."""
    text = value if value.endswith("\n") or not value else value + "\n"
    with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=".tmp-", delete=False, encoding="utf-8") as tmp:
        tmp.write(text)
    os.chmod(tmp.name, 0o444)
    os.replace(tmp.name, path)


def make(folder: Path, environ: dict[str, str]) -> list[str]:
    """Fill `folder`; the required secrets still empty (none when the deployment can start)."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    values: dict[str, str] = {}
    for name, generate in GENERATED.items():
        values[name] = read(folder / name) or generate()
    for name in PROVIDED:
        values[name] = environ.get(name, "") or read(folder / name)
    values.update(derived(values))
    for name in ALL_FILES:
        path = folder / name
        if not path.exists() or read(path) != values[name].rstrip("\n") or stat.S_IMODE(path.stat().st_mode) != 0o444:
            write(path, values[name])
    return [name for name, required in PROVIDED.items() if required and not values[name]]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default="secrets", type=Path, help="the folder docker-compose.yml names (./secrets)")
    args = parser.parse_args(argv)
    try:
        missing = make(args.dir, dict(os.environ))
    except ValueError as exc:  # a password the ACL file cannot hold
        print(f"compose_secrets: {exc}", file=sys.stderr)
        return 1
    if missing:
        for name in missing:
            print(f"compose_secrets: {name} is empty: write it to {args.dir / name}, or run again with {name}=... set",
                  file=sys.stderr)
        return 1
    print(f"compose_secrets: {len(ALL_FILES)} files in {args.dir}/ (folder 0700, files 0444)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

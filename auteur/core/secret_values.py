"""Settings that are secrets, read from the environment or from files, as Docker and Kubernetes
mount secrets. Imports no settings: the Django settings and Flower's configuration
(deploy/flowerconfig.py) read their secrets through `env_value` alike."""

from __future__ import annotations

import os
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured


def secrets_dir() -> str:
    """AUTEUR_SECRETS_DIR: a folder of secrets, one file per setting named as its variable
    (`/run/secrets/DJANGO_SECRET_KEY`), as Docker secrets and a Kubernetes Secret mounted as a
    volume are laid out. A file missing there, or empty, is a setting left unset (an optional
    secret, such as Stripe's, may be absent, or an empty file that Docker needs to exist)."""
    return os.environ.get("AUTEUR_SECRETS_DIR", "")


def env_value(name: str) -> str:
    """NAME from the environment, or the contents of the file that NAME_FILE names, or of
    AUTEUR_SECRETS_DIR/NAME ("" if none).

    Two of them set is refused: which one wins would be a guess, and a stale value kept by mistake.
    The file's trailing newline (echo and editors add one) is not part of the value. An empty
    variable counts as unset (compose's `${NAME:-}` sets NAME to "").
    """
    value = os.environ.get(name, "")
    path = os.environ.get(f"{name}_FILE", "")
    folder = secrets_dir()
    if folder and Path(folder, name).exists():
        in_folder = _read(name, Path(folder, name), empty_ok=True)
        if in_folder and (value or path):
            also = name if value else f"{name}_FILE"
            raise ImproperlyConfigured(f"{also} is set and AUTEUR_SECRETS_DIR holds {name} too; set only one of them.")
        if in_folder:
            return in_folder
    if not path:
        return value
    if value:
        raise ImproperlyConfigured(f"{name} and {name}_FILE are both set; set only one of them.")
    return _read(name, Path(path), empty_ok=False)


def _read(name: str, path: Path, *, empty_ok: bool) -> str:
    """The secret in `path` without its trailing newline."""
    where = f"AUTEUR_SECRETS_DIR's {name}" if empty_ok else f"{name}_FILE names {str(path)!r}, which"
    try:
        value = path.read_text(encoding="utf-8").rstrip("\r\n")
    except (OSError, UnicodeDecodeError) as exc:
        raise ImproperlyConfigured(f"{where} cannot be read ({type(exc).__name__}).") from None
    if not value and not empty_ok:
        raise ImproperlyConfigured(f"{where} is empty.")
    return value

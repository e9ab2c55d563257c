"""The project's ``.env`` file, read by the settings and by ``make run`` before anything else.

``cp .env.example .env`` once, and ``make run``, ``manage.py`` in another terminal and a shell
running Celery all see the same secrets and settings. The file only fills in: a variable set in
the environment always wins. ``AUTEUR_ENV_FILE`` names another file, or none when set empty
(``make test`` reads none, so that a developer's ``.env`` never changes what the tests check).
This module imports nothing of Django: the devstack reads the file before settings exist.
"""

from __future__ import annotations

import os
from pathlib import Path

import environ

DEFAULT_ENV_FILE = Path(__file__).resolve().parents[2] / ".env"  # the project root


def read_env_file() -> Path | None:
    """Add to os.environ what the env file defines and the environment lacks; the file read, or None."""
    name = os.environ.get("AUTEUR_ENV_FILE", str(DEFAULT_ENV_FILE))
    if not name or not Path(name).is_file():
        return None
    environ.Env.read_env(Path(name), overwrite=False)  # setdefault: the environment wins
    return Path(name)

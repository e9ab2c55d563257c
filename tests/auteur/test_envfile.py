"""The `.env` file: it fills in what the environment lacks, never overrides it, and stays out of git."""

from __future__ import annotations

import os
import subprocess
import sys

from auteur.core.envfile import DEFAULT_ENV_FILE, read_env_file
from devstack import REPO_ROOT


def test_the_file_fills_in_what_the_environment_lacks_and_never_overrides_it(tmp_path, monkeypatch):
    env_file = tmp_path / ".env"
    env_file.write_text("# a comment\nAUTEUR_ENVFILE_A=from-file\nAUTEUR_ENVFILE_B='from-file'\n")
    monkeypatch.setenv("AUTEUR_ENV_FILE", str(env_file))
    monkeypatch.setenv("AUTEUR_ENVFILE_A", "")
    monkeypatch.delenv("AUTEUR_ENVFILE_A")  # absent now, and absent again after the test
    monkeypatch.setenv("AUTEUR_ENVFILE_B", "from-environment")

    assert read_env_file() == env_file
    assert os.environ["AUTEUR_ENVFILE_A"] == "from-file"
    assert os.environ["AUTEUR_ENVFILE_B"] == "from-environment"


def test_an_empty_name_reads_no_file(monkeypatch):
    monkeypatch.setenv("AUTEUR_ENV_FILE", "")
    assert read_env_file() is None


def test_settings_and_manage_py_read_the_same_file(tmp_path):
    """What `make run` and `manage.py` in another terminal see: the file, under the environment."""
    env_file = tmp_path / ".env"
    env_file.write_text("AUTEUR_EDL_HISTORY=7\nAUTEUR_RATE_LIMIT_USER_PER_MINUTE=11\nDJANGO_SECRET_KEY=from-the-file-0123456789abcdef-0123456789\n")
    env = {**os.environ, "AUTEUR_ENV_FILE": str(env_file), "AUTEUR_RATE_LIMIT_USER_PER_MINUTE": "42"}
    env.pop("AUTEUR_EDL_HISTORY", None)
    env.pop("DJANGO_SECRET_KEY", None)
    code = (
        "from django.conf import settings; "
        "print(settings.AUTEUR_EDL_HISTORY, settings.AUTEUR_RATE_LIMIT_USER_PER_MINUTE, settings.SECRET_KEY)"
    )
    result = subprocess.run(
        [sys.executable, "manage.py", "shell", "--verbosity", "0", "-c", code], env=env, cwd=REPO_ROOT,
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["7", "42", "from-the-file-0123456789abcdef-0123456789"]


def test_the_env_file_is_never_committed():
    name = str(DEFAULT_ENV_FILE.relative_to(REPO_ROOT))
    listed = subprocess.run(
        ["git", "check-ignore", "--no-index", name, ".env.example"], cwd=REPO_ROOT, capture_output=True, text=True,
    )
    assert listed.stdout.split() == [".env"], "the example stays committed, the real file never"

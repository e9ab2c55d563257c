"""The production image carries the product and none of the development tooling.

The image is built from the repository minus what `.dockerignore` names. The build context is
computed here from the tracked files with Docker's rules (a pattern excludes a path it matches or
any folder above it; a later `!pattern` takes a path back), then copied to a folder where every
module of the product is imported: none of them may need the dev stack, the tests or the benchmarks.
"""

from __future__ import annotations

import fnmatch
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DEV_ONLY = ("devstack/", "tests/", "bench/", "scripts/demo.py")


def ignore_rules() -> list[tuple[bool, str]]:
    rules = []
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        rules.append((negated, line.lstrip("!").strip("/")))
    return rules


def excluded(path: str, rules: list[tuple[bool, str]]) -> bool:
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    verdict = False
    for negated, pattern in rules:
        # `**/x` matches x at any depth, the root included.
        patterns = {pattern, pattern.removeprefix("**/")}
        if any(fnmatch.fnmatchcase(prefix, p) for prefix in prefixes for p in patterns):
            verdict = not negated
    return verdict


def build_context() -> list[str]:
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    rules = ignore_rules()
    return sorted(p for p in tracked.decode().split("\0") if p and not excluded(p, rules))


def test_the_image_ships_no_dev_stack_tests_or_benchmarks():
    context = build_context()
    assert "manage.py" in context and "auteur/settings/__init__.py" in context
    shipped = [p for p in context if p.startswith(DEV_ONLY)]
    assert shipped == []


def test_the_matcher_reads_docker_rules():
    rules = [(False, "**/__pycache__"), (False, "bench"), (False, ".env.*"), (True, ".env.example")]
    assert excluded("media/__pycache__/x.pyc", rules)
    assert excluded("bench/results/a.json", rules)
    assert not excluded("benchmarks.md", rules)
    assert excluded(".env.local", rules) and not excluded(".env.example", rules)


@pytest.mark.slow
def test_every_product_module_imports_without_the_dev_tooling(tmp_path: Path):
    for rel in build_context():
        target = tmp_path / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, target)
    code = (
        "import importlib, pathlib, django\n"
        "django.setup()\n"
        "root = pathlib.Path('.')\n"
        "for path in sorted(root.rglob('*.py')):\n"
        "    if path.parts[0] in ('deploy', 'scripts') or path.name == 'manage.py':\n"
        "        continue\n"
        "    name = '.'.join(path.with_suffix('').parts).removesuffix('.__init__')\n"
        "    importlib.import_module(name)\n"
        "import manage\n"
        "print('imported')\n"
    )
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "auteur.settings",
        "PYTHONPATH": str(tmp_path),
        "DATABASE_URL": "postgres://image@127.0.0.1:1/image",
        "REDIS_URL": "redis://127.0.0.1:1/0",
        "MONGODB_URI": "mongodb://127.0.0.1:1/image",
    }
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=240)
    assert done.returncode == 0, done.stderr[-4000:]
    assert "imported" in done.stdout
    assert not (tmp_path / "devstack").exists()

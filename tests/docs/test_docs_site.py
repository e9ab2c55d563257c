"""The documentation site builds strictly, and its generated tables hold everything the code defines.

The lists checked here come from the code by another path than the one docs/hooks.py takes: job
types and prices from the imported specs, settings from a plain-text scan of the source, error
codes from `auteur/core/errors.py`'s tables, the `ApplicationError` subclasses and the OpenAPI document.
So a setting the hook's parser misses, or a code it cannot see, fails here.
"""

from __future__ import annotations

import html
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from auteur.core.errors import _DRF_CODES, HTTP_STATUS, SERVER_FAILURES, ApplicationError, http_status
from gpu_tasks.types import JOB_TYPES, JobType
from tests.contract.support import served_schema

ROOT = Path(__file__).resolve().parents[2]
MKDOCS = Path(sys.executable).with_name("mkdocs")
# Where the code reads its settings (the tests, benchmarks' scripts and the site itself read none).
SETTINGS_SOURCES = ["auteur", "billing", "credits", "jobs", "media", "projects", "realtime", "webhooks",
                    "metrics_exporter", "gpu_tasks", "devstack", "scripts", "celeryconfig.py", "manage.py",
                    "bench/settings.py"]
READ = re.compile(
    r"(?:\benv\.(?:str|int|bool|float|list|dict)|\benv_value|\bsecret|\bsigning_secret|\brequired"
    r"|os\.environ\.get|os\.getenv|\b(?:env|environ)\.(?:get|pop))\(\s*\"([A-Z][A-Z0-9_]+)\""
)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # `make test` runs `make lint` first, which has just built this tree's site strictly into var/site;
    # it names that folder here (AUTEUR_TEST_DOCS_SITE) rather than have the build run twice.
    by_lint = Path(os.environ.get("AUTEUR_TEST_DOCS_SITE") or "/nonexistent")
    if (by_lint / "index.html").is_file():
        return by_lint
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    built = subprocess.run([str(MKDOCS), "build", "--strict", "--quiet", "-d", str(out)], cwd=ROOT, env=env,
                           capture_output=True, text=True, timeout=120)
    assert built.returncode == 0, built.stdout + built.stderr
    return out


def page(site: Path, name: str) -> str:
    return html.unescape((site / name / "index.html").read_text())


def rows(text: str) -> dict[str, str]:
    """A page's table rows by the code in their first cell."""
    found: dict[str, str] = {}
    for row in re.findall(r"<tr>(.*?)</tr>", text, re.S):
        first = re.match(r"\s*<td><code>([^<]+)</code>", row)
        if first:
            found.setdefault(first.group(1), row)
    return found


def test_every_job_type_is_listed_with_its_model_gpu_time_limit_and_price(site: Path) -> None:
    from jobs.specs import JOB_SPECS

    table = rows(page(site, "features"))
    assert {t.value for t in JobType} <= set(table)
    for job_type, engine in JOB_TYPES.items():
        row = table[job_type.value]
        assert engine.model in row, job_type
        assert f"<td>{engine.gpu.value}</td>" in row, job_type
        assert f"<td>{engine.time_limit_s} s</td>" in row, job_type
        assert JOB_SPECS[job_type].price.describe() in row, job_type


def settings_the_code_reads() -> set[str]:
    names: set[str] = set()
    for source in SETTINGS_SOURCES:
        path = ROOT / source
        files = [path] if path.is_file() else [f for f in path.rglob("*.py") if "migrations" not in f.parts]
        for file in files:
            names.update(READ.findall(file.read_text()))
    names.update(re.findall(r"\{\$([A-Z][A-Z0-9_]*)", "\n".join(
        line for line in (ROOT / "Caddyfile").read_text().splitlines() if not line.lstrip().startswith("#"))))
    return names


def test_every_setting_the_code_reads_is_in_the_configuration_page(site: Path) -> None:
    from django.conf import settings

    names = settings_the_code_reads()
    assert {"AUTEUR_FEATURES_OFF", "AUTEUR_GPU_BACKEND", "DATABASE_URL", "AUTEUR_PROXY_MIN_RATE"} <= names
    table = rows(page(site, "configuration"))
    missing = names - set(table) - {"PATH"}
    assert not missing, f"settings read by the code but not in docs/configuration.md's table: {sorted(missing)}"
    # Every secret is read too, some only in a loop over SECRET_NAMES.
    assert set(settings.SECRET_NAMES) <= set(table)


def error_codes_with_statuses() -> dict[str, set[int]]:
    """Every code the code defines or the OpenAPI document lists, with the statuses it comes with."""
    codes: dict[str, set[int]] = {}
    for code in [*HTTP_STATUS, *SERVER_FAILURES]:
        codes.setdefault(code, set()).add(http_status(code))
    for exception, code in _DRF_CODES.items():
        codes.setdefault(code, set()).add(exception.status_code)
    import auteur.urls  # noqa: F401  (every app's views, and so every error class)

    classes = list(ApplicationError.__subclasses__())
    while classes:
        cls = classes.pop()
        classes.extend(cls.__subclasses__())
        codes.setdefault(cls.code, set()).add(http_status(cls.code))
    for path_item in served_schema()["paths"].values():
        for operation in path_item.values():
            for status, response in operation.get("responses", {}).items():
                if int(status) >= 400:
                    listed = response.get("description", "").rpartition("Codes: ")[2]
                    for code in re.findall(r"`(\w+)`", listed):
                        codes.setdefault(code, set()).add(int(status))
    return codes


def test_every_error_code_is_in_the_error_page_with_its_status(site: Path) -> None:
    codes = error_codes_with_statuses()
    assert {"insufficient_credits", "validation_error", "rate_limited", "service_unavailable"} <= set(codes)
    table = rows(page(site, "errors"))
    missing = set(codes) - set(table)
    assert not missing, f"error codes not in docs/errors.md's table: {sorted(missing)}"
    for code, statuses in codes.items():
        listed = {int(s) for s in re.findall(r"\b([1-5]\d\d)\b", table[code].split("</td>")[1])}
        assert statuses <= listed, f"{code}: answered with {sorted(statuses)}, the page says {sorted(listed)}"


def test_the_api_page_links_the_event_schema(site: Path) -> None:
    assert re.search(r'href="[^"]*/api/schema/events/"', page(site, "api"))


def test_the_readme_is_a_front_door_that_starts_with_the_two_commands() -> None:
    readme = (ROOT / "README.md").read_text().splitlines()
    assert len(readme) <= 160
    assert readme[3].startswith("make run ") and readme[4].startswith("make test ")


def test_the_site_is_searchable_and_its_long_pages_have_headings(site: Path) -> None:
    """A reader finds a word from the search box (the index is built with the site, searched in the
    page: nothing fetched), and a long page has a table of contents to move through."""
    index = json.loads((site / "search" / "search_index.json").read_text())
    assert any("result cache" in doc["title"].lower() for doc in index["docs"])
    for name in (p.stem for p in (ROOT / "docs").glob("*.md")):
        text = (ROOT / "docs" / f"{name}.md").read_text()
        if len(text.split()) > 1500:
            assert text.count("\n## ") >= 3, f"docs/{name}.md has {len(text.split())} words and few headings"


def test_make_docs_builds_strictly_and_serves(tmp_path: Path) -> None:
    """`make docs` is listed by `make help` and its recipe builds with --strict before it serves."""
    made = subprocess.run(["make", "-n", "docs"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert "mkdocs build --strict" in made and "mkdocs serve" in made
    assert "make docs" in subprocess.run(["make", "help"], cwd=ROOT, capture_output=True, text=True,
                                         check=True).stdout

"""CPU per test, for deciding what to cut when the suite is slow (opt-in; a normal run never loads it).

    make test PYTEST_ARGS="-p tests.cpu_profile"

The suite is CPU-bound on a small machine, so wall-clock durations (``--durations``) mostly show
how busy the other processes were. This records, for each test, the CPU its pytest process spent
(user + system) and the CPU of the child processes reaped meanwhile (Celery workers, runners,
``manage.py``, ffmpeg...). A child is counted when it is reaped: a worker a module-scoped fixture
starts is counted at the teardown of that module's last test, so the report sums by file too.

Each process writes ``<dir>/<xdist worker>.tsv`` (node id, own CPU, children's CPU, wall seconds);
the process that ran the session prints the files and tests that took the most CPU. ``<dir>`` is
``$AUTEUR_CPU_PROFILE_DIR`` or ``var/cpu-profile``.
"""

from __future__ import annotations

import collections
import os
import resource
import time
from collections.abc import Generator
from pathlib import Path

import pytest

SHOWN = 25
_rows: list[tuple[str, float, float, float]] = []


def _folder() -> Path:
    default = Path(__file__).resolve().parent.parent / "var" / "cpu-profile"
    return Path(os.environ.get("AUTEUR_CPU_PROFILE_DIR") or default)


def _cpu() -> tuple[float, float]:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime, children.ru_utime + children.ru_stime


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Generator[None, None, None]:
    own, children = _cpu()
    started = time.perf_counter()
    yield
    own_after, children_after = _cpu()
    _rows.append((item.nodeid, own_after - own, children_after - children, time.perf_counter() - started))


def pytest_sessionstart(session: pytest.Session) -> None:
    if "PYTEST_XDIST_WORKER" not in os.environ:  # the process that reports: start from nothing
        folder = _folder()
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.glob("*.tsv"):
            old.unlink()


def pytest_sessionfinish(session: pytest.Session) -> None:
    folder = _folder()
    folder.mkdir(parents=True, exist_ok=True)
    name = os.environ.get("PYTEST_XDIST_WORKER", "main")
    with open(folder / f"{name}.tsv", "w", encoding="utf-8") as out:
        for node, own, children, wall in _rows:
            out.write(f"{node}\t{own:.3f}\t{children:.3f}\t{wall:.3f}\n")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    by_file: dict[str, float] = collections.defaultdict(float)
    tests: list[tuple[float, str]] = []
    for path in sorted(_folder().glob("*.tsv")):
        for line in path.read_text(encoding="utf-8").splitlines():
            node, own, children, _wall = line.split("\t")
            cpu = float(own) + float(children)
            by_file[node.split("::")[0]] += cpu
            tests.append((cpu, node))
    total = sum(by_file.values())
    terminalreporter.section(f"CPU per test: {total:.0f} CPU-s in all (own + reaped children)")
    for file, cpu in sorted(by_file.items(), key=lambda pair: pair[1], reverse=True)[:SHOWN]:
        terminalreporter.write_line(f"{cpu:8.1f} s  {file}")
    terminalreporter.write_line("tests:")
    for cpu, node in sorted(tests, reverse=True)[:SHOWN]:
        terminalreporter.write_line(f"{cpu:8.1f} s  {node}")

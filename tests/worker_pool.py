"""One plain Celery worker per test process, kept from one test that asks for it to the next.

A worker (and the GPU announcements' consumer beside it) takes seconds of CPU to start, and most
pipeline tests need nothing of their own from it: they ask for `celery_worker` (tests/jobs/conftest.py)
and share one, started with this process's environment on the test database. It is kept only while
the tests that run one after another all ask for it: before any other test is set up it is stopped
(`release`, from tests/conftest.py), so a test that needs no worker, a worker of its own (fault
injection, a probe module, one it kills) or no consumer at all never meets it. Under xdist the tests
that ask for it share one scheduling group (tests/parallel.py), so they run back to back on one process.

It is started again whenever the environment a new one would get differs from the one it has
(a test that changed os.environ), or when its worker or consumer is no longer running. What a
previous test left queued finds its rows gone (each of these tests is transactional) and ends there.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tests.jobs.conftest import Worker

FIXTURE = "celery_worker"
# Set by pytest for each test, so never the same twice: not part of what the worker was started with.
_PER_TEST = ("PYTEST_CURRENT_TEST",)

_kept: list[Worker] = []


def _comparable(env: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if k not in _PER_TEST}


def get(env: dict[str, str]) -> Worker:
    """The kept worker if it runs with `env`, else a new one (the kept one stopped first)."""
    from tests.jobs.conftest import Worker

    if _kept:
        worker = _kept[0]
        alive = worker.proc.poll() is None and worker.consumer is not None and worker.consumer.poll() is None
        if alive and _comparable(worker.env) == _comparable(env):
            return worker
        release()
    worker = Worker(env)
    _kept.append(worker)
    return worker


def release() -> None:
    """Stop the kept worker, if any."""
    while _kept:
        _kept.pop().stop()


def running() -> bool:
    return bool(_kept)

"""A real Celery worker (a subprocess, prefork) on the test database, for pipeline tests."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from django.conf import settings

from auteur.core.queues import ALL_QUEUES
from devstack import REPO_ROOT
from devstack.process_group import children_running, stop_group
from tests import worker_pool
from tests.jobs.support import (  # noqa: F401 - fixtures for every test module here
    funded_fixture,
    gpu_backend_fixture,
    make_media_fixture,
    media_fixture,
    project_fixture,
)
from tests.media.conftest import samples, upload_local  # noqa: F401 - fixtures and helpers shared

WORKER_READY_TIMEOUT = 60


class Worker:
    """A Celery worker and, beside it, the GPU announcements' consumer (`manage.py gpu_events`):
    with a backend that announces, a job whose call is running moves on only through it."""

    def __init__(self, env: dict[str, str], include: str = "", consumer: bool = True) -> None:
        self.env = env
        self.name = f"test-{os.getpid()}@{socket.gethostname()}"
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "auteur", "worker", "-Q", ",".join(ALL_QUEUES), "-c", "2",
             "-O", "fair", "--without-mingle", "--without-gossip", "-n", self.name,
             "--loglevel", "INFO", *(["--include", include] if include else [])],
            env=env, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            start_new_session=True,
        )
        threading.Thread(target=self._pump, daemon=True).start()
        self.consumer = (
            subprocess.Popen([sys.executable, "manage.py", "gpu_events"], env=env, cwd=REPO_ROOT,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
            if consumer else None
        )
        deadline = time.monotonic() + WORKER_READY_TIMEOUT
        while not any("ready." in line for line in self.lines):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("celery worker did not start:\n" + "".join(self.lines[-50:]))
            time.sleep(0.1)

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    def children(self, marker: str) -> list[psutil.Process]:
        """The worker's live descendants whose command line contains `marker`."""
        return children_running(self.proc.pid, marker, recursive=True)

    def stop(self) -> None:
        # The consumer is told first: its blocking read ends while the worker shuts down.
        if self.consumer is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.consumer.pid, signal.SIGTERM)
        stop_group(self.proc, 30)
        self.stop_consumer()

    def stop_consumer(self) -> None:
        if self.consumer is not None:
            stop_group(self.consumer, 10)
            self.consumer = None


def subprocess_env(**extra: str) -> dict[str, str]:
    """This process's environment with the test database's URL: for a process the test starts."""
    db = settings.DATABASES["default"]
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    return {**os.environ, "DATABASE_URL": f"postgres://{db['USER']}{password}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
            **extra}


@pytest.fixture
def start_worker(django_db_setup: None, django_db_blocker: Any) -> Iterator[Callable[..., Worker]]:
    """Start a worker on the test database with extra environment (fault injection...);
    `include`: a module the worker imports too (a remote-control probe, say)."""
    workers: list[Worker] = []

    def start(include: str = "", consumer: bool = True, **extra: str) -> Worker:
        worker = Worker(subprocess_env(**extra), include, consumer)
        workers.append(worker)
        return worker

    yield start
    for worker in workers:
        worker.stop()


@pytest.fixture
def celery_worker(django_db_setup: None) -> Worker:
    """A plain worker on the test database (this process's environment, every queue, the consumer
    beside it), running when the test starts; shared with the tests that ask for it right before or
    after this one (tests/worker_pool.py). A test that needs a fresh one, one with settings of its
    own, or one it stops or kills uses `start_worker`."""
    return worker_pool.get(subprocess_env())


def wait_for(predicate: Callable[[], Any], timeout: float = 90, interval: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s")


def wait_terminal(job_id: Any, timeout: float = 120) -> Any:
    from jobs.models import TERMINAL_STATUSES, Job

    return wait_for(lambda: (j := Job.objects.get(pk=job_id)).status in TERMINAL_STATUSES and j, timeout)


def speech_wav(path: Path, text: str) -> Path:
    from gpu_tasks.engines.tts import synthesize, write_wav

    pcm, rate = synthesize(text)
    write_wav(path, pcm, rate)
    return path

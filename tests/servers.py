"""What a test needs to start the API or a worker as a subprocess on the test's own servers."""

from __future__ import annotations

import os
import subprocess
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from django.conf import settings

from devstack import REPO_ROOT
from devstack.front import front_processes, gunicorn_argv, uvicorn_argv
from devstack.ports import free_port, wait_for_port
from devstack.process_group import stop_group


def subprocess_database_url() -> str:
    """DATABASE_URL of the test database (once django_db_setup has run), for a subprocess."""
    db = settings.DATABASES["default"]
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    return f"postgres://{db['USER']}{password}@{db['HOST']}:{db['PORT']}/{db['NAME']}"


class AsgiServer:
    """A real uvicorn serving auteur/asgi.py on a loopback port (its output kept in `lines`)."""

    def __init__(self, port: int, proc: subprocess.Popen[str]) -> None:
        self.port, self.proc = port, proc
        self.lines: list[str] = []
        threading.Thread(target=self._pump, daemon=True).start()

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)


@contextmanager
def asgi_server(**extra_env: str) -> Iterator[AsgiServer]:
    """uvicorn on the test database and Redis, with `extra_env` added to its environment."""
    with _server(uvicorn_argv, **extra_env) as server:
        yield server


@contextmanager
def gunicorn_server(**extra_env: str) -> Iterator[AsgiServer]:
    """The API's gunicorn (one sync worker, `make run`'s config) on the test database and Redis."""
    with _server(lambda port: gunicorn_argv(port, "--workers", "1"), **extra_env) as server:
        yield server


@contextmanager
def _server(argv: Callable[[int], list[str]], **extra_env: str) -> Iterator[AsgiServer]:
    port = free_port()
    env = {**os.environ, "DATABASE_URL": subprocess_database_url(), "REDIS_URL": settings.REDIS_URL, **extra_env}
    proc = subprocess.Popen(argv(port), env=env, cwd=REPO_ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    server = AsgiServer(port, proc)
    try:
        wait_for_port(port, 60, proc)  # type: ignore[arg-type]
        yield server
    finally:
        stop_group(proc, 10)


@contextmanager
def running_front(logs: Path, **extra_env: str) -> Iterator[str]:
    """`make run`'s front on the test database: Caddy on a free port with the API's gunicorn, the
    storage gunicorn and uvicorn behind it, as devstack/front.py plans them. Yields Caddy's
    base URL; each process's output is in `logs`/<name>.out."""
    port = free_port()
    env = {**os.environ, "DATABASE_URL": subprocess_database_url(), "REDIS_URL": settings.REDIS_URL,
           "WEB_CONCURRENCY": "1", **extra_env}
    plan = front_processes(env, logs / "var", host="127.0.0.1", port=port)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for process in plan.processes:
            with (logs / f"{process.name}.out").open("wb") as out:
                procs.append(subprocess.Popen(process.argv, env={**env, **process.env}, cwd=REPO_ROOT, stdout=out,
                                              stderr=subprocess.STDOUT, start_new_session=True))
        for listening in plan.ports:
            wait_for_port(listening, 60)
        yield f"http://127.0.0.1:{port}"
    finally:
        for proc in reversed(procs):
            stop_group(proc, 10)

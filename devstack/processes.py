"""The processes of ``make run`` (the front of ``front.py``, Celery worker, beat, Flower), run by
honcho's process manager.

honcho starts each in its own session, prefixes its output with its name, and on SIGINT or
SIGTERM (installed explicitly, so also when SIGINT was inherited ignored) or when any one of
them exits, sends SIGTERM to every process group and SIGKILL to what is left after KILL_WAIT.
It sees an exit when the process's output closes: a gunicorn master killed outright is noticed
once its workers, which share its output, find it gone (within gunicorn's --timeout).
"""

from __future__ import annotations

import os
import secrets
import shlex
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import honcho.manager
from honcho.manager import Manager
from honcho.printer import Printer

from devstack import REPO_ROOT, DevStackError
from devstack.ports import wait_for_port

# honcho's grace between SIGTERM and SIGKILL is this module constant (5 s by default): a Celery
# worker's warm shutdown, which finishes or requeues its in-flight steps, needs longer.
honcho.manager.KILL_WAIT = 20

# honcho answers SIGINT and SIGTERM with the exit codes a shell would report for them.
STOPPED_BY_SIGNAL = (130, 143)


# How long the banner waits for the worker's "ready" line once the ports listen.
WORKER_READY_WAIT_S = 30.0


class _ReadyPrinter(Printer):
    """honcho's printer, noting when the worker process logs Celery's "<hostname> ready." line."""

    def __init__(self, output: Any) -> None:
        super().__init__(output)
        self.worker_ready = threading.Event()

    def write(self, message: Any) -> None:
        super().write(message)
        if not self.worker_ready.is_set() and message.type == "line" and message.name == "worker":
            data = message.data.decode("utf-8", "replace") if isinstance(message.data, bytes) else message.data
            if data.rstrip().endswith(" ready."):
                self.worker_ready.set()


@dataclass(frozen=True)
class Process:
    name: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)  # added to the stack's environment


def _dev_secret(var_dir: Path, env: dict[str, str], name: str, make: Callable[[], str]) -> str:
    """`name` from env, else a generated development value kept in var/<name lower-cased>."""
    if env.get(name):
        return env[name]
    path = var_dir / name.lower()
    if not path.exists():
        path.write_text(make())
        os.chmod(path, 0o600)
    return path.read_text().strip()


def flower_auth(var_dir: Path, env: dict[str, str]) -> str:
    """FLOWER_BASIC_AUTH from env, else a generated dev password kept under var/."""
    return _dev_secret(var_dir, env, "FLOWER_BASIC_AUTH", lambda: f"admin:{secrets.token_urlsafe(12)}")


def metrics_token(var_dir: Path, env: dict[str, str]) -> str:
    """AUTEUR_METRICS_TOKEN (the API's /metrics) from env, else a generated one kept under var/."""
    return _dev_secret(var_dir, env, "AUTEUR_METRICS_TOKEN", lambda: secrets.token_urlsafe(24))


def stack_processes(env: dict[str, str], var_dir: Path, *, flower_port: int, flower_basic_auth: str) -> list[Process]:
    """The Celery worker, beat, the GPU announcements' consumer, the metrics exporter and Flower.

    (The API and its proxy are ``front.front_processes``.)"""
    from auteur.core.queues import ALL_QUEUES

    worker_concurrency = env.get("CELERY_WORKER_CONCURRENCY") or str(max(2, os.cpu_count() or 1))
    celery = [str(Path(sys.executable).parent / "celery"), "-A", "auteur"]
    return [
        # --quiet: no start-up banner (the configuration and task list pushed make run's own off screen).
        Process("worker", [
            *celery, "--quiet", "worker", "-Q", ",".join(ALL_QUEUES), "-c", worker_concurrency, "-O", "fair",
            "-n", "worker@%h", "--loglevel", "INFO",
        ]),
        Process("beat", [
            *celery, "--quiet", "beat", "--loglevel", "INFO", "-s", str(var_dir / "celerybeat-schedule"),
        ]),
        # The one consumer of GPU calls' announcements: without it jobs wait for the reaper's poll.
        Process("gpu-events", [sys.executable, str(REPO_ROOT / "manage.py"), "gpu_events"]),
        # Prometheus metrics of the queues, workers, tasks and jobs, on AUTEUR_METRICS_EXPORTER_PORT.
        Process("exporter", [sys.executable, str(REPO_ROOT / "manage.py"), "metrics_exporter"]),
        # Flower reads FLOWER_BASIC_AUTH itself: the password stays out of `ps` output. It keeps the
        # last 2,000 tasks (its default, 10,000, grew it by 90 MiB in an hour of steady load).
        Process(
            "flower",
            [*celery, "flower", "--address=127.0.0.1", f"--port={flower_port}", "--purge_offline_workers=60",
             "--max_tasks=2000"],
            # Warnings only, unless DJANGO_LOG_LEVEL says otherwise: at INFO it lists every task at start.
            {"FLOWER_BASIC_AUTH": flower_basic_auth, "DJANGO_LOG_LEVEL": env.get("DJANGO_LOG_LEVEL", "WARNING")},
        ),
    ]


def run_processes(
    processes: Sequence[Process],
    env: dict[str, str],
    *,
    ports: Sequence[int],
    on_up: Callable[[], None],
    on_tick: Callable[[], None],
) -> int:
    """Run `processes` until a signal or the exit of one of them stops all: 0 for a signal, else 1.

    Once every one of `ports` listens and the worker has said it is ready (or WORKER_READY_WAIT_S
    has passed), `on_up` runs, so what it prints comes after the start-up lines; then `on_tick`
    every half second.
    """
    printer = _ReadyPrinter(sys.stdout)
    manager = Manager(printer)
    for process in processes:
        # honcho runs a command line through `sh -c`; exec leaves no shell between it and the process.
        command = "exec " + shlex.join(process.argv)
        manager.add_process(process.name, command, env={**env, **process.env}, cwd=str(REPO_ROOT))
    done, never_up = threading.Event(), threading.Event()

    def watch() -> None:
        try:
            for port in ports:
                wait_for_port(port, 60, stop=done)
        except DevStackError as exc:
            if not done.is_set():
                never_up.set()
                print(f"devstack: {exc}; stopping everything", flush=True)
                os.kill(os.getpid(), signal.SIGTERM)  # honcho's own handler stops the processes
            return
        printer.worker_ready.wait(WORKER_READY_WAIT_S)
        on_up()
        while not done.wait(0.5):
            on_tick()

    # SIGHUP (the terminal closed) becomes the SIGTERM that honcho answers (it handles only SIGINT
    # and SIGTERM); its forked readers ignore SIGTERM, so the handler they inherit does nothing there.
    signal.signal(signal.SIGHUP, lambda signum, frame: os.kill(os.getpid(), signal.SIGTERM))
    threading.Thread(target=watch, daemon=True).start()
    try:
        manager.loop()
    finally:
        done.set()
    return 0 if manager.returncode in STOPPED_BY_SIGNAL and not never_up.is_set() else 1

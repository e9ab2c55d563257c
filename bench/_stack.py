"""What every benchmark needs: a throwaway embedded stack, Django set up on it, and child servers.

    with django_stack(AUTEUR_GPU_BACKEND="noop") as stack:
        api = stack.spawn("api", gunicorn_argv(port))      # stopped when the block ends
        ...

Settings are production-like (DJANGO_DEBUG off) with bench-only secrets, so what is measured is
what runs in production, with the benchmarks' settings (bench/settings.py: the `noop` GPU backend).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from devstack.ports import free_port  # noqa: E402 - needs the path above
from devstack.servers import EmbeddedServer  # noqa: E402
from devstack.stack import URL_VARS, running_stack  # noqa: E402

RESULTS_DIR = REPO_ROOT / "bench" / "results"
BINDIR = Path(sys.executable).parent


def load_average() -> list[float]:
    """The machine's 1, 5 and 15 minute load averages (`uptime`): recorded beside each figure,
    since the machine may be shared with other work while a benchmark runs."""
    return [round(x, 2) for x in os.getloadavg()]


def api_answers(port: int) -> bool:
    """Whether the API on 127.0.0.1:`port` answers its health check."""
    import http.client

    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        conn.request("GET", "/healthz")
        conn.getresponse().read()
        return True
    except OSError:
        return False


def wait_until(predicate: Callable[[], object], timeout: float, what: str, every: float = 0.2) -> None:
    """Poll `predicate` every `every` seconds; exit the benchmark if it is still false after `timeout`."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what} ({timeout:.0f} s)")
        time.sleep(every)


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


@dataclass
class BenchStack:
    tmp: Path
    env: dict[str, str]
    servers: dict[str, EmbeddedServer] = field(default_factory=dict)  # "postgres", "redis", "mongodb"
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def spawn(self, name: str, argv: Sequence[str], **env: str) -> subprocess.Popen[bytes]:
        logs = self.tmp / "logs"
        logs.mkdir(exist_ok=True)
        proc = subprocess.Popen(
            list(argv), env={**self.env, **env}, cwd=REPO_ROOT, stdout=(logs / f"{name}.log").open("wb"),
            stderr=subprocess.STDOUT, start_new_session=True,
        )
        self.procs.append(proc)
        return proc

    def stop(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        for proc in reversed(self.procs):
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)


def terminate(procs: Sequence[subprocess.Popen[bytes]], timeout: float = 30) -> None:
    """Stop some of a stack's processes before the others (a mode's worker, between modes): SIGTERM,
    then SIGKILL to one that has not exited within `timeout`."""
    for proc in procs:
        proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) of a process and its live and reaped descendants so far: a live
    process's `children_*` hold the children it reaped (a probe child reaped by a pool process or
    by the probe server), which are no longer in the tree to be counted themselves."""
    import psutil

    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0.0
    for proc in procs:
        try:
            t = proc.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += t.user + t.system + t.children_user + t.children_system
    return total


def gunicorn_argv(
    port: int, workers: int = 2, worker_class: str = "sync", threads: int = 1, host: str = "127.0.0.1"
) -> list[str]:
    return [str(BINDIR / "gunicorn"), "auteur.wsgi:application", "--bind", f"{host}:{port}",
            "--workers", str(workers), "--worker-class", worker_class, "--threads", str(threads),
            "--timeout", "300", "--config", "python:auteur.gunicorn_conf", "--access-logfile", "/dev/null"]


def celery_worker_argv(queues: str | None = None, concurrency: int = 2, name: str = "bench") -> list[str]:
    """A worker on `queues` (default: all). Call it inside django_stack: celeryconfig reads the
    broker URL from the environment when first imported."""
    if queues is None:
        from auteur.core.queues import ALL_QUEUES

        queues = ",".join(ALL_QUEUES)
    return [str(BINDIR / "celery"), "-A", "auteur", "worker", "-Q", queues, "-c", str(concurrency), "-n", f"{name}@%h",
            "-O", "fair", "--without-mingle", "--without-gossip", "--loglevel", "WARNING"]


def beat_argv(schedule_file: Path) -> list[str]:
    return [str(BINDIR / "celery"), "-A", "auteur", "beat", "--schedule", str(schedule_file), "--loglevel", "WARNING"]


@contextlib.contextmanager
def django_stack(
    *, durable_redis: bool = False, place: Callable[[EmbeddedServer], None] | None = None, **extra_env: str
) -> Iterator[BenchStack]:
    """A throwaway stack; this process's environment points at it and Django is set up, migrated.

    `durable_redis`: Redis with its append-only file, as `make run` and production run it (a
    restart keeps the queues); by default a throwaway stack's Redis keeps nothing on disk.
    `place`: puts each server where it is to run before it starts (devstack.stack.running_stack).
    """
    # A benchmark stopped with SIGTERM (`timeout`, Ctrl-C's cousin) still stops what it started.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    base = {k: v for k, v in os.environ.items() if k not in URL_VARS}
    with tempfile.TemporaryDirectory(prefix="auteur-bench-") as tmp_name:
        tmp = Path(tmp_name)
        with running_stack(tmp / "stack", base, ephemeral=True, durable_redis=durable_redis, place=place) as stack:
            env = {
                **base,
                **stack.urls(),
                "DJANGO_SETTINGS_MODULE": "bench.settings",
                "DJANGO_DEBUG": "0",
                "DJANGO_SECRET_KEY": "bench-only-django-secret-key-0123456789abcdef",
                "AUTEUR_JWT_SECRET": "bench-only-jwt-secret-0123456789abcdef-xyz",
                "AUTEUR_JWT_ISSUER": "https://auth.auteur.test/auth/v1",
                "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost,testserver",
                "DJANGO_LOG_LEVEL": "WARNING",
                "AUTEUR_VAR_DIR": str(tmp / "var"),
                **extra_env,
            }
            os.environ.update(env)
            import django
            from django.core.management import call_command

            django.setup()
            call_command("migrate", verbosity=0)
            bench = BenchStack(tmp, env, {server.name: server for server in stack.servers})
            try:
                yield bench
            finally:
                bench.stop()


__all__ = ["RESULTS_DIR", "BenchStack", "beat_argv", "celery_worker_argv", "cpu_seconds", "django_stack",
           "free_port", "gunicorn_argv", "load_average", "percentile", "terminate", "wait_until"]

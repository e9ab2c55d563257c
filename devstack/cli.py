"""``python -m devstack run|exec``: the stack for ``make run`` and for ``make test``."""

from __future__ import annotations

import argparse
import functools
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import devstack
from auteur.core.envfile import read_env_file
from devstack import REPO_ROOT
from devstack.front import front_processes
from devstack.ports import preferred_port
from devstack.processes import flower_auth, metrics_token, run_processes, stack_processes
from devstack.servers import PostgresServer
from devstack.stack import DEFAULT_VAR_DIR, STARTED_VAR, Stack, running_stack


def _install_signal_handlers() -> None:
    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    # SIGINT too, explicitly: Python installs its KeyboardInterrupt handler only when SIGINT was
    # not inherited as ignored, and a parent started in the background (a non-interactive shell's
    # `&`, some CI runners) hands it down ignored; Ctrl-C must still stop the stack.
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGHUP, stop)


def _banner(
    env: dict[str, str],
    stack: Stack,
    *,
    host: str,
    api_port: int,
    flower_port: int,
    started: float,
    flower_basic_auth: str,
) -> str:
    base = f"http://{'localhost' if host == '127.0.0.1' else host}:{api_port}"
    user = flower_basic_auth.split(":", 1)[0]
    return (
        "\n"
        f"  Auteur is up ({time.monotonic() - started:.1f}s)\n"
        f"  API        {base}/api/v1/\n"
        f"  API docs   {base}/api/docs/\n"
        f"  Admin      {base}/admin/   (create a login: .venv/bin/python manage.py createsuperuser)\n"
        f"  Health     {base}/healthz   {base}/readyz\n"
        f"  Flower     http://127.0.0.1:{flower_port}/   (user {user}, password in var/flower_basic_auth"
        f"{' or FLOWER_BASIC_AUTH' if env.get('FLOWER_BASIC_AUTH') else ''}: {flower_basic_auth})\n"
        + f"  Metrics    {base}/metrics   (Authorization: Bearer <var/auteur_metrics_token or AUTEUR_METRICS_TOKEN>)\n"
        f"  Exporter   http://127.0.0.1:{env.get('AUTEUR_METRICS_EXPORTER_PORT', '9808')}/metrics\n"
        + "".join(f"  {k:<10} {v}\n" for k, v in stack.urls().items())
        + "  Token      .venv/bin/python manage.py issue_token you@example.com\n"
        "  Ctrl-C stops everything.\n"
    )


def cmd_run(args: argparse.Namespace) -> int:
    """``make run``: the embedded servers, then Caddy and the API behind it, worker, beat and Flower,
    in the foreground."""
    # What `.env` sets counts as set: no embedded server for a URL it names, and Caddy gets the
    # same body caps as the API.
    read_env_file()
    var_dir = Path(os.environ.get("AUTEUR_VAR_DIR") or DEFAULT_VAR_DIR).resolve()
    var_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env.setdefault("DJANGO_DEBUG", "1")
    env.setdefault("AUTEUR_VAR_DIR", str(var_dir))
    env.setdefault("PYTHONUNBUFFERED", "1")
    host = env.get("AUTEUR_API_HOST", "127.0.0.1")
    api_port = int(env.get("AUTEUR_API_PORT", "8000"))
    flower_port = int(env.get("FLOWER_PORT", "5555"))
    # Signed URLs (uploads, downloads) name the address the API listens on, whatever its port.
    env.setdefault("AUTEUR_PUBLIC_BASE_URL", f"http://localhost:{api_port}")

    _install_signal_handlers()
    started = time.monotonic()
    stack = Stack.plan(var_dir, env)
    try:
        for server in stack.servers:
            print(
                f"devstack: starting embedded {server.name} on 127.0.0.1:{server.port} (data in {server.data_dir})",
                flush=True,
            )
        stack.start()
        env.update(stack.urls())
        # The processes that serve requests log in as the API's own role (auteur/core/rls.py); the rest
        # (migrations, workers, beat, manage.py) as the owner.
        database_api_url = env.pop("DATABASE_API_URL", "")
        # manage.py in another terminal must see what the stack's processes see.
        stack.record({"DJANGO_DEBUG": env["DJANGO_DEBUG"], "AUTEUR_VAR_DIR": str(var_dir)})
        subprocess.run([sys.executable, "manage.py", "migrate", "--noinput"], env=env, cwd=REPO_ROOT, check=True)

        flower_basic_auth = flower_auth(var_dir, env)
        env["AUTEUR_METRICS_TOKEN"] = metrics_token(var_dir, env)
        # Stable per checkout, like the servers' ports: two checkouts' exporters never collide.
        env.setdefault("AUTEUR_METRICS_EXPORTER_PORT", str(preferred_port(9808, var_dir)))
        reported_down: set[str] = set()

        def report_dead_servers() -> None:
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

        database_api_url = database_api_url or next(
            (s.api_url() for s in stack.servers if isinstance(s, PostgresServer)), ""
        )
        front = front_processes(env, var_dir, host=host, port=api_port, database_api_url=database_api_url)
        processes = front.processes + stack_processes(
            env, var_dir, flower_port=flower_port, flower_basic_auth=flower_basic_auth
        )
        banner = functools.partial(
            _banner, env, stack, host=host, api_port=api_port, flower_port=flower_port, started=started,
            flower_basic_auth=flower_basic_auth,
        )
        return run_processes(
            processes,
            env,
            ports=[*front.ports, flower_port],
            on_up=lambda: print(banner(), flush=True),
            on_tick=report_dead_servers,
        )
    except KeyboardInterrupt:
        print("\ndevstack: stopping...", flush=True)
        return 0
    finally:
        # A second Ctrl-C or SIGTERM while the servers stop must not leave them orphaned.
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
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
    # A developer's `.env` must not change what the tests check.
    env.setdefault("AUTEUR_ENV_FILE", "")
    _install_signal_handlers()
    try:
        with running_stack(tmp / "stack", env, ephemeral=True) as stack:
            env.update(stack.urls())
            # Which URLs are throwaway servers of this run: a parallel test run gives each of its
            # processes a Redis of its own beside them (tests/parallel.py).
            env[STARTED_VAR] = " ".join(stack.urls())
            return subprocess.call(command, env=env, cwd=REPO_ROOT)
    except KeyboardInterrupt:
        return 130
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def cmd_install_rabbitmq(args: argparse.Namespace) -> int:
    """``make test-rabbitmq``'s first step: Debian's rabbitmq-server, installed when missing."""
    from devstack import rabbitmq

    print(f"devstack: rabbitmq-server {rabbitmq.install()}", flush=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m devstack",
        description=devstack.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("run", help="start the whole stack in the foreground (make run)").set_defaults(fn=cmd_run)
    p_exec = sub.add_parser("exec", help="run a command against a throwaway stack (make test)")
    p_exec.add_argument("command", nargs=argparse.REMAINDER)
    p_exec.set_defaults(fn=cmd_exec)
    sub.add_parser(
        "install-rabbitmq", help="install Debian's rabbitmq-server if missing (make test-rabbitmq; apt-get)"
    ).set_defaults(fn=cmd_install_rabbitmq)
    args = parser.parse_args(argv)
    return int(args.fn(args))

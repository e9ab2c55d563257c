"""The front of ``make run``: Caddy on the API's address, gunicorn behind it on loopback ports.

Caddy runs the repository's Caddyfile, the one docker-compose.yml runs, with the placeholders set
for this machine. It reads each request body whole before gunicorn's sync workers see the
request, and cuts clients that stall or trickle, so slow clients cannot hold the workers. The
local storage backend's signed URLs (``/storage/*``), whose bodies may be gigabytes streamed at
the client's pace, go to a second gunicorn with threads, never to the API's workers. Event
streams, the WebSocket and waiting submissions go to uvicorn (auteur/asgi.py).
"""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from devstack import REPO_ROOT, DevStackError
from devstack.ports import free_port
from devstack.processes import Process

CADDYFILE = REPO_ROOT / "Caddyfile"
ACCESS_LOG_NAME = "caddy-access.log"
# Concurrent transfers of the storage server (each holds one thread while its client sends or reads).
STORAGE_THREADS = 16


@dataclass(frozen=True)
class Front:
    processes: list[Process]
    # Where each listens, the proxy last: once all of them accept connections, the API is up.
    ports: list[int]


def _bin(name: str) -> str:
    path = Path(sys.executable).parent / name
    if not path.exists():
        raise DevStackError(f"{path} is missing: install requirements/embedded.txt (make run does)")
    return str(path)


def gunicorn_argv(port: int, *options: str) -> list[str]:
    return [
        _bin("gunicorn"), "auteur.wsgi:application", "--bind", f"127.0.0.1:{port}",
        "--config", "python:auteur.gunicorn_conf", *options,
    ]


def uvicorn_argv(port: int, *options: str) -> list[str]:
    """The ASGI server (event streams, WebSocket, waiting submissions) on a loopback port.

    One process, one event loop: its hub holds one Redis reader for all its connections. Lifespan
    is off: the hub starts with the first connection. On stop, open streams get a few seconds,
    then are cut (clients reconnect and resume from their last event id). X-Forwarded-* are
    believed from FORWARDED_ALLOW_IPS only, read from the environment (auteur/core/proxies.py).
    """
    return [
        _bin("uvicorn"), "auteur.asgi:application", "--host", "127.0.0.1", "--port", str(port),
        "--lifespan", "off", "--timeout-graceful-shutdown", "3", "--no-server-header",
        "--proxy-headers", *options,
    ]


def front_processes(
    env: dict[str, str], var_dir: Path, *, host: str, port: int, database_api_url: str = ""
) -> Front:
    """Caddy on `host`:`port`, the API's gunicorn and the storage gunicorn on free loopback ports.

    `database_api_url`, if given, is the login of the processes that serve requests (auteur/core/rls.py)."""
    api_port, storage_port, asgi_port = free_port(), free_port(), free_port()
    web_workers = env.get("WEB_CONCURRENCY") or str(min(4, (os.cpu_count() or 1) + 1))
    # Caddy is the one proxy in front: the client's address is the last X-Forwarded-For entry, and
    # those headers are believed from Caddy's address only (it dials the servers from loopback).
    behind_proxy = {"AUTEUR_NUM_PROXIES": env.get("AUTEUR_NUM_PROXIES") or "1", "FORWARDED_ALLOW_IPS": "127.0.0.1"}
    if database_api_url:
        behind_proxy["DATABASE_API_URL"] = database_api_url
    (var_dir / "log").mkdir(parents=True, exist_ok=True)
    caddy_env = {
        "AUTEUR_SITE": f"http://:{port}",
        "AUTEUR_CADDY_BIND": host,
        "AUTEUR_CADDY_ADMIN": "off",
        "AUTEUR_ACCESS_LOG": f'file "{var_dir / "log" / ACCESS_LOG_NAME}"',
        "AUTEUR_API_UPSTREAM": f"127.0.0.1:{api_port}",
        "AUTEUR_STORAGE_UPSTREAM": f"127.0.0.1:{storage_port}",
        "AUTEUR_ASGI_UPSTREAM": f"127.0.0.1:{asgi_port}",
        # No object store's site: the local storage's signed URLs are the API's own (/storage/).
        "AUTEUR_MEDIA_PROXY": "off",
        # Caddy's own state (instance id, locks) stays under var/, not in the user's home.
        "XDG_DATA_HOME": str(var_dir / "caddy" / "data"),
        "XDG_CONFIG_HOME": str(var_dir / "caddy" / "config"),
    }
    # The API's gunicorn workers share their metrics through files (prometheus-client's multiprocess
    # mode), so /metrics sums every worker; the files of a previous run are stale.
    prometheus_dir = var_dir / "prometheus-api"
    shutil.rmtree(prometheus_dir, ignore_errors=True)
    prometheus_dir.mkdir(parents=True)
    api_env = {**behind_proxy, "PROMETHEUS_MULTIPROC_DIR": str(prometheus_dir)}
    storage_options = ("--workers", "1", "--worker-class", "gthread", "--threads", str(STORAGE_THREADS))
    return Front(
        processes=[
            Process("api", gunicorn_argv(api_port, "--workers", web_workers, "--worker-class", "sync"), api_env),
            Process("storage", gunicorn_argv(storage_port, *storage_options), behind_proxy),
            Process("asgi", uvicorn_argv(asgi_port), behind_proxy),
            Process("proxy", [_bin("caddy"), "run", "--config", str(CADDYFILE), "--adapter", "caddyfile"], caddy_env),
        ],
        ports=[api_port, storage_port, asgi_port, port],
    )

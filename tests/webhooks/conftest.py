"""A webhook receiver on 127.0.0.1 (a real HTTP server in a thread) and faked name resolution.

The receiver records every request (headers, body) and answers what the test scripts: a status
with a body, a redirect, or a hang longer than the sender's timeout. Webhooks reach it only
because the tests turn on AUTEUR_WEBHOOK_ALLOW_LOOPBACK (plain http to a loopback address).
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tests.jobs.conftest import start_worker  # noqa: F401 - a real Celery worker
from tests.jobs.support import (  # noqa: F401 - fixtures for every test module here
    funded_fixture,
    gpu_backend_fixture,
    make_media_fixture,
    media_fixture,
    project_fixture,
)


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass(frozen=True)
class Answer:
    status: int = 200
    body: bytes = b"ok"
    headers: dict[str, str] = field(default_factory=dict)
    hang_seconds: float = 0.0


class Receiver:
    def __init__(self) -> None:
        self.received: list[Received] = []
        self.script: list[Answer] = []  # answers in order; then `default`
        self.default = Answer()
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                with receiver.lock:
                    receiver.received.append(Received(self.path, {k.lower(): v for k, v in self.headers.items()},
                                                      body))
                    answer = receiver.script.pop(0) if receiver.script else receiver.default
                if answer.hang_seconds:
                    time.sleep(answer.hang_seconds)
                try:
                    self.send_response(answer.status)
                    for name, value in answer.headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(answer.body)))
                    self.end_headers()
                    self.wfile.write(answer.body)
                except OSError:
                    pass  # the sender gave up first (its timeout)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver(settings: Any) -> Iterator[Receiver]:
    settings.AUTEUR_WEBHOOK_ALLOW_LOOPBACK = True
    server = Receiver()
    yield server
    server.close()


@pytest.fixture
def fake_dns(monkeypatch: pytest.MonkeyPatch) -> Callable[[dict[str, list[str]]], list[str]]:
    """Replace name resolution with a table (name -> addresses); returns the names looked up."""
    looked_up: list[str] = []

    def install(table: dict[str, list[str]]) -> list[str]:
        def lookup(host: str, port: int) -> list[tuple[Any, ...]]:
            looked_up.append(host)
            if host not in table:
                raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
            return [(socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port))
                    for a in table[host]]

        monkeypatch.setattr("webhooks.ssrf.lookup", lookup)
        return looked_up

    return install

"""A webhook receiver on 127.0.0.1 (a real HTTP server in a thread), a slow-drip receiver (a raw
socket server that answers one byte a second), and faked name resolution.

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
        # shutdown() waits for the loop's next poll: 0.05 s, not the default 0.5 s
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass
class Drip:
    """What one connection to the slow-drip receiver saw."""

    request: bytes = b""
    sent: int = 0  # bytes of the answer that went out before the connection ended
    cut: bool = False  # the sender closed the connection before the whole answer went out
    ended: threading.Event = field(default_factory=threading.Event)


class DripReceiver:
    """Reads each request, sends `head` at once, then the rest of `answer` one byte a second: each
    byte arrives well inside any read timeout, so only a deadline on the whole attempt ends it.
    The full answer would take `len(answer) - len(head)` seconds."""

    HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 24\r\n\r\n"
    ANSWER = HEAD + b"dripping, one byte a sec"

    def __init__(self, *, head: bytes = b"", answer: bytes = ANSWER, interval: float = 1.0) -> None:
        self.head, self.answer, self.interval = head, answer, interval
        self.connections: list[Drip] = []
        self.stopping = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def url(self, path: str = "/drip") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def _accept(self) -> None:
        while not self.stopping.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            drip = Drip()
            self.connections.append(drip)
            threading.Thread(target=self._serve, args=(conn, drip), daemon=True).start()

    def _serve(self, conn: socket.socket, drip: Drip) -> None:
        try:
            with conn:
                while b"\r\n\r\n" not in drip.request:
                    chunk = conn.recv(4096)
                    if not chunk:
                        return
                    drip.request += chunk
                conn.sendall(self.head)
                drip.sent = len(self.head)
                for byte in self.answer[len(self.head):]:
                    if self.stopping.wait(self.interval):
                        return
                    conn.sendall(bytes([byte]))
                    drip.sent += 1
        except OSError:
            drip.cut = True  # the sender shut the connection: a write after that fails
        finally:
            drip.ended.set()

    def wait_ended(self, count: int = 1, timeout: float = 30) -> list[Drip]:
        """The first `count` connections, once each has ended (cut, or its answer fully sent)."""
        give_up = time.monotonic() + timeout
        while len(self.connections) < count and time.monotonic() < give_up:
            time.sleep(0.05)
        assert len(self.connections) >= count, f"{len(self.connections)} connections, expected {count}"
        for drip in self.connections[:count]:
            assert drip.ended.wait(max(0.0, give_up - time.monotonic())), "a connection never ended"
        return self.connections[:count]

    def close(self) -> None:
        self.stopping.set()
        self.listener.close()


@pytest.fixture
def drip_receiver(settings: Any) -> Iterator[DripReceiver]:
    settings.AUTEUR_WEBHOOK_ALLOW_LOOPBACK = True
    server = DripReceiver()
    yield server
    server.close()


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

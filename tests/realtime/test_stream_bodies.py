"""Bodies sent to the event streams and the WebSocket's path are refused from their headers.

The attack: a request to `*/stream` (or `/ws/*`) that announces a 200 MiB body, sends a little of
it, and waits. Before, Django's ASGI handler read (and spooled to disk) the whole body before it
answered 405. Now the refusal comes back while the client has sent only its first 64 KiB, and the
server does not go on reading: the rest of the body cannot be pushed through.

Run against uvicorn alone (a client that bypasses the proxy) and against the front as `make run`
runs it (Caddy, with uvicorn behind it), where Caddy answers itself and uvicorn never sees it.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
from websockets.sync.client import connect

from auteur.users.services import user_issue_token
from jobs.models import Job
from tests.servers import asgi_server, running_front

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

ANNOUNCED = 200 * 1024 * 1024
FIRST_PART = 64 * 1024
MAX_BODY_BYTES = 64 * 1024  # the cap on other bodies, small here so that a test can pass it


@pytest.fixture(scope="module")
def uvicorn_port(django_db_setup: None) -> Iterator[int]:
    with asgi_server(AUTEUR_MAX_BODY_BYTES=str(MAX_BODY_BYTES)) as server:
        yield server.port


@pytest.fixture(scope="module")
def caddy_port(django_db_setup: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    with running_front(tmp_path_factory.mktemp("front"), AUTEUR_MAX_BODY_BYTES=str(MAX_BODY_BYTES)) as base:
        port = urlsplit(base).port
        assert port is not None
        yield port


@pytest.fixture(params=["uvicorn", "caddy"])
def port(request: pytest.FixtureRequest) -> int:
    port: int = request.getfixturevalue(f"{request.param}_port")
    return port


class Answer:
    def __init__(self, head: bytes, body: bytes) -> None:
        lines = head.decode("latin-1").split("\r\n")
        self.status = int(lines[0].split()[1])
        self.headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        self.body = body

    def json(self) -> Any:
        return json.loads(self.body)


def send_head(port: int, method: str, path: str, headers: dict[str, str], first_part: bytes = b"") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    head = f"{method} {path} HTTP/1.1\r\nHost: localhost\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    sock.sendall(head.encode() + b"\r\n" + first_part)
    return sock


def read_answer(sock: socket.socket) -> Answer:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"closed without an answer: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    answer = Answer(head, b"")
    length = int(answer.headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, "closed in the middle of the answer"
        body += chunk
    answer.body = body[:length]
    return answer


def push_rest(sock: socket.socket, total: int) -> int:
    """Send up to `total` more bytes; how many went before the server closed or stopped reading."""
    sent = 0
    block = b"x" * 65536
    sock.settimeout(5)
    try:
        while sent < total:
            sock.sendall(block)
            sent += len(block)
    except OSError:  # reset, broken pipe, or a send that no one reads (timeout)
        pass
    return sent


def assert_not_read(sock: socket.socket) -> None:
    # Had the server gone on reading (to keep the connection alive), all of it would go through.
    rest = ANNOUNCED - FIRST_PART
    assert push_rest(sock, rest) < 32 * 1024 * 1024
    sock.close()


def test_a_large_post_to_a_stream_is_refused_before_its_body_is_sent(port, make_user):
    token = user_issue_token(user=make_user())
    for path, auth in (("/api/v1/jobs/x/stream", {}), ("/api/v1/events/stream", {"Authorization": f"Bearer {token}"}),
                       ("/ws/v1/events", {})):
        sock = send_head(port, "POST", path, {"Content-Type": "application/json", "Content-Length": str(ANNOUNCED),
                                              **auth}, b"{" * FIRST_PART)
        answer = read_answer(sock)
        assert answer.status == 405, path
        assert answer.headers["allow"] == "GET"
        assert answer.json()["error"]["code"] == "method_not_allowed"
        assert_not_read(sock)


def test_a_get_with_a_body_is_refused_before_the_body_is_sent(port, make_user):
    token = user_issue_token(user=make_user())
    sock = send_head(port, "GET", "/api/v1/events/stream",
                     {"Authorization": f"Bearer {token}", "Content-Length": str(ANNOUNCED)}, b"x" * FIRST_PART)
    answer = read_answer(sock)
    assert answer.status == 413
    assert answer.json()["error"] == {"code": "body_too_large", "details": {"max_bytes": 0},
                                      "message": "The request body is larger than this server accepts."}
    assert_not_read(sock)


# Through Caddy, a chunked body on a stream is answered once it stalls past the proxy's body idle
# timeout (read_body_idle, 10 s by default): 10.0 s, measured. The client waits longer than that.
PROXY_BODY_IDLE_S = 10


def test_a_chunked_body_on_a_stream_is_refused(port, make_user):
    token = user_issue_token(user=make_user())
    sock = send_head(port, "GET", "/api/v1/events/stream",
                     {"Authorization": f"Bearer {token}", "Transfer-Encoding": "chunked"}, b"10000\r\n" + b"x" * 65536)
    sock.settimeout(PROXY_BODY_IDLE_S + 20)
    answer = read_answer(sock)
    assert answer.status == 413
    assert answer.json()["error"]["code"] == "body_too_large"
    sock.close()


def test_through_caddy_uvicorn_never_sees_the_refused_request(caddy_port):
    sock = send_head(caddy_port, "POST", "/api/v1/jobs/x/stream", {"Content-Length": str(ANNOUNCED)}, b"x" * FIRST_PART)
    answer = read_answer(sock)
    assert answer.status == 405
    assert answer.headers["server"] == "Caddy" and "via" not in answer.headers  # answered by Caddy itself
    sock.close()


def test_streams_and_the_websocket_still_open_with_a_plain_get(port, make_user):
    user = make_user()
    token = user_issue_token(user=user)
    sock = send_head(port, "GET", "/api/v1/events/stream", {"Authorization": f"Bearer {token}"})
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(4096)
    assert head.startswith(b"HTTP/1.1 200"), head
    sock.close()
    with connect(f"ws://127.0.0.1:{port}/ws/v1/events", open_timeout=30) as ws:
        ws.send(json.dumps({"type": "auth", "token": token}))
        assert json.loads(ws.recv(timeout=30)) == {"type": "ready"}


def test_a_waiting_submission_over_the_cap_is_refused_from_its_length(uvicorn_port, make_user):
    """Past the proxy, uvicorn's other routes cap a body as the API does, before Django spools it."""
    user = make_user()
    headers = {"Authorization": f"Bearer {user_issue_token(user=user)}", "Prefer": "wait=5",
               "Content-Type": "application/json"}
    sock = send_head(uvicorn_port, "POST", "/api/v1/jobs/tts", {**headers, "Content-Length": str(ANNOUNCED)},
                     b"{" * FIRST_PART)
    answer = read_answer(sock)
    assert answer.status == 413 and answer.json()["error"]["details"] == {"max_bytes": MAX_BODY_BYTES}
    assert_not_read(sock)
    # Chunked, the length is not known in advance: the body is cut once it passes the cap.
    sock = send_head(uvicorn_port, "POST", "/api/v1/jobs/tts", {**headers, "Transfer-Encoding": "chunked"})
    chunk = b"{" * 16384
    try:
        for _ in range(MAX_BODY_BYTES // len(chunk) + 2):
            sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
    except OSError:
        pass
    answer = read_answer(sock)
    assert answer.status == 413 and answer.json()["error"]["code"] == "body_too_large"
    sock.close()
    assert not Job.objects.filter(user=user).exists()


@pytest.mark.parametrize("path", ["/api/v1/jobs/x/stream", "/ws/v1/events"])
def test_the_asgi_app_alone_refuses_without_reading(path):
    """The ASGI application, called directly: it answers from the scope and never calls receive()."""
    import asyncio
    import os
    from unittest import mock

    with mock.patch.dict(os.environ):  # the module sets a variable of its own process
        from auteur.asgi import application

    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        raise AssertionError("the body was read")

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": path, "raw_path": path.encode(), "query_string": b"",
             "headers": [(b"host", b"localhost"), (b"content-length", str(ANNOUNCED).encode())],
             "http_version": "1.1", "scheme": "http", "server": ("127.0.0.1", 80), "client": ("127.0.0.1", 5000)}
    asyncio.run(application(scope, receive, send))
    assert sent[0]["status"] == 405 and (b"connection", b"close") in sent[0]["headers"]
    scope = {**scope, "method": "GET"}
    sent.clear()
    asyncio.run(application(scope, receive, send))
    assert sent[0]["status"] == 413

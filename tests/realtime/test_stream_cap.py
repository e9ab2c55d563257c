"""A user's open event streams and WebSockets are capped, across processes, and the count heals.

Real uvicorn processes on the test's Redis, as `make run` starts them, with a cap of 3 and a
3-second lease so that expiry shows within the test. The attack opens one connection too many;
the fault kills a server outright with its connections' leases still in Redis.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from django.conf import settings
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from auteur.users.services import user_issue_token
from realtime.leases import lease_key
from tests.servers import AsgiServer, asgi_server

pytestmark = [
    pytest.mark.django_db(transaction=True), pytest.mark.slow,
    # websockets' sync client warns when not used as a context manager; these tests close it themselves.
    pytest.mark.filterwarnings("ignore:connect\\(\\) must be used as a context manager"),
]

CAP = 3
LEASE_SECONDS = 3
SERVER_ENV = {"AUTEUR_MAX_STREAMS_PER_USER": str(CAP), "AUTEUR_STREAM_LEASE_SECONDS": str(LEASE_SECONDS),
              "AUTEUR_STREAM_HEARTBEAT_SECONDS": "1"}


@pytest.fixture
def server(django_db_setup: None) -> Iterator[AsgiServer]:
    with asgi_server(**SERVER_ENV) as running:
        yield running


class Sse:
    def __init__(self, server: AsgiServer, token: str) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        self.conn.request("GET", "/api/v1/events/stream", headers={"Authorization": f"Bearer {token}"})
        self.response = self.conn.getresponse()
        self.status = self.response.status
        if self.status == 200:
            assert self.response.readline() == b"retry: 2000\n"  # the stream is open and counted

    def json(self) -> Any:
        return json.loads(self.response.read())

    def close(self) -> None:
        self.conn.close()


def ws_open(server: AsgiServer, token: str) -> tuple[ClientConnection, dict[str, Any] | None, Any]:
    """(socket, first message or None, close frame or None) after authenticating."""
    ws = connect(f"ws://127.0.0.1:{server.port}/ws/v1/events", open_timeout=30)
    ws.send(json.dumps({"type": "auth", "token": token}))
    try:
        return ws, json.loads(ws.recv(timeout=30)), None
    except ConnectionClosed as closed:
        return ws, None, closed.rcvd


def leases(user: Any) -> int:
    return int(redis.Redis.from_url(settings.REDIS_URL).zcard(lease_key(user.pk)))


def wait_until(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def test_one_stream_over_the_cap_is_refused_with_a_code(server, make_user):
    user, other = make_user(), make_user()
    token = user_issue_token(user=user)
    streams = [Sse(server, token) for _ in range(CAP - 1)]
    ws, ready, _ = ws_open(server, token)
    assert [s.status for s in streams] == [200] * (CAP - 1) and ready == {"type": "ready"}
    assert leases(user) == CAP

    refused = Sse(server, token)
    assert refused.status == 429
    assert refused.json()["error"] == {
        "code": "too_many_streams", "details": {"limit": CAP, "scope": "person"},
        "message": f"At most {CAP} event streams and WebSockets may be open at once; close one first.",
    }
    _refused_ws, message, close = ws_open(server, token)
    assert message is None and (close.code, close.reason) == (4429, "too_many_streams")
    assert leases(user) == CAP  # the refused ones took no place

    # Held past their lease, the open ones still count: they renew it.
    time.sleep(LEASE_SECONDS + 1)
    assert Sse(server, token).status == 429 and leases(user) == CAP
    # Another user is not affected.
    assert Sse(server, user_issue_token(user=other)).status == 200

    # A closed connection frees its place.
    streams[0].close()
    ws.close()
    wait_until(lambda: leases(user) == CAP - 2, 10, "closed connections kept their leases")
    again_sse, again_ws = Sse(server, token), ws_open(server, token)
    assert again_sse.status == 200 and again_ws[1] == {"type": "ready"}


def test_the_cap_holds_across_processes_and_a_crashed_servers_count_heals(django_db_setup, make_user):
    user = make_user()
    token = user_issue_token(user=user)
    with asgi_server(**SERVER_ENV) as first, asgi_server(**SERVER_ENV) as second:
        held = [Sse(first, token), Sse(first, token), Sse(second, token)]
        assert [s.status for s in held] == [200, 200, 200]
        assert Sse(second, token).status == 429  # 2 on one process and 1 on the other: the cap is reached

        os.killpg(first.proc.pid, signal.SIGKILL)  # no close, no release: its leases stay in Redis
        first.proc.wait(10)
        assert leases(user) == CAP
        assert Sse(second, token).status == 429
        # Within a lease the dead server's connections stop counting.
        wait_until(lambda: Sse(second, token).status == 200, LEASE_SECONDS + 5, "a dead server's leases never ran out")
        for stream in held:
            stream.close()

"""One HTTP attempt of a delivery: signed per Standard Webhooks, to the checked address only.

The URL is checked again (webhooks/ssrf.py) at every attempt and the connection is pinned to
the address that passed: urllib3 connects to that IP, while the TLS SNI, the certificate check
and the Host header use the URL's name. No redirect is followed (a 3xx is a failed attempt),
no proxy from the environment is used. Nothing here logs the URL's path or query (receivers put
tokens there) or the payload (the job's outputs).

The whole attempt (name resolution, connect, TLS, request, answer) ends by one wall-clock
deadline, AUTEUR_WEBHOOK_TIMEOUT_SECONDS after it began. Socket timeouts alone cannot promise
that: they bound each read, and a receiver that answers one byte a second restarts them with
every byte. So a timer shuts the connection's socket down at the deadline, whatever the
exchange is doing then, and at most RESPONSE_BODY_BYTES of the answer's body are read.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from http.client import HTTPException

import certifi
import urllib3
from django.conf import settings
from standardwebhooks import Webhook as Signer
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.exceptions import HTTPError, SSLError

from webhooks import ssrf

USER_AGENT = "Auteur-Webhooks/1"
RESPONSE_BODY_BYTES = 1024
# A connection that is not made within this (or the attempt's deadline, if sooner) fails.
CONNECT_TIMEOUT_SECONDS = 5.0
# Every 3xx is the same failed attempt, whatever its Location: saying where it pointed, or whether
# that place would have been refused, would let a receiver probe our network and resolver.
REDIRECT_ERROR = "redirect not followed"


@dataclass(frozen=True)
class Outcome:
    status_code: int | None
    error: str
    latency_ms: int
    response_body: str

    @property
    def succeeded(self) -> bool:
        return not self.error and self.status_code is not None and 200 <= self.status_code < 300


def signed_headers(*, secret: str, message_id: str, body: str, at: datetime | None = None,
                   previous: str | None = None) -> dict[str, str]:
    """The three Standard Webhooks headers for `body` (a fresh timestamp on every attempt), signed
    with `secret` and, while a rotation keeps it, with `previous` too (space-separated signatures:
    a receiver accepts the message if any of them verifies with the secret it holds)."""
    at = at or datetime.now(UTC)
    signatures = [Signer(key).sign(msg_id=message_id, timestamp=at, data=body)
                  for key in (secret, previous) if key is not None]
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": " ".join(signatures),
    }


class Deadline:
    """An attempt's wall-clock end. `watch(sock)` arms a timer that shuts the socket down at the
    deadline; `finish()` disarms it. The lock makes the two exclusive: a timer that fires as the
    attempt ends never touches a socket that was closed (and whose number may be reused)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.ends = time.monotonic() + seconds
        self.expired = False
        self._lock = threading.Lock()
        self._finished = False
        self._sock: socket.socket | None = None
        self._timer: threading.Timer | None = None

    def remaining(self) -> float:
        return max(0.0, self.ends - time.monotonic())

    def watch(self, sock: socket.socket) -> None:
        with self._lock:
            if self._finished:
                return
            self._sock = sock
            self._timer = threading.Timer(self.remaining(), self._cut)
            self._timer.daemon = True
            self._timer.start()

    def _cut(self) -> None:
        with self._lock:
            if self._finished or self._sock is None:
                return
            self.expired = True
            # The plain socket's shutdown, also under TLS: the blocked read in the attempt's
            # thread returns at once (end of stream), and no TLS state is touched from here.
            with contextlib.suppress(OSError):
                socket.socket.shutdown(self._sock, socket.SHUT_RDWR)

    def finish(self) -> None:
        with self._lock:
            self._finished = True
            if self._timer is not None:
                self._timer.cancel()


class _DeadlineHTTPConnection(HTTPConnection):
    deadline: Deadline

    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        self.deadline.watch(sock)  # from here on, TLS handshake included
        return sock


class _DeadlineHTTPSConnection(HTTPSConnection):
    deadline: Deadline

    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        self.deadline.watch(sock)
        return sock


def _connection(target: ssrf.Target, deadline: Deadline) -> HTTPConnection:
    address = str(target.address)
    connect_timeout = min(CONNECT_TIMEOUT_SECONDS, deadline.remaining())
    conn: _DeadlineHTTPConnection | _DeadlineHTTPSConnection
    if target.scheme == "https":
        conn = _DeadlineHTTPSConnection(
            address, target.port, timeout=connect_timeout, cert_reqs="CERT_REQUIRED", ca_certs=certifi.where(),
            server_hostname=target.host, assert_hostname=target.host,
        )
    else:
        conn = _DeadlineHTTPConnection(address, target.port, timeout=connect_timeout)
    conn.deadline = deadline
    return conn


def _exchange(conn: HTTPConnection, deadline: Deadline, *, path: str, body: bytes,
              headers: dict[str, str]) -> tuple[int, bytes]:
    """(status, at most RESPONSE_BODY_BYTES of the body); raises on any failure."""
    conn.connect()
    # Each read may wait at most what is left; the deadline's timer ends the attempt as a whole.
    conn.timeout = max(deadline.remaining(), 0.001)
    conn.request("POST", path, body=body, headers=headers, preload_content=False, decode_content=False)
    response = conn.getresponse()
    data = bytearray()
    try:
        while len(data) < RESPONSE_BODY_BYTES and not deadline.expired:
            chunk = response.read1(RESPONSE_BODY_BYTES - len(data), decode_content=False)
            if not chunk:
                break
            data += chunk
    except (HTTPError, HTTPException, OSError, ValueError):
        if not deadline.expired:
            raise
        # Cut at the deadline with the status known: the caller says which answer was unfinished.
    return response.status, bytes(data)


def _timed_out(deadline: Deadline) -> str:
    return f"timed out after {deadline.seconds:g} s"


def _failure(exc: Exception, deadline: Deadline) -> str:
    """What the attempt's log says about an exchange that raised."""
    if deadline.expired:
        return _timed_out(deadline)  # whatever the cut socket made the reader raise
    if isinstance(exc, ssl.SSLError | SSLError):
        cause = exc if isinstance(exc, ssl.SSLError) else (exc.__context__ or exc)
        return f"TLS error: {type(cause).__name__}"
    # urllib3 files a refused connection under its connect timeouts: it is no timeout here.
    if isinstance(exc, TimeoutError | urllib3.exceptions.TimeoutError) and not isinstance(
            exc, urllib3.exceptions.NewConnectionError):
        return _timed_out(deadline)
    return f"connection failed: {type(exc).__name__}"


def send(*, url: str, secret: str, message_id: str, body: str, previous: str | None = None,
         traceparent: str = "") -> Outcome:
    """POST `body` to `url` once. Never raises for anything the receiver or the network does.
    `traceparent`: the attempt's span (W3C Trace Context), sent as is when traces are on."""
    started = time.monotonic()

    def outcome(status: int | None, error: str, response: bytes = b"") -> Outcome:
        latency = int((time.monotonic() - started) * 1000)
        return Outcome(status, error[:300], latency, response[:RESPONSE_BODY_BYTES].decode("utf-8", "replace"))

    deadline = Deadline(float(settings.AUTEUR_WEBHOOK_TIMEOUT_SECONDS))
    try:
        resolve_timeout = min(float(settings.AUTEUR_WEBHOOK_RESOLVE_TIMEOUT_SECONDS), deadline.remaining())
        target = ssrf.target_check(url, resolve_timeout=resolve_timeout)
    except ssrf.WebhookUrlRefused as exc:
        return outcome(None, f"refused: {exc.message}")
    headers = {
        "Host": target.host_header,
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        **signed_headers(secret=secret, message_id=message_id, body=body, previous=previous),
        **({"traceparent": traceparent} if traceparent else {}),
    }
    conn = _connection(target, deadline)
    try:
        status, data = _exchange(conn, deadline, path=target.path, body=body.encode(), headers=headers)
    except (HTTPError, HTTPException, OSError, ValueError) as exc:
        return outcome(None, _failure(exc, deadline))
    finally:
        deadline.finish()
        conn.close()
    if deadline.expired:
        # The answer did not end by the deadline (its body still arriving): no answer, and its
        # status is not logged as one, so that the attempt never reads as a success.
        return outcome(None, f"{_timed_out(deadline)} (an HTTP {status} answer unfinished)", data)
    if 300 <= status < 400:
        return outcome(status, REDIRECT_ERROR, data)
    if not 200 <= status < 300:
        return outcome(status, f"HTTP {status}", data)
    return outcome(status, "", data)

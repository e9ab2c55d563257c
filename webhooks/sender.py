"""One HTTP attempt of a delivery: signed per Standard Webhooks, to the checked address only.

The URL is checked again (webhooks/ssrf.py) at every attempt and the connection is pinned to
the address that passed: urllib3 connects to that IP, while the TLS SNI, the certificate check
and the Host header use the URL's name. No redirect is followed (a 3xx is a failed attempt),
no proxy from the environment is used, and the whole attempt is bounded by
AUTEUR_WEBHOOK_TIMEOUT_SECONDS. Nothing here logs the URL's path or query (receivers put
tokens there) or the payload (the job's outputs).
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlsplit

import certifi
import urllib3
from django.conf import settings
from standardwebhooks import Webhook as Signer
from urllib3.exceptions import HTTPError, SSLError, TimeoutError

from webhooks import ssrf

USER_AGENT = "Auteur-Webhooks/1"
RESPONSE_BODY_BYTES = 1024


@dataclass(frozen=True)
class Outcome:
    status_code: int | None
    error: str
    latency_ms: int
    response_body: str

    @property
    def succeeded(self) -> bool:
        return not self.error and self.status_code is not None and 200 <= self.status_code < 300


def signed_headers(*, secret: str, message_id: str, body: str, at: datetime | None = None) -> dict[str, str]:
    """The three Standard Webhooks headers for `body` (a fresh timestamp on every attempt)."""
    at = at or datetime.now(UTC)
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": Signer(secret).sign(msg_id=message_id, timestamp=at, data=body),
    }


def _pool(target: ssrf.Target, timeout: urllib3.Timeout) -> urllib3.HTTPConnectionPool:
    address = str(target.address)
    if target.scheme == "https":
        return urllib3.HTTPSConnectionPool(
            address, target.port, timeout=timeout, retries=False, maxsize=1,
            cert_reqs="CERT_REQUIRED", ca_certs=certifi.where(),
            server_hostname=target.host, assert_hostname=target.host,
        )
    return urllib3.HTTPConnectionPool(address, target.port, timeout=timeout, retries=False, maxsize=1)


def _redirect_error(location: str | None) -> str:
    host = ""
    with contextlib.suppress(ValueError):
        host = urlsplit(location or "").hostname or ""
    if not host:
        return "redirect not followed"
    try:
        refused = any(ssrf.address_refusal(a) for a in ssrf.resolve(host, 443))
    except ssrf.WebhookUrlRefused:
        refused = False
    return f"redirect not followed (to {'a refused address' if refused else host})"[:300]


def send(*, url: str, secret: str, message_id: str, body: str) -> Outcome:
    """POST `body` to `url` once. Never raises for anything the receiver or the network does."""
    started = time.monotonic()

    def outcome(status: int | None, error: str, response: bytes = b"") -> Outcome:
        latency = int((time.monotonic() - started) * 1000)
        return Outcome(status, error[:300], latency, response[:RESPONSE_BODY_BYTES].decode("utf-8", "replace"))

    try:
        target = ssrf.target_check(url)
    except ssrf.WebhookUrlRefused as exc:
        return outcome(None, f"refused: {exc.message}")
    headers = {
        "Host": target.host_header,
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        **signed_headers(secret=secret, message_id=message_id, body=body),
    }
    timeout = urllib3.Timeout(total=settings.AUTEUR_WEBHOOK_TIMEOUT_SECONDS)
    pool = _pool(target, timeout)
    try:
        response = pool.urlopen("POST", target.path, body=body.encode(), headers=headers, redirect=False,
                                retries=False, preload_content=False, assert_same_host=False)
        try:
            data = response.read(RESPONSE_BODY_BYTES, decode_content=False)
        finally:
            response.release_conn()
    except TimeoutError:
        return outcome(None, f"timed out after {settings.AUTEUR_WEBHOOK_TIMEOUT_SECONDS:g} s")
    except SSLError as exc:
        return outcome(None, f"TLS error: {type(exc.__context__ or exc).__name__}")
    except (HTTPError, OSError, ValueError) as exc:
        return outcome(None, f"connection failed: {type(exc).__name__}")
    finally:
        pool.close()
    status = response.status
    if 300 <= status < 400:
        return outcome(status, _redirect_error(response.headers.get("Location")), data)
    if not 200 <= status < 300:
        return outcome(status, f"HTTP {status}", data)
    return outcome(status, "", data)

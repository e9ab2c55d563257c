"""A real JWKS endpoint on loopback for the token tests, counting the fetches it answers; every
statement sent to PostgreSQL, for the tests of what reaches the server."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from django.conf import settings

from auteur.users.jwks import jwks_keys
from tests.sent import on_each_statement


@pytest.fixture
def sent_statements(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every statement this process sends to the server from now on, whether Django's wrappers
    saw it or not (its health check, the session's scope)."""
    statements: list[str] = []
    on_each_statement(monkeypatch, lambda cursor, sql: statements.append(sql))
    return statements


def jwk_of(key: Any, kid: str, **extra: Any) -> dict[str, Any]:
    """The public JWK of a private key (RSA, EC P-256 or Ed25519), with its kid."""
    public = key.public_key()
    if isinstance(key, ed25519.Ed25519PrivateKey):
        alg = "EdDSA"
    else:
        alg = "ES256" if isinstance(key, ec.EllipticCurvePrivateKey) else "RS256"
    jwk: dict[str, Any] = json.loads(jwt.algorithms.get_default_algorithms()[alg].to_jwk(public))
    jwk.update(kid=kid, **extra)
    return jwk


def claims(**overrides: object) -> dict[str, object]:
    """Sane claims for a new account; an override of None drops the claim."""
    now = datetime.now(UTC)
    body: dict[str, object] = {
        "sub": str(uuid.uuid4()),
        "email": f"u-{uuid.uuid4().hex[:8]}@example.com",
        "aud": "authenticated",
        "iss": settings.AUTEUR_JWT_ISSUER or None,
        "exp": int((now + timedelta(hours=1)).timestamp()),
    }
    body.update(overrides)
    return {k: v for k, v in body.items() if v is not None}


@dataclass
class JwksServer:
    url: str
    keys: list[dict[str, Any]]
    fetches: int = 0
    status: int = 200
    body: bytes | None = None  # served instead of the keys when set
    announced_length: int | None = None  # a Content-Length that lies (the body is cut short)
    lock: threading.Lock = field(default_factory=threading.Lock)


# One RSA key for the session (2048 bits take a tenth of a second or more to make): a key is never
# changed, and a test that needs a key the JWKS does not hold makes its own.
@pytest.fixture(scope="session")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture
def ed_key() -> ed25519.Ed25519PrivateKey:
    return ed25519.Ed25519PrivateKey.generate()


@pytest.fixture
def jwks_server(settings: Any, rsa_key: rsa.RSAPrivateKey, ec_key: ec.EllipticCurvePrivateKey,
                ed_key: ed25519.Ed25519PrivateKey) -> Iterator[JwksServer]:
    """Serves `rsa-1`, `ec-1` and `ed-1`; tests may change what it answers and read `fetches`."""
    server_state: JwksServer

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            with server_state.lock:
                server_state.fetches += 1
                payload = server_state.body or json.dumps({"keys": server_state.keys}).encode()
                status = server_state.status
                length = server_state.announced_length or len(payload)
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(length))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    # shutdown() waits for the loop's next poll: 0.05 s, not the default 0.5 s
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    server_state = JwksServer(
        url=f"http://127.0.0.1:{httpd.server_address[1]}/.well-known/jwks.json",
        keys=[jwk_of(rsa_key, "rsa-1"), jwk_of(ec_key, "ec-1"), jwk_of(ed_key, "ed-1")],
    )
    settings.AUTEUR_JWKS_URL = server_state.url
    jwks_keys.cache_clear()
    yield server_state
    httpd.shutdown()
    httpd.server_close()
    jwks_keys.cache_clear()

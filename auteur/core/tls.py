"""TLS to Redis and the Celery broker, configured in one place: the server's URL.

A `rediss://` URL (Redis) or an `amqps://` URL (RabbitMQ) turns TLS on; its query may name
`ssl_ca_certs` (the CA file that signed the server's certificate; without it, the system's CAs),
`ssl_certfile` / `ssl_keyfile` (a client certificate) and `ssl_cert_reqs` (`required`, the
default, or `optional` / `none`, which stop checking the server and are for tests only).

redis-py reads those options from the URL itself (the cache, rate limits, event streams, the GPU
announcements). Three clients do not, and would otherwise connect without checking whom they talk
to: kombu, for Celery's broker, falls back to CERT_NONE on a `rediss://` URL without options;
RedBeat takes its own setting; py-amqp checks no host name unless given one. So the settings
derive their options from the URL here, checking the certificate and the host name by default,
and celeryconfig.py hands them over. No Django here: settings import it.
"""

from __future__ import annotations

import ipaddress
import ssl
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

FILE_KEYS = ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile")
QUERY_KEYS = ("ssl_cert_reqs", *FILE_KEYS, "ssl_check_hostname")
CERT_REQS = {"required": ssl.CERT_REQUIRED, "optional": ssl.CERT_OPTIONAL, "none": ssl.CERT_NONE}


class TlsConfigError(ValueError):
    """A TLS option of a URL that cannot be used (the message names the option, never the URL)."""


def _query(url: str) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(url).query, keep_blank_values=True))


def _cert_reqs(query: dict[str, str]) -> ssl.VerifyMode:
    value = query.get("ssl_cert_reqs", "required")
    name = value.lower().removeprefix("cert_")  # Celery's CERT_REQUIRED spelling too
    if name not in CERT_REQS:
        raise TlsConfigError(f"ssl_cert_reqs={value!r}: expected one of {', '.join(CERT_REQS)}")
    return CERT_REQS[name]


def _files(query: dict[str, str]) -> dict[str, str]:
    files = {key: query[key] for key in FILE_KEYS if query.get(key)}
    for key, path in files.items():
        if not Path(path).is_file():
            raise TlsConfigError(f"{key} names {path!r}, which is not a readable file")
    return files


def redis_tls_options(url: str) -> dict[str, Any] | None:
    """redis-py's TLS options for a `rediss://` URL (as RedBeat and kombu take them); None otherwise."""
    if urlsplit(url).scheme.lower() != "rediss":
        return None
    query = _query(url)
    options: dict[str, Any] = {"ssl_cert_reqs": _cert_reqs(query), **_files(query)}
    if "ssl_check_hostname" in query:
        options["ssl_check_hostname"] = query["ssl_check_hostname"].lower() in ("1", "true", "yes", "on")
    return options


def amqp_tls_options(url: str) -> dict[str, Any] | None:
    """py-amqp's TLS options for an `amqps://` URL; None otherwise. The server's host name is
    checked against its certificate (and sent for SNI) unless ssl_cert_reqs is none."""
    parts = urlsplit(url)
    if parts.scheme.lower() != "amqps":
        return None
    query = _query(url)
    cert_reqs = _cert_reqs(query)
    files = _files(query)
    options: dict[str, Any] = {"cert_reqs": cert_reqs}
    options.update({key.removeprefix("ssl_"): path for key, path in files.items()})
    if cert_reqs != ssl.CERT_NONE and parts.hostname:
        options["server_hostname"] = parts.hostname
    return options


def without_tls_query(url: str) -> str:
    """The URL without the TLS options of its query (kombu would pass an amqps URL's on to py-amqp
    under names it does not take, and in place of the options derived here)."""
    parts = urlsplit(url)
    kept = [(key, value) for key, value in parse_qsl(parts.query, keep_blank_values=True) if key not in QUERY_KEYS]
    return urlunsplit(parts._replace(query=urlencode(kept)))


def broker_tls(url: str) -> tuple[str, dict[str, Any] | None]:
    """(the URL to give Celery, its `broker_use_ssl`) for a broker URL: Redis or RabbitMQ, TLS or not."""
    scheme = urlsplit(url).scheme.lower()
    if scheme == "rediss":
        return url, redis_tls_options(url)
    if scheme == "amqps":
        return without_tls_query(url), amqp_tls_options(url)
    return url, None


_LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost"}


def _loopback(host: str | None) -> bool:
    """A connection that never leaves the machine (or a Unix socket): TLS protects nothing there."""
    if not host or host.lower() in _LOOPBACK_NAMES or host.startswith("/"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _encrypted(url: str) -> bool:
    """Whether a client following the URL encrypts the connection, whatever the server offers."""
    parts = urlsplit(url)
    scheme, query = parts.scheme.lower(), {k.lower(): v.lower() for k, v in parse_qsl(parts.query)}
    if scheme in ("postgres", "postgresql", "pgsql", "postgis"):
        # `prefer` and `allow` fall back to plain text when the server offers no TLS.
        return query.get("sslmode") in ("require", "verify-ca", "verify-full")
    if scheme == "mongodb+srv":
        return query.get("tls", query.get("ssl", "true")) == "true"
    if scheme == "mongodb":
        return query.get("tls", query.get("ssl")) == "true"
    return scheme in ("rediss", "amqps", "https")


def plaintext_connections(urls: dict[str, str | None]) -> list[str]:
    """The names (never the URLs) of the settings whose URL reaches another machine unencrypted."""
    plain = []
    for name, url in urls.items():
        if not url:
            continue
        # One host or several (MongoDB, libpq: a,b,c), each with its port, in brackets for IPv6.
        netloc = urlsplit(url).netloc.rsplit("@", 1)[-1]
        hosts = [unquote(urlsplit(f"//{part}").hostname or "") for part in netloc.split(",")]
        if not all(_loopback(host) for host in hosts) and not _encrypted(url):
            plain.append(name)
    return plain

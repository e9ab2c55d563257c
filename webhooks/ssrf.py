"""Where a webhook may be sent: the guard against server-side request forgery.

A URL is accepted only when it is https and its host resolves to public addresses only:
private, loopback, link-local (cloud metadata), multicast, reserved and unspecified addresses
are refused, in IPv4 and IPv6. An IPv6 address that carries or reaches an IPv4 one (IPv4-mapped,
-compatible and -translated, NAT64, 6to4, Teredo) is refused whole, whatever it carries: a
gateway or the host's own stack would turn it into an IPv4 connection that was never checked.
Name resolution runs in a thread with a deadline (AUTEUR_WEBHOOK_RESOLVE_TIMEOUT_SECONDS), so
a hung resolver refuses the URL instead of holding a worker. The check is repeated at every
send, and the connection goes to the very address that was checked, with the name as TLS SNI,
Host header and certificate name: a name that resolves to a public address at the check and to
a private one at the connection (DNS rebinding) cannot steer the request. Redirects are never
followed.

Plain http and loopback addresses are allowed only with AUTEUR_WEBHOOK_ALLOW_LOOPBACK
(development, and the tests' receiver on 127.0.0.1).
"""

from __future__ import annotations

import ipaddress
import os
import socket
import threading
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings

from auteur.core.errors import ApplicationError

MAX_URL_LENGTH = 2000
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# Resolutions in flight at once in a process; a hung resolver holds its thread until the system
# gives up, so past this many a lookup waits (within its own deadline) instead of adding threads.
MAX_RESOLVER_THREADS = 8

# IPv6 prefixes whose address leads to an IPv4 one (embedded, or through a translator). Refused
# whole: the IPv4 address actually reached is not the one that would be checked, and no public
# webhook receiver needs them. `::/96` (IPv4-compatible) also holds `::` and `::1`, which are
# judged as unspecified and loopback before this table is read.
EMBEDDED_IPV4_NETWORKS: tuple[tuple[str, ipaddress.IPv6Network], ...] = tuple(
    (reason, ipaddress.IPv6Network(network)) for reason, network in (
        ("IPv4-mapped address", "::ffff:0:0/96"),
        ("IPv4-compatible address", "::/96"),
        ("IPv4-translated address", "::ffff:0:0:0/96"),
        ("NAT64 address", "64:ff9b::/96"),
        ("NAT64 address", "64:ff9b:1::/48"),
        ("6to4 address", "2002::/16"),
        ("Teredo address", "2001::/32"),
    )
)


class WebhookUrlRefused(ApplicationError):
    """400 `invalid_webhook_url`; `details.reason` says which rule refused it."""

    code = "invalid_webhook_url"


@dataclass(frozen=True)
class Target:
    """A checked URL: where to connect (`address`), and what to name there (`host`)."""

    scheme: str
    host: str  # the name as written (IDNA-encoded), for SNI, Host and the certificate
    port: int
    path: str  # path and query, as sent on the request line
    address: IPAddress

    @property
    def host_header(self) -> str:
        default = 443 if self.scheme == "https" else 80
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == default else f"{host}:{self.port}"


def allow_loopback() -> bool:
    return bool(settings.AUTEUR_WEBHOOK_ALLOW_LOOPBACK)


def address_refusal(address: IPAddress) -> str | None:
    """Why a connection to `address` is refused, or None when it is allowed."""
    if address.is_loopback:
        return None if allow_loopback() else "loopback address"
    if address.is_unspecified:
        return "unspecified address"
    if isinstance(address, ipaddress.IPv6Address):
        for reason, network in EMBEDDED_IPV4_NETWORKS:
            if address in network:
                return reason
    for reason, flag in (
        ("link-local address", address.is_link_local),
        ("multicast address", address.is_multicast),
        ("private address", address.is_private),
        ("reserved address", address.is_reserved),
        ("address not globally routable", not address.is_global),
    ):
        if flag:
            return reason
    return None


def url_parse(url: str) -> tuple[str, str, int, str]:
    """(scheme, host, port, path) of a URL that may be used, before any name resolution."""
    if not isinstance(url, str) or not url or len(url) > MAX_URL_LENGTH:
        raise WebhookUrlRefused(f"A webhook URL is 1 to {MAX_URL_LENGTH} characters.", details={"reason": "length"})
    if any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in url):
        raise WebhookUrlRefused("A webhook URL may not contain spaces or control characters.",
                                details={"reason": "malformed"})
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise WebhookUrlRefused("The webhook URL is malformed.", details={"reason": "malformed"}) from None
    scheme = parts.scheme.lower()
    if scheme != "https" and not (scheme == "http" and allow_loopback()):
        raise WebhookUrlRefused("A webhook URL must use https.", details={"reason": "scheme"})
    if parts.username is not None or parts.password is not None:
        raise WebhookUrlRefused("A webhook URL may not carry credentials.", details={"reason": "credentials"})
    if parts.fragment:
        raise WebhookUrlRefused("A webhook URL may not have a fragment.", details={"reason": "malformed"})
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise WebhookUrlRefused("The webhook URL has no host.", details={"reason": "malformed"})
    try:
        host = host.encode("idna").decode("ascii") if not _is_ip(host) else host
    except UnicodeError:
        raise WebhookUrlRefused("The webhook URL's host is not a valid name.",
                                details={"reason": "malformed"}) from None
    path = parts.path or "/"
    if parts.query:
        path = f"{path}?{parts.query}"
    return scheme, host, port or (443 if scheme == "https" else 80), path


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def lookup(host: str, port: int) -> list[tuple[Any, ...]]:
    """The system's name resolution (tests replace this one function to fake it)."""
    return socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)


_resolver_slots = threading.BoundedSemaphore(MAX_RESOLVER_THREADS)


def _reset_resolver_slots() -> None:
    # A forked child (a Celery pool process) has none of its parent's resolver threads: slots
    # they held would never be given back there.
    global _resolver_slots
    _resolver_slots = threading.BoundedSemaphore(MAX_RESOLVER_THREADS)


os.register_at_fork(after_in_child=_reset_resolver_slots)


def _timed_out(timeout: float) -> WebhookUrlRefused:
    return WebhookUrlRefused(f"The webhook URL's host did not resolve within {timeout:g} s.",
                             details={"reason": "resolution_timeout"})


def _lookup_bounded(host: str, port: int, timeout: float) -> list[tuple[Any, ...]]:
    """`lookup` in a daemon thread, given up after `timeout` seconds. getaddrinfo cannot be
    interrupted: a hung call keeps its thread (and slot) until the system resolver gives up, but
    the caller is free at the deadline, and the process can still exit (daemon thread)."""
    slots = _resolver_slots
    if not slots.acquire(timeout=timeout):
        raise _timed_out(timeout)
    done = threading.Event()
    result: dict[str, Any] = {}

    def run() -> None:
        try:
            result["infos"] = lookup(host, port)
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting caller
            result["error"] = exc
        finally:
            slots.release()
            done.set()

    threading.Thread(target=run, name="webhook-resolve", daemon=True).start()
    if not done.wait(timeout):
        raise _timed_out(timeout)
    if "error" in result:
        raise result["error"]
    infos: list[tuple[Any, ...]] = result["infos"]
    return infos


def resolve(host: str, port: int, *, timeout: float | None = None) -> list[IPAddress]:
    """Every address `host` resolves to (an IP literal: itself), within `timeout` seconds
    (default AUTEUR_WEBHOOK_RESOLVE_TIMEOUT_SECONDS)."""
    if _is_ip(host):
        return [ipaddress.ip_address(host)]
    if timeout is None:
        timeout = float(settings.AUTEUR_WEBHOOK_RESOLVE_TIMEOUT_SECONDS)
    try:
        infos = _lookup_bounded(host, port, timeout)
    except (OSError, UnicodeError):
        raise WebhookUrlRefused("The webhook URL's host does not resolve.",
                                details={"reason": "unresolvable"}) from None
    addresses: list[IPAddress] = []
    for _family, _type, _proto, _canon, sockaddr in infos:
        address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise WebhookUrlRefused("The webhook URL's host does not resolve.", details={"reason": "unresolvable"})
    return addresses


def target_check(url: str, *, resolve_timeout: float | None = None) -> Target:
    """The URL checked and resolved, or WebhookUrlRefused. Every address the name resolves to
    must be allowed (a name with one private address among public ones is refused whole), and
    the connection goes to the first of them."""
    scheme, host, port, path = url_parse(url)
    addresses = resolve(host, port, timeout=resolve_timeout)
    for address in addresses:
        reason = address_refusal(address)
        if reason is not None:
            raise WebhookUrlRefused(f"The webhook URL's host resolves to a {reason}, which is refused.",
                                    details={"reason": "address"})
    if scheme == "http" and not all(a.is_loopback for a in addresses):
        # Plain http is for a local receiver only, even where loopback is allowed.
        raise WebhookUrlRefused("A webhook URL must use https.", details={"reason": "scheme"})
    return Target(scheme=scheme, host=host, port=port, path=path, address=addresses[0])

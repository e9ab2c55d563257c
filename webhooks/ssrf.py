"""Where a webhook may be sent: the guard against server-side request forgery.

A URL is accepted only when it is https and its host resolves to public addresses only:
private, loopback, link-local (cloud metadata), multicast, reserved and unspecified addresses
are refused, in IPv4 and IPv6 (an IPv4-mapped IPv6 address is judged as the IPv4 it carries).
The check is repeated at every send, and the connection goes to the very address that was
checked, with the name as TLS SNI, Host header and certificate name: a name that resolves to a
public address at the check and to a private one at the connection (DNS rebinding) cannot
steer the request. Redirects are never followed.

Plain http and loopback addresses are allowed only with AUTEUR_WEBHOOK_ALLOW_LOOPBACK
(development, and the tests' receiver on 127.0.0.1).
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings

from auteur.errors import ApplicationError

MAX_URL_LENGTH = 2000
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


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


def _unmapped(address: IPAddress) -> IPAddress:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def address_refusal(address: IPAddress) -> str | None:
    """Why a connection to `address` is refused, or None when it is allowed."""
    address = _unmapped(address)
    if address.is_loopback:
        return None if allow_loopback() else "loopback address"
    for reason, flag in (
        ("unspecified address", address.is_unspecified),
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


def resolve(host: str, port: int) -> list[IPAddress]:
    """Every address `host` resolves to (an IP literal: itself)."""
    if _is_ip(host):
        return [ipaddress.ip_address(host)]
    try:
        infos = lookup(host, port)
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


def target_check(url: str) -> Target:
    """The URL checked and resolved, or WebhookUrlRefused. Every address the name resolves to
    must be allowed (a name with one private address among public ones is refused whole), and
    the connection goes to the first of them."""
    scheme, host, port, path = url_parse(url)
    addresses = resolve(host, port)
    for address in addresses:
        reason = address_refusal(address)
        if reason is not None:
            raise WebhookUrlRefused(f"The webhook URL's host resolves to a {reason}, which is refused.",
                                    details={"reason": "address"})
    if scheme == "http" and not all(_unmapped(a).is_loopback for a in addresses):
        # Plain http is for a local receiver only, even where loopback is allowed.
        raise WebhookUrlRefused("A webhook URL must use https.", details={"reason": "scheme"})
    return Target(scheme=scheme, host=host, port=port, path=path, address=addresses[0])

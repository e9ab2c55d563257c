"""Who may say where a request came from: only the reverse proxy, at FORWARDED_ALLOW_IPS.

X-Forwarded-For and X-Forwarded-Proto are written by Caddy (or the ingress controller), and they
decide the client address that per-IP limits and admin lockouts key on, and whether a request
counts as HTTPS (HSTS, secure cookies). A client that reaches gunicorn or uvicorn without passing
the proxy writes them itself, so they are believed only from a peer in FORWARDED_ALLOW_IPS: the
same variable gunicorn and uvicorn read for their own handling of these headers (the scheme, and
uvicorn's client address), so the three agree on one list.

Under uvicorn with `--proxy-headers` the peer address Django sees is already the client's (uvicorn
rewrote it, having trusted the proxy); that address is not the proxy's, so the headers go and the
client address stands. Under gunicorn the peer is the proxy, and the headers stay.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, MutableMapping
from functools import lru_cache
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponseBase

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
# The META keys of the headers only the proxy may set.
FORWARDED_META = ("HTTP_X_FORWARDED_FOR", "HTTP_X_FORWARDED_PROTO", "HTTP_X_FORWARDED_HOST",
                  "HTTP_X_FORWARDED_PORT", "HTTP_FORWARDED")


@lru_cache(maxsize=4)
def _networks(entries: tuple[str, ...]) -> tuple[Network, ...]:
    # The settings checked every entry (and refused `*`) at start-up.
    return tuple(ipaddress.ip_network(entry.strip(), strict=False) for entry in entries if entry.strip())


def is_trusted_proxy(address: str | None) -> bool:
    if not address:
        return False
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:  # a Unix socket's peer, or nothing usable
        return False
    return any(ip in network for network in _networks(tuple(settings.FORWARDED_ALLOW_IPS)))


def drop_untrusted_forwarded(meta: MutableMapping[str, Any]) -> None:
    """Remove the proxy's headers from `meta` unless its REMOTE_ADDR is the proxy's."""
    if not is_trusted_proxy(meta.get("REMOTE_ADDR")):
        for key in FORWARDED_META:
            meta.pop(key, None)


class ForwardedHeadersMiddleware:
    """First in the chain, so that everything after (HSTS, per-IP limits, lockouts) sees only
    headers the proxy wrote."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        drop_untrusted_forwarded(request.META)
        return self.get_response(request)

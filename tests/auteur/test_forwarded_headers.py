"""X-Forwarded-For/-Proto are believed from the reverse proxy only (FORWARDED_ALLOW_IPS).

Real uvicorn and gunicorn, started as `make run` starts them, with the proxy at 127.0.0.2: a
connection from 127.0.0.1 is a client that reached the server past the proxy. The attack forges
the headers to look like HTTPS and to take a fresh address for every request, so as to escape a
per-IP limit; it must buy nothing, while the same headers from the proxy are believed.
"""

from __future__ import annotations

import http.client
from collections.abc import Iterator

import pytest
import redis
from django.conf import settings

from tests.auteur.test_settings import PROD_ENV, load_settings
from tests.servers import AsgiServer, asgi_server, gunicorn_server

pytestmark = [pytest.mark.django_db, pytest.mark.slow]

PROXY = "127.0.0.2"
CLIENT = "127.0.0.1"  # not in FORWARDED_ALLOW_IPS: what reaches the server without passing the proxy
LIMIT = 2
SERVER_ENV = {"FORWARDED_ALLOW_IPS": PROXY, "AUTEUR_NUM_PROXIES": "1",
              "AUTEUR_READYZ_RATE_LIMIT_PER_MINUTE": str(LIMIT), "DJANGO_DEBUG": "0"}


@pytest.fixture(params=["uvicorn", "gunicorn"])
def server(request: pytest.FixtureRequest, django_db_setup: None) -> Iterator[AsgiServer]:
    start = asgi_server if request.param == "uvicorn" else gunicorn_server
    with start(**SERVER_ENV) as running:
        yield running


def _get(server: AsgiServer, path: str, *, source: str, **headers: str) -> http.client.HTTPResponse:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30, source_address=(source, 0))
    conn.request("GET", path, headers={"Host": "localhost", **headers})
    response = conn.getresponse()
    response.read()
    conn.close()
    return response


def _forget_limits(*addresses: str) -> None:
    client = redis.Redis.from_url(settings.REDIS_URL)
    client.delete(*(f"rl:readyz:{address}" for address in addresses))


def test_a_client_past_the_proxy_cannot_forge_https(server):
    forged = _get(server, "/healthz", source=CLIENT, **{"X-Forwarded-Proto": "https"})
    assert forged.status == 200
    assert forged.getheader("Strict-Transport-Security") is None  # still plain HTTP to the app
    proxied = _get(server, "/healthz", source=PROXY, **{"X-Forwarded-Proto": "https"})
    assert proxied.getheader("Strict-Transport-Security", "").startswith("max-age=")


def test_a_client_past_the_proxy_cannot_take_a_fresh_address_per_request(server):
    forged = [f"203.0.113.{n}" for n in range(1, LIMIT + 3)]
    _forget_limits(CLIENT, *forged)
    statuses = [_get(server, "/readyz", source=CLIENT, **{"X-Forwarded-For": ip}).status for ip in forged]
    # Every request counted against the connection's own address: refused once past the limit.
    assert [s == 429 for s in statuses] == [False] * LIMIT + [True] * (len(forged) - LIMIT)
    assert not redis.Redis.from_url(settings.REDIS_URL).exists(*(f"rl:readyz:{ip}" for ip in forged))


def test_the_proxys_forwarded_address_is_each_clients_own(server):
    clients = [f"198.51.100.{n}" for n in range(1, LIMIT + 3)]
    _forget_limits(PROXY, *clients)
    statuses = [_get(server, "/readyz", source=PROXY, **{"X-Forwarded-For": ip}).status for ip in clients]
    assert 429 not in statuses  # one request per client, each under its own limit
    assert redis.Redis.from_url(settings.REDIS_URL).exists(*(f"rl:readyz:{ip}" for ip in clients)) == len(clients)


def test_settings_refuse_to_believe_every_address():
    refused = load_settings({**PROD_ENV, "FORWARDED_ALLOW_IPS": "*"})
    assert refused.returncode != 0 and "FORWARDED_ALLOW_IPS" in refused.stderr
    assert load_settings({**PROD_ENV, "FORWARDED_ALLOW_IPS": "not-an-address"}).returncode != 0
    shown = load_settings({**PROD_ENV, "FORWARDED_ALLOW_IPS": "10.244.0.0/16,172.30.250.2"},
                          show="settings.FORWARDED_ALLOW_IPS")
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.strip() == "['10.244.0.0/16', '172.30.250.2']"

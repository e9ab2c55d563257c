"""The Caddyfile as compose and `make run` configure it, adapted by the Caddy binary `make run` runs.

`caddy adapt` turns the file, with each environment's placeholders, into the JSON config Caddy
would run: these tests read what Caddy itself understood, not the file's text.
(tests/auteur/test_slow_clients.py runs it against real clients.)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings

from devstack.front import CADDYFILE, front_processes
from tests.test_compose import GUNICORN_FLAGS, argv_of, env_of, interpolate, load_compose, option, split_options

CADDY = Path(sys.executable).parent / "caddy"


def adapt(env: dict[str, str]) -> dict[str, Any]:
    result = subprocess.run(
        [str(CADDY), "adapt", "--config", str(CADDYFILE), "--adapter", "caddyfile"],
        env={"PATH": os.environ["PATH"], **env}, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "not formatted" not in result.stderr, "run: .venv/bin/caddy fmt --overwrite Caddyfile"
    config: dict[str, Any] = json.loads(result.stdout)
    return config


def handlers(node: Any) -> Iterator[dict[str, Any]]:
    """Every handler in a config, at any depth of subroutes."""
    if isinstance(node, dict):
        if "handler" in node:
            yield node
        for value in node.values():
            yield from handlers(value)
    elif isinstance(node, list):
        for value in node:
            yield from handlers(value)


def the_server(config: dict[str, Any]) -> dict[str, Any]:
    servers = config["apps"]["http"]["servers"]
    assert len(servers) == 1, servers
    server: dict[str, Any] = next(iter(servers.values()))
    return server


def matchers_above(node: Any, target: dict[str, Any]) -> list[dict[str, Any]]:
    """The matchers of every route between `node` and the handler `target` ([] if not below)."""
    if node is target:
        return [{}]
    children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else []
    for child in children:
        found = matchers_above(child, target)
        if found:
            own = node.get("match", []) if isinstance(node, dict) else []
            return [*own, *found]
    return []


def proxies(config: dict[str, Any]) -> list[dict[str, Any]]:
    return [h for h in handlers(config) if h["handler"] == "reverse_proxy"]


@pytest.fixture(scope="module")
def compose_caddy() -> dict[str, Any]:
    return load_compose()["services"]["caddy"]


@pytest.fixture(scope="module")
def compose_config(compose_caddy: dict[str, Any]) -> dict[str, Any]:
    return adapt({key: interpolate(value) for key, value in env_of(compose_caddy).items()})


@pytest.fixture(scope="module")
def make_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, dict[str, Any]]:
    var_dir = tmp_path_factory.mktemp("var")
    front = front_processes({}, var_dir, host="127.0.0.1", port=18000)
    proxy = next(p for p in front.processes if p.name == "proxy")
    assert proxy.argv[1:] == ["run", "--config", str(CADDYFILE), "--adapter", "caddyfile"]
    return front, adapt(proxy.env)


def test_compose_serves_the_domain_with_https_and_proxies_to_the_api(compose_caddy, compose_config):
    server = the_server(compose_config)
    assert server["listen"] == ["0.0.0.0:443", "[::]:443"]
    hosts = [m["host"] for route in server["routes"] for m in route.get("match", []) if "host" in m]
    assert sorted(hosts) == [["localhost"], ["media.localhost"]]  # the API's site, the object store's
    [api_site] = [route for route in server["routes"] if {"host": ["localhost"]} in route.get("match", [])]
    assert {u["dial"] for p in proxies(api_site) for u in p["upstreams"]} == {"api:8000", "asgi:8001"}
    # The upstream is the port gunicorn binds in the api service.
    api = load_compose()["services"]["api"]
    _, options = split_options(argv_of(api["command"])[1:], GUNICORN_FLAGS)
    assert option(options, "-b", "--bind") == ["0.0.0.0:8000"]
    assert "./Caddyfile:/etc/caddy/Caddyfile:ro" in compose_caddy["volumes"]


def test_make_run_serves_the_api_port_on_loopback_with_gunicorn_behind(make_run):
    front, config = make_run
    server = the_server(config)
    assert server["listen"] == ["127.0.0.1:18000"]
    assert not any("match" in route and any("host" in m for m in route["match"]) for route in server["routes"])
    api_port, storage_port, asgi_port, public = front.ports
    assert public == 18000
    dials = [[u["dial"] for u in p["upstreams"]] for p in proxies(config)]
    # uvicorn twice: event streams and the WebSocket, and submissions that wait; gunicorn twice: the
    # API, and timeline imports (a cap of their own).
    assert sorted(dials) == sorted([[f"127.0.0.1:{api_port}"], [f"127.0.0.1:{api_port}"],
                                    [f"127.0.0.1:{storage_port}"], [f"127.0.0.1:{asgi_port}"],
                                    [f"127.0.0.1:{asgi_port}"]])
    asgi = next(p for p in front.processes if p.name == "asgi")
    assert asgi.argv[1] == "auteur.asgi:application" and str(asgi_port) in asgi.argv
    # No admin endpoint, nothing saved outside var/.
    assert config["admin"] == {"disabled": True, "config": {"persist": False}}
    api = next(p for p in front.processes if p.name == "api")
    assert f"127.0.0.1:{api_port}" in api.argv and "sync" in api.argv


def test_bodies_are_capped_like_the_api_and_buffered_before_gunicorn(compose_config, make_run):
    # compose's object store site takes media files too, as the local storage's URLs do.
    for config, media_sites in ((compose_config, 1), (make_run[1], 0)):
        caps = sorted(h["max_size"] for h in handlers(config) if h["handler"] == "request_body")
        api_cap = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        # API, waiting submissions, storage; and the event streams, which take no body at all.
        # (And a timeline import's ceiling: its own cap is decided from the declared length.)
        media = [settings.AUTEUR_MAX_UPLOAD_BYTES] * (1 + media_sites)
        assert caps == sorted([1, api_cap, api_cap, 64 * 1024**2, *media])
        buffered = [p for p in proxies(config) if p.get("request_buffers")]
        streamed = [p for p in proxies(config) if not p.get("request_buffers") and "flush_interval" not in p]
        # The API's whole body is read first (a timeline import's up to 64 MiB, its own cap decided
        # from the declared length); storage bodies (GBs) are streamed, never held in memory.
        assert sorted(p["request_buffers"] for p in buffered) == sorted([api_cap, api_cap, 64 * 1024**2])
        assert len(streamed) == 1 + media_sites


def test_compose_serves_the_object_store_under_its_own_name_with_the_clients_host(compose_config, make_run):
    """Signed URLs name https://<AUTEUR_MEDIA_DOMAIN> (AWS_S3_PUBLIC_ENDPOINT_URL); SigV4 signs the Host,
    so it reaches MinIO as the client sent it (tests/test_media_site.py sends real signed requests)."""
    compose = load_compose()["services"]
    server = the_server(compose_config)
    [media] = [route for route in server["routes"] if {"host": ["media.localhost"]} in route.get("match", [])]
    [proxy] = proxies(media)
    assert proxy["upstreams"] == [{"dial": "minio:9000"}]
    assert proxy["headers"]["request"] == {"set": {"Host": ["{http.request.hostport}"]}}
    # Only the two buckets' objects: not MinIO's listing of buckets, its admin API or its health.
    app_env = env_of(compose["api"])
    buckets = [app_env["AWS_STORAGE_BUCKET_NAME"], app_env["AUTEUR_PUBLIC_BUCKET_NAME"]]
    assert [m for m in matchers_above(media, proxy) if m] == [{"host": ["media.localhost"]},
                                                              {"path": [f"/{b}/*" for b in buckets]}]
    # The name the app signs for is the name Caddy serves, with the same default.
    assert interpolate(app_env["AWS_S3_PUBLIC_ENDPOINT_URL"]) == "https://media.localhost"
    domain = {"AUTEUR_MEDIA_DOMAIN": "m.example.com"}
    assert interpolate(app_env["AWS_S3_PUBLIC_ENDPOINT_URL"], domain) == "https://m.example.com"
    assert interpolate(env_of(compose["caddy"])["AUTEUR_MEDIA_SITE"], domain) == "m.example.com"
    assert app_env["AWS_S3_ADDRESSING_STYLE"] == "path"  # one name for every bucket: no wildcard certificate
    # `make run` has no object store's site: its local storage's URLs are the API's /storage/.
    assert not any(p["upstreams"] == [{"dial": "minio:9000"}] for p in proxies(make_run[1]))


def test_event_streams_and_the_websocket_go_to_uvicorn_unbuffered(compose_config, make_run):
    for config, upstream in ((compose_config, "asgi:8001"), (make_run[1], f"127.0.0.1:{make_run[0].ports[2]}")):
        routes = the_server(config)["routes"]
        [push] = [p for p in proxies(config) if p.get("flush_interval") == -1]
        assert [u["dial"] for u in push["upstreams"]] == [upstream]
        assert {"path": ["/ws/*", "*/stream"]} in matchers_above(routes, push)
        # Refused there from the headers, before the body is read (tests/jobs/test_stream_bodies.py).
        refusals: dict[int, list[dict]] = {}
        for h in handlers(routes):
            if h["handler"] == "error":
                refusals.setdefault(h["status_code"], []).extend(matchers_above(routes, h))
        assert {"not": [{"method": ["GET"]}]} in refusals[405]
        assert {"header_regexp": {"Content-Length": {"name": "has_body", "pattern": "^0*[1-9]"}}} in refusals[413]


def test_submissions_that_wait_go_to_uvicorn_and_the_rest_to_gunicorn(compose_config, make_run):
    for config, asgi in ((compose_config, "asgi:8001"), (make_run[1], f"127.0.0.1:{make_run[0].ports[2]}")):
        [waiting] = [p for p in proxies(config) if p.get("request_buffers") and p["upstreams"] == [{"dial": asgi}]]
        matchers = matchers_above(the_server(config)["routes"], waiting)
        assert {"method": ["POST"], "path": ["/api/v1/jobs/*"],
                "header_regexp": {"Prefer": {"name": "wait", "pattern": "(?i)(^|[,\\s])wait\\s*="}}} in matchers


def test_slow_clients_are_cut_but_long_transfers_are_not(compose_config):
    server = the_server(compose_config)
    assert 0 < server["read_header_timeout"] <= 10 * 10**9
    assert 0 < server["read_idle_timeout"] <= 10 * 10**9
    assert server["read_min_rate"] > 0  # a body trickled just fast enough not to stall is cut too
    # A total limit on reading a body would cut a long upload that keeps the minimum rate.
    assert "read_timeout" not in server and "write_timeout" not in server


def test_no_log_keeps_a_query_string(compose_config, make_run):
    for config in (compose_config, make_run[1]):
        logs = config["logging"]["logs"]
        assert {"default", "log0"} <= set(logs)
        for name, log in logs.items():
            fields = log["encoder"]["fields"]
            assert fields["request>uri"] == {"filter": "regexp", "regexp": "\\?.*"}, name
            assert fields["request>headers>Referer"] == {"filter": "delete"}, name
    access = make_run[1]["logging"]["logs"]["log0"]["writer"]
    assert access["output"] == "file" and access["filename"].endswith("log/caddy-access.log")

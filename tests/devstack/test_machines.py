"""Machines on one host (bench/netns.py): servers placed on a namespace's link, reached from
another machine, cut off and healed; and the relay that makes a link slow and unreliable."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench import netns
from devstack.ports import free_port, wait_for_port
from devstack.servers import PostgresServer, RedisServer

# The networks' addresses are fixed: the tests that make machines run one at a time.
pytestmark = pytest.mark.xdist_group("machines")

REASON = netns.unavailable()
needs_namespaces = pytest.mark.skipif(bool(REASON), reason=f"machines on one host: {REASON}")

CONNECT = """
import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=1).close()
    print("reached")
except OSError as exc:
    print(f"unreachable: {exc}")
"""


@pytest.fixture
def machines() -> Iterator[netns.Topology]:
    with netns.Topology(f"t{free_port() % 1000}") as net:
        net.network("db", "10.79.1")
        net.network("bk", "10.79.2")
        net.machine("data", {"db": 1, "bk": 1})
        net.machine("w1", {"db": 11, "bk": 11})
        yield net


def reach(net: netns.Topology, machine: str, host: str, port: int) -> str:
    argv = net.argv(machine, [sys.executable, "-c", CONNECT, host, str(port)])
    return subprocess.run(argv, capture_output=True, text=True, timeout=30).stdout.strip()


@needs_namespaces
def test_servers_on_a_machine_are_reached_over_its_links_and_a_cut_link_separates_them(
    machines: netns.Topology, tmp_path: Path
) -> None:
    net = machines
    pg = PostgresServer("postgres", tmp_path / "pg", free_port(), tmp_path / "pg.log", fast_unsafe=True,
                        host=net.address("data", "db"), netns=net.netns("data"))  # fmt: skip
    redis = RedisServer("redis", tmp_path / "redis", free_port(), tmp_path / "redis.log", persistent=False,
                        host=net.address("data", "bk"), netns=net.netns("data"))  # fmt: skip
    pg.start()
    redis.start()
    try:
        # The host (where a drill runs) reaches both over the bridges, with their own URLs.
        import psycopg
        import redis as redis_client

        with psycopg.connect(pg.url(), connect_timeout=5) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
        assert redis_client.Redis.from_url(redis.url(), socket_timeout=5).ping()
        assert pg.url().startswith("postgres://postgres@10.79.1.1:")

        # Another machine reaches each service only on that service's network.
        assert reach(net, "w1", "10.79.1.1", pg.port) == "reached"
        assert reach(net, "w1", "10.79.2.1", redis.port) == "reached"
        assert reach(net, "w1", "127.0.0.1", pg.port).startswith("unreachable")

        net.cut("w1", "db")  # cut from the database, not from the broker
        assert reach(net, "w1", "10.79.1.1", pg.port).startswith("unreachable")
        assert reach(net, "w1", "10.79.2.1", redis.port) == "reached"
        net.heal("w1", "db")
        wait_for_port(pg.port, 10, host="10.79.1.1")
        assert reach(net, "w1", "10.79.1.1", pg.port) == "reached"

        net.isolate("w1")
        assert reach(net, "w1", "10.79.2.1", redis.port).startswith("unreachable")
    finally:
        redis.stop()
        pg.stop()


@needs_namespaces
def test_teardown_leaves_no_namespace_or_bridge(tmp_path: Path) -> None:
    tag = f"t{free_port() % 1000}"
    with netns.Topology(tag) as net:
        net.network("db", "10.79.3")
        net.machine("m", {"db": 2})
        assert (netns.NETNS_DIR / f"{tag}-m").exists()
    assert not (netns.NETNS_DIR / f"{tag}-m").exists()
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    assert f"{tag}b-db" not in links and f"{tag}m-db" not in links


# ---------------------------------------------------------------- the relay (loopback only)


@pytest.fixture
def echo_server() -> Iterator[int]:
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    code = (
        "import socket, threading, sys\n"
        "s = socket.socket(fileno=int(sys.argv[1]))\n"
        "def serve(c):\n"
        "    while (d := c.recv(65536)):\n"
        "        c.sendall(d)\n"
        "    c.close()\n"
        "while True:\n"
        "    c, _ = s.accept(); threading.Thread(target=serve, args=(c,), daemon=True).start()\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code, str(server.fileno())], pass_fds=[server.fileno()])
    server.close()
    yield port
    proc.kill()
    proc.wait()


@pytest.fixture
def relay(echo_server: int, tmp_path: Path) -> Iterator[tuple[int, Path]]:
    control = tmp_path / "faults.json"
    port = free_port()
    proc = subprocess.Popen([sys.executable, "bench/fault_relay.py", "--listen", f"127.0.0.1:{port}",
                             "--to", f"127.0.0.1:{echo_server}", "--control", str(control)],
                            stdout=subprocess.PIPE, text=True)  # fmt: skip
    wait_for_port(port, 30, proc)  # type: ignore[arg-type]
    yield port, control
    proc.terminate()
    out, _ = proc.communicate(timeout=10)
    assert json.loads(out.strip().splitlines()[-1])["connections"] >= 1


def round_trip(conn: socket.socket, payload: bytes) -> float:
    began = time.monotonic()
    conn.sendall(payload)
    got = b""
    while len(got) < len(payload):
        chunk = conn.recv(65536)
        assert chunk, "the relay closed the connection"
        got += chunk
    assert got == payload
    return time.monotonic() - began


def test_the_relay_passes_bytes_both_ways_and_adds_the_latency_it_is_told(relay: tuple[int, Path]) -> None:
    port, control = relay
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        round_trip(conn, b"x" * 200_000)  # a perfect link: everything comes back, in order
        control.write_text(json.dumps({"delay_ms": 200}))
        time.sleep(1.2)  # re-read every half second
        # 200 ms each way: a round trip can never take less than 400 ms.
        assert round_trip(conn, b"ping") >= 0.4
        control.write_text("{}")
        time.sleep(1.2)
        round_trip(conn, b"pong")


def test_the_relay_drops_connections_with_a_reset(relay: tuple[int, Path]) -> None:
    port, control = relay
    control.write_text(json.dumps({"drop_per_s": 1.0}))
    time.sleep(1.2)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        round_trip(conn, b"hello")
        conn.settimeout(5)
        with pytest.raises((ConnectionResetError, AssertionError)):
            for _ in range(50):
                round_trip(conn, b"again")
                time.sleep(0.1)

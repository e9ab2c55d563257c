"""The embedded stack starts real servers, stops them on exit, and keeps data across restarts."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import psycopg
import pymongo
import pytest
import redis
import requests
import websockets.sync.client
from websockets.typing import Subprotocol

from devstack import REPO_ROOT
from devstack.ports import free_port, port_is_free, port_offset, preferred_port
from devstack.process_group import children_running
from devstack.stack import Stack, load_recorded_urls, running_stack
from tests.docs.test_tour import paste_the_tour

pytestmark = pytest.mark.slow

NO_URLS = {"PATH": os.environ["PATH"]}


def test_ephemeral_stack_starts_every_server_and_stops_them(tmp_path):
    with running_stack(tmp_path, NO_URLS, ephemeral=True) as stack:
        urls = stack.urls()
        assert set(urls) == {"DATABASE_URL", "REDIS_URL", "MONGODB_URI"}
        assert all("127.0.0.1" in url for url in urls.values())
        with psycopg.connect(urls["DATABASE_URL"]) as conn:
            assert conn.execute("SELECT current_database()").fetchone() == ("auteur",)
        assert redis.Redis.from_url(urls["REDIS_URL"]).ping()
        assert pymongo.MongoClient(urls["MONGODB_URI"]).admin.command("ping")["ok"] == 1
        pids = [s.proc.pid for s in stack.servers if s.proc]
        ports = [s.port for s in stack.servers]
    assert len(pids) == 3
    for pid in pids:
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert all(port_is_free(p) for p in ports)


def test_a_url_set_in_the_environment_is_used_instead_of_starting_a_server(tmp_path):
    stack = Stack.plan(tmp_path, {"REDIS_URL": "redis://elsewhere:6379/0"}, ephemeral=True)
    assert [s.name for s in stack.servers] == ["postgres", "mongodb"]


def test_a_url_set_through_its_file_variable_is_used_instead_of_starting_a_server(tmp_path):
    """A URL that settings read from NAME_FILE is set: exporting an embedded server's URL beside it
    would make the settings refuse to start (both set)."""
    env = {"DATABASE_URL_FILE": str(tmp_path / "db-url"), "MONGODB_URI_FILE": str(tmp_path / "mongo-uri")}
    stack = Stack.plan(tmp_path, env, ephemeral=True)
    assert [s.name for s in stack.servers] == ["redis"]


def test_persistent_data_survives_a_restart(tmp_path):
    env = {"DATABASE_URL": "postgres://unused"}  # Redis and MongoDB only: Postgres is covered above
    with running_stack(tmp_path, env) as stack:
        urls = stack.urls()
        r = redis.Redis.from_url(urls["REDIS_URL"])
        r.set("kept", "yes")
        r.save()
        mongo: pymongo.MongoClient[dict[str, object]] = pymongo.MongoClient(urls["MONGODB_URI"])
        mongo.auteur.edls.insert_one({"_id": "p1", "version": 3})
    with running_stack(tmp_path, env) as stack:
        urls2 = stack.urls()
        assert urls2 == urls, "a checkout's ports are stable across restarts"
        assert redis.Redis.from_url(urls2["REDIS_URL"]).get("kept") == b"yes"
        kept = pymongo.MongoClient(urls2["MONGODB_URI"]).auteur.edls.find_one({"_id": "p1"})
        assert kept is not None and kept["version"] == 3


def test_port_offset_is_stable_per_checkout_and_differs_between_checkouts():
    a, b = Path("/srv/checkout-a/var"), Path("/srv/checkout-b/var")
    assert port_offset(a) == port_offset(Path("/srv/checkout-a/../checkout-a/var"))
    assert port_offset(a) != port_offset(b)
    assert 0 <= port_offset(a) < 1000


def test_preferred_port_falls_back_to_a_free_one_when_taken(tmp_path):
    import socket

    wanted = 20000 + port_offset(tmp_path)
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", wanted))
        except OSError:
            pytest.skip("the preferred port is taken by something else already")
        s.listen()
        assert preferred_port(20000, tmp_path) != wanted


def test_recorded_urls_are_adopted_only_while_their_supervisor_lives(tmp_path):
    record = {"pid": os.getpid(), "urls": {"REDIS_URL": "redis://127.0.0.1:1/0", "DATABASE_URL": "postgres://x"}}
    (tmp_path / "devstack.json").write_text(json.dumps(record))
    environ = {"DATABASE_URL": "postgres://mine"}
    assert load_recorded_urls(tmp_path, environ) == {"REDIS_URL": "redis://127.0.0.1:1/0"}
    assert environ["DATABASE_URL"] == "postgres://mine", "an explicit URL always wins"

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    record["pid"] = dead.pid
    (tmp_path / "devstack.json").write_text(json.dumps(record))
    assert load_recorded_urls(tmp_path, {}) == {}


def test_exec_runs_a_command_against_a_throwaway_stack_passes_its_exit_code_and_cleans_up():
    # One throwaway stack for both: the command reaches its Redis, then exits 3.
    code = (
        "import os,redis; print(os.environ['REDIS_URL']); print(redis.Redis.from_url(os.environ['REDIS_URL']).ping());"
        " raise SystemExit(3)"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "MONGODB_URI")}
    result = subprocess.run(
        [sys.executable, "-m", "devstack", "exec", "--", sys.executable, "-c", code],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 3, result.stderr
    url, pong = result.stdout.split()
    assert pong == "True"
    assert port_is_free(int(url.rsplit(":", 1)[1].split("/")[0]))


def _wait_http(url: str, timeout: float, **kwargs: object) -> requests.Response:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            response = requests.get(url, timeout=5, **kwargs)  # type: ignore[arg-type]
        except requests.RequestException as exc:
            last = exc
            time.sleep(0.3)
            continue
        if response.status_code != 502:  # 502: Caddy is up, the gunicorn behind it not yet
            return response
        time.sleep(0.3)
    raise AssertionError(f"{url} never answered: {last}")


def test_run_brings_up_the_whole_stack_the_tour_completes_on_it_and_ctrl_c_leaves_nothing_behind(tmp_path):
    """`make run` in miniature: API, worker, beat, Flower over the embedded servers; the README's
    tour pasted whole against it once it is ready (tests/docs/test_tour.py); then SIGINT."""
    api_port, flower_port, exporter_port = free_port(), free_port(), free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "REDIS_URL", "MONGODB_URI") and not k.startswith(("DJANGO_", "AUTEUR_"))
    }
    env.update(
        AUTEUR_VAR_DIR=str(tmp_path / "var"),
        AUTEUR_API_PORT=str(api_port),
        FLOWER_PORT=str(flower_port),
        AUTEUR_METRICS_EXPORTER_PORT=str(exporter_port),
        WEB_CONCURRENCY="1",
        CELERY_WORKER_CONCURRENCY="1",
        FLOWER_BASIC_AUTH="ops:s3cret",
        AUTEUR_ENV_FILE="",  # not this checkout's .env
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "devstack", "run"],
        env=env,
        cwd=REPO_ROOT,
        # Started as a background job is (SIGINT inherited ignored): Ctrl-C must still stop it.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    # Read its output as a terminal would, all along: an undrained pipe would stall its writers.
    lines: list[str] = []
    before_redis_down = 0  # how many lines were printed before the test takes Redis down
    assert proc.stdout is not None
    pipe = proc.stdout
    reader = threading.Thread(target=lambda: lines.extend(iter(pipe.readline, "")), daemon=True)
    reader.start()
    try:
        ready = _wait_http(f"http://127.0.0.1:{api_port}/readyz", 120)
        assert ready.status_code == 200, ready.text
        assert ready.json()["failed"] == []
        # Served through Caddy, as in production, with gunicorn behind it.
        assert ready.headers["Via"] == "1.1 Caddy" and ready.headers["Server"] == "gunicorn"

        state = json.loads((tmp_path / "var" / "devstack.json").read_text())
        assert state["pid"] == proc.pid
        assert set(state["urls"]) == {"DATABASE_URL", "REDIS_URL", "MONGODB_URI", "DJANGO_DEBUG", "AUTEUR_VAR_DIR"}

        # What a newcomer does next, from another terminal: the tour, pasted whole.
        paste_the_tour(api_port, {k: v for k, v in env.items() if k != "AUTEUR_API_PORT"})

        # A management command from "another terminal" (no URLs, no secrets) reaches the stack.
        token = subprocess.run(
            [sys.executable, "manage.py", "issue_token", "dev@example.com"],
            env={k: v for k, v in env.items() if k != "AUTEUR_VAR_DIR"} | {"AUTEUR_VAR_DIR": str(tmp_path / "var")},
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert token.returncode == 0, token.stderr
        verify = requests.post(
            f"http://127.0.0.1:{api_port}/api/v1/auth/verify",
            timeout=10,
            headers={"Authorization": f"Bearer {token.stdout.strip()}"},
        )
        assert verify.status_code == 200, verify.text
        assert verify.json()["valid"] is True

        # Event streams and the WebSocket answer on the same address, from uvicorn behind Caddy.
        with requests.get(f"http://127.0.0.1:{api_port}/api/v1/events/stream", timeout=30, stream=True,
                          headers={"Authorization": f"Bearer {token.stdout.strip()}"}) as sse:
            assert sse.status_code == 200 and sse.headers["Content-Type"].startswith("text/event-stream")
            assert sse.headers["Via"] == "1.1 Caddy" and "gunicorn" not in sse.headers.get("Server", "")
            assert next(sse.iter_lines()) == b"retry: 2000"
        bearer = [Subprotocol("bearer"), Subprotocol(token.stdout.strip())]
        with websockets.sync.client.connect(f"ws://127.0.0.1:{api_port}/ws/v1/events", open_timeout=30,
                                            subprotocols=bearer) as ws:
            assert json.loads(ws.recv(timeout=30)) == {"type": "ready"}

        assert _wait_http(f"http://127.0.0.1:{flower_port}/api/workers", 30).status_code == 401
        deadline = time.monotonic() + 60
        workers: dict[str, object] = {}
        while not workers and time.monotonic() < deadline:
            workers = _wait_http(
                f"http://127.0.0.1:{flower_port}/api/workers?refresh=1", 30, auth=("ops", "s3cret")
            ).json()
            time.sleep(0.5)
        assert any(name.startswith("worker@") for name in workers), workers
        consumers = children_running(proc.pid, "gpu_events", recursive=True)
        assert len(consumers) == 1  # the one consumer of GPU calls' announcements

        # The exporter on its internal port; the API's /metrics for the generated token only.
        assert "auteur_celery_queue_length" in _wait_http(f"http://127.0.0.1:{exporter_port}/metrics", 60).text
        assert requests.get(f"http://127.0.0.1:{api_port}/metrics", timeout=10).status_code == 401
        metrics_token = (tmp_path / "var" / "auteur_metrics_token").read_text().strip()
        api_metrics = requests.get(f"http://127.0.0.1:{api_port}/metrics", timeout=10,
                                   headers={"Authorization": f"Bearer {metrics_token}"})
        assert api_metrics.status_code == 200 and "django_http_requests_latency_seconds" in api_metrics.text

        # Killing the embedded Redis makes /readyz say so by name. (A clock task running then is
        # cut off from the broker, which the worker rightly logs: the quiet housekeeping is checked
        # in what was printed before.)
        before_redis_down = len(lines)
        redis_pid = next(p.pid for p in psutil.Process(proc.pid).children(recursive=True) if "redis-server" in p.name())
        tree = [p.pid for p in psutil.Process(proc.pid).children(recursive=True)]
        os.kill(redis_pid, signal.SIGKILL)
        down = _wait_http(f"http://127.0.0.1:{api_port}/readyz", 30)
        assert down.status_code == 503
        assert "redis" in down.json()["failed"]
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            # The supervisor's own bound: 20 s for the API and workers, then each server's stop.
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        reader.join(10)
        output = "".join(lines)
    assert "devstack: stopped" in output, output[-3000:]
    # honcho pads every name to the longest one: each process printed under its own name.
    names = ("proxy", "storage", "asgi", "gpu-events", "exporter")
    missing = [n for n in names if not re.search(rf" {n} +\| ", output)]
    assert missing == [], output[-3000:]
    # The banner is start-up's last word: after the worker said it is ready, and no Celery banner or
    # task list after it; the housekeeping beat sends every 5 s is neither logged nor, above, in Flower.
    worker_ready = re.search(r" worker +\| .* ready\.$", output, re.MULTILINE)
    assert worker_ready and output.index("Auteur is up") > worker_ready.start(), output[-3000:]
    assert "[tasks]" not in output and "-------------- [queues]" not in output
    running = "".join(lines[:before_redis_down])
    assert "jobs.deadlines" not in running and "Registered tasks" not in output
    time.sleep(0.5)
    alive = [pid for pid in tree if psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]
    assert alive == [], f"orphans left behind: {alive}"
    assert not (tmp_path / "var" / "devstack.json").exists()


def test_run_reuses_its_data_after_a_stop(tmp_path):
    """Second start of the same var/ finds the first one's Postgres data (migrations already applied)."""
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "MONGODB_URI")}
    with running_stack(tmp_path, env) as stack, psycopg.connect(stack.urls()["DATABASE_URL"], autocommit=True) as conn:
        conn.execute("CREATE TABLE marker (x int)")
    with running_stack(tmp_path, env) as stack, psycopg.connect(stack.urls()["DATABASE_URL"]) as conn:
        assert conn.execute("SELECT to_regclass('marker')").fetchone() == ("marker",)
    assert Path(tmp_path / "postgres" / "PG_VERSION").exists()


def test_the_broker_is_redis_unless_rabbitmq_is_asked_for_and_no_url_is_set(tmp_path):
    from devstack import DevStackError
    from devstack.rabbitmq import RabbitMQServer

    assert "rabbitmq" not in [s.name for s in Stack.plan(tmp_path, NO_URLS, ephemeral=True).servers]
    stack = Stack.plan(tmp_path, {**NO_URLS, "AUTEUR_DEVSTACK_BROKER": "rabbitmq"}, ephemeral=True)
    [node] = [s for s in stack.servers if isinstance(s, RabbitMQServer)]
    assert len({node.port, node.dist_port, node.epmd_port}) == 3
    assert stack.urls()["CELERY_BROKER_URL"] == f"amqp://guest:guest@127.0.0.1:{node.port}//"
    elsewhere = {**NO_URLS, "AUTEUR_DEVSTACK_BROKER": "rabbitmq", "CELERY_BROKER_URL": "amqp://broker.internal//"}
    assert "rabbitmq" not in [s.name for s in Stack.plan(tmp_path, elsewhere, ephemeral=True).servers]
    with pytest.raises(DevStackError, match="AUTEUR_DEVSTACK_BROKER"):
        Stack.plan(tmp_path, {**NO_URLS, "AUTEUR_DEVSTACK_BROKER": "kafka"}, ephemeral=True)


@pytest.mark.skipif(not Path("/usr/lib/rabbitmq/bin/rabbitmq-server").exists(),
                    reason="rabbitmq-server is not installed (make test-rabbitmq installs it)")
def test_an_embedded_rabbitmq_node_listens_on_loopback_only_and_leaves_nothing_behind(tmp_path):
    import kombu

    from devstack.rabbitmq import RabbitMQServer

    env = {**NO_URLS, "DATABASE_URL": "unused", "REDIS_URL": "unused", "MONGODB_URI": "unused",
           "AUTEUR_DEVSTACK_BROKER": "rabbitmq"}
    with running_stack(tmp_path, env, ephemeral=True) as stack:
        [node] = stack.servers
        assert isinstance(node, RabbitMQServer)
        with kombu.Connection(stack.urls()["CELERY_BROKER_URL"]) as connection:
            connection.ensure_connection(max_retries=1)
            assert connection.connection.server_properties["product"] == "RabbitMQ"
        ports = {node.port, node.dist_port, node.epmd_port}
        listening = {c.laddr for c in psutil.net_connections("tcp") if c.status == "LISTEN" and c.laddr.port in ports}
        assert {port for _, port in listening} == ports
        assert {host for host, _ in listening} <= {"127.0.0.1", "::1"}
        assert (tmp_path / "rabbitmq" / "mnesia").is_dir()  # its data under its own directory
        pid = node.proc.pid if node.proc else 0
    assert all(port_is_free(p) for p in ports)  # epmd too, though it ran outside the node's process group
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def test_a_management_command_with_no_stack_up_says_to_start_one_in_a_line(tmp_path):
    """In a checkout where `make run` is not up and no production setting is set, a command that
    needs the database answers one line that says what to do (it printed two tracebacks)."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("DATABASE_URL", "REDIS_URL", "MONGODB_URI") and not k.startswith(("DJANGO_", "AUTEUR_"))}
    env["AUTEUR_VAR_DIR"] = str(tmp_path / "var")  # no make run recorded here
    done = subprocess.run([sys.executable, "manage.py", "issue_token", "you@example.com"], env=env, cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "manage.py issue_token: nothing to run it on: start `make run` in another terminal first (it records where "
        "its servers listen, and this command finds them), or set DATABASE_URL and the other settings "
        "(docs/configuration.md)."]
    assert "Traceback" not in done.stdout + done.stderr
    # What needs nothing still runs.
    assert subprocess.run([sys.executable, "manage.py", "help"], env=env, cwd=REPO_ROOT, capture_output=True,
                          timeout=60).returncode == 0

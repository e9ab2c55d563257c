"""A parallel run (tests/parallel.py): each xdist worker has its own Redis server, MongoDB database,
var directory and test database, so one worker's writes never reach another's tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import redis

from devstack import REPO_ROOT
from devstack.stack import STARTED_VAR
from tests import parallel
from tests.parallel import worker_environ

pytestmark = pytest.mark.slow

SHARED = {
    "AUTEUR_VAR_DIR": "/tmp/stack/var",
    "REDIS_URL": "redis://127.0.0.1:6400/0",
    "MONGODB_URI": "mongodb://127.0.0.1:27100/auteur?connectTimeoutMS=500",
}

# Two workers each write a rate-limit key of their own name into their Redis and delete `rl:*` as
# tests/conftest.py does before each test, then report what they saw; a third runs a group's two tests.
PROBE = '''
import json, os, time
from pathlib import Path
import pytest, redis

@pytest.mark.parametrize("n", [1, 2])
def test_probe(n):
    _probe(n)


# One lane: both on one worker, one after the other, whatever else is free.
@pytest.mark.xdist_group("lane")
def test_lane_a():
    Path(os.environ["PROBE_OUT"], "lane-a").write_text(os.environ["PYTEST_XDIST_WORKER"])


@pytest.mark.xdist_group("lane")
def test_lane_b():
    Path(os.environ["PROBE_OUT"], "lane-b").write_text(os.environ["PYTEST_XDIST_WORKER"])


def _probe(n):
    me = os.environ["PYTEST_XDIST_WORKER"]
    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    client.set(f"rl:{me}", 1)
    time.sleep(1)  # both workers have written
    seen = sorted(k.decode() for k in client.scan_iter("rl:*"))
    for key in client.scan_iter("rl:*"):
        client.delete(key)
    out = Path(os.environ["PROBE_OUT"]) / f"{me}.json"
    out.write_text(json.dumps({"seen": seen, "run_id": client.info("server")["run_id"],
                               **{k: os.environ[k] for k in ("REDIS_URL", "MONGODB_URI", "AUTEUR_VAR_DIR")}}))
'''


def test_each_worker_gets_its_own_names_where_a_server_is_shared():
    gw0, gw1 = worker_environ(SHARED, "gw0"), worker_environ(SHARED, "gw1")
    assert gw0["MONGODB_URI"] == "mongodb://127.0.0.1:27100/auteur_gw0?connectTimeoutMS=500"
    assert gw1["MONGODB_URI"] == "mongodb://127.0.0.1:27100/auteur_gw1?connectTimeoutMS=500"
    assert (gw0["REDIS_URL"], gw1["REDIS_URL"]) == ("redis://127.0.0.1:6400/1", "redis://127.0.0.1:6400/2")
    assert (gw0["AUTEUR_VAR_DIR"], gw1["AUTEUR_VAR_DIR"]) == ("/tmp/stack/var/xdist-gw0", "/tmp/stack/var/xdist-gw1")
    assert "CELERY_BROKER_URL" not in gw0  # the broker follows REDIS_URL


def test_a_shared_rabbitmq_broker_is_refused_rather_than_split_between_workers():
    with pytest.raises(pytest.UsageError, match="-n 0"):
        worker_environ({**SHARED, "CELERY_BROKER_URL": "amqp://guest:guest@127.0.0.1:5672//"}, "gw0")


def test_two_workers_never_see_each_others_redis_keys(tmp_path):
    """A real parallel run on this stack: each worker has a redis-server of its own, and its
    `rl:*` clean-up (tests/conftest.py) neither sees nor deletes the other's keys, nor the stack's."""
    (tmp_path / "test_probe.py").write_text(PROBE)
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    out = tmp_path / "out"
    out.mkdir()
    shared = redis.Redis.from_url(os.environ["REDIS_URL"])
    shared.set("rl:stack", 1)
    # Not a worker of this run's own xdist (if any): the nested run's controller hands out its own.
    outer = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_XDIST_")}
    # Only the plugins the run needs: the nested controller and its three workers each skip importing
    # the rest (pytest-django, hypothesis, schemathesis...).
    env = {**outer, "PROBE_OUT": str(out), "PYTHONPATH": str(REPO_ROOT),
           "AUTEUR_VAR_DIR": str(tmp_path / "var"), STARTED_VAR: "REDIS_URL", "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "xdist.plugin", "-p", "no:cacheprovider", "-p", "tests.parallel",
         "-n", "3", "--dist", "loadgroup", "--no-loadscope-reorder", "--rootdir", str(tmp_path),
         str(tmp_path / "test_probe.py")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert (out / "lane-a").read_text() == (out / "lane-b").read_text()  # the group stayed on one worker
    reports = {p.stem: json.loads(p.read_text()) for p in out.glob("*.json")}
    assert len(reports) == 2, run.stdout[-3000:]  # the two probes, at once, on two workers
    for worker, report in reports.items():
        assert report["seen"] == [f"rl:{worker}"]  # its own key only, though both wrote at once
        assert report["REDIS_URL"] != os.environ["REDIS_URL"]
        assert report["MONGODB_URI"].split("?")[0].endswith(f"_{worker}")
        assert Path(report["AUTEUR_VAR_DIR"]) == tmp_path / "var" / f"xdist-{worker}"
    run_ids = {report["run_id"] for report in reports.values()} | {shared.info("server")["run_id"]}
    assert len(run_ids) == 3  # three redis-servers
    assert shared.get("rl:stack") == b"1"  # the stack's own Redis was not touched
    shared.delete("rl:stack")


def _databases(conn: Any) -> set[str]:
    return {name for (name,) in conn.execute("SELECT datname FROM pg_database")}


def test_the_workers_template_is_built_once_under_a_name_of_its_own_and_a_half_built_one_is_never_taken(
    monkeypatch,
):
    """Each worker's test database is a copy of one template (tests/parallel.py): the first call
    builds it under a name of its own and renames it once whole, so a leftover half-built one (a
    worker killed halfway) is built again; a second call finds it and builds nothing. The build
    itself is `manage.py migrate`, recorded here rather than run (the test below and every test
    of a parallel run read a copy it made)."""
    import psycopg

    url = os.environ["DATABASE_URL"]
    name = f"test_template_probe_{os.getpid()}"
    built: list[str] = []

    def migrate(argv: list[str], *, env: dict[str, str], **kwargs: Any) -> None:
        assert argv[1:3] == ["manage.py", "migrate"] and kwargs.get("check") is True
        built.append(env["DATABASE_URL"].rsplit("/", 1)[1])
        with psycopg.connect(env["DATABASE_URL"], autocommit=True) as building:
            building.execute("CREATE TABLE whole (x int)")

    monkeypatch.setattr(subprocess, "run", migrate)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}_building"')  # what a worker killed halfway leaves
        try:
            assert parallel.migrated_template(url, name) == name
            assert built == [f"{name}_building"]
            assert name in _databases(conn) and f"{name}_building" not in _databases(conn)
            with psycopg.connect(parallel.with_path(url, f"/{name}")) as template:
                assert template.execute("SELECT to_regclass('whole')").fetchone() == ("whole",)
            assert parallel.migrated_template(url, name) == name
            assert built == [f"{name}_building"], "built once"
        finally:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
            conn.execute(f'DROP DATABASE IF EXISTS "{name}_building"')


@pytest.mark.django_db
def test_this_processs_test_database_has_every_migration_applied():
    """Under xdist a copy of the template, else migrated itself: either way, whole."""
    from django.db import connection
    from django.db.migrations.loader import MigrationLoader

    loader = MigrationLoader(connection)
    assert loader.applied_migrations.keys() == loader.disk_migrations.keys()

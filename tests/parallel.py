"""The suite on several processes (pytest-xdist, `make test`): what each worker process has of its own.

Loaded early (`-p tests.parallel` in pyproject's addopts) because auteur/settings/ reads the
environment once, at import, and pytest-django imports the settings before any conftest: the
worker's own URLs must be in os.environ by then. Subprocesses a test starts (Celery workers,
uvicorn, gunicorn, Caddy, beat) inherit them from there.

Each xdist worker (gw0, gw1, ...) gets:
- Postgres: its own test database; pytest-django names it test_<name>_<worker>. The API's role
  (auteur/core/rls.py) is the cluster's, shared by every database: it is made once, by the controller,
  before any worker runs the migrations, so two workers never both try to create it.
- Redis: a redis-server of its own when `devstack exec` started the suite's Redis (the broker, the
  cache, rate limits, streams and beat's lock all follow REDIS_URL). Tests look at what is
  server-wide (CLIENT LIST, INFO stats, FLUSHALL): a database number would not be enough. With a
  Redis of the environment's own, a database number of its own (the worker's index + 1).
- MongoDB: its own database (the URI's name with the worker's suffix).
- AUTEUR_VAR_DIR (local object storage, GPU-local calls, models): a directory of its own.
A RabbitMQ broker (`make test-rabbitmq`) is one node with one set of queue names: that suite runs
on one process (`-n 0`), and a parallel run on it is refused rather than left to steal messages.

Scheduling (`--dist loadgroup --no-loadscope-reorder`): a module whose tests share a module-scoped
fixture (a server, a Celery worker, tiny models) or start processes (`slow`) runs on one process,
so what it shares starts once; the other tests go one by one to whichever process is free. The
tests that load the machine on purpose (HEAVY_MODULES) share one lane, so that they never run at
the same time as each other, and start first.
"""

from __future__ import annotations

import os
import sys
import uuid
from collections import Counter
from collections.abc import Generator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from devstack.ports import free_port
from devstack.servers import RedisServer
from devstack.stack import STARTED_VAR

WORKER_VAR = "PYTEST_XDIST_WORKER"  # set by pytest-xdist in each worker before pytest starts

# The math libraries' thread pools: one thread a process. The suite runs more busy processes than
# the machine has cores (xdist's, the Celery workers and engine runners tests start), and OpenMP's
# and OpenBLAS's threads spin at each barrier for a sibling that is not running: on 2 cores beside
# two busy processes, the engine tests (torch) took 25-34 CPU-seconds on 2 threads, 11 on 1.
# Set here, before torch or numpy loads, so every process a test starts inherits it; a value the
# environment gives is kept. The engine tests that compare outputs compare runs made in one
# process, so on the same thread count either way.
for _name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_name, "1")

# The tests that start a stack, a fleet of processes or hundreds of requests of their own, longest
# first: one at a time, on one worker, started before everything else so that no worker is left
# with one of them at the end.
HEAVY_GROUP = "heavy"
HEAVY_MODULES = (
    "tests/jobs/test_chaos.py",
    "tests/jobs/test_submission_under_stress.py",
    "tests/projects/test_timeline_under_load.py",
)

# The longest modules that run on one process (measured: `make test`'s durations, 2 cores), given
# out right after the heavy lane so that none of them is still running when everything else is done.
# Only the order depends on it: a module missing here merely starts later.
LONGEST_FIRST = (
    "tests/auteur/test_devstack.py",  # `make run` and the tour pasted against it
    "tests/jobs/test_model_pipeline.py",
    "tests/jobs/test_pipeline.py",
    "tests/realtime/test_realtime.py",
    "tests/auteur/test_slow_clients.py",
    "tests/gpu_tasks/test_transcription_hf.py",
    "tests/gpu_tasks/test_lip_sync.py",
    "tests/gpu_tasks/test_screening_model.py",  # the screener retrained: about 55 s of one core
)


# The tests that share the kept plain Celery worker (the `celery_worker` fixture, tests/worker_pool.py),
# from whichever module: one group, so that they run back to back and start it once; given out with
# the longest modules (it is about as long as test_pipeline.py was).
POOL_GROUP = "celery-pool"
POOL_RANK = LONGEST_FIRST.index("tests/jobs/test_pipeline.py")


def worker_index(worker: str) -> int:
    return int(worker.removeprefix("gw"))


def with_path(url: str, path: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, parts.fragment))


def worker_environ(environ: dict[str, str], worker: str) -> dict[str, str]:
    """The variables a worker changes, for everything but a Redis server of its own."""
    changed: dict[str, str] = {}
    var_dir = Path(environ.get("AUTEUR_VAR_DIR") or Path(__file__).resolve().parent.parent / "var")
    changed["AUTEUR_VAR_DIR"] = str(var_dir / f"xdist-{worker}")
    mongo = environ.get("MONGODB_URI", "")
    if mongo:
        name = urlsplit(mongo).path.lstrip("/") or "auteur"
        changed["MONGODB_URI"] = with_path(mongo, f"/{name}_{worker}")
    redis_url = environ.get("REDIS_URL", "")
    if redis_url:
        changed["REDIS_URL"] = with_path(redis_url, f"/{worker_index(worker) + 1}")
    broker = environ.get("CELERY_BROKER_URL", "")
    if broker:
        if not broker.startswith(("redis://", "rediss://")):
            raise pytest.UsageError(
                f"CELERY_BROKER_URL={urlsplit(broker).scheme}://...: the workers of a parallel run would share "
                "its queues and take each other's messages; run this suite on one process (-n 0)."
            )
        changed["CELERY_BROKER_URL"] = with_path(broker, f"/{worker_index(worker) + 1}")
    return changed


def _own_redis(var_dir: Path, worker: str) -> RedisServer:
    server = RedisServer(f"redis-{worker}", var_dir / "redis", free_port(), var_dir / "log" / "redis.log",
                         persistent=False)
    server.start()
    return server


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_load_initial_conftests(early_config: pytest.Config) -> Generator[None, None, None]:
    # A wrapper runs before every plain implementation, pytest-django's (which loads the settings) included.
    worker = os.environ.get(WORKER_VAR)
    if worker:
        environ = dict(os.environ)
        changed = worker_environ(environ, worker)
        if "REDIS_URL" in os.environ.get(STARTED_VAR, "").split() and "CELERY_BROKER_URL" not in changed:
            server = _own_redis(Path(changed["AUTEUR_VAR_DIR"]), worker)
            early_config.add_cleanup(server.stop)
            changed["REDIS_URL"] = server.url()
        os.environ.update(changed)
    return (yield)


def ensure_api_role(database_url: str) -> None:
    """The API's role (auteur/core/rls.py), made once before the workers migrate: the migrations make it
    only where it is missing, and two workers that both found it missing would collide on its name."""
    import psycopg

    from auteur.core.rls import API_ROLE

    with psycopg.connect(database_url, autocommit=True, connect_timeout=10) as conn:
        conn.execute(f"""
            DO $$ BEGIN
                IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{API_ROLE}') THEN
                    CREATE ROLE {API_ROLE} NOLOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;
                END IF;
            EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;  -- another run made it meanwhile
            END $$""")


def is_controller(config: pytest.Config) -> bool:
    """This process hands tests to xdist workers (and runs none itself)."""
    return (config.getoption("dist", "no") != "no" and not config.getoption("collectonly")
            and not os.environ.get(WORKER_VAR))


def pytest_configure(config: pytest.Config) -> None:
    # Also for `-p no:xdist`, under which pytest would not know the marks the modules carry.
    config.addinivalue_line("markers", "xdist_group(name): run on the same worker as the rest of the group")
    if not is_controller(config):
        return
    broker = os.environ.get("CELERY_BROKER_URL", "")
    if broker and not broker.startswith(("redis://", "rediss://")):
        raise pytest.UsageError(
            f"CELERY_BROKER_URL is {urlsplit(broker).scheme}://: the processes of a parallel run would share its "
            "queues and take each other's messages; run these tests on one process (-n 0)."
        )
    if os.environ.get("DATABASE_URL"):
        ensure_api_role(os.environ["DATABASE_URL"])
        # Inherited by the workers, which start after this hook.
        os.environ[TEMPLATE_VAR] = f"test_template_{uuid.uuid4().hex[:12]}"


def pytest_unconfigure(config: pytest.Config) -> None:
    name = os.environ.get(TEMPLATE_VAR)
    if name and is_controller(config) and os.environ.get("DATABASE_URL"):
        import psycopg

        # A server already gone takes its template with it (the throwaway stack); the run's outcome
        # stands. A drop the server refuses (a session still on it) is said, not swallowed: on a
        # server of the environment's own, the template would stay behind.
        try:
            conn = psycopg.connect(os.environ["DATABASE_URL"], autocommit=True, connect_timeout=10)
        except psycopg.OperationalError:
            return
        with conn:
            try:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
            except psycopg.Error as exc:
                print(f"tests/parallel.py: the template database {name} was not dropped: {exc}", file=sys.stderr)


# Each worker's test database is a copy of one migrated template (CREATE DATABASE ... TEMPLATE, a file
# copy), not a migration of its own: migrating costs each worker about 5 CPU-seconds and the server as
# many, and the workers all migrate at once, at the start. The first worker to need it migrates the
# template (`manage.py migrate`, as Django's test setup would), the others wait for it on a lock; Django's
# setup then finds every migration applied on its copy. The controller names it for this run alone
# and drops it at the end.
TEMPLATE_VAR = "AUTEUR_TEST_DB_TEMPLATE"
_TEMPLATE_LOCK = 0x61757465_7470  # pg_advisory_lock's key: one template built at a time


def migrated_template(database_url: str, name: str) -> str:
    """The migrated template database `name` (built here unless another worker has), for Django's
    TEST["TEMPLATE"]."""
    import subprocess
    import sys

    import psycopg

    from devstack import REPO_ROOT

    with psycopg.connect(database_url, autocommit=True, connect_timeout=10) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (_TEMPLATE_LOCK,))
        try:
            if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is None:
                # Built under another name and renamed once whole: a worker that dies halfway leaves
                # no template that looks ready.
                building = f"{name}_building"
                conn.execute(f'DROP DATABASE IF EXISTS "{building}"')
                conn.execute(f'CREATE DATABASE "{building}"')
                subprocess.run(
                    [sys.executable, "manage.py", "migrate", "--run-syncdb", "--no-input", "-v", "0"],
                    env={**os.environ, "DATABASE_URL": with_path(database_url, f"/{building}")}, cwd=REPO_ROOT,
                    check=True,
                )
                conn.execute(f'ALTER DATABASE "{building}" RENAME TO "{name}"')
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_TEMPLATE_LOCK,))
    return name


def _module(item: pytest.Item) -> str:
    return item.nodeid.split("::", 1)[0]


def _set_nodeid(item: pytest.Item, nodeid: str) -> None:
    """The test's id as the scheduler and the reports know it (pytest 9 keeps it structured, in `_id`)."""
    item._nodeid = nodeid  # type: ignore[attr-defined]
    if hasattr(item, "_id"):
        from _pytest.nodeid import coerce_node_id

        item._id = coerce_node_id(nodeid)


def _shares_a_module_fixture(item: pytest.Item) -> bool:
    info = getattr(item, "_fixtureinfo", None)
    if info is None:
        return False
    return any(defs and defs[-1].scope in ("module", "package", "class") for defs in info.name2fixturedefs.values())


@pytest.hookimpl(tryfirst=True)  # before xdist's own, which reads the groups into the test ids
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not (is_controller(config) or os.environ.get(WORKER_VAR)):
        return
    # Schemathesis gives every operation's test the function's own id: the scheduler, which knows tests
    # by id, would run one operation of the 54 and drop the rest. Each gets its item's name (which
    # names the operation), and the module stays on one process, in its order, as it was written.
    counts = Counter(item.nodeid for item in items)
    modules_sharing = set()
    for item in items:
        if counts[item.nodeid] > 1:
            _set_nodeid(item, f"{item.nodeid.rsplit('::', 1)[0]}::{item.name}")
            modules_sharing.add(_module(item))
        elif item.get_closest_marker("slow") or _shares_a_module_fixture(item):
            modules_sharing.add(_module(item))
    for item in items:
        if item.get_closest_marker("xdist_group"):
            continue
        if "celery_worker" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.xdist_group(POOL_GROUP))
        elif _module(item) in HEAVY_MODULES:
            item.add_marker(pytest.mark.xdist_group(HEAVY_GROUP))
        elif _module(item) in modules_sharing:
            item.add_marker(pytest.mark.xdist_group(_module(item)))

    if config.getoption("loadgroup", False):
        # pytest-xdist 3.8 appends "@<group>" to `item._nodeid`, which pytest 9 no longer reads (the id
        # is `item._id`): without this every test would be a unit of its own, whatever its group.
        for item in items:
            names = sorted({str(m.args[0] if m.args else m.kwargs.get("name", "default"))
                            for m in item.iter_markers("xdist_group")})
            if names:
                _set_nodeid(item, f"{item.nodeid}@{'_'.join(names)}")

    def rank(item: pytest.Item) -> tuple[int, int]:
        module = _module(item)
        if module in HEAVY_MODULES:
            return (0, HEAVY_MODULES.index(module))
        if any(m.args[:1] == (POOL_GROUP,) for m in item.iter_markers("xdist_group")):
            return (1, POOL_RANK)
        if module in LONGEST_FIRST:
            return (1, LONGEST_FIRST.index(module))
        return (2 if item.get_closest_marker("xdist_group") else 3, 0)

    # Work units go out in the order of their first test (with --no-loadscope-reorder): a stable
    # sort, so every worker sorts its collection alike and a module's tests keep their order.
    items.sort(key=rank)

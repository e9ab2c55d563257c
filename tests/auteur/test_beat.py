"""Beat is safe with two replicas: two real beat processes on one Redis send each periodic task
once per period (RedBeat's lock), and the standby takes over when the leader dies."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import redis
from django.conf import settings

from devstack import REPO_ROOT
from devstack.ports import free_port
from devstack.process_group import stop_group
from devstack.servers import RedisServer

PERIOD = 1.0  # the reaper's and the webhook sweep's period in this test
BEAT_ENV = {
    "AUTEUR_REAPER_INTERVAL_SECONDS": str(PERIOD),
    "AUTEUR_WEBHOOK_SWEEP_INTERVAL_SECONDS": str(PERIOD),
    "AUTEUR_BEAT_MAX_LOOP_SECONDS": "1",
    "AUTEUR_BEAT_LOCK_SECONDS": "3",
}


class Beat:
    def __init__(self, tmp_path: Path, name: str, **extra: str) -> None:
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "auteur", "beat", "--loglevel", "INFO",
             "-s", str(tmp_path / f"{name}-schedule")],
            env={**os.environ, **BEAT_ENV, **extra}, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, start_new_session=True,
        )
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    @property
    def leads(self) -> bool:
        return any("Acquired lock" in line for line in self.lines)


def sent(client: redis.Redis) -> Counter[str]:
    """Messages waiting in the broker, by task name (no worker consumes them here)."""
    counts: Counter[str] = Counter()
    for queue in ("default", "media", "webhooks"):
        for raw in client.lrange(queue, 0, -1):
            counts[json.loads(raw)["headers"]["task"]] += 1
    return counts


def wait_until(predicate: Callable[[], object], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met"
        time.sleep(0.1)


def test_two_beats_send_each_periodic_task_once_per_period_and_the_standby_takes_over(tmp_path):
    client = redis.Redis.from_url(settings.REDIS_URL)
    client.delete("default", "media", "webhooks", *client.keys("auteur:beat:*"))
    beats = [Beat(tmp_path, "a"), Beat(tmp_path, "b")]
    try:
        wait_until(lambda: any(b.leads for b in beats) and sent(client)["jobs.reap"] >= 2, 60)
        time.sleep(2)  # both are up: the standby is waiting for the lock
        assert [b.proc.poll() for b in beats] == [None, None]
        assert sum(b.leads for b in beats) == 1

        before, started = sent(client), time.monotonic()
        time.sleep(8)
        after, elapsed = sent(client), time.monotonic() - started
        for task in ("jobs.reap", "webhooks.sweep"):
            # One beat sends ~elapsed/PERIOD of them; two unlocked beats would send twice that.
            assert elapsed / PERIOD - 3 <= after[task] - before[task] <= elapsed / PERIOD + 1, (task, before, after)
        # A long-period entry is not due yet on either replica (a new entry waits one period).
        assert after["media.sweep"] == 0

        leader = next(b for b in beats if b.leads)
        standby = next(b for b in beats if b is not leader)
        os.killpg(leader.proc.pid, signal.SIGKILL)  # no release: the lock must expire
        wait_until(lambda: standby.leads, 30)
        before = sent(client)
        time.sleep(5)
        after = sent(client)
        assert 2 <= after["jobs.reap"] - before["jobs.reap"] <= 6
    finally:
        for beat in beats:
            stop_group(beat.proc, 10)
        client.delete("default", "media", "webhooks", *client.keys("auteur:beat:*"))


def test_beat_rides_out_a_redis_outage_and_sends_again_once_redis_is_back(tmp_path):
    server = RedisServer("redis", tmp_path / "redis", free_port(), tmp_path / "redis.log", persistent=True)
    server.start()
    client = redis.Redis.from_url(server.url())
    beat = Beat(tmp_path, "outage", REDIS_URL=server.url())
    try:
        wait_until(lambda: beat.leads and sent(client)["jobs.reap"] >= 2, 60)
        server.stop()
        time.sleep(4)  # several ticks with Redis gone
        assert beat.proc.poll() is None, "".join(beat.lines[-30:])
        server.start()
        before = sent(client)["jobs.reap"]
        wait_until(lambda: sent(client)["jobs.reap"] >= before + 2, 30)
        assert beat.proc.poll() is None
    finally:
        stop_group(beat.proc, 10)
        server.stop()

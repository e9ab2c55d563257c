"""The baseline of bench/pipeline_throughput.py: a raw Celery chain of no-op tasks.

Loaded by the benchmark's worker with `--include bench.noop_chain`; same app, broker and worker
settings (late acks, prefetch 1, task events on) as the job pipeline, no Django work in the tasks.
The last task of each chain counts itself in Redis so the benchmark knows when all are done.
"""

from __future__ import annotations

import os

import redis
from celery import shared_task

COUNTER = "bench:noop_chain:done"


@shared_task(name="bench.noop", acks_late=True)
def noop(i: int) -> None:
    return None


@shared_task(name="bench.noop_last", acks_late=True)
def noop_last(i: int) -> None:
    redis.Redis.from_url(os.environ["REDIS_URL"]).incr(COUNTER)

"""GPU calls' announcements move their jobs on: the deployment's one consumer (`manage.py gpu_events`).

A call that ended gets its job's infer step published once: that step looks at the call, and
stores a success or fails or re-spawns as it always did. Handling is idempotent: a duplicate,
late or unknown announcement finds no processing job with that call, or an infer step that
finds its work done. A lost announcement is the reaper's: it polls a processing job that has
shown no sign of life for `AUTEUR_REAPER_REPOLL_AFTER_SECONDS`.
"""

from __future__ import annotations

import logging
import threading

import redis
from django.conf import settings
from django.db import DatabaseError

from jobs import gpu_client, pipeline
from jobs.gpu_client import Announcement, EventQueue, GpuError, RedisAnnouncer, drain_once
from jobs.models import Job, JobStatus
from jobs.pipeline import Step
from jobs.services.inference import job_progress_announce

logger = logging.getLogger(__name__)

BATCH_SIZE = 200
RETRY_SECONDS = 2.0


def gpu_announcements_handle(announcements: list[Announcement]) -> dict[str, int]:
    """Publish the infer step of each job whose call ended; record the progress of the others."""
    counts = {"ended": 0, "progress": 0, "ignored": 0}
    ended: dict[str, Announcement] = {}
    progress: dict[str, Announcement] = {}
    for a in announcements:
        if a.outcome == "progress":
            best = progress.get(a.call_id)
            if a.call_id not in ended and (best is None or (a.progress or 0) >= (best.progress or 0)):
                progress[a.call_id] = a
        else:
            ended[a.call_id] = a
            progress.pop(a.call_id, None)
    # An announced id as the job stored it (a routing backend prefixes the inner backend's id).
    stored = {s: call_id for call_id in set(ended) | set(progress) for s in gpu_client.stored_call_ids(call_id)}
    jobs = {stored[j.gpu_call_id]: j
            for j in Job.objects.filter(gpu_call_id__in=list(stored), status=JobStatus.PROCESSING)}
    for call_id in ended:
        job = jobs.get(call_id)
        if job is None or not pipeline.publish(job.pk, job.type, Step.INFER):
            counts["ignored"] += 1  # a lost publish is the reaper's, as for any other step
            continue
        counts["ended"] += 1
    for call_id, a in progress.items():
        job = jobs.get(call_id)
        if job is None:
            counts["ignored"] += 1
            continue
        job_progress_announce(job=job, progress=a.progress)
        counts["progress"] += 1
    return counts


def gpu_announcements_forward(*, stop: threading.Event, batch_size: int = BATCH_SIZE) -> None:
    """Move the announcements a backend holds itself (Modal's queue) onto the Redis list, so
    that they are handled like every other one. A get from Modal's queue is destructive: what a
    crash loses between the get and the push is found by the reaper's poll."""
    announcer = RedisAnnouncer(settings.REDIS_URL)
    while not stop.is_set():
        try:
            for announcement in gpu_client.take_announcements(batch_size, 5.0):
                announcer(announcement)
        except (GpuError, redis.ConnectionError, redis.TimeoutError) as exc:
            logger.warning("gpu_events: forwarding: %s; retrying in %s s", exc, RETRY_SECONDS)
            stop.wait(RETRY_SECONDS)


def gpu_events_queue() -> EventQueue:
    return EventQueue(redis.Redis.from_url(settings.REDIS_URL, socket_timeout=30, socket_connect_timeout=5))


def gpu_events_run(*, stop: threading.Event, batch_size: int = BATCH_SIZE, block_seconds: float = 1.0) -> int:
    """Drain announcements until `stop` is set; returns how many were taken.

    First re-handles what a consumer that died left in the processing list. Redis or the
    database away (a restart, a failover) pauses it rather than ending it: what it had taken
    stays in the processing list and is handled again once they are back."""
    queue = gpu_events_queue()
    if gpu_client.holds_announcements():
        threading.Thread(target=gpu_announcements_forward, kwargs={"stop": stop, "batch_size": batch_size},
                         name="gpu-events-forward", daemon=True).start()
    taken = 0
    recover = True
    while not stop.is_set():
        try:
            if recover:
                left = queue.pending()
                if left:
                    logger.info("gpu_events: re-handling %d announcements left unacknowledged", len(left))
                    gpu_announcements_handle([a for a in map(Announcement.loads, left) if a is not None])
                    queue.ack(left)
                recover = False
            taken += drain_once(queue, gpu_announcements_handle, max_items=batch_size, block_seconds=block_seconds)
        except (redis.ConnectionError, redis.TimeoutError, DatabaseError) as exc:
            logger.warning("gpu_events: %s; retrying in %s s", type(exc).__name__, RETRY_SECONDS)
            recover = True
            stop.wait(RETRY_SECONDS)
    return taken

"""GPU calls' announcements move their jobs on: the deployment's one consumer (`manage.py gpu_events`).

A call that ended gets its job's infer step published once: that step looks at the call, and
stores a success or fails or re-spawns as it always did. Handling is idempotent: a duplicate,
late or unknown announcement finds no processing job with that call, or an infer step that
finds its work done. A lost announcement is the reaper's: it polls a processing job that has
shown no sign of life for `AUTEUR_REAPER_REPOLL_AFTER_SECONDS`.

An announcement is input (a runner or a container wrote it): it is parsed strictly
(`gpu_tasks.announce`), and each one is handled on its own, so that one that fails for what it
holds is logged and dropped while the rest of its batch goes on. Only the database or Redis
being away stops a batch, which is then handled again whole: were a bad announcement to stop
it, every restart of the consumer would meet it again.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import redis
from django.conf import settings
from django.db import DatabaseError, InterfaceError, OperationalError
from kombu.exceptions import OperationalError as KombuOperationalError

from auteur.core import tracing
from jobs import gpu_client
from jobs.gpu_client import Announcement, EventQueue, GpuError, RedisAnnouncer, drain_once, parse_announcements
from jobs.life import publish
from jobs.life.inference import job_progress_announce
from jobs.life.pieces import PIECES, piece_job_ids
from jobs.life.publish import Step
from jobs.models import Job, JobStatus

logger = logging.getLogger(__name__)

BATCH_SIZE = 200
RETRY_SECONDS = 2.0
# What stops a whole batch, to be handled again later: the database, Redis or the broker away.
# Anything else raised while handling one announcement is that announcement's fault.
PASSING_FAILURES: tuple[type[Exception], ...] = (
    OperationalError, InterfaceError, redis.ConnectionError, redis.TimeoutError, KombuOperationalError,
)
# The loop also pauses on any other database error (one the batch's lookup met, say).
PAUSING_FAILURES: tuple[type[Exception], ...] = (*PASSING_FAILURES, DatabaseError)


def gpu_announcements_handle(announcements: list[Announcement]) -> dict[str, int]:
    """Publish the infer step of each job whose call ended; record the progress of the others.

    Should the batch's shared work fail for what an announcement holds, each is handled alone,
    and the one that fails is logged and dropped."""
    try:
        return _handle_batch(announcements)
    except PASSING_FAILURES:
        raise
    except Exception:
        if len(announcements) <= 1:
            logger.exception("gpu_events: dropped an announcement: handling it failed")
            return {"ended": 0, "progress": 0, "ignored": len(announcements)}
    counts = {"ended": 0, "progress": 0, "ignored": 0}
    for announcement in announcements:
        for key, value in gpu_announcements_handle([announcement]).items():
            counts[key] += value
    return counts


def _handle_batch(announcements: list[Announcement]) -> dict[str, int]:
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
    # The calls of a long file's pieces (jobs.life.pieces) move their job on the same way.
    unknown = [s for s, call_id in stored.items() if call_id not in jobs]
    if unknown:
        jobs.update({stored[s]: job for s, job in piece_job_ids(unknown).items()})
    for call_id in ended:
        job = jobs.get(call_id)
        if job is None or not _handled(call_id, _publish_infer, job):
            counts["ignored"] += 1  # a lost publish is the reaper's, as for any other step
            continue
        counts["ended"] += 1
    for call_id, a in progress.items():
        job = jobs.get(call_id)
        if job is not None and job.gpu_call_id == PIECES:
            continue  # a piece's progress: the job's is all its pieces', which its polls compute
        if job is None or not _handled(call_id, _record_progress, job, a.progress):
            counts["ignored"] += 1
            continue
        counts["progress"] += 1
    return counts


def _publish_infer(job: Job) -> bool:
    with tracing.job_span("gpu.announcement", job, kind=tracing.SpanKind.CONSUMER, gpu_call_id=job.gpu_call_id):
        return publish.publish(job.pk, job.type, Step.INFER, trace=job.traceparent)


def _record_progress(job: Job, progress: float | None) -> bool:
    job_progress_announce(job=job, progress=progress)
    return True


def _handled(call_id: str, action: Callable[..., bool], *args: object) -> bool:
    """Handle one announcement; False when it failed for what it holds (logged, then dropped)."""
    try:
        return action(*args)
    except PASSING_FAILURES:
        raise
    except Exception:
        logger.exception("gpu_events: dropped the announcement of call %s: handling it failed", call_id)
        return False


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
    stays in the processing list and is handled again once they are back. Nothing an
    announcement holds ends it."""
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
                    gpu_announcements_handle(parse_announcements(left))
                    queue.ack(left)
                recover = False
            taken += drain_once(queue, gpu_announcements_handle, max_items=batch_size, block_seconds=block_seconds)
        except PAUSING_FAILURES as exc:
            logger.warning("gpu_events: %s; retrying in %s s", type(exc).__name__, RETRY_SECONDS)
            recover = True
            stop.wait(RETRY_SECONDS)
        except Exception:
            # Not an announcement's doing (each is handled on its own): the consumer stays up and
            # handles what it holds again.
            logger.exception("gpu_events: handling a batch failed; retrying in %s s", RETRY_SECONDS)
            recover = True
            stop.wait(RETRY_SECONDS)
    return taken

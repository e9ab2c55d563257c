"""Sending a task that must not wait on a broker that does not answer.

Every publish of the project is fire-and-forget over work already committed: a job's next step, a
media probe, a webhook delivery, a deletion of objects. Each has a sweeper that sends it again
when its message is lost (the reaper, the media sweep, the webhook sweep), so a publish gives up
within about PUBLISH_TIMEOUT_SECONDS twice (one reconnect) and says so, instead of holding its
caller, most often an API request, until a partitioned broker answers; and a broker that did not
answer in time is left alone for a few seconds (auteur/silence.py).

The publishes go through producers of their own, on connections with those short timeouts. The
workers' consuming connection keeps the broker's longer socket timeouts (celeryconfig.py): its
blocking reads wait for messages, and a short timeout would break them.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Iterator
from typing import Any

from celery import current_app
from kombu import Producer
from kombu.exceptions import OperationalError
from kombu.pools import ProducerPool

from auteur import silence

logger = logging.getLogger(__name__)

# How long one try of a publish may wait on the broker: to connect, or for its answer to a write.
PUBLISH_TIMEOUT_SECONDS = 1.0
# One more try on a fresh connection (a pooled one may have died with a broker restart), at once.
PUBLISH_RETRY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.2}

_lock = threading.Lock()
_pool: tuple[int, ProducerPool] | None = None  # (the process it was made in, the pool)


def publish_options() -> dict[str, Any]:
    """The broker's transport options for a publishing connection: its socket timeouts short.
    (A Redis broker's option; py-amqp bounds the connect only, by `connect_timeout`.)"""
    options = dict(current_app.conf.broker_transport_options)
    if "socket_timeout" in options:
        options.update(socket_timeout=PUBLISH_TIMEOUT_SECONDS, socket_connect_timeout=PUBLISH_TIMEOUT_SECONDS)
    return options


def _producers() -> ProducerPool:
    global _pool
    with _lock:
        # A pool made before a fork (gunicorn, the prefork pool) shares its sockets with the
        # parent: each process makes its own.
        if _pool is None or _pool[0] != os.getpid():
            connection = current_app.connection_for_write(
                connect_timeout=PUBLISH_TIMEOUT_SECONDS, transport_options=publish_options()
            )
            limit = current_app.conf.broker_pool_limit
            _pool = (os.getpid(), ProducerPool(connection.Pool(limit=limit), limit=limit))
        return _pool[1]


@contextlib.contextmanager
def publisher() -> Iterator[Producer]:
    """A producer on a publishing connection, returned to the pool after use."""
    with _producers().acquire(block=True) as producer:
        yield producer


def send(name: str, args: tuple[object, ...], *, countdown: float = 0, what: str = "", **log_extra: Any) -> bool:
    """Publish the task `name` with `args`; False (logged as `what`, or the name) when the broker
    cannot be reached or does not answer in time: the caller's sweeper sends it again."""
    url = current_app.conf.broker_url
    if silence.is_silent(url):
        logger.warning("could not publish %s: the broker did not answer lately", what or name, extra=log_extra)
        return False
    signature = current_app.signature(name, args=args, immutable=True)
    if countdown:
        signature.set(countdown=countdown)
    try:
        with publisher() as producer:
            signature.apply_async(producer=producer, retry=True, retry_policy=PUBLISH_RETRY)
    except (OperationalError, OSError) as exc:
        silence.note_failure(url, exc)
        logger.warning("could not publish %s: %s", what or name, exc, extra=log_extra)
        return False
    return True

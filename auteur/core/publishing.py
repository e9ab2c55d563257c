"""Sending a task that must not wait on a broker that does not answer.

Every publish of the project is fire-and-forget over work already committed: a job's next step, a
media probe, a webhook delivery, a deletion of objects. So a publish never holds its caller (most
often an API request) until a partitioned broker answers:

- it goes through producers of its own, on connections whose socket timeouts are
  PUBLISH_TIMEOUT_SECONDS (one more try on a fresh connection: a pooled one may have died with a
  broker restart). The workers' consuming connection keeps the broker's longer timeouts
  (celeryconfig.py): its blocking reads wait for messages, and a short timeout would break them;
- while the broker is silent (it did not answer in time lately, auteur/core/silence.py) it is not
  tried at all;
- a publish that failed is tried again from a thread of this process (auteur/core/outbox.py), every
  second while the broker is not silent, for five minutes; so a broker that answers again gets
  the message within seconds. A process that exits first loses it, and each message has a
  sweeper that sends it again (the reaper, the media sweep, the webhook sweep). A sweep may
  leave its own publishes to its next sweep (`resend=False`).

A publish that timed out may still have reached the broker (its bytes arrive once the link
heals), so a message can arrive twice; every task is idempotent.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from celery import current_app
from kombu import Producer
from kombu.exceptions import OperationalError
from kombu.pools import ProducerPool
from kombu.transport import redis as kombu_redis

from auteur.core import tracing
from auteur.core.outbox import SILENT, Outbox

logger = logging.getLogger(__name__)

# How long one try of a publish may wait on the broker: to connect, or for its answer to a write.
PUBLISH_TIMEOUT_SECONDS = 1.0
# One more try on a fresh connection (a pooled one may have died with a broker restart), at once.
PUBLISH_RETRY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.2}

_pool_lock = threading.Lock()
_pool: ProducerPool | None = None


def _forget_pool() -> None:
    # A pool made before a fork (gunicorn, the prefork pool) shares its sockets with the parent:
    # each process makes its own.
    global _pool
    _pool = None


os.register_at_fork(after_in_child=_forget_pool)


@dataclass
class Message:
    name: str
    args: tuple[object, ...]
    countdown: float = 0
    trace: str = ""  # the traceparent of the job it is about: its task's spans join the job's trace


def publish_options() -> dict[str, Any]:
    """The broker's transport options for a publishing connection: its socket timeouts short.
    (A Redis broker's option; py-amqp bounds the connect only, by `connect_timeout`.)"""
    options = dict(current_app.conf.broker_transport_options)
    if "socket_timeout" in options:
        options.update(socket_timeout=PUBLISH_TIMEOUT_SECONDS, socket_connect_timeout=PUBLISH_TIMEOUT_SECONDS)
    return options


class _RedisPublishingChannel(kombu_redis.Channel):
    """A Redis channel that sends every message through one client of its pool.

    kombu's own makes a client per message sent (`conn_or_acquire`): building one, with its table
    of about 170 response callbacks, was a quarter of a publish's CPU, most of it in an API
    submission (bench/pipeline_throughput.py). The client holds no connection of its own: each
    command takes one from the channel's pool, as before, and a new pool gets a new client."""

    _publishing_client: Any = None

    @contextlib.contextmanager
    def conn_or_acquire(self, client: Any = None) -> Iterator[Any]:
        if client:
            yield client
            return
        kept = self._publishing_client
        if kept is None or kept.connection_pool is not self.pool:
            kept = self._publishing_client = self._create_client()  # type: ignore[attr-defined]
        yield kept


class _RedisPublishingTransport(kombu_redis.Transport):
    Channel = _RedisPublishingChannel


def _producers() -> ProducerPool:
    global _pool
    with _pool_lock:
        if _pool is None:
            connection = current_app.connection_for_write(
                connect_timeout=PUBLISH_TIMEOUT_SECONDS, transport_options=publish_options()
            )
            if connection.transport_cls in ("redis", "rediss"):  # (sentinel and amqp keep their own)
                connection = current_app.connection_for_write(
                    connect_timeout=PUBLISH_TIMEOUT_SECONDS, transport_options=publish_options(),
                    transport=_RedisPublishingTransport,
                )
            limit = current_app.conf.broker_pool_limit
            _pool = ProducerPool(connection.Pool(limit=limit), limit=limit)
        return _pool


@contextlib.contextmanager
def publisher() -> Iterator[Producer]:
    """A producer on a publishing connection, returned to the pool after use."""
    with _producers().acquire(block=True) as producer:
        yield producer


def _publish(message: Message) -> None:
    signature = current_app.signature(message.name, args=message.args, immutable=True)
    if message.countdown:
        signature.set(countdown=message.countdown)
    with tracing.job_context(message.trace), publisher() as producer:
        signature.apply_async(producer=producer, retry=True, retry_policy=PUBLISH_RETRY)


unsent = Outbox(
    "publish-resend", lambda: current_app.conf.broker_url, _publish, (OperationalError, OSError),
    "its sweeper sends it",
)  # fmt: skip


def send(
    name: str, args: tuple[object, ...], *, countdown: float = 0, what: str = "", resend: bool = True,
    trace: str = "", **log_extra: Any,
) -> bool:
    """Publish the task `name` with `args`. False (logged as `what`, or the name) when the broker
    cannot be reached or does not answer in time; it is then tried again in the background
    (auteur/core/outbox.py), unless `resend` is false. `trace`: the traceparent of the job the
    task is about (auteur/core/tracing.py), so that the task is in the job's trace."""
    what = what or name
    _, why = unsent.try_now(Message(name, args, countdown, trace), f"publishing {what}", hold=resend, **log_extra)
    if not why:
        return True
    reason = "the broker did not answer lately" if why == SILENT else why
    logger.warning("could not publish %s: %s%s", what, reason, "; trying again" if resend else "", extra=log_extra)
    return False

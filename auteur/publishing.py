"""Sending a task that must not wait on a broker that does not answer.

Every publish of the project is fire-and-forget over work already committed: a job's next step, a
media probe, a webhook delivery, a deletion of objects. So a publish never holds its caller (most
often an API request) until a partitioned broker answers:

- it goes through producers of its own, on connections whose socket timeouts are
  PUBLISH_TIMEOUT_SECONDS (one more try on a fresh connection: a pooled one may have died with a
  broker restart). The workers' consuming connection keeps the broker's longer timeouts
  (celeryconfig.py): its blocking reads wait for messages, and a short timeout would break them;
- while the broker is silent (it did not answer in time lately, auteur/silence.py) it is not
  tried at all;
- a publish that failed is tried again from a thread of this process, once a second while the
  broker is not silent, for RESEND_FOR_SECONDS; so a broker that answers again gets the message
  within seconds. A process that exits first loses it, and each message has a sweeper that sends
  it again (the reaper, the media sweep, the webhook sweep). A sweep may leave its own publishes
  to its next sweep (`resend=False`).

A publish that timed out may still have reached the broker (its bytes arrive once the link
heals), so a message can arrive twice; every task is idempotent.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
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
RESEND_INTERVAL_SECONDS = 1.0
RESEND_FOR_SECONDS = 300.0
MAX_UNSENT = 10_000  # beyond this, the oldest are left to their sweepers

_pool_lock = threading.Lock()
_pool: tuple[int, ProducerPool] | None = None  # (the process it was made in, the pool)


@dataclass
class Message:
    name: str
    args: tuple[object, ...]
    countdown: float = 0
    what: str = ""
    log_extra: dict[str, Any] = field(default_factory=dict)
    failed_at: float = 0.0


class _Unsent:
    """The messages this process failed to publish, and the thread that tries them again."""

    def __init__(self) -> None:
        self.messages: collections.deque[Message] = collections.deque(maxlen=MAX_UNSENT)
        self.ready = threading.Condition()
        self.thread: threading.Thread | None = None

    def add(self, message: Message) -> None:
        with self.ready:
            self.messages.append(message)
            if self.thread is None:
                self.thread = threading.Thread(target=self._run, name="publish-resend", daemon=True)
                self.thread.start()
            self.ready.notify()

    def _run(self) -> None:
        while True:
            with self.ready:
                while not self.messages:
                    self.ready.wait()
            time.sleep(RESEND_INTERVAL_SECONDS)
            if silence.is_silent(current_app.conf.broker_url):
                continue
            with self.ready:
                batch = list(self.messages)
                self.messages.clear()
            for n, message in enumerate(batch):
                if time.monotonic() - message.failed_at > RESEND_FOR_SECONDS:
                    logger.warning("gave up publishing %s; its sweeper sends it", message.what, extra=message.log_extra)
                    continue
                try:
                    _publish(message)
                except (OperationalError, OSError) as exc:
                    silence.note_failure(current_app.conf.broker_url, exc)
                    with self.ready:  # the rest go back first in line, in their order
                        self.messages.extendleft(reversed(batch[n:]))
                    break
                logger.info("published %s after all", message.what, extra=message.log_extra)


_unsent = _Unsent()


def _forget_after_fork() -> None:
    # A child starts with nothing to resend and no thread (its parent's are the parent's).
    global _unsent
    _unsent = _Unsent()


os.register_at_fork(after_in_child=_forget_after_fork)


def publish_options() -> dict[str, Any]:
    """The broker's transport options for a publishing connection: its socket timeouts short.
    (A Redis broker's option; py-amqp bounds the connect only, by `connect_timeout`.)"""
    options = dict(current_app.conf.broker_transport_options)
    if "socket_timeout" in options:
        options.update(socket_timeout=PUBLISH_TIMEOUT_SECONDS, socket_connect_timeout=PUBLISH_TIMEOUT_SECONDS)
    return options


def _producers() -> ProducerPool:
    global _pool
    with _pool_lock:
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


def _publish(message: Message) -> None:
    signature = current_app.signature(message.name, args=message.args, immutable=True)
    if message.countdown:
        signature.set(countdown=message.countdown)
    with publisher() as producer:
        signature.apply_async(producer=producer, retry=True, retry_policy=PUBLISH_RETRY)


def send(
    name: str, args: tuple[object, ...], *, countdown: float = 0, what: str = "", resend: bool = True,
    **log_extra: Any,
) -> bool:
    """Publish the task `name` with `args`. False (logged as `what`, or the name) when the broker
    cannot be reached or does not answer in time; it is then tried again in the background,
    unless `resend` is false."""
    message = Message(name, args, countdown, what or name, log_extra)
    url = current_app.conf.broker_url
    if silence.is_silent(url):
        reason = "the broker did not answer lately"
    else:
        try:
            _publish(message)
            return True
        except (OperationalError, OSError) as exc:
            silence.note_failure(url, exc)
            reason = str(exc)
    logger.warning("could not publish %s: %s%s", message.what, reason, "; trying again" if resend else "",
                   extra=log_extra)  # fmt: skip
    if resend:
        message.failed_at = time.monotonic()
        _unsent.add(message)
    return False

"""What the broker and the workers say about each queue. Broker-agnostic: a passive declare
reports a queue's depth on Redis (the length of its list) and on RabbitMQ alike."""

from __future__ import annotations

import logging
from collections import defaultdict

from celery import current_app

from auteur.queues import ALL_QUEUES

logger = logging.getLogger(__name__)

INSPECT_TIMEOUT_SECONDS = 1.0


def queue_depths() -> dict[str, int]:
    """Messages waiting in each queue (not those a worker holds or that wait for an ETA)."""
    depths: dict[str, int] = {}
    with current_app.connection_for_read() as connection:
        channel = connection.default_channel
        for queue in ALL_QUEUES:
            try:
                depths[queue] = channel.queue_declare(queue=queue, passive=True).message_count  # type: ignore[attr-defined]
            except Exception:  # a queue never declared yet (RabbitMQ's 404) holds nothing
                logger.debug("queue %s not declared", queue, exc_info=True)
                depths[queue] = 0
    return depths


def queue_workers(timeout: float = INSPECT_TIMEOUT_SECONDS) -> dict[str, list[str]]:
    """The workers that answer within `timeout`, by each queue they consume (every queue listed)."""
    replies = current_app.control.inspect(timeout=timeout).active_queues() or {}
    consumers: dict[str, list[str]] = defaultdict(list)
    for worker, queues in replies.items():
        for queue in queues or []:
            consumers[queue["name"]].append(worker)
    return {queue: sorted(consumers.get(queue, [])) for queue in ALL_QUEUES}

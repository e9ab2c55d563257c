"""The Celery queues and which tasks go to each, and what the broker and the workers say about
them. Never imports Django (`make run`'s supervisor reads the names before any settings exist)."""

from __future__ import annotations

import logging
from collections import defaultdict

from kombu import Exchange, Queue

logger = logging.getLogger(__name__)

# One queue per job family, so a flood of one feature cannot starve another, and so each
# family can get its own worker deployment (GPU dispatch vs CPU media work, docker-compose.yml).
QUEUE_DEFAULT = "default"  # housekeeping: reaper, subscription grants, storage clean-up
QUEUE_MEDIA = "media"  # ffprobe, thumbnails (CPU)
QUEUE_RENDER = "render"  # render and compression: ffmpeg on the worker's CPU in every backend
QUEUE_GPU_AUDIO = "gpu_audio"  # transcription, tts, audio generation
QUEUE_GPU_VISION = "gpu_vision"  # lip sync, performance cloning, gaze redirection, video query
QUEUE_GPU_GENERATION = "gpu_generation"  # video and image generation (the big GPUs)
# Outbound webhook deliveries: a slow receiver (10 s timeouts) never delays a job's own steps.
QUEUE_WEBHOOKS = "webhooks"

ALL_QUEUES = (
    QUEUE_DEFAULT,
    QUEUE_MEDIA,
    QUEUE_RENDER,
    QUEUE_GPU_AUDIO,
    QUEUE_GPU_VISION,
    QUEUE_GPU_GENERATION,
    QUEUE_WEBHOOKS,
)
CPU_QUEUES = (QUEUE_DEFAULT, QUEUE_MEDIA, QUEUE_RENDER)
# Deliveries wait on other people's servers (up to the 10 s timeout each): their own workers, so
# that hanging receivers cannot take the processes that run renders and housekeeping.
WEBHOOK_QUEUES = (QUEUE_WEBHOOKS,)
GPU_DISPATCH_QUEUES = (QUEUE_GPU_AUDIO, QUEUE_GPU_VISION, QUEUE_GPU_GENERATION)

QUEUES = tuple(Queue(name, routing_key=name) for name in ALL_QUEUES)

# On RabbitMQ the task queues are quorum queues (replicated by Raft, publishes confirmed by a
# majority) bound to one topic exchange: Celery's native delayed delivery, which keeps a countdown
# message in the broker rather than in a worker's memory, forwards due messages through a topic
# exchange only (a direct one would make the worker hold every countdown message until it is due).
RABBITMQ_EXCHANGE = "auteur"
QUORUM = {"x-queue-type": "quorum"}
RABBITMQ_SCHEMES = ("amqp", "amqps", "pyamqp")


def broker_is_rabbitmq(url: str) -> bool:
    return url.split("://", 1)[0].lower() in RABBITMQ_SCHEMES


def rabbitmq_queues() -> tuple[Queue, ...]:
    exchange = Exchange(RABBITMQ_EXCHANGE, type="topic", durable=True)
    return tuple(Queue(name, exchange, routing_key=name, queue_arguments=QUORUM) for name in ALL_QUEUES)

# Tasks are named "<app>.<family>.<step>"; the router sends each family to its queue.
# Housekeeping that beat sends every few seconds. They send no task events (celeryconfig's
# task_annotations), so Flower's list and the exporter's task counters show users' work, not the
# clock; and their routine sent/received/succeeded lines are not logged (auteur.core.logging.ClockTaskFilter).
# A run that did something logs it itself; a failure or a retry is logged as for any task.
CLOCK_TASKS = frozenset({"jobs.deadlines", "webhooks.sweep"})

TASK_ROUTES = {
    # Retention sweeps are housekeeping, whichever app owns the data (listed before "media.*":
    # the first pattern that matches wins).
    "*.retention.*": {"queue": QUEUE_DEFAULT},
    "media.*": {"queue": QUEUE_MEDIA},
    "jobs.render.*": {"queue": QUEUE_RENDER},
    "jobs.compression.*": {"queue": QUEUE_RENDER},
    "jobs.audio.*": {"queue": QUEUE_GPU_AUDIO},
    "jobs.vision.*": {"queue": QUEUE_GPU_VISION},
    "jobs.generation.*": {"queue": QUEUE_GPU_GENERATION},
    "jobs.reap": {"queue": QUEUE_DEFAULT},
    "jobs.analyze_after_insert": {"queue": QUEUE_DEFAULT},
    "jobs.media_verdict": {"queue": QUEUE_MEDIA},  # an upload's pictures screened: decoding, CPU
    "jobs.deadlines": {"queue": QUEUE_DEFAULT},
    "webhooks.*": {"queue": QUEUE_WEBHOOKS},
}


# A message's publish time (a header the publisher adds), and the event a worker sends with the
# seconds the message waited before its run (the metrics exporter's queue-wait histogram). Not a
# "task-" event: celery's event State, Flower's too, would take it for a task state.
SENT_AT_HEADER = "auteur_sent_at"
QUEUE_WAIT_EVENT = "auteur-queue-wait"

INSPECT_TIMEOUT_SECONDS = 1.0


def queue_depths() -> dict[str, int]:
    """Messages waiting in each queue (not those a worker holds or that wait for an ETA).

    Broker-agnostic: a passive declare reports the depth on Redis (its list's length) and on
    RabbitMQ alike."""
    from celery import current_app

    depths: dict[str, int] = {}
    with current_app.connection_for_read() as connection:
        channel = connection.default_channel
        for queue in ALL_QUEUES:
            try:
                depths[queue] = channel.queue_declare(queue=queue, passive=True).message_count  # type: ignore[attr-defined]
            except Exception:  # a queue never declared yet (RabbitMQ's 404) holds nothing
                # (py-amqp reopens the channel RabbitMQ closes on that 404: the next queues are still asked.)
                logger.debug("queue %s not declared", queue, exc_info=True)
                depths[queue] = 0
    return depths


def queue_workers(timeout: float = INSPECT_TIMEOUT_SECONDS) -> dict[str, list[str]]:
    """The workers that answer a Celery inspect within `timeout`, by each queue they consume
    (every queue listed, with no worker when none does)."""
    from celery import current_app

    replies = current_app.control.inspect(timeout=timeout).active_queues() or {}
    consumers: dict[str, list[str]] = defaultdict(list)
    for worker, queues in replies.items():
        for queue in queues or []:
            consumers[queue["name"]].append(worker)
    return {queue: sorted(consumers.get(queue, [])) for queue in ALL_QUEUES}

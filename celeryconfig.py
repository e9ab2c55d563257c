"""Celery settings: delivery guarantees, queues and time limits, in one place.

Read by ``auteur/celery.py`` (``app.config_from_object("celeryconfig")``). Never imports Django.
"""

from __future__ import annotations

import os

from kombu import Queue

broker_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")

# ---- Queues: one per job family, so a flood of one feature cannot starve another, and so each
# family can get its own worker deployment (GPU dispatch vs CPU media work, docker-compose.yml).
QUEUE_DEFAULT = "default"  # housekeeping: reaper, subscription grants, storage clean-up
QUEUE_MEDIA = "media"  # ffprobe, thumbnails (CPU)
QUEUE_RENDER = "render"  # render and compression: ffmpeg on the worker's CPU in every backend
QUEUE_GPU_AUDIO = "gpu_audio"  # transcription, tts, audio generation
QUEUE_GPU_VISION = "gpu_vision"  # lip sync, performance cloning, gaze redirection, video query
QUEUE_GPU_GENERATION = "gpu_generation"  # video and image generation (the big GPUs)

ALL_QUEUES = (
    QUEUE_DEFAULT,
    QUEUE_MEDIA,
    QUEUE_RENDER,
    QUEUE_GPU_AUDIO,
    QUEUE_GPU_VISION,
    QUEUE_GPU_GENERATION,
)
CPU_QUEUES = (QUEUE_DEFAULT, QUEUE_MEDIA, QUEUE_RENDER)
GPU_DISPATCH_QUEUES = (QUEUE_GPU_AUDIO, QUEUE_GPU_VISION, QUEUE_GPU_GENERATION)

task_queues = tuple(Queue(name, routing_key=name) for name in ALL_QUEUES)
task_default_queue = QUEUE_DEFAULT
# Tasks are named "<app>.<family>.<step>"; the router sends each family to its queue.
task_routes = {
    "media.*": {"queue": QUEUE_MEDIA},
    "jobs.render.*": {"queue": QUEUE_RENDER},
    "jobs.compression.*": {"queue": QUEUE_RENDER},
    "jobs.audio.*": {"queue": QUEUE_GPU_AUDIO},
    "jobs.vision.*": {"queue": QUEUE_GPU_VISION},
    "jobs.generation.*": {"queue": QUEUE_GPU_GENERATION},
    "jobs.reap": {"queue": QUEUE_DEFAULT},
}

# ---- Serialization: JSON only. Pickle would let anyone who can write to Redis run code.
task_serializer = "json"
result_serializer = "json"
accept_content = ["json"]
event_serializer = "json"

# ---- Delivery: at-least-once. A task is acknowledged only after it ran, and requeued when the
# worker running it dies; so every task must be idempotent (CONVENTIONS.md rule 4).
task_acks_late = True
task_reject_on_worker_lost = True
worker_prefetch_multiplier = 1  # a worker holds one message per process, not a backlog
worker_cancel_long_running_tasks_on_connection_loss = True
task_ignore_result = True  # job state lives in Postgres, not in a result backend

# ---- Time limits: explicit, for every task. Inference never runs inside a task (spawn, then
# poll with a countdown), so only ffmpeg steps run long; they get their own limits per task.
task_soft_time_limit = 300
task_time_limit = 330
LONGEST_TASK_SECONDS = 1800  # render of a long timeline; see jobs/ for per-task limits
LONGEST_COUNTDOWN_SECONDS = 600  # a poll or a retry back-off is never scheduled further out
# Redis redelivers a message not acknowledged within the visibility timeout. It must exceed the
# longest task plus the longest countdown (an ETA message is held unacknowledged by the worker),
# or a healthy task would be delivered a second time while it still runs.
broker_transport_options = {
    "visibility_timeout": LONGEST_TASK_SECONDS + LONGEST_COUNTDOWN_SECONDS + 600,
    "socket_timeout": 10,
    "socket_connect_timeout": 5,
    # No redis-py level retry: it would reconnect a reset pub/sub connection inside kombu's read
    # and block there for ever (the worker stops consuming; tests/jobs/test_submission_under_stress.py).
    # kombu and Celery reconnect by themselves.
}
broker_connection_retry_on_startup = True
broker_connection_timeout = 5
broker_pool_limit = 10

# ---- Events for Flower.
worker_send_task_events = True
# No "task-sent" event: it is one more Redis publish per message sent (0.5 ms of a submission,
# bench/), and Flower shows a task from its "task-received" on.
task_send_sent_event = False
task_track_started = True

# ---- Workers.
worker_max_tasks_per_child = 1000
worker_hijack_root_logger = False
worker_redirect_stdouts = False
timezone = "UTC"
enable_utc = True

# ---- Beat: every periodic task of the project, by task name (each app owns its task).
beat_schedule: dict[str, dict[str, object]] = {
    # Idempotent by a database constraint: running it twice, or on two beats, grants once.
    "grant-subscription-allowances": {"task": "credits.grant_subscription_allowances", "schedule": 300.0},
    # No media file stays `uploading` or `processing` forever (expire, re-probe, or reject).
    "media-sweep": {"task": "media.sweep", "schedule": 600.0},
    # No job stays non-terminal forever: lost publishes, lost polls, jobs past their limit.
    "jobs-reaper": {"task": "jobs.reap", "schedule": float(os.environ.get("AUTEUR_REAPER_INTERVAL_SECONDS", "60"))},
}

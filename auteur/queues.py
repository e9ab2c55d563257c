"""The Celery queues and which tasks go to each. Never imports Django (`make run`'s supervisor
reads the names before any settings exist)."""

from __future__ import annotations

from kombu import Queue

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
# Tasks are named "<app>.<family>.<step>"; the router sends each family to its queue.
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
    "webhooks.*": {"queue": QUEUE_WEBHOOKS},
}

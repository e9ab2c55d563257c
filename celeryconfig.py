"""Celery settings: delivery guarantees, queues and time limits, in one place.

Read by ``auteur/celery.py`` (``app.config_from_object("celeryconfig")``) when the app is first
configured. What comes from the environment (the broker, the reaper's interval) is read from
Django's settings, the one place that reads the environment.
"""

from __future__ import annotations

from celery.schedules import crontab
from django.conf import settings

from auteur.core.queues import (
    CLOCK_TASKS,
    QUEUE_DEFAULT,
    QUEUES,
    RABBITMQ_EXCHANGE,
    TASK_ROUTES,
    broker_is_rabbitmq,
    rabbitmq_queues,
)
from jobs import task_names as job_tasks
from media import task_names as media_tasks
from webhooks import task_names as webhook_tasks

# The broker: Redis (REDIS_URL) unless CELERY_BROKER_URL names another; docs/broker.md.
broker_url = settings.CELERY_BROKER_URL
# Celery would prefer the environment's CELERY_BROKER_URL to broker_url; the URL the settings made
# (read from CELERY_BROKER_URL_FILE, TLS options taken out of an amqps:// query) is the one to use.
broker_read_url = broker_write_url = broker_url
# TLS (auteur/core/tls.py): without these, kombu would connect to a rediss:// broker without checking
# its certificate, and RedBeat and py-amqp without checking its host name. No result backend is
# used (task_ignore_result), but one set on REDIS_URL would get the same options.
if settings.CELERY_BROKER_TLS is not None:
    broker_use_ssl = settings.CELERY_BROKER_TLS
if settings.REDIS_TLS is not None:
    redbeat_redis_use_ssl = settings.REDIS_TLS
    redis_backend_use_ssl = settings.REDIS_TLS
ON_RABBITMQ = broker_is_rabbitmq(broker_url)

# ---- Queues: one per job family (auteur/core/queues.py); quorum queues on RabbitMQ.
task_queues = rabbitmq_queues() if ON_RABBITMQ else QUEUES
task_default_queue = QUEUE_DEFAULT
task_routes = TASK_ROUTES

# ---- Serialization: JSON only. Pickle would let anyone who can write to the broker run code.
task_serializer = "json"
result_serializer = "json"
accept_content = ["json"]
event_serializer = "json"

# ---- Delivery: at-least-once. A task is acknowledged only after it ran, and requeued when the
# worker running it dies; so every task must be idempotent.
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
broker_transport_options: dict[str, object]
if ON_RABBITMQ:
    # RabbitMQ has no visibility timeout: a delivery stays with its consumer until acknowledged or
    # until the consumer's connection closes (a dead worker), then goes back to the queue. Its
    # server-side consumer_timeout (30 min by default) must exceed the longest task; the embedded
    # node sets it (devstack/rabbitmq.py) and a production broker must too.
    task_default_exchange = RABBITMQ_EXCHANGE
    task_default_exchange_type = "topic"  # native delayed delivery needs a topic exchange
    task_default_queue_type = "quorum"
    task_create_missing_queue_type = "quorum"
    # Quorum queues refuse a global prefetch: the worker detects them and sets it per consumer.
    worker_detect_quorum_queues = True
    # A countdown message waits in the broker's delay queues (quorum too), not in a worker.
    broker_native_delayed_delivery_queue_type = "quorum"
    broker_transport_options = {
        # A publish returns only once the broker has the message (a quorum queue: a majority of
        # its replicas): a job is never accepted on a message the broker did not take.
        "confirm_publish": True,
    }
else:
    # Redis redelivers a message not acknowledged within the visibility timeout. It must exceed
    # the longest task plus the longest countdown (an ETA message is held unacknowledged by the
    # worker), or a healthy task would be delivered a second time while it still runs.
    broker_transport_options = {
        # A drill of redelivery may shorten it (bench/settings.py); production never does.
        "visibility_timeout": getattr(settings, "AUTEUR_DRILL_VISIBILITY_TIMEOUT_SECONDS", 0)
        or LONGEST_TASK_SECONDS + LONGEST_COUNTDOWN_SECONDS + 600,
        "socket_timeout": 10,
        "socket_connect_timeout": 5,
        # No redis-py level retry: it would reconnect a reset pub/sub connection inside kombu's
        # read and block there for ever (the worker stops consuming;
        # tests/jobs/test_submission_under_stress.py). kombu and Celery reconnect by themselves.
    }
broker_connection_retry_on_startup = True
broker_connection_timeout = 5
broker_pool_limit = 10

# ---- Events for Flower.
worker_send_task_events = True
# No "task-sent" event: it is one more broker publish per message sent (0.5 ms of a submission,
# bench/), and Flower shows a task from its "task-received" on.
task_send_sent_event = False
# The tasks beat sends every few seconds send none (auteur.core.queues.CLOCK_TASKS).
task_annotations = {name: {"send_events": False} for name in CLOCK_TASKS}
task_track_started = True

# ---- Workers.
worker_max_tasks_per_child = 1000
worker_hijack_root_logger = False
worker_redirect_stdouts = False
timezone = "UTC"
enable_utc = True

# ---- Beat: RedBeat (auteur/beat.py) keeps the schedule (and each entry's last run) in Redis, and
# sends only while it holds the lock below, renewed every tick: any number of beat replicas can
# run, one sends.
# A standby polls for the lock every max loop interval; a dead leader's lock expires after
# redbeat_lock_timeout, so a standby takes over within that time and no period is sent twice.
beat_scheduler = "auteur.beat:Scheduler"
beat_max_loop_interval = settings.AUTEUR_BEAT_MAX_LOOP_SECONDS
redbeat_redis_url = settings.REDIS_URL
redbeat_redis_options = {"socket_timeout": 10, "socket_connect_timeout": 5}
redbeat_key_prefix = "auteur:beat:"
redbeat_lock_timeout = settings.AUTEUR_BEAT_LOCK_SECONDS

# Every periodic task of the project, by task name (each app owns its task).
beat_schedule: dict[str, dict[str, object]] = {
    # Idempotent by a database constraint: running it twice, or on two beats, grants once.
    "grant-subscription-allowances": {"task": "credits.grant_subscription_allowances", "schedule": 300.0},
    # No media file stays `uploading` or `processing` forever (expire, re-probe, or reject).
    "media-sweep": {"task": media_tasks.SWEEP, "schedule": 600.0},
    # The content hash of files stored before it was recorded (the result cache knows inputs by it).
    "media-hash-backfill": {"task": media_tasks.HASH_BACKFILL, "schedule": 600.0},
    # No job stays non-terminal forever: lost publishes, lost polls, jobs past their limit.
    "jobs-reaper": {"task": job_tasks.REAP, "schedule": settings.AUTEUR_REAPER_INTERVAL_SECONDS},
    # Start and run deadlines, queue TTLs: rows with a time, swept (jobs.life.deadlines).
    "jobs-deadlines": {"task": job_tasks.DEADLINES, "schedule": settings.AUTEUR_DEADLINE_INTERVAL_SECONDS},
    # Webhook retries are rows with a next-attempt time, not countdown messages: this sends the
    # due ones (and any whose message was lost).
    "webhooks-sweep": {"task": webhook_tasks.SWEEP, "schedule": settings.AUTEUR_WEBHOOK_SWEEP_INTERVAL_SECONDS},
    # What a lost message left of the spend caps' alerts (credits/alerts.py).
    "spend-cap-alerts": {"task": "webhooks.spend_cap_alerts",
                         "schedule": settings.AUTEUR_WEBHOOK_SWEEP_INTERVAL_SECONDS},
    # What a lost message left of the batches' ends (jobs/events/batches.py).
    "batches-sweep": {"task": "webhooks.batches_sweep", "schedule": 60.0},
    # Every account against its ledger, nightly; the result is exported as a metric and alerted on.
    "ledger-check": {
        "task": "credits.ledger_check", "schedule": crontab(minute=0, hour=settings.AUTEUR_LEDGER_CHECK_HOUR_UTC),
    },
    # Retention (auteur/core/retention.py): each sweep deletes in committed batches; docs/retention.md.
    **{
        f"retention-{name}": {"task": task, "schedule": settings.AUTEUR_RETENTION_INTERVAL_SECONDS}
        for name, task in (
            ("job-events", "jobs.retention.job_events"),
            ("idempotency-keys", "jobs.retention.idempotency_keys"),
            ("event-streams", "jobs.retention.event_streams"),
            ("quotes", "jobs.retention.quotes"),
            ("usage-events", "jobs.retention.usage_events"),
            ("screening-refusals", "jobs.retention.screening_refusals"),
            ("job-outputs", "media.retention.job_outputs"),
            ("deleted-project-objects", "projects.retention.deleted_project_objects"),
            ("deleted-project-edls", "projects.retention.deleted_project_edls"),
        )
    },
}

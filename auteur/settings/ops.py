"""Operations: beat, health checks, metrics and logging."""

from __future__ import annotations

from auteur.settings.datastores import CELERY_BROKER_URL, REDIS_URL
from auteur.settings.environment import DEBUG, env, env_value

# Beat (celeryconfig.py) schedules through RedBeat: its schedule lives in Redis, and a beat sends
# only while it holds a Redis lock it renews every tick, so a second replica waits as a standby
# and takes over within AUTEUR_BEAT_LOCK_SECONDS of the first one's death.
AUTEUR_BEAT_MAX_LOOP_SECONDS = env.float("AUTEUR_BEAT_MAX_LOOP_SECONDS", default=5.0)
AUTEUR_BEAT_LOCK_SECONDS = env.int("AUTEUR_BEAT_LOCK_SECONDS", default=30)
# ledger_check runs nightly at this UTC hour; its result is a metric (credits_ledger_check_*).
AUTEUR_LEDGER_CHECK_HOUR_UTC = env.int("AUTEUR_LEDGER_CHECK_HOUR_UTC", default=3)
# /readyz (auteur/health.py): checks whose failure degrades the service (200, "degraded") rather
# than making it unavailable; their result is cached this long and refreshed by one request.
AUTEUR_READYZ_DEGRADED_CHECKS = {
    "workers": "auteur.health.check_workers",
    "gpu_backend": "jobs.gpu_client.check",
}
if CELERY_BROKER_URL != REDIS_URL:
    # A broker of its own: without it jobs are still accepted (and charged), and wait for the
    # reaper to publish them again, so it degrades the service rather than making it unavailable.
    AUTEUR_READYZ_DEGRADED_CHECKS["broker"] = "auteur.health.check_broker"
AUTEUR_READYZ_DEGRADED_CACHE_SECONDS = env.int("AUTEUR_READYZ_DEGRADED_CACHE_SECONDS", default=15)
# ---- Metrics. The exporter (metrics_exporter/, `manage.py metrics_exporter`) serves the queues,
# workers, tasks and business state here (an internal address: never publish its port); it polls
# every AUTEUR_METRICS_POLL_SECONDS and, on start, counts the jobs that ended in the last
# AUTEUR_METRICS_BACKFILL_SECONDS. The API's own /metrics answers only a bearer token equal to
# AUTEUR_METRICS_TOKEN (404 while unset).
AUTEUR_METRICS_EXPORTER_ADDRESS = env.str("AUTEUR_METRICS_EXPORTER_ADDRESS", default="127.0.0.1")
AUTEUR_METRICS_EXPORTER_PORT = env.int("AUTEUR_METRICS_EXPORTER_PORT", default=9808)
AUTEUR_METRICS_POLL_SECONDS = env.float("AUTEUR_METRICS_POLL_SECONDS", default=15.0)
AUTEUR_METRICS_BACKFILL_SECONDS = env.float("AUTEUR_METRICS_BACKFILL_SECONDS", default=3600.0)
PROMETHEUS_EXPORT_MIGRATIONS = False  # no database query at every start
AUTEUR_METRICS_TOKEN = env_value("AUTEUR_METRICS_TOKEN")

# ---- Logging: JSON lines outside debug; request, user, job, trace and span ids attached by the filter.
LOG_LEVEL = env.str("DJANGO_LOG_LEVEL", default="INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"context": {"()": "auteur.core.logging.ContextFilter"},
                "clock_tasks": {"()": "auteur.core.logging.ClockTaskFilter"}},
    "formatters": {
        "json": {"()": "auteur.core.logging.JsonFormatter"},
        "text": {"format": "%(asctime)s %(levelname)s %(name)s [req=%(request_id)s user=%(user_id)s "
                           "job=%(job_id)s trace=%(trace_id)s] %(message)s"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "text" if DEBUG else "json",
            "filters": ["context", "clock_tasks"],
        }
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "INFO"},
        "botocore": {"level": "WARNING"},
        "urllib3": {"level": "WARNING"},
    },
}

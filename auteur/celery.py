"""The Celery app. Its settings live in celeryconfig.py at the repository root."""

from __future__ import annotations

import os
from typing import Any

from celery import Celery
from celery.signals import task_postrun, task_prerun

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "auteur.settings")

app = Celery("auteur")
# Celery's Django task class keeps `delay_on_commit`; the base classes of the apps subclass it.
app.config_from_object("celeryconfig")
app.autodiscover_tasks()

# Celery's Django fix-up closes the database connection before and after every task unless
# CELERY_DB_REUSE_MAX is set: a new Postgres connection (a backend forked, authenticated, its
# caches warmed) per task cost more CPU than the task's own queries (bench/pipeline_throughput.py).
# Workers reuse connections as web requests do instead: at each task's boundaries Django's
# close_old_connections() drops one that broke (a Postgres restart) or outlived CONN_MAX_AGE, and
# CONN_HEALTH_CHECKS tests a reused one before its first query.
app.conf["CELERY_DB_REUSE_MAX"] = 2**31


@task_prerun.connect
@task_postrun.connect
def close_old_connections(task: Any = None, **kwargs: Any) -> None:
    if task is not None and getattr(task.request, "is_eager", False):
        return  # run inline by a caller (tests): its connection and transaction are the caller's
    from django.db import close_old_connections as close_old

    close_old()

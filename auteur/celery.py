"""The Celery app. Its settings live in celeryconfig.py at the repository root."""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "auteur.settings")

app = Celery("auteur")
# Celery's Django task class keeps `delay_on_commit`; the base classes of the apps subclass it.
app.config_from_object("celeryconfig")
app.autodiscover_tasks()

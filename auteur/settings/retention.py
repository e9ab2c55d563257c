"""Retention: how long what is not kept for ever is kept."""

from __future__ import annotations

from auteur.settings.environment import env

# ---- Retention (auteur/core/retention.py; docs/retention.md): beat runs every sweep this often, each
# deleting at most BATCH_SIZE rows per statement and transaction. Job events go this long after
# their job ended (the job row stays); job outputs after this many days (0: never).
AUTEUR_RETENTION_INTERVAL_SECONDS = env.float("AUTEUR_RETENTION_INTERVAL_SECONDS", default=3600.0)
AUTEUR_RETENTION_BATCH_SIZE = env.int("AUTEUR_RETENTION_BATCH_SIZE", default=1000)
AUTEUR_RETENTION_JOB_EVENTS_DAYS = env.int("AUTEUR_RETENTION_JOB_EVENTS_DAYS", default=30)
# Usage analytics (jobs.events.usage): one event per ended job, deleted this many days after it.
AUTEUR_USAGE_RETENTION_DAYS = env.int("AUTEUR_USAGE_RETENTION_DAYS", default=90)
# Content policy refusals (jobs.intake.screening): who was refused, for which categories, never the text.
AUTEUR_SCREENING_REFUSAL_RETENTION_DAYS = env.int("AUTEUR_SCREENING_REFUSAL_RETENTION_DAYS", default=90)
AUTEUR_RETENTION_JOB_OUTPUTS_DAYS = env.int("AUTEUR_RETENTION_JOB_OUTPUTS_DAYS", default=0)

"""The metrics exporter (`manage.py metrics_exporter`): Celery's queues, workers and tasks, and the
business state in the database, as Prometheus metrics on an internal port.

- `celery_events.py`: tasks received, succeeded, failed and retried, runtimes and queue waits,
  from the workers' events; the reaper's findings from its results.
- each queue's depth (from the broker) and the workers consuming it (a Celery `inspect`):
  `auteur/core/queues.py`, shared with /readyz and `manage.py doctor`.
- `business.py`: jobs by type and state, their latencies, refunds, GPU seconds, credits and
  webhook deliveries, tailed from the database; the nightly ledger check's result.

An app of its own because it reads every other one (Celery, credits, jobs, webhooks) and none of
them reads it: nothing imports this package but INSTALLED_APPS, which finds its command.
"""

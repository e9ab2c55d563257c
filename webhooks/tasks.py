"""Webhook tasks (queue `webhooks`, celeryconfig.task_routes): thin, ids in, one service call.

`deliver` is idempotent: it sends only a delivery it claims (due and pending), so a duplicate
message, a sweep that publishes it again, or a redelivery after a worker died sends at most
once per attempt. Failures are not Celery retries: the delivery's row holds its next attempt.
Its soft time limit outlasts any attempt (a deadline of at most 30 s, settings.py); one that
fires anyway is recorded as a failed attempt (services._send).
"""

from __future__ import annotations

from celery import shared_task

from webhooks import task_names
from webhooks.services import deliveries_sweep, delivery_attempt


@shared_task(name=task_names.DELIVER, acks_late=True, soft_time_limit=60, time_limit=90)
def deliver(delivery_id: int) -> None:
    delivery_attempt(delivery_id=delivery_id)


@shared_task(name=task_names.SWEEP, acks_late=True)
def sweep() -> int:
    return deliveries_sweep()

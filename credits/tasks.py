from __future__ import annotations

from celery import shared_task

from credits.alerts import ANNOUNCE_TASK, cap_alerts_announce
from credits.services.ledger_audit import ledger_audit_run
from credits.services.subscriptions import subscription_grant_allowances


@shared_task(name="credits.grant_subscription_allowances")
def grant_subscription_allowances() -> int:
    """Beat, every 5 minutes (celeryconfig.beat_schedule). Idempotent: see the service."""
    return subscription_grant_allowances()


@shared_task(name="credits.ledger_check")
def ledger_check() -> int:
    """Beat, nightly (celeryconfig.beat_schedule): the number of ledger problems found (0: consistent)."""
    return ledger_audit_run().problems


@shared_task(name=ANNOUNCE_TASK, acks_late=True)
def spend_cap_alerts() -> int:
    """Sent when a charge crossed a spend cap's threshold, and by beat as a sweep (queue `webhooks`):
    announces what is not announced yet (credits/alerts.py)."""
    return cap_alerts_announce()

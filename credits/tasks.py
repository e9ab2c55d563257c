from __future__ import annotations

from celery import shared_task

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

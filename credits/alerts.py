"""Spend caps' thresholds: each one a charge crosses is announced once, as an account event on the
workspace's stream (`spend_cap.threshold`) and to the account webhooks subscribed to `spend_cap`.

Once: the charge's own statement says which thresholds it newly crossed this month (a counter's
`crossed` bits, credits/services/ledger.py), and the charge's transaction writes one CapAlert per
threshold, unique per (cap, month, limit, threshold). The webhooks worker announces an alert and
marks it announced in one transaction that also writes its webhook deliveries, so each delivery
is made once whatever retries (jobs/events/account.py: the jobs app writes to the streams and the
webhooks); the stream's entry is appended before that transaction commits, so a crash between the
two appends it again (its `alert_id` tells a reader it saw it). The charge's commit asks the
worker at once; beat's sweep announces whatever a lost message left.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from django.db import connection, transaction

from auteur.core.publishing import send
from credits.models import THRESHOLDS, CapAlert
from credits.selectors import month_end

logger = logging.getLogger(__name__)

ANNOUNCE_TASK = "webhooks.spend_cap_alerts"
EVENT_TYPE = "spend_cap.threshold"
ANNOUNCE_BATCH = 200
_INSERT_SQL = """
INSERT INTO credit_cap_alerts (user_id, scope, subject_id, month, threshold, monthly_limit, spent, job_id)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT ON CONSTRAINT cap_alert_once DO NOTHING
"""


def cap_alerts_record(*, account_id: uuid.UUID, job_id: uuid.UUID | None, crossed: list[dict[str, Any]]) -> None:
    """In the charge's transaction: an alert for each threshold its counters newly crossed, and,
    once it commits, the worker asked to announce them."""
    rows = [(account_id, cap["scope"], cap["subject_id"], cap["month"], share, cap["monthly_limit"], cap["spent"],
             job_id) for cap in crossed for share, bit in THRESHOLDS if cap["crossed"] & bit]
    if not rows:
        return
    # The columns the API's database role may write (the rest are the database's and the worker's).
    with connection.cursor() as cursor:
        cursor.executemany(_INSERT_SQL, rows)
    transaction.on_commit(lambda: send(ANNOUNCE_TASK, (), what="spend cap alerts"), robust=True)


def alert_payload(alert: CapAlert) -> dict[str, Any]:
    """What the event and the webhook say of an alert."""
    subject = {"key": "key_id", "member": "member_id"}.get(alert.scope)
    return {
        "type": EVENT_TYPE,
        "alert_id": alert.pk,
        "cap": alert.scope,
        **({subject: str(alert.subject_id)} if subject else {}),
        "threshold": alert.threshold,
        "monthly_limit": alert.monthly_limit,
        "spent": alert.spent,
        "month": alert.month.strftime("%Y-%m"),
        "resets_at": month_end(alert.month).isoformat().replace("+00:00", "Z"),
        "job_id": str(alert.job_id) if alert.job_id else None,
        "created_at": alert.created_at.isoformat().replace("+00:00", "Z"),
    }

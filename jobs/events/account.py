"""The account's events announced on the workspace's event stream and to its account webhooks: a
spend cap's threshold crossed (credits/alerts.py; webhooks subscribed to `spend_cap`), and a review
hold set or lifted (jobs/life/standing.py; `review_hold`)."""

from __future__ import annotations

import logging
import uuid
from functools import partial

from django.db import transaction
from django.utils import timezone

from credits.alerts import ANNOUNCE_BATCH, alert_payload
from credits.models import CapAlert
from jobs.events.stream import account_stream_append
from webhooks.models import WebhookEventType
from webhooks.services import account_deliveries_enqueue

logger = logging.getLogger(__name__)


def cap_alerts_announce(*, limit: int = ANNOUNCE_BATCH) -> int:
    """Announce the alerts not announced yet (at most `limit`; those another worker holds are
    skipped); how many were."""
    with transaction.atomic():
        alerts = list(CapAlert.objects.select_for_update(skip_locked=True)
                      .filter(announced_at__isnull=True).order_by("created_at", "id")[:limit])
        now = timezone.now()
        for alert in alerts:
            payload = alert_payload(alert)
            account_deliveries_enqueue(owner_id=alert.user_id, event_type=WebhookEventType.SPEND_CAP, data=payload,
                                       credits=True)
            account_stream_append(user_id=alert.user_id, payload=payload, what=f"spend cap alert {alert.pk}")
            alert.announced_at = now
        CapAlert.objects.bulk_update(alerts, ["announced_at"])
    if alerts:
        logger.info("announced %d spend cap alert(s)", len(alerts))
    return len(alerts)


REVIEW_HOLD_EVENT = "account.review_hold"


def review_hold_announce(*, user_id: uuid.UUID, state: str, reason: str) -> None:
    """Announce a review hold set (`held`) or lifted (`lifted`), with its reason, in the transaction
    that changed it: the webhooks' deliveries are rows of it, and the stream's entry is appended once
    it commits (a hold rolled back is never told)."""
    payload = {"type": REVIEW_HOLD_EVENT, "state": state, "reason": reason,
               "created_at": timezone.now().isoformat().replace("+00:00", "Z")}
    account_deliveries_enqueue(owner_id=user_id, event_type=WebhookEventType.REVIEW_HOLD, data=payload)
    transaction.on_commit(partial(account_stream_append, user_id=user_id, payload=payload,
                                  what=f"review hold {state} of account {user_id}"), robust=True)

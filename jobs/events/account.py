"""The account's events (a spend cap's threshold crossed, credits/alerts.py) announced: on the
workspace's event stream and to its account webhooks subscribed to `spend_cap`."""

from __future__ import annotations

import logging

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

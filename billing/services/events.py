"""Stripe's webhook events: verified, stored once by id, processed once.

An event is inserted (or found) and row-locked, then processed, in ONE transaction: a crash
rolls both back, so Stripe's retry finds nothing and starts again; a retry of an event that was
processed (or ignored) finds it done and does nothing. Concurrent deliveries of one event wait
on its row: the first processes it, the others find it done. A handler's failure rolls back
only what it did; the event is committed as failed, with the error, and the caller answers 5xx
so that Stripe retries it (and staff can re-process it from the admin, through the same path).
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

import stripe
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from billing.errors import BillingUnavailable, EventProcessingFailed, InvalidSignature
from billing.models import EventOutcome, StripeEvent
from billing.services.handlers import HANDLERS, ignored

logger = logging.getLogger(__name__)

DONE = (EventOutcome.PROCESSED, EventOutcome.IGNORED)


def stripe_event_verify(*, payload: bytes, signature: str | None) -> dict[str, Any]:
    """The event Stripe signed, or InvalidSignature (a wrong or missing signature, a timestamp
    outside the tolerance, a body that is not an event)."""
    if not (settings.STRIPE_SECRET_KEY and settings.STRIPE_WEBHOOK_SECRET):
        raise BillingUnavailable()
    try:
        stripe.Webhook.construct_event(payload, signature, settings.STRIPE_WEBHOOK_SECRET,
                                       tolerance=settings.STRIPE_WEBHOOK_TOLERANCE_SECONDS,
                                       api_key=settings.STRIPE_SECRET_KEY)
        # The handlers read plain JSON; construct_event's StripeObject is only the check that
        # the signed body is an event (it raises on one that is not a JSON object).
        event = json.loads(payload)
    except (stripe.SignatureVerificationError, ValueError, AttributeError, TypeError, KeyError) as exc:
        # Why it failed is the library's text: for the log, not for whoever posted it.
        logger.info("stripe webhook refused: %s", exc)
        raise InvalidSignature("The event is not signed by Stripe.") from None
    if not (isinstance(event, dict) and isinstance(event.get("id"), str) and isinstance(event.get("type"), str)
            and isinstance(event.get("created"), int) and isinstance(event.get("data"), dict)
            and isinstance(event["data"].get("object"), dict)):
        raise InvalidSignature("The signed body is not a Stripe event.")
    return event


def _process(record: StripeEvent) -> str | None:
    """Run the event's handler on the locked record; the error, if it failed."""
    record.attempts += 1
    handler = HANDLERS.get(record.type)
    try:
        with transaction.atomic():
            if handler is None:
                logger.info("stripe event %s of type %s: not handled, ignored", record.event_id, record.type)
                outcome, note = ignored(f"{record.type} is not handled")
            else:
                outcome, note = handler(record.payload["data"]["object"])
    except Exception as exc:
        # The savepoint rolled back everything the handler did; the event row stays, failed.
        logger.exception("stripe event %s (%s) failed", record.event_id, record.type)
        record.outcome, record.error, record.processed_at = EventOutcome.FAILED, f"{type(exc).__name__}: {exc}", None
        record.save(update_fields=["outcome", "error", "attempts", "processed_at"])
        return record.error
    if outcome == EventOutcome.IGNORED:
        logger.info("stripe event %s (%s) ignored: %s", record.event_id, record.type, note)
    record.outcome, record.error, record.processed_at = outcome, note, timezone.now()
    record.save(update_fields=["outcome", "error", "attempts", "processed_at"])
    return None


def stripe_event_handle(*, event: dict[str, Any]) -> StripeEvent:
    """Store a verified event once and process it once; EventProcessingFailed (after recording
    the failure) when its handler failed."""
    with transaction.atomic():
        # ON CONFLICT DO NOTHING waits for a concurrent insert of the same id to commit or
        # roll back; then the row is locked, so one delivery processes and the others see it done.
        StripeEvent.objects.bulk_create(
            [StripeEvent(event_id=event["id"], type=event["type"], payload=event,
                         created=datetime.fromtimestamp(event["created"], tz=UTC))],
            ignore_conflicts=True,
        )
        record = StripeEvent.objects.select_for_update().get(event_id=event["id"])
        if record.outcome in DONE:
            return record
        error = _process(record)
    if error is not None:
        raise EventProcessingFailed("The event could not be processed; it will be retried.",
                                    details={"event_id": record.event_id})
    return record


def stripe_event_reprocess(*, event_id: str) -> StripeEvent:
    """Process a stored event again (staff), through the same handlers. Handlers move money
    exactly once, so re-processing an event that was processed changes nothing twice."""
    with transaction.atomic():
        record = StripeEvent.objects.select_for_update().get(event_id=event_id)
        _process(record)
    return record

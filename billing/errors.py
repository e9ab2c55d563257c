"""The billing app's domain failures, each with its code (auteur/core/errors.py maps codes to statuses)."""

from __future__ import annotations

from auteur.core.errors import ApplicationError


class BillingUnavailable(ApplicationError):
    code = "billing_unavailable"

    def __init__(self) -> None:
        super().__init__("Billing is not configured on this server (STRIPE_SECRET_KEY is not set).")


class InvalidSignature(ApplicationError):
    """The webhook's body is not one Stripe signed with our secret, recently, as valid JSON."""

    code = "invalid_signature"


class EventProcessingFailed(ApplicationError):
    """Processing the event failed and was rolled back; Stripe retries it (a 5xx)."""

    code = "event_processing_failed"

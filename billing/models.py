"""Stripe customers, the events Stripe sent us, and the credit packs paid through it.

Plans live in credits (`Subscription`, with its Stripe subscription id) and money in credits'
ledger; billing keeps only what maps Stripe's objects onto ours, each exactly once by a unique
constraint: one customer per user, one row per event id, one pack purchase per payment,
one record per paid invoice.
"""

from __future__ import annotations

import uuid
from typing import ClassVar

from django.db import models
from django.db.models import Q


class StripeCustomer(models.Model):
    """The user's Stripe customer, created before their first Checkout Session."""

    user = models.OneToOneField("users.User", on_delete=models.PROTECT, primary_key=True,
                                related_name="stripe_customer")
    stripe_customer_id = models.CharField(max_length=255, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "billing_stripe_customers"

    def __str__(self) -> str:
        return self.stripe_customer_id


class EventOutcome(models.TextChoices):
    PENDING = "pending", "Pending"
    PROCESSED = "processed", "Processed"
    IGNORED = "ignored", "Ignored"
    FAILED = "failed", "Failed"


class StripeEvent(models.Model):
    """One webhook event, stored once by its id: a redelivery finds it and does nothing twice."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    event_id = models.CharField(max_length=255, unique=True)
    type = models.CharField(max_length=100, db_index=True)
    created = models.DateTimeField(help_text="When Stripe created the event.")
    payload = models.JSONField()
    outcome = models.CharField(max_length=20, choices=EventOutcome.choices, default=EventOutcome.PENDING)
    error = models.TextField(blank=True, default="")
    attempts = models.PositiveIntegerField(default=0)
    received_at = models.DateTimeField(auto_now_add=True)
    processed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "billing_stripe_events"
        ordering = ("-created",)
        constraints: ClassVar[list[models.BaseConstraint]] = [
            models.CheckConstraint(condition=Q(outcome__in=EventOutcome.values), name="stripe_event_outcome_valid"),
        ]

    def __str__(self) -> str:
        return f"{self.type} {self.event_id} ({self.outcome})"


class PackPurchase(models.Model):
    """A credit pack paid through Stripe: its `purchase` ledger row is written in the same
    transaction, and a refund's (or a dispute's) `purchase_reversal` row with whatever could not
    be taken back. A dispute the merchant wins gives back what it took: a second `purchase` row,
    under the payment's reinstatement key."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey("users.User", on_delete=models.PROTECT, related_name="pack_purchases")
    pack_id = models.CharField(max_length=100)
    credits = models.PositiveIntegerField()
    stripe_payment_intent_id = models.CharField(max_length=255, unique=True)
    stripe_checkout_session_id = models.CharField(max_length=255, blank=True, default="")
    purchased_at = models.DateTimeField(auto_now_add=True)
    refunded_at = models.DateTimeField(null=True, blank=True)
    # Credits the refund could not take back because they had been spent (balance never < 0).
    refund_shortfall = models.PositiveIntegerField(default=0)
    # The dispute that took the pack back (blank: a refund did, or nothing has).
    dispute_id = models.CharField(max_length=255, blank=True, default="")
    # When that dispute was won and what it took was given back.
    reinstated_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "billing_pack_purchases"
        ordering = ("-purchased_at",)
        constraints: ClassVar[list[models.BaseConstraint]] = [
            models.CheckConstraint(condition=Q(credits__gt=0), name="pack_purchase_credits_positive"),
            models.CheckConstraint(condition=Q(refund_shortfall__lte=models.F("credits")),
                                   name="pack_purchase_shortfall_within_pack"),
            # Only what a dispute took back is ever given back.
            models.CheckConstraint(
                condition=Q(reinstated_at__isnull=True) | (Q(refunded_at__isnull=False) & ~Q(dispute_id="")),
                name="pack_purchase_reinstated_after_dispute",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.pack_id} ({self.credits} credits) {self.stripe_payment_intent_id}"

    @property
    def payment_key(self) -> str:
        return payment_key(self.stripe_payment_intent_id)

    @property
    def refund_key(self) -> str:
        return refund_key(self.stripe_payment_intent_id)

    @property
    def reinstate_key(self) -> str:
        return reinstate_key(self.stripe_payment_intent_id)

    @property
    def credits_taken_back(self) -> int:
        """What the refund or dispute actually took (the pack less what had been spent)."""
        return self.credits - self.refund_shortfall if self.refunded_at is not None else 0


class PaidInvoice(models.Model):
    """A paid subscription invoice that starts a period (the first one or a renewal), and the key
    of the ledger row its allowance was granted under; written in the transaction of the grant."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey("users.User", on_delete=models.PROTECT, related_name="paid_invoices")
    stripe_invoice_id = models.CharField(max_length=255, unique=True)
    stripe_subscription_id = models.CharField(max_length=255)
    plan = models.CharField(max_length=20)
    period_start = models.DateTimeField()
    allowance_key = models.CharField(max_length=255, help_text="The subscription ledger row's key.")
    # What the period was granted: the plan's allowance in proportion to what was paid (0 for a
    # period nothing was paid for: no ledger row). Null on rows from before the rule.
    credits = models.PositiveIntegerField(null=True, blank=True)
    paid_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "billing_paid_invoices"
        ordering = ("-paid_at",)

    def __str__(self) -> str:
        return f"{self.stripe_invoice_id} ({self.plan}, period from {self.period_start:%Y-%m-%d})"


def payment_key(payment_intent_id: str) -> str:
    """The ledger key of a Stripe payment's purchase entry."""
    return f"stripe:payment:{payment_intent_id}"


def refund_key(payment_intent_id: str) -> str:
    """The ledger key of the entry taking a refunded payment's credits back (keys are unique per
    account, so it differs from the purchase's)."""
    return f"stripe:refund:{payment_intent_id}"


def reinstate_key(payment_intent_id: str) -> str:
    """The ledger key of the entry giving a pack back when the dispute that took it is won."""
    return f"stripe:dispute-won:{payment_intent_id}"

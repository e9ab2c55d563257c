"""What each Stripe event type does, in one table (`HANDLERS`): type -> handler.

The out-of-order rule: subscription state is never taken from an event's payload, nor from the
order events arrive in. On every subscription or invoice event the handler fetches the
subscription's CURRENT state from Stripe (stripe_client.subscription_retrieve) and makes ours
that state (plan from its price, status, current period). So `invoice.paid` before
`checkout.session.completed` works, and a late `customer.subscription.updated` never rolls a
newer state back. Money follows paid objects, each exactly once: a paid subscription invoice
grants its period's allowance (the key `subscription:<our id>:<period start>`, the period being
the invoice line's, its amount what was paid of the plan's price: see `invoice_allowance`), a paid
Checkout Session for a pack credits the pack (one `purchase` row per payment), a fully refunded
or disputed pack payment takes the pack back (one `purchase_reversal` row), and a won dispute
gives back what it took (one more `purchase` row). Disputes follow the same out-of-order rule:
every dispute event fetches the dispute's current status, so a late `charge.dispute.created`
after the dispute was won takes nothing.

A handler answers (outcome, note): `processed`, or `ignored` with why (an object that is not
ours, a status with nothing to change). It raises to fail: the event's transaction is rolled
back, recorded as failed, and Stripe retries it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from django.conf import settings

from auteur.users.models import User
from billing import stripe_client
from billing.models import EventOutcome, PaidInvoice, StripeCustomer
from billing.services.packs import pack_purchase_record, pack_purchase_refund, pack_purchase_reinstate
from credits.models import Subscription, SubscriptionStatus
from credits.selectors import credit_transaction_get_by_key
from credits.services.subscriptions import (
    subscription_allowance_key,
    subscription_grant_paid_period,
    subscription_sync_external,
)

logger = logging.getLogger(__name__)

Result = tuple[str, str]
PROCESSED: Result = (EventOutcome.PROCESSED, "")

# Stripe's subscription statuses -> ours. `incomplete` (the first payment not made yet) maps to
# none: nothing changes until Stripe says it is active or expired.
STATUSES = {
    "active": SubscriptionStatus.ACTIVE,
    "trialing": SubscriptionStatus.ACTIVE,
    "past_due": SubscriptionStatus.PAST_DUE,
    "unpaid": SubscriptionStatus.PAST_DUE,
    "paused": SubscriptionStatus.PAST_DUE,
    "canceled": SubscriptionStatus.CANCELLED,
    "incomplete_expired": SubscriptionStatus.CANCELLED,
}
# Invoices that start a period: the first one and each renewal. Others (a proration on a plan
# change) grant nothing; the next period is granted at the new plan's allowance.
ALLOWANCE_BILLING_REASONS = ("subscription_create", "subscription_cycle")
# A dispute's statuses at Stripe that withdrew the payment's funds (open or lost): the pack is
# taken back. `warning_*` are inquiries that withdraw nothing: no credits move. `won` gives back.
DISPUTE_TAKES_BACK = ("needs_response", "under_review", "lost")
DISPUTE_WON = "won"


def ignored(note: str) -> Result:
    return EventOutcome.IGNORED, note


def _moment(timestamp: int) -> datetime:
    return datetime.fromtimestamp(int(timestamp), tz=UTC)


def _user_for_customer(customer: Any) -> User | None:
    customer_id = customer.get("id") if isinstance(customer, dict) else customer
    mapping = StripeCustomer.objects.select_related("user").filter(stripe_customer_id=customer_id or "").first()
    return mapping.user if mapping is not None else None


def _plan_for_price(price_id: str | None) -> str | None:
    return next((plan for plan, price in settings.STRIPE_PLAN_PRICES.items() if price == price_id), None)


def _id(value: Any) -> str | None:
    """An expandable field: an id, or the object itself."""
    return value.get("id") if isinstance(value, dict) else value


def _sync(subscription_id: str) -> tuple[Subscription | None, str]:
    """Make ours the subscription's current state at Stripe: (our subscription, note if none)."""
    data = stripe_client.subscription_retrieve(subscription_id)
    user = _user_for_customer(data.get("customer"))
    if user is None:
        return None, f"subscription {subscription_id} belongs to no customer of ours"
    items = data.get("items", {}).get("data") or []
    if not items:
        return None, f"subscription {subscription_id} has no items"
    item = items[0]
    plan = _plan_for_price(_id(item.get("price")))
    if plan is None:
        return None, f"subscription {subscription_id} is for a price that is none of our plans"
    status = STATUSES.get(data.get("status", ""))
    if status is None:
        return None, f"subscription {subscription_id} is {data.get('status')}: nothing to change"
    subscription = subscription_sync_external(
        user=user, external_id=subscription_id, plan=plan, status=status,
        current_period_start=_moment(item["current_period_start"]),
        current_period_end=_moment(item["current_period_end"]),
    )
    if subscription is None:
        return None, f"subscription {subscription_id} ended and was replaced by another"
    return subscription, ""


def _synced(subscription_id: str | None) -> Result:
    if not subscription_id:
        return ignored("no subscription named")
    subscription, note = _sync(subscription_id)
    return PROCESSED if subscription is not None else ignored(note)


def _invoice_subscription(invoice: dict[str, Any]) -> str | None:
    details = (invoice.get("parent") or {}).get("subscription_details") or {}
    return _id(details.get("subscription") or invoice.get("subscription"))


def _line_price(line: dict[str, Any]) -> str | None:
    price_details = (line.get("pricing") or {}).get("price_details") or {}
    return _id(price_details.get("price") or line.get("price"))


def _pack_record(paid: dict[str, Any], payment_intent_id: str, *, checkout_session_id: str = "") -> bool:
    """Record the credit pack that `paid` (a Checkout Session or a payment intent, whose metadata
    names the pack and its credits) paid for; False if it is no pack of a customer of ours."""
    user = _user_for_customer(paid.get("customer"))
    metadata = paid.get("metadata") or {}
    pack_id, credits = metadata.get("credit_pack"), str(metadata.get("credits", ""))
    if user is None or not pack_id or not credits.isdigit() or int(credits) <= 0:
        return False
    pack_purchase_record(user=user, pack_id=pack_id, credits=int(credits), payment_intent_id=payment_intent_id,
                         checkout_session_id=checkout_session_id)
    return True


def checkout_session_completed(session: dict[str, Any]) -> Result:
    if session.get("mode") == "subscription":
        return _synced(_id(session.get("subscription")))
    if session.get("mode") != "payment":
        return ignored(f"a {session.get('mode')} session buys nothing")
    if session.get("payment_status") != "paid":
        # Paid later (a bank debit): checkout.session.async_payment_succeeded credits it.
        return ignored(f"payment is {session.get('payment_status')}")
    payment_intent = _id(session.get("payment_intent"))
    session_id = str(session.get("id", ""))
    if not payment_intent or not _pack_record(session, payment_intent, checkout_session_id=session_id):
        return ignored("not a credit pack session of ours")
    return PROCESSED


def subscription_changed(subscription: dict[str, Any]) -> Result:
    return _synced(_id(subscription.get("id")))


def _amount(invoice: dict[str, Any], field: str, fallback: str | None = None) -> int:
    value = invoice.get(field)
    if value is None and fallback is not None:
        value = invoice.get(fallback)
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"invoice {invoice.get('id')} has no integer {field}")
    return value


def invoice_allowance(invoice: dict[str, Any], allowance: int) -> int:
    """The credits a paid period's invoice grants: the plan's allowance in proportion to what was
    paid of the plan's price, rounded down.

    The rule: credits are GPU time we pay for, so a period grants what was paid for it. The price
    is the invoice before discounts and tax (`subtotal_excluding_tax`); what was paid is
    `amount_paid`, plus any of the customer's Stripe balance the invoice used (money paid before,
    e.g. a downgrade's proration credit), less tax. A full-price period grants the whole
    allowance; a 100 % coupon or a trial (nothing paid) grants none: the plan's features come
    with the subscription, its credits with payment; a partially discounted invoice grants its
    share (a 25 % coupon: 75 % of the allowance). Never more than the allowance.
    """
    price = _amount(invoice, "subtotal_excluding_tax", "subtotal")
    if price <= 0:
        return 0  # a trial's invoice: nothing priced, nothing paid
    total = _amount(invoice, "total")
    tax = total - _amount(invoice, "total_excluding_tax", "total")
    # The customer balance moves up by what the invoice used of a credit (balances are negative
    # when in the customer's favour), and down by an earlier debt the invoice collected.
    balance_used = int(invoice.get("ending_balance") or 0) - int(invoice.get("starting_balance") or 0)
    paid = _amount(invoice, "amount_paid") + balance_used - tax
    if paid <= 0:
        return 0
    return min(allowance, allowance * paid // price)


def invoice_paid(invoice: dict[str, Any]) -> Result:
    subscription_id = _invoice_subscription(invoice)
    if not subscription_id:
        return ignored("not a subscription invoice")
    subscription, note = _sync(subscription_id)
    if subscription is None:
        return ignored(note)
    if invoice.get("billing_reason") not in ALLOWANCE_BILLING_REASONS:
        return ignored(f"a {invoice.get('billing_reason')} invoice grants no allowance")
    lines = [line for line in (invoice.get("lines") or {}).get("data", []) if _plan_for_price(_line_price(line))]
    if not lines:
        return ignored("no line of the invoice is a plan")
    line = lines[0]
    plan, period_start = str(_plan_for_price(_line_price(line))), _moment(line["period"]["start"])
    credits = invoice_allowance(invoice, int(settings.AUTEUR_PLAN_ALLOWANCES[plan]))
    key = subscription_allowance_key(subscription, period_start)
    if credits:
        subscription_grant_paid_period(subscription=subscription, plan=plan, period_start=period_start,
                                       amount=credits)
    # A period is granted once, by its first paid invoice: a second invoice for it records what
    # the period was actually granted. What ledger_check holds the grant to (no row for 0).
    entry = credit_transaction_get_by_key(user=subscription.user, idempotency_key=key)
    PaidInvoice.objects.bulk_create(
        [PaidInvoice(user_id=subscription.user_id, stripe_invoice_id=str(invoice["id"]),
                     stripe_subscription_id=subscription_id, plan=plan, period_start=period_start,
                     allowance_key=key, credits=entry.amount if entry is not None else 0)],
        ignore_conflicts=True,
    )
    if not credits:
        return EventOutcome.PROCESSED, "nothing was paid for this period (a trial, a 100 % discount): no credits"
    return PROCESSED


def invoice_payment_failed(invoice: dict[str, Any]) -> Result:
    # Stripe has marked the subscription past due by now; its current state says so.
    return _synced(_invoice_subscription(invoice))


def charge_refunded(charge: dict[str, Any]) -> Result:
    payment_intent = _id(charge.get("payment_intent"))
    if not payment_intent:
        return ignored("no payment intent")
    if not charge.get("refunded"):
        # Credits are not divisible by a partial refund's amount in any rule the user agreed
        # to: staff decide (a credit adjustment in the admin).
        logger.warning("partial refund of payment %s: no credits taken back", payment_intent)
        return ignored("partial refund: credits are adjusted by staff")
    return _take_back(payment_intent)


def _take_back(payment_intent: str, dispute_id: str = "") -> Result:
    """A refunded or disputed payment: its pack taken back, once (the two share the reversal)."""
    if pack_purchase_refund(payment_intent_id=payment_intent, dispute_id=dispute_id) is not None:
        return PROCESSED
    # The refund can arrive before the payment's checkout.session.completed: the payment's
    # current state at Stripe says whether it paid for a pack of ours. If so, the pack is
    # recorded, credited and taken back here, and the late completion finds it done.
    if not _pack_record(stripe_client.payment_intent_retrieve(payment_intent), payment_intent):
        return ignored("not a credit pack payment")
    pack_purchase_refund(payment_intent_id=payment_intent, dispute_id=dispute_id)
    return PROCESSED


def charge_dispute(dispute: dict[str, Any]) -> Result:
    """Every dispute event (created, updated, closed, funds withdrawn or reinstated) makes ours
    the dispute's current status at Stripe: open or lost takes the pack back as a refund does,
    won gives back what the dispute took, an inquiry moves nothing."""
    dispute_id = _id(dispute.get("id"))
    if not dispute_id:
        return ignored("no dispute named")
    current = stripe_client.dispute_retrieve(dispute_id)
    payment_intent = _id(current.get("payment_intent") or dispute.get("payment_intent"))
    if not payment_intent:
        return ignored("the disputed charge has no payment intent")
    status = str(current.get("status", ""))
    if status in DISPUTE_TAKES_BACK:
        return _take_back(payment_intent, dispute_id=dispute_id)
    if status == DISPUTE_WON:
        purchase = pack_purchase_reinstate(payment_intent_id=payment_intent, dispute_id=dispute_id)
        return PROCESSED if purchase is not None else ignored("not a credit pack payment")
    return ignored(f"dispute is {status}: no credits move")


HANDLERS: dict[str, Callable[[dict[str, Any]], Result]] = {
    "checkout.session.completed": checkout_session_completed,
    "checkout.session.async_payment_succeeded": checkout_session_completed,
    "customer.subscription.created": subscription_changed,
    "customer.subscription.updated": subscription_changed,
    "customer.subscription.deleted": subscription_changed,
    "invoice.paid": invoice_paid,
    "invoice.payment_failed": invoice_payment_failed,
    "charge.refunded": charge_refunded,
    "charge.dispute.created": charge_dispute,
    "charge.dispute.updated": charge_dispute,
    "charge.dispute.closed": charge_dispute,
    "charge.dispute.funds_withdrawn": charge_dispute,
    "charge.dispute.funds_reinstated": charge_dispute,
}

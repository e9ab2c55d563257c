"""Reads of billing state: a user's plan and what is on offer, and the audit of paid payments."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db.models import Exists, OuterRef, Subquery

from auteur.users.models import User
from billing.models import PackPurchase, PaidInvoice
from credits.models import CreditAccount, CreditTransaction, SubscriptionStatus, TransactionType
from credits.selectors import subscription_get


def billing_overview(*, user: User) -> dict[str, Any]:
    """The user's plan, its status and renewal date, and the plans and packs on offer (never
    their Stripe price ids: those stay on the server)."""
    subscription = subscription_get(user=user)
    renews_at: datetime | None = None
    if subscription is not None and subscription.status == SubscriptionStatus.ACTIVE:
        renews_at = subscription.current_period_end
    return {
        "plan": subscription.plan if subscription is not None else None,
        "status": subscription.status if subscription is not None else None,
        "renews_at": renews_at,
        "plans": [{"id": plan, "monthly_credits": settings.AUTEUR_PLAN_ALLOWANCES[plan]}
                  for plan in settings.STRIPE_PLAN_PRICES],
        "credit_packs": [{"id": pack_id, "credits": credits}
                         for pack_id, (_, credits) in settings.AUTEUR_CREDIT_PACKS.items()],
    }


def billing_ledger_problems() -> Iterator[tuple[uuid.UUID, str]]:
    """Every paid Stripe object has exactly its ledger row. Registered with credits' ledger_check."""
    yield from _pack_problems()
    yield from _invoice_problems()


def _invoice_problems() -> Iterator[tuple[uuid.UUID, str]]:
    """Every paid invoice that granted credits has its period's `subscription` row, of its user
    and of the amount it granted (the ledger's unique key per account makes it one). An invoice
    that granted 0 (nothing paid) needs no row: another paid invoice of the same period may
    still have granted one. Checked from the invoice's side only: the same key is used by periods
    granted without Stripe (staff-made subscriptions), so a row needs no invoice."""
    grants = CreditTransaction.objects.filter(type=TransactionType.SUBSCRIPTION, user_id=OuterRef("user_id"),
                                              idempotency_key=OuterRef("allowance_key"))
    invoices = PaidInvoice.objects.exclude(credits=0).annotate(
        granted=Exists(grants), granted_amount=Subquery(grants.values("amount")[:1]))
    for paid in invoices:
        if not paid.granted:
            problem = f"paid invoice {paid.stripe_invoice_id} has no subscription entry ({paid.allowance_key})"
        elif paid.credits is not None and paid.granted_amount != paid.credits:  # null: from before the rule
            problem = (f"paid invoice {paid.stripe_invoice_id} granted {paid.credits}, "
                       f"but its entry ({paid.allowance_key}) is {paid.granted_amount}")
        else:
            continue
        account_id = CreditAccount.objects.filter(user_id=paid.user_id).values_list("pk", flat=True).first()
        yield account_id or paid.user_id, problem


def _pack_problems() -> Iterator[tuple[uuid.UUID, str]]:
    """Every paid pack has exactly its `purchase` row (same user, the pack's credits), every
    refunded (or disputed) one its `purchase_reversal` row taking back the pack less the recorded
    shortfall, every one given back after a won dispute its second `purchase` row of what was
    taken, and no such row exists without its paid pack."""
    purchases = list(PackPurchase.objects.all())
    accounts = dict(CreditAccount.objects.filter(user_id__in={p.user_id for p in purchases})
                    .values_list("user_id", "pk"))
    rows: dict[str, dict[str, CreditTransaction]] = {TransactionType.PURCHASE: {},
                                                     TransactionType.PURCHASE_REVERSAL: {}}
    for row in CreditTransaction.objects.filter(type__in=list(rows)).only(
            "pk", "account_id", "user_id", "amount", "type", "idempotency_key"):
        rows[row.type][row.idempotency_key or ""] = row

    for purchase in purchases:
        where = accounts.get(purchase.user_id, purchase.user_id)
        bought = rows[TransactionType.PURCHASE].pop(purchase.payment_key, None)
        if bought is None:
            yield where, f"paid pack {purchase.pk} ({purchase.payment_key}) has no purchase entry"
        elif bought.user_id != purchase.user_id or bought.amount != purchase.credits:
            yield where, f"purchase entry {bought.pk} does not match paid pack {purchase.pk}"
        reversed_ = rows[TransactionType.PURCHASE_REVERSAL].pop(purchase.refund_key, None)
        taken = -reversed_.amount if reversed_ is not None else 0
        if purchase.refunded_at is None and reversed_ is not None:
            yield where, f"reversal entry {reversed_.pk} for pack {purchase.pk}, which was not refunded"
        elif purchase.refunded_at is not None and (
            taken + purchase.refund_shortfall != purchase.credits
            or (reversed_ is not None and reversed_.user_id != purchase.user_id)
        ):
            yield where, (f"refunded pack {purchase.pk} took back {taken} with a shortfall of "
                          f"{purchase.refund_shortfall}, not its {purchase.credits} credits")
        given_back = rows[TransactionType.PURCHASE].pop(purchase.reinstate_key, None)
        owed = purchase.credits_taken_back if purchase.reinstated_at is not None else 0
        if (given_back.amount if given_back is not None else 0) != owed or (
                given_back is not None and given_back.user_id != purchase.user_id):
            yield where, (f"pack {purchase.pk} was given back {given_back.amount if given_back else 0} "
                          f"after its dispute, not the {owed} credits it took")
    # What is left has no paid pack.
    for type_, by_key in rows.items():
        for key, row in by_key.items():
            yield row.account_id, f"{type_} entry {row.pk} ({key}) has no paid pack"

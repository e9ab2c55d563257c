"""Credit packs paid through Stripe: credited once per payment, taken back once when refunded or
disputed, and given back once when the dispute that took them is won.

A refund and a dispute of one payment share the reversal's key: whichever comes first takes the
pack back, the other finds it taken. A won dispute gives back exactly what it took (the pack less
the shortfall: credits spent before the dispute were never taken, so none are given back).

The purchase record and its ledger row are written in one transaction; the record's row lock
serializes a payment's events, and the ledger's unique keys back it (credits/services/purchases.py).
"""

from __future__ import annotations

import logging

from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from auteur.users.models import User
from billing.models import PackPurchase
from credits.services.purchases import credit_purchase_grant, credit_purchase_reverse

logger = logging.getLogger(__name__)


def _locked() -> QuerySet[PackPurchase]:
    # The purchase row only (`of`): locking the joined user row FOR UPDATE would block every
    # ledger insert of that user at its commit (their foreign keys take KEY SHARE on it), while
    # this transaction waits for one of them to free the user's credit account: a deadlock.
    return PackPurchase.objects.select_for_update(of=("self",)).select_related("user")


@transaction.atomic
def pack_purchase_record(
    *, user: User, pack_id: str, credits: int, payment_intent_id: str, checkout_session_id: str,
) -> PackPurchase:
    """Record a paid pack and credit it, once per payment."""
    PackPurchase.objects.bulk_create(
        [PackPurchase(user=user, pack_id=pack_id, credits=credits, stripe_payment_intent_id=payment_intent_id,
                      stripe_checkout_session_id=checkout_session_id)],
        ignore_conflicts=True,
    )
    purchase = _locked().get(stripe_payment_intent_id=payment_intent_id)
    credit_purchase_grant(user=purchase.user, amount=purchase.credits, payment_key=purchase.payment_key,
                          description=f"credit pack {purchase.pack_id}")
    return purchase


@transaction.atomic
def pack_purchase_refund(*, payment_intent_id: str, dispute_id: str = "") -> PackPurchase | None:
    """Take a refunded (or, with `dispute_id`, disputed) pack's credits back, once: as many as
    the balance holds, recording the rest as the shortfall. None when the payment was not a
    pack's."""
    purchase = _locked().filter(stripe_payment_intent_id=payment_intent_id).first()
    if purchase is None or purchase.refunded_at is not None:
        if purchase is not None and purchase.reinstated_at is not None and not dispute_id:
            # One reversal per payment (the ledger's key): a refund after a won dispute gave the
            # pack back takes nothing automatically.
            logger.warning("refund of a pack whose dispute was won: no credits taken back, staff adjust",
                           extra={"user_id": str(purchase.user_id), "purchase_id": str(purchase.pk)})
        return purchase
    cause = f"dispute {dispute_id} of" if dispute_id else "refund of"
    entry, _ = credit_purchase_reverse(user=purchase.user, amount=purchase.credits, payment_key=purchase.refund_key,
                                       description=f"{cause} credit pack {purchase.pack_id}")
    taken = -entry.amount if entry is not None else 0
    purchase.refund_shortfall = purchase.credits - taken
    purchase.refunded_at = timezone.now()
    purchase.dispute_id = dispute_id
    purchase.save(update_fields=["refund_shortfall", "refunded_at", "dispute_id"])
    if purchase.refund_shortfall:
        logger.warning("pack refund: %d of %d credits had been spent and could not be taken back",
                       purchase.refund_shortfall, purchase.credits,
                       extra={"user_id": str(purchase.user_id), "purchase_id": str(purchase.pk)})
    return purchase


@transaction.atomic
def pack_purchase_reinstate(*, payment_intent_id: str, dispute_id: str) -> PackPurchase | None:
    """A won dispute: give back what it took from the pack, once. Nothing when the pack was not
    taken back by this dispute (a refund took it, or the dispute's opening was never processed,
    so nothing was taken). None when the payment was not a pack's."""
    purchase = _locked().filter(stripe_payment_intent_id=payment_intent_id).first()
    if purchase is None or purchase.reinstated_at is not None or not dispute_id or purchase.dispute_id != dispute_id:
        return purchase
    taken = purchase.credits_taken_back
    if taken:
        credit_purchase_grant(user=purchase.user, amount=taken, payment_key=purchase.reinstate_key,
                              description=f"credit pack {purchase.pack_id} given back: dispute {dispute_id} won")
    purchase.reinstated_at = timezone.now()
    purchase.save(update_fields=["reinstated_at"])
    return purchase

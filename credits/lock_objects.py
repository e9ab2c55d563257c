"""Row locks (money moves only under a row lock or a guarded UPDATE), in one place and one order.

The credit services do not lock with these: each balance change is one guarded UPDATE that
row-locks the account itself and writes its ledger row in the same statement (services/ledger.py).
These querysets are for code that must hold accounts stable across several statements in one
transaction, such as reading balances to act on them. Several accounts are always locked in
primary-key order, so two transactions can never hold one each while waiting for the other's.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from django.db.models import QuerySet

from credits.models import CreditAccount, Subscription


def credit_account_qs_for_update() -> QuerySet[CreditAccount]:
    # `of=("self",)`: lock the account row only, never a joined row.
    return CreditAccount.objects.select_for_update(of=("self",))


def credit_account_lock(*, account_id: uuid.UUID) -> CreditAccount:
    """The account, locked until the end of the current transaction."""
    return credit_account_qs_for_update().get(pk=account_id)


def credit_accounts_lock(*, account_ids: Iterable[uuid.UUID]) -> list[CreditAccount]:
    """Several accounts, locked in pk order (the one order every caller uses)."""
    return list(credit_account_qs_for_update().filter(pk__in=list(account_ids)).order_by("pk"))


def subscription_lock(*, subscription_id: uuid.UUID) -> Subscription:
    """Serializes two beat processes rolling the same subscription's period forward."""
    return Subscription.objects.select_for_update(of=("self",)).get(pk=subscription_id)

from __future__ import annotations

from auteur.users.models import User
from credits.models import CreditTransaction
from credits.selectors import credit_balance_get


def snapshot(user: User) -> tuple[int, int]:
    """(balance, number of ledger entries): equal before and after means nothing moved."""
    return credit_balance_get(user=user), CreditTransaction.objects.filter(user=user).count()

"""Credits bought with money: a pack's `purchase` entry, and its `purchase_reversal` when refunded.

Both are keyed by the payment (`idempotency_key`, unique ledger-wide for each of the two types),
so a redelivered payment or refund moves credits once whatever the race, as the ledger's other
exactly-once rules do (services/ledger.py). A reversal takes back what it can: the pack's credits
or the whole balance when less is left (the balance never goes below 0); the caller records the
rest as the refund's shortfall.
"""

from __future__ import annotations

import uuid

from django.db import IntegrityError, connection, transaction

from auteur.users.models import User
from credits.errors import IdempotencyConflict
from credits.models import CreditTransaction, TransactionType
from credits.selectors import credit_transaction_get_for_payment
from credits.services.ledger import _POST_COLUMNS, _must, _post, _require_positive, _require_text


def _same_payment(existing: CreditTransaction, *, user: User) -> CreditTransaction:
    if existing.user_id != user.pk:
        raise IdempotencyConflict("This payment was already credited to another account.",
                                  details={"transaction_id": str(existing.pk)})
    return existing


def credit_purchase_grant(
    *, user: User, amount: int, payment_key: str, description: str,
) -> tuple[CreditTransaction, bool]:
    """Credit a paid pack once per payment: its entry, and whether this call made it."""
    _require_positive(amount)
    payment_key = _require_text(payment_key, name="payment_key")
    existing = credit_transaction_get_for_payment(idempotency_key=payment_key, type=TransactionType.PURCHASE)
    if existing is not None:
        return _same_payment(existing, user=user), False
    try:
        with transaction.atomic():
            entry = _post(user=user, amount=amount, type=TransactionType.PURCHASE, description=description,
                          idempotency_key=payment_key)
            return _must(entry), True
    except IntegrityError:
        # The same payment was credited by a concurrent call that committed first.
        existing = credit_transaction_get_for_payment(idempotency_key=payment_key, type=TransactionType.PURCHASE)
        if existing is None:
            raise
        return _same_payment(existing, user=user), False


# Like services/ledger.py's one statement, but the amount depends on the balance: the account
# row is locked (re-read at its latest committed version when another transaction held it) and
# LEAST(wanted, balance) is taken in the same statement, with its ledger row.
_REVERSE_SQL = """
WITH locked AS (
    SELECT id, LEAST(%(wanted)s, balance) AS take FROM credit_accounts WHERE user_id = %(user_id)s FOR UPDATE
), moved AS (
    UPDATE credit_accounts AS account SET balance = account.balance - locked.take, updated_at = now()
    FROM locked WHERE account.id = locked.id AND locked.take > 0
    RETURNING account.id, account.balance, locked.take
)
INSERT INTO credit_transactions
    (id, account_id, user_id, amount, balance_after, type, description, job_id, idempotency_key,
     created_by_id, member_id, created_at)
SELECT %(id)s, moved.id, %(user_id)s, -moved.take, moved.balance, %(type)s, %(description)s, NULL,
       %(idempotency_key)s, NULL, NULL, clock_timestamp()
FROM moved
RETURNING id, account_id, user_id, amount, balance_after, type, description, job_id, job_type, idempotency_key,
    created_by_id, member_id, created_at
"""


def _reverse_once(*, user: User, wanted: int, payment_key: str, description: str) -> CreditTransaction | None:
    params: dict[str, uuid.UUID | int | str | None] = {
        "id": uuid.uuid4(), "user_id": user.pk, "wanted": wanted, "type": TransactionType.PURCHASE_REVERSAL,
        "description": description, "idempotency_key": payment_key,
    }
    with connection.cursor() as cursor:
        cursor.execute(_REVERSE_SQL, params)
        row = cursor.fetchone()
    return None if row is None else CreditTransaction.from_db(connection.alias, _POST_COLUMNS, row)


def credit_purchase_reverse(
    *, user: User, amount: int, payment_key: str, description: str,
) -> tuple[CreditTransaction | None, bool]:
    """Take back up to `amount` credits of a refunded payment, once: its entry (None when the
    balance was 0, so nothing could be taken) and whether this call made it. The shortfall is
    `amount` less what the entry took."""
    _require_positive(amount)
    payment_key = _require_text(payment_key, name="payment_key")
    existing = credit_transaction_get_for_payment(idempotency_key=payment_key,
                                                  type=TransactionType.PURCHASE_REVERSAL)
    if existing is not None:
        return _same_payment(existing, user=user), False
    try:
        with transaction.atomic():
            entry = _reverse_once(user=user, wanted=amount, payment_key=payment_key, description=description)
            return entry, entry is not None
    except IntegrityError:
        existing = credit_transaction_get_for_payment(idempotency_key=payment_key,
                                                      type=TransactionType.PURCHASE_REVERSAL)
        if existing is None:
            raise
        return _same_payment(existing, user=user), False

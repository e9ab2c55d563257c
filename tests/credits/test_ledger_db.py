"""The ledger's rules hold in the database itself, for any client that bypasses the services."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from django.db import DatabaseError, IntegrityError, connection, transaction

from credits.models import CreditAccount, CreditTransaction, LedgerIsAppendOnly, TransactionType
from credits.services.ledger import credit_deduct_for_job, credit_grant

pytestmark = pytest.mark.django_db


def raw(sql: str, params: list[Any] | None = None) -> None:
    # In a savepoint, so the test's transaction survives the expected error.
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql, params or [])


@pytest.fixture
def entry(funded_user) -> CreditTransaction:
    user = funded_user(100)
    return credit_deduct_for_job(user=user, job_id=uuid.uuid4(), amount=10, description="x")


def test_database_refuses_update_of_a_ledger_row(entry):
    with pytest.raises(DatabaseError, match="append-only"):
        raw("UPDATE credit_transactions SET amount = -1 WHERE id = %s", [entry.pk])
    entry.refresh_from_db()
    assert entry.amount == -10


def test_database_refuses_delete_of_a_ledger_row(entry):
    with pytest.raises(DatabaseError, match="append-only"):
        raw("DELETE FROM credit_transactions WHERE id = %s", [entry.pk])
    assert CreditTransaction.objects.filter(pk=entry.pk).exists()


def test_orm_refuses_to_save_delete_or_bulk_change_a_ledger_row(entry):
    entry.amount = -1
    with pytest.raises(LedgerIsAppendOnly):
        entry.save()
    with pytest.raises(LedgerIsAppendOnly):
        entry.delete()
    with pytest.raises(LedgerIsAppendOnly):
        CreditTransaction.objects.filter(pk=entry.pk).update(amount=-1)
    with pytest.raises(LedgerIsAppendOnly):
        CreditTransaction.objects.filter(pk=entry.pk).delete()
    assert CreditTransaction.objects.get(pk=entry.pk).amount == -10


def test_database_refuses_a_negative_balance(entry):
    with pytest.raises(IntegrityError):
        raw("UPDATE credit_accounts SET balance = -1 WHERE id = %s", [entry.account_id])
    assert CreditAccount.objects.get(pk=entry.account_id).balance == 90


def insert(entry: CreditTransaction, **overrides: object) -> None:
    values: dict[str, object] = {
        "id": uuid.uuid4(), "account_id": entry.account_id, "user_id": entry.user_id, "amount": 5,
        "balance_after": 95, "type": "bonus", "description": "", "job_id": None, "idempotency_key": None,
    }
    values.update(overrides)
    columns = ", ".join(values)
    placeholders = ", ".join(["%s"] * len(values))
    raw(f"INSERT INTO credit_transactions ({columns}) VALUES ({placeholders})", list(values.values()))


def test_database_refuses_a_second_usage_for_a_job(entry):
    with pytest.raises(IntegrityError):
        insert(entry, type="usage", amount=-5, balance_after=85, job_id=entry.job_id)


def test_database_refuses_a_second_refund_for_a_job(entry):
    insert(entry, type="refund", amount=10, balance_after=100, job_id=entry.job_id)
    with pytest.raises(IntegrityError):
        insert(entry, type="refund", amount=10, balance_after=110, job_id=entry.job_id)


@pytest.mark.parametrize(
    "overrides",
    [
        {"type": "usage", "amount": 5, "job_id": uuid.uuid4()},  # a usage that adds
        {"type": "refund", "amount": -5, "job_id": uuid.uuid4()},  # a refund that takes
        {"type": "bonus", "amount": -5},
        {"type": "subscription", "amount": -5},
        {"type": "adjustment", "amount": 0},
        {"type": "usage", "amount": -5, "job_id": None},  # a charge for no job
        {"type": "refund", "amount": 5, "job_id": None},
        {"type": "bonus", "amount": 5, "balance_after": -1},
        {"type": "gift", "amount": 5},
    ],
)
def test_database_refuses_entries_that_break_the_rules(entry, overrides):
    with pytest.raises(IntegrityError):
        insert(entry, **overrides)


def test_database_refuses_an_idempotency_key_twice_on_one_account(funded_user):
    user = funded_user(0)
    first = credit_grant(user=user, amount=5, description="x", idempotency_key="k")
    with pytest.raises(IntegrityError):
        insert(first, idempotency_key="k", balance_after=10)
    insert(first, idempotency_key=None, balance_after=10)  # NULL keys never collide
    insert(first, idempotency_key=None, balance_after=15)


def test_the_same_key_on_two_accounts_is_allowed(funded_user):
    a, b = funded_user(0), funded_user(0)
    credit_grant(user=a, amount=5, description="x", idempotency_key="promo")
    assert credit_grant(user=b, amount=5, description="x", idempotency_key="promo").balance_after == 5


def test_deleting_a_user_with_ledger_history_is_refused(entry):
    from django.db.models import ProtectedError

    with pytest.raises(ProtectedError):
        entry.user.delete()
    assert CreditTransaction.objects.filter(pk=entry.pk).exists()


def test_deleting_a_user_without_ledger_history_is_allowed(user):
    from credits.services.ledger import credit_account_get_or_create

    credit_account_get_or_create(user=user)
    user.delete()
    assert not CreditAccount.objects.filter(user_id=user.pk).exists()


def test_entries_get_increasing_database_timestamps_inside_one_transaction(funded_user):
    user = funded_user(0)
    entries = [credit_grant(user=user, amount=1, description=str(i)) for i in range(5)]
    stamps = [e.created_at for e in entries]
    assert stamps == sorted(stamps) and len(set(stamps)) == 5
    assert all(e.type == TransactionType.BONUS for e in entries)


def test_an_entry_created_through_the_orm_gets_its_timestamp_from_the_database(entry):
    later = CreditTransaction.objects.create(
        account_id=entry.account_id, user_id=entry.user_id, amount=5, balance_after=95, type=TransactionType.BONUS,
    )
    assert later.created_at is not None and later.created_at > entry.created_at

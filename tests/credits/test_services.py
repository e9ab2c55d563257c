from __future__ import annotations

import uuid

import pytest
from django.db import transaction

from auteur.core.errors import ApplicationError
from auteur.users.workspace_context import show_balances
from credits.errors import IdempotencyConflict, InsufficientCredits
from credits.models import CreditAccount, CreditTransaction, TransactionType
from credits.selectors import credit_balance_get, ledger_check
from credits.services.ledger import (
    credit_account_get_or_create,
    credit_adjust,
    credit_deduct_for_job,
    credit_grant,
    credit_refund_job,
)
from tests.credits.helpers import snapshot

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _read_by_the_owner() -> None:
    """The ledger's refusals as the account's owner reads them: with the balance (a request sets
    this from its seat; outside one it is hidden)."""
    show_balances(True)


# ----------------------------------------------------------------------------- accounts and grants


def test_account_is_created_once_per_user(user):
    first = credit_account_get_or_create(user=user)
    assert credit_account_get_or_create(user=user).pk == first.pk
    assert first.balance == 0
    assert CreditAccount.objects.filter(user=user).count() == 1


def test_balance_of_a_user_without_account_is_zero_and_creates_nothing(user):
    assert credit_balance_get(user=user) == 0
    assert not CreditAccount.objects.filter(user=user).exists()


def test_grant_adds_credits_and_writes_one_entry(user):
    entry = credit_grant(user=user, amount=120, description="welcome")
    assert (entry.amount, entry.balance_after, entry.type) == (120, 120, TransactionType.BONUS)
    assert entry.user_id == user.pk and entry.created_at is not None
    assert credit_balance_get(user=user) == 120
    assert ledger_check() == []


def test_grant_with_the_same_idempotency_key_twice_grants_once(user):
    first = credit_grant(user=user, amount=50, description="promo", idempotency_key="promo-1")
    second = credit_grant(user=user, amount=50, description="promo", idempotency_key="promo-1")
    assert second.pk == first.pk
    assert snapshot(user) == (50, 1)


def test_reusing_a_key_for_a_different_amount_is_refused_and_moves_nothing(user):
    credit_grant(user=user, amount=50, description="promo", idempotency_key="promo-1")
    with pytest.raises(IdempotencyConflict):
        credit_grant(user=user, amount=60, description="promo", idempotency_key="promo-1")
    assert snapshot(user) == (50, 1)


@pytest.mark.parametrize("amount", [0, -5, True])
def test_grant_of_a_non_positive_amount_is_refused_and_moves_nothing(user, amount):
    with pytest.raises(ApplicationError) as exc:
        credit_grant(user=user, amount=amount, description="x")
    assert exc.value.code == "invalid_amount"
    assert snapshot(user) == (0, 0)


def test_grant_cannot_be_typed_as_usage(user):
    with pytest.raises(ApplicationError) as exc:
        credit_grant(user=user, amount=5, type=TransactionType.USAGE, description="x")
    assert exc.value.code == "invalid_type"
    assert snapshot(user) == (0, 0)


# ----------------------------------------------------------------------------- deductions


def test_deduct_charges_the_job_and_records_it(funded_user):
    user = funded_user(100)
    job_id = uuid.uuid4()
    entry = credit_deduct_for_job(user=user, job_id=job_id, amount=30, description="tts")
    assert (entry.amount, entry.balance_after, entry.type, entry.job_id) == (-30, 70, "usage", job_id)
    assert credit_balance_get(user=user) == 70
    assert ledger_check() == []


def test_deduct_more_than_the_balance_raises_402_and_moves_nothing(funded_user):
    user = funded_user(10)
    before = snapshot(user)
    with pytest.raises(InsufficientCredits) as exc:
        credit_deduct_for_job(user=user, job_id=uuid.uuid4(), amount=11, description="lip sync")
    assert exc.value.status_code == 402
    assert exc.value.code == "insufficient_credits"
    assert exc.value.details == {"balance": 10, "cost": 11}
    assert snapshot(user) == before


def test_deduct_for_a_user_without_account_is_insufficient(user):
    with pytest.raises(InsufficientCredits) as exc:
        credit_deduct_for_job(user=user, job_id=uuid.uuid4(), amount=1, description="x")
    assert exc.value.details == {"balance": 0, "cost": 1}
    assert snapshot(user) == (0, 0)


def test_deduct_exactly_the_balance_leaves_zero(funded_user):
    user = funded_user(25)
    credit_deduct_for_job(user=user, job_id=uuid.uuid4(), amount=25, description="x")
    assert credit_balance_get(user=user) == 0


def test_second_deduct_for_the_same_job_returns_the_first_and_moves_nothing(funded_user):
    user = funded_user(100)
    job_id = uuid.uuid4()
    first = credit_deduct_for_job(user=user, job_id=job_id, amount=40, description="x")
    before = snapshot(user)
    again = credit_deduct_for_job(user=user, job_id=job_id, amount=40, description="x")
    assert again.pk == first.pk
    assert snapshot(user) == before == (60, 2)


def test_repeated_deduct_is_answered_even_when_the_balance_is_now_short(funded_user):
    user = funded_user(40)
    job_id = uuid.uuid4()
    first = credit_deduct_for_job(user=user, job_id=job_id, amount=40, description="x")
    assert credit_deduct_for_job(user=user, job_id=job_id, amount=40, description="x").pk == first.pk
    assert credit_balance_get(user=user) == 0


def test_same_job_charged_to_another_user_is_a_conflict(funded_user):
    alice, bob = funded_user(100), funded_user(100)
    job_id = uuid.uuid4()
    credit_deduct_for_job(user=alice, job_id=job_id, amount=10, description="x")
    with pytest.raises(IdempotencyConflict):
        credit_deduct_for_job(user=bob, job_id=job_id, amount=10, description="x")
    assert snapshot(bob) == (100, 1)


@pytest.mark.parametrize("amount", [0, -10])
def test_deduct_of_a_non_positive_amount_is_refused(funded_user, amount):
    user = funded_user(100)
    with pytest.raises(ApplicationError) as exc:
        credit_deduct_for_job(user=user, job_id=uuid.uuid4(), amount=amount, description="x")
    assert exc.value.code == "invalid_amount"
    assert snapshot(user) == (100, 1)


def test_deduct_inside_a_callers_transaction_rolls_back_with_it(funded_user):
    """The jobs app deducts in the transaction that creates the Job: a failure undoes both."""
    user = funded_user(100)

    class JobInsertFailed(Exception):
        pass

    with pytest.raises(JobInsertFailed), transaction.atomic():
        credit_deduct_for_job(user=user, job_id=uuid.uuid4(), amount=30, description="x")
        raise JobInsertFailed
    assert snapshot(user) == (100, 1)


def test_a_refused_deduct_leaves_the_callers_transaction_usable(funded_user):
    user = funded_user(5)
    with transaction.atomic():
        with pytest.raises(InsufficientCredits):
            credit_deduct_for_job(user=user, job_id=uuid.uuid4(), amount=6, description="x")
        entry = credit_deduct_for_job(user=user, job_id=uuid.uuid4(), amount=5, description="x")
    assert entry.balance_after == 0


def test_a_new_jobs_charge_takes_no_savepoint_and_is_refused_as_any(funded_user, django_assert_num_queries):
    """A job inserted in the caller's open transaction has no charge yet: it is charged in one
    statement (no savepoint around it), refused as any charge is, and only inside that transaction."""
    user = funded_user(10)
    with transaction.atomic():
        # Refused first (the session prepares the charge's statement here, once: auteur/core/postgres/plans.py).
        with pytest.raises(InsufficientCredits) as exc:
            credit_deduct_for_job(user=user, job_id=uuid.uuid4(), amount=11, description="x", new_job=True)
        assert exc.value.details == {"balance": 10, "cost": 11}
        with django_assert_num_queries(1):
            entry = credit_deduct_for_job(user=user, job_id=uuid.uuid4(), amount=4, description="x", new_job=True)
        assert entry.balance_after == 6
        with pytest.raises(InsufficientCredits) as exc:
            credit_deduct_for_job(user=user, job_id=uuid.uuid4(), amount=7, description="x", new_job=True)
        assert exc.value.details == {"balance": 6, "cost": 7}
    assert snapshot(user) == (6, 2) and ledger_check() == []


@pytest.mark.django_db(transaction=True)
def test_a_new_jobs_charge_outside_a_transaction_is_refused(funded_user):
    user = funded_user(10)
    with pytest.raises(AssertionError, match="transaction"):
        credit_deduct_for_job(user=user, job_id=uuid.uuid4(), amount=1, description="x", new_job=True)
    assert snapshot(user) == (10, 1)


# ----------------------------------------------------------------------------- refunds


def test_refund_gives_back_exactly_the_charge_once(funded_user):
    user = funded_user(100)
    job_id = uuid.uuid4()
    credit_deduct_for_job(user=user, job_id=job_id, amount=35, description="x")
    refund = credit_refund_job(job_id=job_id, reason="inference failed")
    assert (refund.amount, refund.balance_after, refund.type, refund.job_id) == (35, 100, "refund", job_id)
    assert refund.description == "inference failed"
    again = credit_refund_job(job_id=job_id, reason="redelivered failure")
    assert again.pk == refund.pk
    assert snapshot(user) == (100, 3)
    assert ledger_check() == []


def test_a_partial_refund_gives_back_its_amount_once_and_no_later_refund_adds_to_it(funded_user):
    user = funded_user(100)
    job_id = uuid.uuid4()
    credit_deduct_for_job(user=user, job_id=job_id, amount=10, description="x")
    partial = credit_refund_job(job_id=job_id, reason="canceled after 40% of the work", amount=6)
    assert (partial.amount, partial.balance_after) == (6, 96)
    # A failure refund arriving afterwards (a racing worker) finds the refund and moves nothing.
    assert credit_refund_job(job_id=job_id, reason="failed").pk == partial.pk
    assert snapshot(user) == (96, 3)
    assert ledger_check() == []


@pytest.mark.parametrize("amount", [0, -1, 11])
def test_a_refund_outside_one_to_the_charge_is_refused_and_moves_nothing(funded_user, amount):
    user = funded_user(100)
    job_id = uuid.uuid4()
    credit_deduct_for_job(user=user, job_id=job_id, amount=10, description="x")
    with pytest.raises(ApplicationError) as exc:
        credit_refund_job(job_id=job_id, reason="x", amount=amount)
    assert exc.value.code == "invalid_amount"
    assert snapshot(user) == (90, 2)


def test_refund_of_a_job_never_charged_is_refused_and_moves_nothing(funded_user):
    user = funded_user(100)
    with pytest.raises(ApplicationError) as exc:
        credit_refund_job(job_id=uuid.uuid4(), reason="x")
    assert exc.value.code == "job_not_charged"
    assert snapshot(user) == (100, 1)


def test_refund_needs_a_reason(funded_user):
    user = funded_user(100)
    job_id = uuid.uuid4()
    credit_deduct_for_job(user=user, job_id=job_id, amount=10, description="x")
    with pytest.raises(ApplicationError) as exc:
        credit_refund_job(job_id=job_id, reason="  ")
    assert exc.value.code == "reason_required"
    assert snapshot(user) == (90, 2)


def test_refund_after_other_spending_restores_the_charge_only(funded_user):
    user = funded_user(100)
    job_a, job_b = uuid.uuid4(), uuid.uuid4()
    credit_deduct_for_job(user=user, job_id=job_a, amount=60, description="x")
    credit_deduct_for_job(user=user, job_id=job_b, amount=40, description="x")
    assert credit_refund_job(job_id=job_a, reason="failed").balance_after == 60
    assert credit_balance_get(user=user) == 60


# ----------------------------------------------------------------------------- adjustments


def test_staff_adjustment_records_who_and_why(funded_user, staff):
    user = funded_user(10)
    entry = credit_adjust(user=user, amount=-4, reason="duplicate promo", staff_user=staff)
    assert (entry.amount, entry.balance_after, entry.type) == (-4, 6, TransactionType.ADJUSTMENT)
    assert entry.created_by == staff
    assert entry.description == "duplicate promo"
    assert credit_adjust(user=user, amount=5, reason="goodwill", staff_user=staff).balance_after == 11


def test_adjustment_cannot_take_the_balance_below_zero(funded_user, staff):
    user = funded_user(10)
    with pytest.raises(InsufficientCredits) as exc:
        credit_adjust(user=user, amount=-11, reason="x", staff_user=staff)
    assert exc.value.details == {"balance": 10, "cost": 11}
    assert snapshot(user) == (10, 1)


def test_adjustment_needs_a_reason(funded_user, staff):
    user = funded_user(10)
    with pytest.raises(ApplicationError) as exc:
        credit_adjust(user=user, amount=3, reason="", staff_user=staff)
    assert exc.value.code == "reason_required"
    assert snapshot(user) == (10, 1)


def test_adjustment_by_a_non_staff_user_is_refused(funded_user, make_user):
    user = funded_user(10)
    with pytest.raises(ApplicationError) as exc:
        credit_adjust(user=user, amount=3, reason="x", staff_user=make_user())
    assert exc.value.status_code == 403
    assert snapshot(user) == (10, 1)


def test_zero_adjustment_is_refused(funded_user, staff):
    user = funded_user(10)
    with pytest.raises(ApplicationError):
        credit_adjust(user=user, amount=0, reason="x", staff_user=staff)
    assert snapshot(user) == (10, 1)


def test_adjustment_with_the_same_key_applies_once(funded_user, staff):
    user = funded_user(10)
    first = credit_adjust(user=user, amount=7, reason="x", staff_user=staff, idempotency_key="form-1")
    assert credit_adjust(user=user, amount=7, reason="x", staff_user=staff, idempotency_key="form-1").pk == first.pk
    assert snapshot(user) == (17, 2)


def test_every_service_leaves_a_consistent_ledger(funded_user, staff):
    user = funded_user(100)
    job_id = uuid.uuid4()
    credit_deduct_for_job(user=user, job_id=job_id, amount=30, description="x")
    credit_adjust(user=user, amount=-20, reason="x", staff_user=staff)
    credit_refund_job(job_id=job_id, reason="x")
    credit_grant(user=user, amount=5, type=TransactionType.SUBSCRIPTION, description="x")
    assert ledger_check() == []
    entries = list(CreditTransaction.objects.filter(user=user).order_by("created_at", "id"))
    assert [e.balance_after for e in entries] == [100, 70, 50, 80, 85]

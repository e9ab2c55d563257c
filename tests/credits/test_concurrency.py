"""Races against the real Postgres: many threads, each on its own connection, released together."""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import pytest
from django.db import connection

from credits.errors import InsufficientCredits
from credits.models import CreditTransaction, TransactionType
from credits.selectors import credit_balance_get, ledger_check
from credits.services.ledger import credit_deduct_for_job, credit_grant, credit_refund_job

pytestmark = pytest.mark.django_db(transaction=True)

T = TypeVar("T")


def race(n: int, work: Callable[[int], T]) -> list[T | BaseException]:
    """Run work(0..n-1) in n threads that start at the same instant; results or exceptions."""
    barrier = threading.Barrier(n)

    def run(i: int) -> T | BaseException:
        try:
            barrier.wait(timeout=30)
            return work(i)
        except BaseException as exc:  # collected and asserted on by the test
            return exc
        finally:
            connection.close()  # each thread has its own connection; leave none open

    with ThreadPoolExecutor(max_workers=n) as pool:
        return list(pool.map(run, range(n)))


def test_fifty_concurrent_deductions_of_ten_from_a_hundred_exactly_ten_succeed(funded_user):
    user = funded_user(100)

    results = race(50, lambda i: credit_deduct_for_job(user=user, job_id=uuid.uuid4(), amount=10,
                                                      description=f"thread {i}"))

    kinds = Counter(type(r).__name__ for r in results)
    assert kinds == {"CreditTransaction": 10, "InsufficientCredits": 40}, [r for r in results if
                                                                           isinstance(r, BaseException)][:3]
    assert all(r.details["cost"] == 10 for r in results if isinstance(r, InsufficientCredits))
    assert credit_balance_get(user=user) == 0
    assert CreditTransaction.objects.filter(user=user, type=TransactionType.USAGE).count() == 10
    assert ledger_check() == []


def test_the_same_refund_requested_twenty_times_at_once_refunds_once(funded_user):
    user = funded_user(100)
    job_id = uuid.uuid4()
    charge = credit_deduct_for_job(user=user, job_id=job_id, amount=30, description="x")

    results = race(20, lambda i: credit_refund_job(job_id=job_id, reason=f"failure seen by worker {i}"))

    errors = [r for r in results if isinstance(r, BaseException)]
    assert errors == []
    assert len({r.pk for r in results if isinstance(r, CreditTransaction)}) == 1
    assert CreditTransaction.objects.filter(job_id=job_id, type=TransactionType.REFUND).count() == 1
    assert credit_balance_get(user=user) == 100 == -charge.amount + charge.balance_after
    assert ledger_check() == []


def test_the_same_job_deducted_twenty_times_at_once_is_charged_once(funded_user):
    user = funded_user(100)
    job_id = uuid.uuid4()

    results = race(20, lambda i: credit_deduct_for_job(user=user, job_id=job_id, amount=60, description="x"))

    assert [r for r in results if isinstance(r, BaseException)] == []
    assert len({r.pk for r in results if isinstance(r, CreditTransaction)}) == 1
    assert credit_balance_get(user=user) == 40
    assert ledger_check() == []


def test_the_same_grant_key_used_by_twenty_threads_grants_once(funded_user):
    user = funded_user(0)

    results = race(20, lambda i: credit_grant(user=user, amount=25, description="x", idempotency_key="once"))

    assert [r for r in results if isinstance(r, BaseException)] == []
    assert credit_balance_get(user=user) == 25
    assert ledger_check() == []


def test_first_use_of_an_account_from_many_threads_creates_one_account(make_user):
    user = make_user()

    results = race(10, lambda i: credit_grant(user=user, amount=1, description=str(i)))

    assert [r for r in results if isinstance(r, BaseException)] == []
    assert credit_balance_get(user=user) == 10
    assert ledger_check() == []


def test_accounts_are_locked_in_primary_key_order(funded_user):
    from django.db import transaction

    from credits.lock_objects import credit_accounts_lock
    from credits.models import CreditAccount

    ids = [CreditAccount.objects.get(user=funded_user(1)).pk for _ in range(5)]
    with transaction.atomic():
        locked = credit_accounts_lock(account_ids=reversed(ids))
    assert [a.pk for a in locked] == sorted(ids)

"""Random sequences of grant/deduct/refund/adjust: the ledger invariants hold after every step."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from django.db.models import Count, Sum
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from auteur.core.errors import ApplicationError
from auteur.users.models import User
from credits.errors import IdempotencyConflict, InsufficientCredits
from credits.models import CreditTransaction
from credits.selectors import credit_balance_get, ledger_check
from credits.services.ledger import credit_adjust, credit_deduct_for_job, credit_grant, credit_refund_job

JOBS = 4
KEYS = (None, None, "promo-a", "promo-b")

operations = st.one_of(
    st.tuples(st.just("grant"), st.integers(1, 80), st.sampled_from(KEYS)),
    st.tuples(st.just("deduct"), st.integers(0, JOBS - 1), st.integers(1, 80)),
    st.tuples(st.just("refund"), st.integers(0, JOBS - 1)),
    st.tuples(st.just("adjust"), st.integers(-80, 80).filter(bool)),
)


class Model:
    """What the ledger should say, computed the obvious way."""

    def __init__(self) -> None:
        self.balance = 0
        self.charged: dict[int, int] = {}
        self.refunded: set[int] = set()
        self.keys: dict[str, int] = {}

    def apply(self, op: tuple[Any, ...], user: User, staff: User, jobs: list[uuid.UUID]) -> None:
        kind = op[0]
        if kind == "grant":
            _, amount, key = op
            if key is not None and key in self.keys:
                if self.keys[key] == amount:
                    credit_grant(user=user, amount=amount, description="p", idempotency_key=key)
                else:
                    with pytest.raises(IdempotencyConflict):
                        credit_grant(user=user, amount=amount, description="p", idempotency_key=key)
                return
            credit_grant(user=user, amount=amount, description="p", idempotency_key=key)
            self.balance += amount
            if key is not None:
                self.keys[key] = amount
        elif kind == "deduct":
            _, job, amount = op
            if job in self.charged:
                if self.charged[job] == amount:
                    credit_deduct_for_job(user=user, job_id=jobs[job], amount=amount, description="p")
                else:
                    with pytest.raises(IdempotencyConflict):
                        credit_deduct_for_job(user=user, job_id=jobs[job], amount=amount, description="p")
            elif amount > self.balance:
                with pytest.raises(InsufficientCredits):
                    credit_deduct_for_job(user=user, job_id=jobs[job], amount=amount, description="p")
            else:
                credit_deduct_for_job(user=user, job_id=jobs[job], amount=amount, description="p")
                self.balance -= amount
                self.charged[job] = amount
        elif kind == "refund":
            _, job = op
            if job not in self.charged:
                with pytest.raises(ApplicationError, match="never charged"):
                    credit_refund_job(job_id=jobs[job], reason="p")
                return
            entry = credit_refund_job(job_id=jobs[job], reason="p")
            assert entry.amount == self.charged[job]
            if job not in self.refunded:
                self.balance += self.charged[job]
                self.refunded.add(job)
        else:
            _, amount = op
            if self.balance + amount < 0:
                with pytest.raises(InsufficientCredits):
                    credit_adjust(user=user, amount=amount, reason="p", staff_user=staff)
            else:
                credit_adjust(user=user, amount=amount, reason="p", staff_user=staff)
                self.balance += amount


def assert_invariants(user: User, model: Model) -> None:
    balance = credit_balance_get(user=user)
    assert balance == model.balance
    assert balance >= 0
    entries = CreditTransaction.objects.filter(user=user)
    assert (entries.aggregate(total=Sum("amount"))["total"] or 0) == balance
    running = 0
    for entry in entries.order_by("created_at", "id"):
        running += entry.amount
        assert entry.balance_after == running >= 0
    per_job = (
        entries.filter(job_id__isnull=False).values("job_id", "type").annotate(n=Count("id")).filter(n__gt=1)
    )
    assert list(per_job) == []


@pytest.mark.django_db
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow])
@given(steps=st.lists(operations, min_size=1, max_size=25))
def test_random_operation_sequences_keep_every_ledger_invariant(steps, make_user):
    # A fresh user per example: examples share the test's transaction.
    user, staff = make_user(), make_user(is_staff=True)
    jobs = [uuid.uuid4() for _ in range(JOBS)]
    model = Model()
    for op in steps:
        model.apply(op, user, staff, jobs)
        assert_invariants(user, model)
    assert ledger_check() == []  # the audit agrees, on every account so far

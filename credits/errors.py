"""Every domain failure of the credits app that callers catch by type, each with its code."""

from __future__ import annotations

from rest_framework import status

from auteur.errors import ApplicationError


class InsufficientCredits(ApplicationError):
    status_code = status.HTTP_402_PAYMENT_REQUIRED
    code = "insufficient_credits"

    def __init__(self, *, balance: int, cost: int) -> None:
        super().__init__(
            f"This needs {cost} credits and the balance is {balance}.",
            details={"balance": balance, "cost": cost},
        )
        self.balance = balance
        self.cost = cost


class IdempotencyConflict(ApplicationError):
    """The key (or job) was already used for a different operation: replaying it would lie."""

    status_code = status.HTTP_409_CONFLICT
    code = "idempotency_conflict"


class PlanRequired(ApplicationError):
    status_code = status.HTTP_403_FORBIDDEN
    code = "plan_required"

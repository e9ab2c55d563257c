"""Every domain failure of the credits app that callers catch by type, each with its code
(auteur/core/errors.py maps codes to HTTP statuses)."""

from __future__ import annotations

from auteur.core.errors import ApplicationError
from auteur.users.workspace_context import balances_shown


class InsufficientCredits(ApplicationError):
    """The balance does not cover the cost. A caller who may not see the workspace's balance (an API
    key without credits:read) is told the cost only: `balance` null."""

    code = "insufficient_credits"

    def __init__(self, *, balance: int, cost: int) -> None:
        shown = balances_shown()
        super().__init__(
            f"This needs {cost} credits and the balance is {balance}." if shown else
            f"This needs {cost} credits and the workspace's balance does not cover it.",
            details={"balance": balance if shown else None, "cost": cost},
        )
        self.balance = balance
        self.cost = cost


class IdempotencyConflict(ApplicationError):
    """The key (or job) was already used for a different operation: replaying it would lie."""

    code = "idempotency_conflict"


class PlanRequired(ApplicationError):
    code = "plan_required"


class PaymentRequired(ApplicationError):
    """The plan's renewal payment failed: its features wait for a successful payment."""

    code = "payment_required"


class SpendCapReached(ApplicationError):
    """The charge would take a spending past its monthly limit (a team member's budget): nothing
    is charged. Details name the cap, its limit, what it has counted this month, the cost, and
    when it starts again."""

    code = "spend_cap_reached"


class OwnBudget(ApplicationError):
    """A member whose budget an owner sets (an admin) set their own (details: action, role)."""

    code = "own_budget"


class BudgetAboveOwn(ApplicationError):
    """An admin held to a budget gave a member more than what remains of their own this month, or
    none (details: monthly_limit asked, remaining)."""

    code = "budget_above_own"

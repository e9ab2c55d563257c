"""Every domain failure of the credits app that callers catch by type, each with its code
(auteur/core/errors.py maps codes to HTTP statuses)."""

from __future__ import annotations

from typing import Any

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
    when it starts again.

    The limit and the spending are the workspace's credit figures: a caller who may not see its
    credits (an API key without credits:read) is told which cap refused and the cost only, the
    figures (and what follows from them: a batch's shortfall and first item beyond) null."""

    code = "spend_cap_reached"
    CREDIT_FIGURES = frozenset({"limit", "monthly_limit", "job_limit", "spent", "remaining", "shortfall", "item"})

    def public(self) -> tuple[str, dict[str, Any]]:
        message, details = super().public()
        if balances_shown():
            return message, details
        hidden = {name: None if name in self.CREDIT_FIGURES else value for name, value in details.items()}
        return (f"This needs {details.get('cost')} credits, more than a spend cap ({details.get('cap')}) allows; "
                "someone who sees the workspace's credits can tell you its limit.", hidden)


class OwnBudget(ApplicationError):
    """A member whose budget an owner sets (an admin) set their own (details: action, role)."""

    code = "own_budget"


class BudgetAboveOwn(ApplicationError):
    """An admin held to a budget gave a member more than what remains of their own this month, or
    none (details: monthly_limit asked, remaining)."""

    code = "budget_above_own"

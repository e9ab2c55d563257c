"""Spend caps: the workspace's monthly cap, set by those who pay for it (`billing.manage`); each API
key's monthly and per-job limits and team members' monthly budgets, set by the workspace's owners
and admins (`budgets.manage`). A key's charges count on the budget of the member who made it too.

A cap is a limit on a counter (credits.models.SpendCap), which only the ledger's statements count
(credits/services/ledger.py): setting one never changes what was spent. A limit below what was
spent this month refuses the next charge; none (null) lifts it. The thresholds a limit's counter
has already reached when it is set are not announced (they were reached before the limit was).

Those who set budgets are held to theirs by an owner (`budgets.manage_admins`): an admin sets no
budget of their own, nor another admin's or an owner's, gives a member a budget of at most what
remains of their own this month (or lowers one), and a seat an admin gives, by invitation or a
change of role, starts with a budget no larger than that. Otherwise an admin held to 10 credits
could make a seat with none, or lift an editor's, and spend through it what they may not.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.db import connection
from django.dispatch import receiver

from auteur.users.errors import PersonalWorkspace
from auteur.users.key_services import api_key_get
from auteur.users.models import Membership, User
from auteur.users.roles import Role, allowed
from auteur.users.selectors import require
from auteur.users.signals import seat_given
from auteur.users.workspace_services import acting, member_seat
from credits.errors import BudgetAboveOwn, OwnBudget
from credits.models import CapScope, reached_bits
from credits.selectors import CapState, MemberBudget, database_month, member_budgets_get, workspace_caps_get
from credits.services.ledger import credit_account_get_or_create

# A counter made here (nothing was charged to it since counters began) starts from the ledger: the
# usage entries of this month (the account's; a key's: those naming it; a member's: those naming
# them or a key they made), less those
# entries' refunds. Its later changes are the ledger statements'; the limits, and the thresholds
# already reached, are all that a counter made earlier takes from here. Run after the account's row
# is locked, as a charge's statement locks it, so no charge counts between the read and the write.
_REACHED = reached_bits("cap.spent")
_LOCK_SQL = "SELECT FROM credit_accounts WHERE user_id = %(account_id)s FOR UPDATE"
# The workspace's own counter counts from now on (CreditAccount.capped): set under the lock above.
_COUNT_WORKSPACE_SQL = "UPDATE credit_accounts SET capped = true WHERE user_id = %(account_id)s AND NOT capped"
_SET_SQL = """
INSERT INTO credit_spend_caps AS cap
    (id, user_id, scope, subject_id, monthly_limit, job_limit, month, spent, updated_at)
SELECT gen_random_uuid(), %(account_id)s, %(scope)s, %(subject_id)s, %(monthly_limit)s, %(job_limit)s, this.month,
       (SELECT COALESCE(SUM(-u.amount - COALESCE(r.amount, 0)), 0)
        FROM credit_transactions u
        LEFT JOIN credit_transactions r ON r.job_id = u.job_id AND r.type = 'refund'
        WHERE u.user_id = %(account_id)s AND u.type = 'usage'
          AND (%(scope)s = 'workspace' OR u.member_id = %(subject_id)s
               OR (%(scope)s = 'member' AND u.member_id IN (SELECT k.id FROM api_keys k WHERE
                                                            k.created_by_id = %(subject_id)s
                                                            AND k.user_id = %(account_id)s)))
          AND u.created_at >= this.month::timestamp AT TIME ZONE 'UTC'),
       now()
FROM (SELECT date_trunc('month', clock_timestamp() AT TIME ZONE 'UTC')::date AS month) this
ON CONFLICT ON CONSTRAINT spend_cap_one_per_subject DO UPDATE
    SET monthly_limit = EXCLUDED.monthly_limit, job_limit = EXCLUDED.job_limit, updated_at = EXCLUDED.updated_at
"""
_NOTIFIED_SQL = f"""
UPDATE credit_spend_caps cap
SET notified = CASE WHEN month = date_trunc('month', clock_timestamp() AT TIME ZONE 'UTC')::date
                    THEN {_REACHED} ELSE 0 END
WHERE user_id = %(account_id)s AND scope = %(scope)s AND subject_id = %(subject_id)s
"""  # noqa: S608 - constant fragments only


def member_budget_set(*, membership: Membership, user_id: uuid.UUID | str, monthly_limit: int | None) -> MemberBudget:
    """Set (None: lift) a member's monthly budget in the member's team workspace. Only an owner
    sets an owner's or an admin's (an admin's own: 403 `own_budget`); an admin gives at most what
    remains of their own budget (403 `budget_above_own`); a personal workspace has none (409
    `personal_workspace`)."""
    with acting(membership, "budgets.manage") as actor:
        if actor.workspace.personal:
            raise PersonalWorkspace("A personal workspace has no members' budgets: its owner spends its credits.")
        seat = member_seat(actor=actor, user_id=user_id)
        if not allowed(actor.role, "budgets.manage_admins"):
            if seat.user_id == actor.user_id:
                raise OwnBudget(f"A workspace's {actor.role} may not set their own monthly budget: an owner sets it.",
                                details={"action": "budgets.manage_admins", "role": actor.role})
            if seat.role in (Role.OWNER, Role.ADMIN):
                require(actor, "budgets.manage_admins")
            _lock_account(actor.workspace_id)
            remaining = _remaining(actor)
            now = _budget(actor.workspace_id, seat.user_id).monthly_limit
            lowers = monthly_limit is not None and now is not None and monthly_limit <= now
            if remaining is not None and not lowers and (monthly_limit is None or monthly_limit > remaining):
                raise BudgetAboveOwn(
                    f"You may give a member a monthly budget of at most what remains of your own this month: "
                    f"{remaining} credits.", details={"monthly_limit": monthly_limit, "remaining": remaining})
        _cap_set(actor.workspace_id, CapScope.MEMBER, seat.user_id, monthly_limit)
        return _budget(actor.workspace_id, seat.user_id)


@receiver(seat_given, dispatch_uid="credits.bound_given_seat")
def _bound_given_seat(sender: object, *, giver: Membership, seat: Membership, **kwargs: Any) -> None:
    """A seat given by a member held to a budget starts with a budget no larger than what remains
    of the giver's own this month (its own, if lower, stays)."""
    if allowed(giver.role, "budgets.manage_admins") or seat.user_id == giver.user_id:
        return
    _lock_account(seat.workspace_id)
    remaining = _remaining(giver)
    now = _budget(seat.workspace_id, seat.user_id).monthly_limit
    if remaining is not None and (now is None or now > remaining):
        _cap_set(seat.workspace_id, CapScope.MEMBER, seat.user_id, remaining)


def _budget(account_id: uuid.UUID, member_id: uuid.UUID) -> MemberBudget:
    return member_budgets_get(account_id=account_id, member_ids=[member_id], month=database_month())[member_id]


def _remaining(member: Membership) -> int | None:
    """After the account's lock: what remains of the member's budget this month (None: no budget)."""
    budget = _budget(member.workspace_id, member.user_id)
    return None if budget.monthly_limit is None else max(0, budget.monthly_limit - budget.spent)


def _lock_account(account_id: uuid.UUID) -> None:
    """The account's row lock, which every charge takes: no charge counts on a counter read after it."""
    with connection.cursor() as cursor:
        cursor.execute(_LOCK_SQL, {"account_id": account_id})


def _cap_set(account_id: uuid.UUID, scope: str, subject_id: uuid.UUID, monthly_limit: int | None,
             job_limit: int | None = None) -> None:
    """Inside a transaction: set a counter's limits (see the module's notes)."""
    params: dict[str, Any] = {"account_id": account_id, "scope": scope, "subject_id": subject_id,
                              "monthly_limit": monthly_limit, "job_limit": job_limit}
    with connection.cursor() as cursor:
        cursor.execute(_LOCK_SQL, params)
        if scope == CapScope.WORKSPACE:
            cursor.execute(_COUNT_WORKSPACE_SQL, params)
        cursor.execute(_SET_SQL, params)
        cursor.execute(_NOTIFIED_SQL, params)


def workspace_cap_set(*, membership: Membership, monthly_limit: int | None) -> CapState:
    """Set (None: lift) the workspace's monthly spend cap: every charge to its credits, whoever
    makes it, counts against it. Those who pay for the workspace set it (`billing.manage`: owners and
    the billing role), so that no admin lifts the cap on the money they spend."""
    with acting(membership, "billing.manage") as actor:
        # The account's row is what the cap's counting is tied to: one without credits yet gets it.
        credit_account_get_or_create(user=User.objects.get(pk=actor.workspace_id))
        _cap_set(actor.workspace_id, CapScope.WORKSPACE, actor.workspace_id, monthly_limit)
    return workspace_caps_get(membership=membership)[0]


def key_cap_set(*, membership: Membership, key_id: uuid.UUID | str, monthly_limit: int | None,
                job_limit: int | None) -> CapState:
    """Set (None: lift) an API key's monthly spend cap and the most one of its jobs may cost; 404
    `key_not_found` for a key not of the workspace."""
    with acting(membership, "budgets.manage") as actor:
        key = api_key_get(membership=actor, key_id=key_id)
        _cap_set(actor.workspace_id, CapScope.KEY, key.pk, monthly_limit, job_limit)
    return next(cap for cap in workspace_caps_get(membership=membership) if cap.subject_id == key.pk)

"""Team members' monthly budgets: how much of the workspace's credits each may spend per month.

A budget is a limit on the member's counter (credits.models.SpendCap), which only the ledger's
statements count (credits/services/ledger.py): setting one never changes what was spent. A limit
below what the member spent this month refuses their next charge; none (null) lifts it.
"""

from __future__ import annotations

import uuid

from django.db import connection

from auteur.users.errors import PersonalWorkspace
from auteur.users.models import Membership
from auteur.users.roles import Role
from auteur.users.selectors import require
from auteur.users.workspace_services import acting, member_seat
from credits.selectors import MemberBudget, member_budgets_get

# A counter made here (the member has not spent since counters began) starts from the ledger: the
# usage entries of this month by the member, less those entries' refunds. Its later changes are
# the ledger statements'; the limit is all that a counter made earlier takes from here.
_SET_SQL = """
INSERT INTO credit_spend_caps AS cap (id, user_id, scope, subject_id, monthly_limit, month, spent, updated_at)
SELECT gen_random_uuid(), %(account_id)s, 'member', %(member_id)s, %(monthly_limit)s, this.month,
       (SELECT COALESCE(SUM(-u.amount - COALESCE(r.amount, 0)), 0)
        FROM credit_transactions u
        LEFT JOIN credit_transactions r ON r.job_id = u.job_id AND r.type = 'refund'
        WHERE u.user_id = %(account_id)s AND u.member_id = %(member_id)s AND u.type = 'usage'
          AND u.created_at >= this.month::timestamp AT TIME ZONE 'UTC'),
       now()
FROM (SELECT date_trunc('month', now() AT TIME ZONE 'UTC')::date AS month) this
ON CONFLICT ON CONSTRAINT spend_cap_one_per_subject DO UPDATE
    SET monthly_limit = EXCLUDED.monthly_limit, updated_at = EXCLUDED.updated_at
"""


def member_budget_set(*, membership: Membership, user_id: uuid.UUID | str, monthly_limit: int | None) -> MemberBudget:
    """Set (None: lift) a member's monthly budget in the member's team workspace. Only an owner
    sets an owner's or an admin's; a personal workspace has none (409 `personal_workspace`)."""
    with acting(membership, "budgets.manage") as actor:
        if actor.workspace.personal:
            raise PersonalWorkspace("A personal workspace has no members' budgets: its owner spends its credits.")
        seat = member_seat(actor=actor, user_id=user_id)
        if seat.role in (Role.OWNER, Role.ADMIN):
            # Those who set budgets are held to theirs by an owner: an admin sets no admin's budget,
            # their own included.
            require(actor, "members.manage_owners")
        with connection.cursor() as cursor:
            cursor.execute(_SET_SQL, {"account_id": actor.workspace_id, "member_id": seat.user_id,
                                      "monthly_limit": monthly_limit})
        return member_budgets_get(account_id=actor.workspace_id, member_ids=[seat.user_id])[seat.user_id]

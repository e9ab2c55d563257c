"""Reads of balances, ledgers and plans, each scoped by its owner; and the ledger audit."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time

from django.db import connection
from django.db.models import F, OuterRef, Q, QuerySet, Subquery, Sum, Value, Window
from django.db.models.functions import Coalesce, Lag
from django.utils import timezone

from auteur.core import rls
from auteur.core.prepared import PreparedRead
from auteur.users.errors import PersonalWorkspace
from auteur.users.models import ApiKey, Membership, User
from auteur.users.roles import allowed
from auteur.users.selectors import member_list, require
from credits.errors import SpendCapReached
from credits.models import (
    CapScope,
    CreditAccount,
    CreditTransaction,
    SpendCap,
    Subscription,
    SubscriptionStatus,
    TransactionType,
)

# Every submission checks it: built once per process (auteur.core.prepared).
_BALANCE = PreparedRead(
    lambda user_id: CreditAccount.objects.filter(user_id=user_id).values("balance", "capped")[:1],
    user_id=uuid.UUID(int=1))


def credit_balance_get(*, user: User) -> int:
    """The user's balance; 0 for a user who never had credits (no account is created by a read)."""
    return credit_balance_state(user=user)[0]


def credit_balance_state(*, user: User) -> tuple[int, bool]:
    """The user's balance, and whether their workspace's own spend cap counts (CreditAccount.capped):
    one read."""
    row = _BALANCE.first(user_id=user.pk)
    return (row["balance"], row["capped"]) if row else (0, False)


def may_be_capped(*, user: User, member_id: uuid.UUID | None, capped: bool) -> bool:
    """Whether a charge to the account by `member_id` counts on any spend cap's counter: the
    workspace's own once capped, a team member's, an API key's (and its maker's)."""
    return capped or user.is_team or (member_id is not None and member_id != user.pk)


def month_of(moment: datetime) -> date:
    """The first day of the month (UTC) a moment is in: the month a charge counts in."""
    moment = moment.astimezone(UTC)
    return date(moment.year, moment.month, 1)


def month_end(month: date) -> datetime:
    """The moment (UTC) a month's counting ends and the next one's starts from zero."""
    return datetime(month.year + month.month // 12, month.month % 12 + 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class MemberBudget:
    """A team member's spending of the workspace's credits this month, and its limit (None: none)."""

    user_id: uuid.UUID
    monthly_limit: int | None
    spent: int
    month: date

    @property
    def resets_at(self) -> datetime:
        return month_end(self.month)


def _budget(cap: SpendCap | None, member_id: uuid.UUID, month: date) -> MemberBudget:
    if cap is None:
        return MemberBudget(member_id, None, 0, month)
    # A counter of an earlier month has counted nothing of this one (the next charge restarts it).
    return MemberBudget(member_id, cap.monthly_limit, cap.spent if cap.month == month else 0, month)


def member_budgets_get(*, account_id: uuid.UUID, member_ids: Iterable[uuid.UUID],
                       month: date | None = None) -> dict[uuid.UUID, MemberBudget]:
    """The members' budgets in a team workspace's account, this month (`month`: by the database's
    clock, which the charges count by; by default this server's)."""
    month = month or month_of(timezone.now())
    ids = list(member_ids)
    caps = {cap.subject_id: cap for cap in SpendCap.objects.filter(user_id=account_id, scope=CapScope.MEMBER,
                                                                   subject_id__in=ids)}
    return {member_id: _budget(caps.get(member_id), member_id, month) for member_id in ids}


def member_budget_list(*, membership: Membership) -> list[MemberBudget]:
    """The budgets of the members of the member's team workspace, owners first; only one's own for
    a role that does not see the workspace's credits."""
    if membership.workspace.personal:
        raise PersonalWorkspace("A personal workspace has no members' budgets: its owner spends its credits.")
    members = [seat.user_id for seat in member_list(membership=membership)]
    if not allowed(membership.role, "credits.view"):
        members = [member for member in members if member == membership.user_id]
    with rls.trusted():
        budgets = member_budgets_get(account_id=membership.workspace_id, member_ids=members)
    return [budgets[member] for member in members]


def database_month() -> date:
    """This month by the database's clock, the one the charges count by."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT date_trunc('month', clock_timestamp() AT TIME ZONE 'UTC')::date")
        (month,) = cursor.fetchone()
    return month


@dataclass(frozen=True)
class CapState:
    """A counter of spending this month (credits.models.SpendCap) and its limits."""

    scope: str
    subject_id: uuid.UUID
    monthly_limit: int | None
    job_limit: int | None
    spent: int
    month: date

    @property
    def resets_at(self) -> datetime:
        return month_end(self.month)

    @property
    def remaining(self) -> int | None:
        return None if self.monthly_limit is None else max(self.monthly_limit - self.spent, 0)


def cap_state(cap: SpendCap, month: date) -> CapState:
    # A counter of an earlier month has counted nothing of this one (the next charge restarts it).
    return CapState(cap.scope, cap.subject_id, cap.monthly_limit, cap.job_limit,
                    cap.spent if cap.month == month else 0, month)


# The order a charge's caps are reported in when several would refuse it: the widest first.
_CAP_ORDER = {CapScope.WORKSPACE: 0, CapScope.KEY: 1, CapScope.MEMBER: 2}
_WHOSE = {CapScope.WORKSPACE: "this workspace's monthly spend cap", CapScope.KEY: "this API key's monthly spend cap",
          CapScope.MEMBER: "your monthly budget in this workspace"}
_SUBJECT_DETAIL = {CapScope.KEY: "key_id", CapScope.MEMBER: "member_id"}


def caps_of_charge(*, user: User, member_id: uuid.UUID | None, month: date | None = None) -> list[CapState]:
    """The counters a charge to the account by `member_id` (a person, or an API key and the member
    who made it) counts on, widest first. `month`: by the database's clock, which the charges count
    by; by default this server's."""
    month = month or month_of(timezone.now())
    maker = ApiKey.objects.filter(pk=member_id, user_id=user.pk).values_list("created_by_id", flat=True).first() \
        if member_id is not None and member_id != user.pk else None
    subjects = {user.pk, member_id, maker} - {None}
    caps = SpendCap.objects.filter(user_id=user.pk, subject_id__in=subjects)
    return sorted((cap_state(cap, month) for cap in caps), key=lambda cap: _CAP_ORDER[CapScope(cap.scope)])


def workspace_caps_get(*, membership: Membership) -> list[CapState]:
    """The workspace's monthly cap, then its API keys' caps (newest key first; revoked keys left
    out), this month: each as its counter says, or unlimited and unspent for one never counted.
    For the roles that see the workspace's credits."""
    require(membership, "credits.view")
    month = month_of(timezone.now())
    with rls.trusted():
        keys = list(ApiKey.objects.filter(user_id=membership.workspace_id, revoked_at__isnull=True)
                    .values_list("pk", flat=True))
        caps = {cap.subject_id: cap for cap in SpendCap.objects.filter(
            user_id=membership.workspace_id, subject_id__in=[membership.workspace_id, *keys])}

    def state(scope: str, subject_id: uuid.UUID) -> CapState:
        cap = caps.get(subject_id)
        if cap is not None:
            return cap_state(cap, month)
        # A workspace counts from its first cap on; until then what it spent is the ledger's.
        spent = _spent_in(membership.workspace_id, month) if scope == CapScope.WORKSPACE else 0
        return CapState(scope, subject_id, None, None, spent, month)

    return [state(CapScope.WORKSPACE, membership.workspace_id), *(state(CapScope.KEY, key) for key in keys)]


def _spent_in(account_id: uuid.UUID, month: date) -> int:
    """The account's charges of the month less those charges' refunds, from the ledger."""
    with rls.trusted(), connection.cursor() as cursor:
        cursor.execute(_SPENT_SQL, {"account_id": account_id, "start": datetime.combine(month, time(), UTC),
                                    "end": month_end(month)})
        (spent,) = cursor.fetchone()
    return int(spent)


_SPENT_SQL = """
SELECT COALESCE(SUM(-u.amount - COALESCE(r.amount, 0)), 0)
FROM credit_transactions u LEFT JOIN credit_transactions r ON r.job_id = u.job_id AND r.type = 'refund'
WHERE u.user_id = %(account_id)s AND u.type = 'usage' AND u.created_at >= %(start)s AND u.created_at < %(end)s
"""


def spend_cap_refusal(*, user: User, member_id: uuid.UUID | None, cost: int, month: date | None = None,
                      only: set[tuple[str, uuid.UUID]] | None = None,
                      largest: int | None = None) -> SpendCapReached | None:
    """The error a charge of `cost` to the account by the member (or key) meets at one of its caps
    now, if it does: the workspace's monthly cap, the key's per-job and monthly limits, the team
    member's (or the key's maker's) monthly budget. `month`: as caps_of_charge's. `only`: the
    (scope, subject) of the counters to look at (those that refused a charge). `largest`: for a
    charge of many jobs, the dearest, which a per-job limit holds (else `cost`)."""
    for cap in caps_of_charge(user=user, member_id=member_id, month=month):
        if only is not None and (cap.scope, cap.subject_id) not in only:
            continue
        subject = {_SUBJECT_DETAIL[CapScope(cap.scope)]: str(cap.subject_id)} if cap.scope in _SUBJECT_DETAIL else {}
        one_job = cost if largest is None else largest
        if cap.job_limit is not None and one_job > cap.job_limit:
            return SpendCapReached(
                f"This job costs {one_job} credits, more than this API key's limit of {cap.job_limit} per job.",
                details={"cap": "key_per_job", **subject, "limit": cap.job_limit, "job_limit": cap.job_limit,
                         "cost": one_job, "resets_at": None})
        if cap.monthly_limit is not None and cap.spent + cost > cap.monthly_limit:
            return SpendCapReached(
                f"This needs {cost} credits and {_WHOSE[CapScope(cap.scope)]} has {cap.remaining} left of "
                f"{cap.monthly_limit}, until {cap.resets_at:%Y-%m-%d %H:%M} UTC.",
                details={"cap": cap.scope, **subject, "limit": cap.monthly_limit,
                         "monthly_limit": cap.monthly_limit, "spent": cap.spent, "cost": cost,
                         "resets_at": cap.resets_at.isoformat()})
    return None


def credit_transaction_list(*, user: User, type: str | None = None) -> QuerySet[CreditTransaction]:
    """The user's ledger, newest first."""
    qs = CreditTransaction.objects.filter(user_id=user.pk)
    if type:
        qs = qs.filter(type=type)
    return qs.order_by("-created_at", "-id")


def credit_transaction_get_for_job(*, job_id: uuid.UUID, type: str) -> CreditTransaction | None:
    """The usage (or refund) entry of a job; there is at most one of each."""
    return CreditTransaction.objects.filter(job_id=job_id, type=type).select_related("user").first()


def credit_transaction_get_by_key(*, user: User, idempotency_key: str) -> CreditTransaction | None:
    """The entry made with this key on the user's account (keys are unique per account)."""
    return CreditTransaction.objects.filter(account__user_id=user.pk, idempotency_key=idempotency_key).first()


def subscription_get(*, user: User) -> Subscription | None:
    return Subscription.objects.filter(user_id=user.pk).first()


def credit_transaction_get_for_payment(*, idempotency_key: str, type: str) -> CreditTransaction | None:
    """The purchase (or reversal) entry of a payment; keys of those types are unique ledger-wide."""
    return CreditTransaction.objects.filter(idempotency_key=idempotency_key, type=type).first()


# Every job's claim asks it: built once per process (auteur.core.prepared).
_ACTIVE_PLAN = PreparedRead(
    lambda user_id: Subscription.objects.filter(user_id=user_id, status=SubscriptionStatus.ACTIVE)
    .order_by("pk").values("plan")[:1],
    user_id=uuid.UUID(int=1),
)


def user_plan(*, user: User) -> str | None:
    """The plan of the user's active subscription, or None (no subscription, cancelled, expired)."""
    return user_plan_of(user_id=user.pk)


def user_plan_of(*, user_id: uuid.UUID) -> str | None:
    """`user_plan` by the account's id, for a caller that has not read the account."""
    row = _ACTIVE_PLAN.first(user_id=user_id)
    return None if row is None else str(row["plan"])


# ----------------------------------------------------------------------------- the audit


@dataclass(frozen=True)
class LedgerProblem:
    account_id: uuid.UUID
    user_email: str
    message: str

    def __str__(self) -> str:
        return f"account {self.account_id} ({self.user_email}): {self.message}"


# Apps above credits that move credits for an outside object (billing: a paid Stripe payment) add
# their own checks that each such object has exactly its ledger row. Each returns
# (account id, message) pairs. Registered at start-up (AppConfig.ready), never per request.
ExtraLedgerCheck = Callable[[], Iterable[tuple[uuid.UUID, str]]]
_EXTRA_CHECKS: list[ExtraLedgerCheck] = []


def ledger_check_register(check: ExtraLedgerCheck) -> None:
    if check not in _EXTRA_CHECKS:
        _EXTRA_CHECKS.append(check)


def _emails(account_ids: set[uuid.UUID]) -> dict[uuid.UUID, str]:
    return dict(CreditAccount.objects.filter(pk__in=account_ids).values_list("pk", "user__email"))


# Per counter: its month's usage entries (the account's; a key's: those naming it; a member's: those
# naming them or one of the keys they made), less the refunds of those entries.
_BUDGET_PROBLEMS_SQL = """
SELECT cap.user_id, cap.scope, cap.subject_id, cap.month, cap.spent,
       COALESCE(SUM(-u.amount - COALESCE(r.amount, 0)), 0)
FROM credit_spend_caps cap
LEFT JOIN credit_transactions u
    ON u.user_id = cap.user_id AND u.type = 'usage'
   AND (cap.scope = 'workspace' OR u.member_id = cap.subject_id
        OR (cap.scope = 'member' AND u.member_id IN (
            SELECT k.id FROM api_keys k WHERE k.created_by_id = cap.subject_id AND k.user_id = cap.user_id)))
   AND u.created_at >= cap.month::timestamp AT TIME ZONE 'UTC'
   AND u.created_at < (cap.month + interval '1 month')::timestamp AT TIME ZONE 'UTC'
LEFT JOIN credit_transactions r ON r.job_id = u.job_id AND r.type = 'refund'
GROUP BY cap.id
HAVING cap.spent <> COALESCE(SUM(-u.amount - COALESCE(r.amount, 0)), 0)
"""


def _budget_problems() -> list[tuple[uuid.UUID, str]]:
    with connection.cursor() as cursor:
        cursor.execute(_BUDGET_PROBLEMS_SQL)
        rows = cursor.fetchall()
    accounts = dict(CreditAccount.objects.filter(user_id__in={row[0] for row in rows}).values_list("user_id", "pk"))
    return [(accounts.get(user_id, user_id), f"the {scope} counter of {subject_id} counts {spent} spent in "
                                              f"{month:%Y-%m}, but its entries of that month add up to {ledger}")
            for user_id, scope, subject_id, month, spent, ledger in rows]


def ledger_check() -> list[LedgerProblem]:
    """Every way an account can disagree with its ledger, found in a few set-based queries.

    Checks, for every account: the balance equals the sum of its entries; each entry's
    balance_after is the previous entry's plus its own amount (entries ordered by created_at,
    then id); no balance or balance_after is negative; every entry belongs to the account's
    user; each job's refund, if any, gives back at most what its usage entry charged (all of
    it, or the unspent part of a job canceled after its inference started); and each team
    spend cap's counter (the workspace's, a member's, a key's) holds what the ledger says was spent
    in its month. Then the checks
    other apps registered (`ledger_check_register`), such as billing's paid payments.
    """
    found: list[tuple[uuid.UUID, str]] = []

    ledger_sum = Subquery(
        CreditTransaction.objects.filter(account_id=OuterRef("pk"))
        .values("account_id").annotate(total=Sum("amount")).values("total")
    )
    off_balance = (
        CreditAccount.objects.annotate(ledger_sum=Coalesce(ledger_sum, Value(0)))
        .exclude(balance=F("ledger_sum")).values_list("pk", "balance", "ledger_sum")
    )
    for account_id, balance, total in off_balance:
        found.append((account_id, f"balance is {balance} but its entries add up to {total}"))

    for account_id, balance in CreditAccount.objects.filter(balance__lt=0).values_list("pk", "balance"):
        found.append((account_id, f"balance is negative ({balance})"))

    # Filtering on a window function: Django evaluates the window in a subquery first.
    chain = CreditTransaction.objects.annotate(
        previous=Window(Lag("balance_after", default=0), partition_by=[F("account_id")],
                        order_by=[F("created_at").asc(), F("id").asc()]),
    ).exclude(balance_after=F("previous") + F("amount"))
    for account_id, entry_id, type_, amount, balance_after, previous in chain.values_list(
        "account_id", "pk", "type", "amount", "balance_after", "previous"
    ):
        found.append((account_id, f"entry {entry_id} ({type_} {amount:+d}) says balance_after {balance_after}, "
                                  f"expected {previous + amount}"))

    for entry in CreditTransaction.objects.filter(balance_after__lt=0).only("pk", "account_id", "balance_after"):
        found.append((entry.account_id, f"entry {entry.pk} has a negative balance_after ({entry.balance_after})"))

    for entry in CreditTransaction.objects.exclude(user_id=F("account__user_id")).only("pk", "account_id"):
        found.append((entry.account_id, f"entry {entry.pk} names a user other than the account's"))

    charged = Subquery(
        CreditTransaction.objects.filter(job_id=OuterRef("job_id"), type=TransactionType.USAGE).values("amount")[:1]
    )
    refunds = (
        CreditTransaction.objects.filter(type=TransactionType.REFUND).annotate(charged=charged)
        .filter(Q(charged__isnull=True) | Q(amount__gt=-F("charged")))
    )
    for account_id, entry_id, job_id, amount, charged_amount in refunds.values_list(
        "account_id", "pk", "job_id", "amount", "charged"
    ):
        if charged_amount is None:
            found.append((account_id, f"refund {entry_id} for job {job_id}, which was never charged"))
        else:
            found.append((account_id, f"refund {entry_id} gives back {amount} for job {job_id}, "
                                      f"which was charged {-charged_amount}"))

    found.extend(_budget_problems())

    for check in _EXTRA_CHECKS:
        found.extend(check())

    emails = _emails({account_id for account_id, _ in found})
    return [LedgerProblem(account_id, emails.get(account_id, "?"), message) for account_id, message in found]

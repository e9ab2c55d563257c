"""Plans, subscriptions, credit accounts and the append-only credit ledger.

The ledger's invariants (balance >= 0 and equal to its entries' sum, one usage and one refund
per job, one purchase and one purchase reversal per paid payment, rows never changed) are held
by the database, not only by the services: a negative balance, a second usage or refund for one
job, a reused idempotency key, a deduction typed as a grant, and any UPDATE or DELETE of a
ledger row (a trigger, migration 0002) are all refused by Postgres whatever code path tries them.
"""

from __future__ import annotations

import uuid
from typing import Any, ClassVar, NoReturn

from django.db import models
from django.db.models import Q


class ClockTimestamp(models.Func):
    """Postgres clock_timestamp(): the current time, advancing even within one statement."""

    template = "clock_timestamp()"
    output_field = models.DateTimeField()


class Plan(models.TextChoices):
    STARTER = "starter", "Starter"
    PRO = "pro", "Pro"


class SubscriptionStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    # A renewal payment failed: plan-gated features answer `payment_required` until one succeeds.
    PAST_DUE = "past_due", "Past due"
    CANCELLED = "cancelled", "Cancelled"
    EXPIRED = "expired", "Expired"


class Subscription(models.Model):
    """A user's plan. Its allowance is granted once per period (services.subscription_grant_allowances)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.OneToOneField("users.User", on_delete=models.CASCADE, related_name="subscription")
    plan = models.CharField(max_length=20, choices=Plan.choices)
    status = models.CharField(max_length=20, choices=SubscriptionStatus.choices, default=SubscriptionStatus.ACTIVE)
    stripe_subscription_id = models.CharField(max_length=255, blank=True, default="")
    current_period_start = models.DateTimeField()
    current_period_end = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "subscriptions"
        constraints: ClassVar[list[models.BaseConstraint]] = [
            models.CheckConstraint(condition=Q(plan__in=Plan.values), name="subscription_plan_valid"),
            models.CheckConstraint(condition=Q(status__in=SubscriptionStatus.values), name="subscription_status_valid"),
            models.CheckConstraint(
                condition=Q(current_period_end__gt=models.F("current_period_start")),
                name="subscription_period_not_empty",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.plan} ({self.status})"


class CreditAccount(models.Model):
    """One per user. `balance` changes only through credits.services, always with a ledger row."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.OneToOneField("users.User", on_delete=models.CASCADE, related_name="credit_account")
    balance = models.IntegerField(default=0)
    # Whether the workspace's own spend counter (SpendCap, scope workspace) counts its charges: set
    # for good when a workspace cap is first set (credits/services/budgets.py), under this row's
    # lock, so that the charge's statement, which reads it after taking that lock, never misses it.
    capped = models.BooleanField(default=False, db_default=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "credit_accounts"
        constraints: ClassVar[list[models.BaseConstraint]] = [
            models.CheckConstraint(condition=Q(balance__gte=0), name="credit_account_balance_non_negative"),
        ]
        permissions = (("adjust_credits", "Can make staff credit adjustments"),)

    def __str__(self) -> str:
        return f"credits of {self.user_id}: {self.balance}"


class TransactionType(models.TextChoices):
    SUBSCRIPTION = "subscription", "Subscription allowance"
    USAGE = "usage", "Usage (job)"
    REFUND = "refund", "Refund (job)"
    BONUS = "bonus", "Bonus"
    ADJUSTMENT = "adjustment", "Staff adjustment"
    # A credit pack paid through Stripe, and the removal of its credits when the payment is refunded.
    PURCHASE = "purchase", "Credit pack purchase"
    PURCHASE_REVERSAL = "purchase_reversal", "Credit pack refund"


class LedgerIsAppendOnly(Exception):
    """Raised on any attempt to change or delete a ledger row through the ORM."""


class CreditTransactionQuerySet(models.QuerySet["CreditTransaction"]):
    # Bulk writes bypass Model.save()/delete(); refuse them here too. (The trigger would refuse
    # them anyway; this fails earlier, with a clearer error, and before touching the database.)
    def update(self, **kwargs: Any) -> NoReturn:
        raise LedgerIsAppendOnly("credit transactions are append-only; write a correcting entry instead")

    def delete(self) -> NoReturn:
        raise LedgerIsAppendOnly("credit transactions are append-only; write a correcting entry instead")


class CreditTransaction(models.Model):
    """One ledger entry: `amount` is signed (+ add, - deduct), `balance_after` the balance it left.

    Rows are only ever inserted. Deleting a user or an account that has entries is refused
    (PROTECT): financial history outlives the profile; deactivate the user instead.
    """

    # Set on an entry a charge's statement just wrote: its counters whose thresholds it crossed
    # (credits/services/ledger.py); never stored.
    crossed_caps: list[dict[str, Any]]

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # Both foreign keys are indexed by the composite indexes in Meta (they lead them), not alone.
    account = models.ForeignKey(CreditAccount, on_delete=models.PROTECT, related_name="transactions",
                                db_index=False)
    # Denormalized from the account, for filtering and searching by user without a join.
    user = models.ForeignKey("users.User", on_delete=models.PROTECT, related_name="credit_transactions",
                             db_index=False)
    amount = models.IntegerField()
    balance_after = models.IntegerField()
    type = models.CharField(max_length=20, choices=TransactionType.choices)
    description = models.TextField(blank=True, default="")
    # No foreign key: the jobs app depends on credits, never the reverse (apps import downwards).
    job_id = models.UUIDField(null=True, blank=True, db_index=True)
    # The job's type (a job's charge and refund), so that usage groups by it without the jobs table;
    # null for an entry of no job, and for the entries written before it was recorded.
    job_type = models.CharField(max_length=40, null=True, blank=True)  # noqa: DJ001 - NULL = none recorded
    idempotency_key = models.CharField(max_length=255, null=True, blank=True)  # noqa: DJ001 - NULL = no key
    created_by = models.ForeignKey(
        "users.User", on_delete=models.PROTECT, null=True, blank=True, related_name="+",
        help_text="The staff member who made an adjustment.",
    )
    # Who a job's usage or refund is for: the person who submitted the job (a team workspace's
    # member, or a personal workspace's owner; Job.member_id); none for an entry of no job's. No
    # foreign key: entries are never changed, and outlive the member's account.
    member_id = models.UUIDField(null=True, blank=True)
    # The database's clock when the row is formed, which is after the account's lock was
    # obtained: entries of one account get increasing timestamps whichever app server wrote
    # them, so (created_at, id) orders the balance_after chain. Not now() or the statement's
    # start: both can precede the moment the lock was obtained.
    created_at = models.DateTimeField(db_default=ClockTimestamp(), db_index=True, editable=False)

    objects = CreditTransactionQuerySet.as_manager()

    class Meta:
        db_table = "credit_transactions"
        ordering = ("-created_at", "-id")
        indexes: ClassVar[list[models.Index]] = [
            models.Index(fields=["account", "created_at", "id"], name="credit_tx_account_chain"),
            models.Index(fields=["user", "-created_at"], name="credit_tx_user_recent"),
        ]
        constraints: ClassVar[list[models.BaseConstraint]] = [
            models.CheckConstraint(condition=~Q(amount=0), name="credit_tx_amount_non_zero"),
            models.CheckConstraint(condition=Q(balance_after__gte=0), name="credit_tx_balance_after_non_negative"),
            models.CheckConstraint(condition=Q(type__in=TransactionType.values), name="credit_tx_type_valid"),
            # The sign follows the type, so a deduction can never be booked as a grant or back.
            models.CheckConstraint(
                condition=(
                    Q(type__in=[TransactionType.USAGE, TransactionType.PURCHASE_REVERSAL], amount__lt=0)
                    | Q(type__in=[TransactionType.REFUND, TransactionType.SUBSCRIPTION, TransactionType.BONUS,
                                  TransactionType.PURCHASE], amount__gt=0)
                    | Q(type=TransactionType.ADJUSTMENT)
                ),
                name="credit_tx_sign_matches_type",
            ),
            models.CheckConstraint(
                condition=~Q(type__in=[TransactionType.USAGE, TransactionType.REFUND]) | Q(job_id__isnull=False),
                name="credit_tx_job_entries_have_job_id",
            ),
            # Exactly-once per job, whatever the redelivery or race: one charge, at most one refund.
            models.UniqueConstraint(
                fields=["job_id"], condition=Q(type=TransactionType.USAGE), name="credit_tx_one_usage_per_job"
            ),
            models.UniqueConstraint(
                fields=["job_id"], condition=Q(type=TransactionType.REFUND), name="credit_tx_one_refund_per_job"
            ),
            # One purchase, and at most one reversal, per Stripe payment (its key), whichever account.
            models.CheckConstraint(
                condition=~Q(type__in=[TransactionType.PURCHASE, TransactionType.PURCHASE_REVERSAL])
                | Q(idempotency_key__isnull=False),
                name="credit_tx_purchase_entries_have_key",
            ),
            models.UniqueConstraint(
                fields=["idempotency_key"], condition=Q(type=TransactionType.PURCHASE),
                name="credit_tx_one_purchase_per_payment",
            ),
            models.UniqueConstraint(
                fields=["idempotency_key"], condition=Q(type=TransactionType.PURCHASE_REVERSAL),
                name="credit_tx_one_reversal_per_payment",
            ),
            models.UniqueConstraint(
                fields=["account", "idempotency_key"],
                condition=Q(idempotency_key__isnull=False),
                name="credit_tx_idempotency_key_once_per_account",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.type} {self.amount:+d} -> {self.balance_after}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding:
            raise LedgerIsAppendOnly("credit transactions are append-only; write a correcting entry instead")
        kwargs["force_insert"] = True  # never let a colliding pk turn the save into an UPDATE
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise LedgerIsAppendOnly("credit transactions are append-only; write a correcting entry instead")


class CapScope(models.TextChoices):
    # All the spending of a workspace's credits (subject: the account's own id).
    WORKSPACE = "workspace", "Workspace"
    # One member's spending of a team workspace's credits (subject: the member's account id).
    MEMBER = "member", "Member"
    # One API key's spending (subject: the key's id, which its charges name as their member).
    KEY = "key", "API key"


# The shares of a monthly limit whose crossing is announced, each once a month, and their bits in
# SpendCap.notified and SpendCap.crossed.
THRESHOLDS = ((50, 1), (80, 2), (100, 4))


def reached_bits(spent: str) -> str:
    """SQL: the THRESHOLDS' bits that `spent` (an expression) reaches of `cap.monthly_limit`, in
    64-bit arithmetic (a limit may be near 2**31)."""
    return " | ".join(f"(CASE WHEN cap.monthly_limit IS NOT NULL AND ({spent})::bigint * 100 >= "
                      f"cap.monthly_limit::bigint * {share} THEN {bit} ELSE 0 END)" for share, bit in THRESHOLDS)


class SpendCap(models.Model):
    """What one subject of an account (the whole workspace, a member, an API key) spent of its
    credits this month, and the limits on it, if any.

    Written only by the ledger's statements (credits/services/ledger.py), in the statement that
    charges or refunds, after the account's row lock: a charge that would take `spent` past
    `monthly_limit`, or cost more than `job_limit`, moves nothing, whatever runs beside it. `month`
    is the first day (UTC) of the month `spent` counts; the first charge of a later month starts it
    again from zero, and a refund takes back from `spent` only a charge of the month it counts.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # The account (the workspace's); its index is the unique constraint's, which it leads.
    user = models.ForeignKey("users.User", on_delete=models.CASCADE, related_name="+", db_index=False)
    scope = models.CharField(max_length=20, choices=CapScope.choices)
    subject_id = models.UUIDField()
    monthly_limit = models.PositiveIntegerField(null=True, blank=True)
    # The most one job may be charged (an API key's).
    job_limit = models.PositiveIntegerField(null=True, blank=True)
    month = models.DateField()
    spent = models.BigIntegerField(default=0)
    # THRESHOLDS' bits: those announced this month, and those the last charge newly crossed.
    notified = models.SmallIntegerField(default=0, db_default=0)
    crossed = models.SmallIntegerField(default=0, db_default=0)
    updated_at = models.DateTimeField()

    class Meta:
        db_table = "credit_spend_caps"
        constraints: ClassVar[list[models.BaseConstraint]] = [
            models.UniqueConstraint(fields=["user", "scope", "subject_id"], name="spend_cap_one_per_subject"),
            models.CheckConstraint(condition=Q(scope__in=CapScope.values), name="spend_cap_scope_valid"),
            models.CheckConstraint(condition=Q(spent__gte=0), name="spend_cap_spent_non_negative"),
            models.CheckConstraint(condition=Q(month__day=1), name="spend_cap_month_is_its_first_day"),
            models.CheckConstraint(condition=Q(job_limit__isnull=True) | Q(scope=CapScope.KEY),
                                   name="spend_cap_job_limit_is_a_keys"),
        ]

    def __str__(self) -> str:
        return f"{self.scope} {self.subject_id}: {self.spent} of {self.monthly_limit} in {self.month:%Y-%m}"


class CapAlert(models.Model):
    """A threshold of a spend cap's monthly limit (THRESHOLDS) that a charge crossed: written in the
    charge's transaction, once per (cap, month, limit, threshold), and announced once (an event on
    the workspace's stream and a `spend_cap.threshold` webhook) by credits/alerts.py."""

    id = models.BigAutoField(primary_key=True)
    user = models.ForeignKey("users.User", on_delete=models.CASCADE, related_name="+", db_index=False)
    scope = models.CharField(max_length=20, choices=CapScope.choices)
    subject_id = models.UUIDField()
    month = models.DateField()
    threshold = models.PositiveSmallIntegerField()  # percent of monthly_limit
    monthly_limit = models.PositiveIntegerField()
    spent = models.BigIntegerField()  # after the charge that crossed it
    job_id = models.UUIDField(null=True, blank=True)  # the job whose charge crossed it
    created_at = models.DateTimeField(db_default=ClockTimestamp(), editable=False)
    announced_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "credit_cap_alerts"
        ordering = ("-created_at", "-id")
        constraints: ClassVar[list[models.BaseConstraint]] = [
            models.UniqueConstraint(fields=["user", "scope", "subject_id", "month", "monthly_limit", "threshold"],
                                    name="cap_alert_once"),
        ]
        indexes: ClassVar[list[models.Index]] = [
            models.Index(fields=["created_at"], condition=Q(announced_at__isnull=True), name="cap_alerts_unannounced"),
        ]

    def __str__(self) -> str:
        return f"{self.scope} {self.subject_id}: {self.threshold}% of {self.monthly_limit} in {self.month:%Y-%m}"

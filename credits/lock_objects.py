"""Row locks (money moves only under a row lock or a guarded UPDATE), in one place and one order.

The lock order. Every path that moves money, changes a cap, or changes a workspace's members takes
the locks it needs in this order, never an earlier one after a later one in the same transaction:

1. the workspace's row (`workspaces`, FOR UPDATE): every change of its members, roles, keys and caps
   starts there (auteur.users.workspace_services.acting);
2. seats and keys (`workspace_members`, `api_keys`), several in primary-key order; and a job's
   inputs (`media_files`, in primary-key order), its quote, the jobs a cancel ends;
3. the account's `users` row, FOR NO KEY UPDATE (auteur.core.quotas.quota_lock: a submission that
   finds or makes the Library, an upload, the result cache's copies). FOR NO KEY UPDATE, not FOR
   UPDATE: the foreign keys of every job, ledger row and counter take FOR KEY SHARE on that row, and
   they are checked at COMMIT (Django makes them DEFERRABLE INITIALLY DEFERRED), long after the
   transaction took the account's lock; with FOR UPDATE, a submission holding this row while it
   waits for the account, and the charge, refund or cap change holding the account while its commit
   waits for this row, would deadlock;
4. the account (`credit_accounts`): the ledger's statements (services/ledger.py) lock it first
   thing, by their UPDATE, and a cap change by budgets._LOCK_SQL; several accounts in
   primary-key order (credit_accounts_lock below);
5. its spend counters (`credit_spend_caps`), only ever after the account: a charge counts, a refund
   gives back and a cap change sets them in the same transaction as the account's lock;
6. ledger rows and cap alerts are only inserted; their foreign keys' FOR KEY SHARE locks conflict
   with no lock that any path takes on those rows (nothing takes FOR UPDATE on a `users` or
   `credit_accounts` row that a ledger row references, except the ledger's own UPDATE of the account).

Inside the workspace's row lock (step 1) a change may lock a seat's keys after the account (a role
given by an admin bounds the seat's budget, then revokes the keys the role may no longer offer): every
transaction that locks those keys holds that workspace row first, so they take turns there. Every
other path (charges, refunds, grants, uploads) locks no workspace row, seat or key.

A transaction holding an account's lock therefore never waits for a lock that a transaction waiting
for that account holds: tests/credits/test_lock_order.py races charges, refunds, cap changes and role
changes and asserts that PostgreSQL broke no deadlock (pg_stat_database.deadlocks), and
bench/charge_race.py does so through the API at 200 submissions a run.

The credit services do not lock with these: each balance change is one guarded UPDATE that
row-locks the account itself and writes its ledger row in the same statement (services/ledger.py).
These querysets are for code that must hold accounts stable across several statements in one
transaction, such as reading balances to act on them. Several accounts are always locked in
primary-key order, so two transactions can never hold one each while waiting for the other's.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from django.db.models import QuerySet

from credits.models import CreditAccount, Subscription


def credit_account_qs_for_update() -> QuerySet[CreditAccount]:
    # `of=("self",)`: lock the account row only, never a joined row.
    return CreditAccount.objects.select_for_update(of=("self",))


def credit_account_lock(*, account_id: uuid.UUID) -> CreditAccount:
    """The account, locked until the end of the current transaction."""
    return credit_account_qs_for_update().get(pk=account_id)


def credit_accounts_lock(*, account_ids: Iterable[uuid.UUID]) -> list[CreditAccount]:
    """Several accounts, locked in pk order (the one order every caller uses)."""
    return list(credit_account_qs_for_update().filter(pk__in=list(account_ids)).order_by("pk"))


def subscription_lock(*, subscription_id: uuid.UUID) -> Subscription:
    """Serializes two beat processes rolling the same subscription's period forward."""
    return Subscription.objects.select_for_update(of=("self",)).get(pk=subscription_id)

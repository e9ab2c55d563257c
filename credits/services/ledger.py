"""Every change to a balance and its ledger. Nothing else writes these tables.

How each balance change stays exact under concurrency (balance >= 0, balance == the sum of its
ledger, one usage and at most one refund per job, ledger rows never changed):

* Credits move in ONE statement (`_POST_SQL`): a guarded `UPDATE credit_accounts SET balance =
  balance + n WHERE user_id = ... AND balance + n >= 0 RETURNING balance` and, fed by it, the
  INSERT of the ledger row carrying that exact balance as balance_after. Postgres row-locks the
  account for the UPDATE (held until the transaction ends) and, when another transaction got
  there first, waits and re-evaluates the guard against the balance it committed: changes to
  one account never interleave, and one that would overdraw matches no row, so nothing moves
  and no entry is written. The database's CHECK (balance >= 0) backs the guard.
* Exactly-once is a unique constraint, not a read-then-write: one usage and one refund per job,
  one use of an idempotency key per account. A retry normally finds the committed row at once
  and returns it. When two identical requests race past that read, the loser's INSERT raises
  IntegrityError, its atomic block (a savepoint inside a caller's transaction, else the whole
  transaction) is rolled back together with its balance change, and it returns the winner's row.
* Each service runs inside `transaction.atomic()`, so it is its own transaction when called
  alone and a savepoint when called inside the caller's (the jobs app deducts in the same
  transaction that inserts the Job). The IntegrityError handler sits outside that block because
  a transaction that saw an error must be rolled back before it can read again.
* Spending stays within its caps (SpendCap: the workspace's, an API key's, a team member's): the
  charge's statement also counts the cost on each of its counters, after the account's lock, and
  writes the entry only if every counter stays within its limits. A charge refused by the budget has
  already moved the balance inside its statement, so every refusal rolls back its savepoint (or,
  for a new job, the caller's transaction): nothing a refused charge did survives it.
* The API's database role writes none of these tables: the statements a request runs (charges,
  refunds) are SECURITY DEFINER functions of their owner that check what the caller chooses (see
  the notes above _CHARGE), and the rest (grants, adjustments) run on the owner's login. The locks
  they take follow the one order of credits/lock_objects.py: the account, then its counters.
"""

from __future__ import annotations

import contextvars
import logging
import uuid
from dataclasses import dataclass

from django.db import IntegrityError, connection, transaction

from auteur.core.errors import ApplicationError
from auteur.core.postgres.plans import Planned
from auteur.users.models import User
from credits.alerts import cap_alerts_record
from credits.errors import IdempotencyConflict, InsufficientCredits
from credits.models import (
    CreditAccount,
    CreditTransaction,
    TransactionType,
)
from credits.selectors import (
    credit_balance_get,
    credit_transaction_get_by_key,
    credit_transaction_get_for_job,
    database_month,
    spend_cap_refusal,
)

logger = logging.getLogger(__name__)

GRANT_TYPES = (TransactionType.BONUS, TransactionType.SUBSCRIPTION)


# ----------------------------------------------------------------------------- helpers


def _require_positive(amount: int, *, name: str = "amount") -> None:
    # bool is an int; a True amount is a bug, not one credit.
    if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
        raise ApplicationError(f"{name} must be a positive integer.", code="invalid_amount",
                               details={name: amount})


def _require_text(text: str, *, name: str) -> str:
    text = (text or "").strip()
    if not text:
        raise ApplicationError(f"A {name} is required.", code=f"{name}_required")
    return text


def _replay(existing: CreditTransaction, *, user: User, amount: int, type: str) -> CreditTransaction:
    """The committed entry a retry asked for again, provided it is the same request."""
    if existing.user_id != user.pk or existing.amount != amount or existing.type != type:
        raise IdempotencyConflict(
            "This key was already used for a different credit operation.",
            details={"transaction_id": str(existing.pk)},
        )
    return existing


# The one statement that moves credits. The UPDATE is guarded, so an overdraft matches no row,
# moves nothing and inserts nothing; it row-locks the account, and when another transaction
# holds that lock it waits, then re-checks the guard against the balance that one committed.
# The ledger row is inserted by the same statement with the exact balance the UPDATE returned,
# stamped clock_timestamp() (taken after the lock was obtained, unlike the statement's start).
# A unique violation (a job charged or refunded twice, a reused key) fails the whole statement.
# One statement keeps the hot account's lock for the shortest time possible: no client round
# trip between locking and writing (bench/ledger_contention.py).
_MOVED = """
    UPDATE credit_accounts SET balance = balance + %(amount)s, updated_at = now()
    WHERE user_id = %(user_id)s AND balance + %(amount)s >= 0
    RETURNING id, balance, capped, clock_timestamp() AS at
"""
_ENTRY = """
INSERT INTO credit_transactions
    (id, account_id, user_id, amount, balance_after, type, description, job_id, job_type, idempotency_key,
     created_by_id, member_id, created_at)
SELECT %(id)s, moved.id, %(user_id)s, %(amount)s, moved.balance, %(type)s, %(description)s, %(job_id)s,
       %(job_type)s, %(idempotency_key)s, %(created_by_id)s, %(member_id)s, moved.at
FROM moved
"""
_RETURNING = """
RETURNING id, account_id, user_id, amount, balance_after, type, description, job_id, job_type, idempotency_key,
    created_by_id, member_id, created_at
"""
_POST_SQL = f"WITH moved AS ({_MOVED}){_ENTRY}{_RETURNING}"
# The statements a request runs (a job's charge, a batch's, a cancel's refund, a bulk cancel's) are
# functions of the tables' owner (SECURITY DEFINER, credits/migrations/0010_ledger_functions.py): the
# API's role may read the ledger's tables but write none of them, so that an injected statement can
# move no balance and no counter without the ledger row that accounts for it. Each function is one
# such statement, and checks what a caller chooses: a charge only takes, a batch's move is the sum of
# its entries, a refund gives back at most what its job's usage entry took, named and counted as
# that entry was. Grants, purchases and adjustments run _POST_SQL on the owner's login.
#
# A charge counts on its counters (credit_spend_caps) of the month: the workspace's, once a cap was
# set on it (`capped`, read from the account's row after its lock: a cap set a moment ago is seen),
# and the subject that made it when that is not the account itself: an API key's (a charge whose
# member is one of the account's keys) and its maker's, or a team member's. Each counter takes the
# cost after the account's lock (its input is `moved`: the account is locked first and the counters
# second, the ledger's lock order, credits/lock_objects.py), only within its monthly limit and its
# per-job limit; the entry is written only if every counter did. A counter of an earlier month starts
# again from zero, and records the thresholds of its limit the charge newly crossed (`crossed`) and
# every one crossed this month (`notified`). A refusal by a counter leaves the balance (and the other
# counters) moved in the statement: the caller rolls it back. The function answers one row: the
# entry (NULLs when refused), the counters whose thresholds it crossed, and those that refused it.
_CHARGE = Planned("SELECT * FROM auteur_ledger_charge(%(id)s, %(user_id)s, %(amount)s, %(description)s, "
                  "%(job_id)s, %(job_type)s, %(member_id)s)")
# A personal workspace's owner's charge while the workspace has no cap: the plain statement, which
# moves only an account not `capped` (read after the lock, so a cap set a moment ago is seen); one it
# does not move (capped now, or short) is charged by _CHARGE, which decides. It costs them little more
# than _POST_SQL (bench/ledger_contention.py).
_CHARGE_UNCAPPED = Planned("SELECT * FROM auteur_ledger_charge_uncapped(%(id)s, %(user_id)s, %(amount)s, "
                           "%(description)s, %(job_id)s, %(job_type)s, %(member_id)s)")
# Many jobs charged at once (a batch): the account moves by their sum, each counter counts the sum (a
# per-job limit holds the largest), and each job gets its own usage entry, in the order given, each
# with the balance after it, entry n stamped n-1 microseconds after the first, never past the month
# of the first. Answers the entries written (all or none), crossed thresholds and refusing counters.
_CHARGE_MANY = Planned("SELECT * FROM auteur_ledger_charge_many(%(user_id)s, %(member_id)s, %(ids)s::uuid[], "
                       "%(amounts)s::int[], %(job_ids)s::uuid[], %(job_types)s::text[], %(descriptions)s::text[])")
# A refund: the counters of its charge (the workspace's, its key's and the key's maker's, or its
# member's) give it back only while they still count the month the charge was made in, once the
# account is locked.
_REFUND = Planned("SELECT * FROM auteur_ledger_refund(%(id)s, %(user_id)s, %(job_id)s, %(amount)s, %(description)s)")
# Many jobs refunded at once (a bulk cancel): the account moves by their sum, each counter of their
# charges gives back what it counted of them in its month, each job its own entry.
_REFUND_MANY = Planned("SELECT auteur_ledger_refund_many(%(user_id)s, %(ids)s::uuid[], %(amounts)s::int[], "
                       "%(job_ids)s::uuid[], %(job_types)s::text[], %(descriptions)s::text[])")
_POST = Planned(_POST_SQL)
_POST_COLUMNS = ("id", "account_id", "user_id", "amount", "balance_after", "type", "description", "job_id",
                 "job_type", "idempotency_key", "created_by_id", "member_id", "created_at")


def _post_once(statement: Planned, params: dict[str, object]) -> CreditTransaction | None:
    with connection.cursor() as cursor:
        statement.execute(cursor, params)
        row = cursor.fetchone()
    counted = len(row or ()) > len(_POST_COLUMNS)  # a charge's statement says more of its counters
    if counted:
        _refused_by.set(tuple(row[len(_POST_COLUMNS) + 1] or ()))
    if row is None or row[0] is None:
        return None
    entry = CreditTransaction.from_db(connection.alias, _POST_COLUMNS, row[:len(_POST_COLUMNS)])
    # A charge's counters whose thresholds it crossed (none: the statement does not count).
    entry.crossed_caps = (row[len(_POST_COLUMNS)] or []) if counted else []
    return entry


# The counters ("<scope> <subject id>") that refused the last charge this context made (none: its
# balance was short): what the refusal's error names.
_refused_by: contextvars.ContextVar[tuple[str, ...]] = contextvars.ContextVar("auteur_charge_refused_by", default=())


def _post(
    *,
    user: User,
    amount: int,
    type: str,
    description: str,
    job_id: uuid.UUID | None = None,
    idempotency_key: str | None = None,
    created_by: User | None = None,
    member_id: uuid.UUID | None = None,
    job_type: str | None = None,
) -> CreditTransaction | None:
    """Move the balance and write its ledger entry; None if it would overdraw, or take a spending
    past one of its caps (then the caller must roll back: see the module's notes).

    Must run inside an atomic block, which holds the account's lock until it ends.
    """
    params: dict[str, object] = {
        "id": uuid.uuid4(), "user_id": user.pk, "amount": amount, "type": type, "description": description,
        "job_id": job_id, "job_type": job_type, "idempotency_key": idempotency_key,
        "created_by_id": created_by.pk if created_by is not None else None, "member_id": member_id,
    }
    statement = _POST
    if user.is_team and member_id is None and type == TransactionType.USAGE:
        # Every charge of a team names who made it: one that does not is counted on nobody's budget.
        logger.warning("a team's charge names no member: no budget counts it", extra={"job_id": str(job_id)})
    if type == TransactionType.USAGE:
        statement = _CHARGE
        _refused_by.set(())
        if not user.is_team and member_id in (None, user.pk):
            entry = _post_once(_CHARGE_UNCAPPED, params)
            if entry is not None:
                entry.crossed_caps = []
                return entry
    elif type == TransactionType.REFUND:
        statement = _REFUND
    entry = _post_once(statement, params)
    if entry is None and amount > 0:
        # Only a missing account refuses an addition: the user's first credits open it.
        credit_account_get_or_create(user=user)
        entry = _post_once(statement, params)
    if entry is not None:
        logger.debug("credits %s %+d -> %d", type, amount, entry.balance_after,
                     extra={"job_id": str(job_id) if job_id else None})
    return entry


def _must(entry: CreditTransaction | None) -> CreditTransaction:
    assert entry is not None, "an addition to an existing account cannot be refused"
    return entry


def _existing_for_key(user: User, idempotency_key: str | None) -> CreditTransaction | None:
    if idempotency_key is None:
        return None
    return credit_transaction_get_by_key(user=user, idempotency_key=idempotency_key)


# ----------------------------------------------------------------------------- accounts


def credit_account_get_or_create(*, user: User) -> CreditAccount:
    # get_or_create survives a concurrent first use: it re-reads after the unique violation.
    account, _ = CreditAccount.objects.get_or_create(user=user)
    return account


def credit_grant_once(
    *,
    user: User,
    amount: int,
    type: str,
    description: str,
    idempotency_key: str | None,
    created_by: User | None,
) -> tuple[CreditTransaction, bool]:
    """The grant's entry, and whether this call made it (False: an earlier call with the key did,
    and this one granted nothing)."""
    _require_positive(amount)
    if type not in GRANT_TYPES:
        raise ApplicationError(f"A grant is one of {', '.join(GRANT_TYPES)}.", code="invalid_type")
    existing = _existing_for_key(user, idempotency_key)
    if existing is not None:
        return _replay(existing, user=user, amount=amount, type=type), False
    try:
        with transaction.atomic():
            entry = _post(user=user, amount=amount, type=type, description=description,
                          idempotency_key=idempotency_key, created_by=created_by)
            return _must(entry), True
    except IntegrityError:
        # A concurrent call with the same key committed first; ours was rolled back.
        existing = _existing_for_key(user, idempotency_key)
        if existing is None:
            raise
        return _replay(existing, user=user, amount=amount, type=type), False


def credit_grant(
    *,
    user: User,
    amount: int,
    type: str = TransactionType.BONUS,
    description: str,
    idempotency_key: str | None = None,
    created_by: User | None = None,
) -> CreditTransaction:
    """Add credits (a bonus or a subscription allowance). The same key never grants twice."""
    entry, _ = credit_grant_once(user=user, amount=amount, type=type, description=description,
                             idempotency_key=idempotency_key, created_by=created_by)
    return entry


class _Refused(Exception):
    """A charge refused inside its savepoint: raised to roll the savepoint back, with its reason."""

    def __init__(self, reason: ApplicationError) -> None:
        super().__init__(reason.code)
        self.reason = reason


def _refusal(user: User, member_id: uuid.UUID | None, amount: int, *, largest: int | None = None) -> ApplicationError:
    """Why a charge of `amount` was refused: a spend cap, else the balance. Read before the
    refusal is rolled back: a counter that refused is still locked by it, so what it says is what
    refused (a refund committed a moment later cannot make a cap look roomy)."""
    # The counters that refused it, if any: the others took the cost in the refused statement, and
    # would look fuller than they are. A balance too short counted on none: every cap is as it was,
    # and one that would refuse too is named before the balance.
    refused_by = [counter.split(" ") for counter in _refused_by.get()]
    only = {(scope, uuid.UUID(subject)) for scope, subject in refused_by} if refused_by else None
    refused = spend_cap_refusal(user=user, member_id=member_id, cost=amount, month=database_month(), only=only,
                                largest=largest)
    if refused is not None:
        return refused
    return InsufficientCredits(balance=credit_balance_get(user=user), cost=amount)


def credit_deduct_for_job(
    *, user: User, job_id: uuid.UUID, amount: int, description: str, new_job: bool = False,
    member_id: uuid.UUID | None = None, job_type: str | None = None,
) -> CreditTransaction:
    """Charge a job. Raises InsufficientCredits (402) when the balance is short, SpendCapReached
    (402) when a team member's monthly budget is, and then nothing of the charge remains.
    `member_id`: the person who submitted it (CreditTransaction.member_id); its refund names them too.

    A second call for the same job returns the first charge and moves nothing. `new_job`: the
    caller inserted the job in the transaction it holds open, so no charge of it can exist yet: the
    charge takes no savepoint to survive a duplicate (one would end that transaction with an
    error, the job's insert included), and a refusal is a refusal, which the caller's transaction
    must not outlive (the error propagates out of its atomic block).
    """
    _require_positive(amount)

    def charge() -> CreditTransaction | None:
        entry = _post(user=user, amount=-amount, type=TransactionType.USAGE, description=description, job_id=job_id,
                      member_id=member_id, job_type=job_type)
        if entry is not None:
            cap_alerts_record(account_id=user.pk, job_id=job_id, crossed=entry.crossed_caps)
        return entry

    if new_job:
        if not connection.in_atomic_block:
            raise AssertionError("a new job is charged in the transaction that inserts it")
        entry = charge()
        if entry is None:
            raise _refusal(user, member_id, amount)
        return entry
    try:
        with transaction.atomic():
            entry = charge()
            if entry is None:
                raise _Refused(_refusal(user, member_id, amount))
            return entry
    except _Refused as refused:
        # Refused, and rolled back. If this job was already charged (a retry, possibly of a twin
        # that committed a moment ago), that charge is the answer; otherwise it is a refusal.
        existing = credit_transaction_get_for_job(job_id=job_id, type=TransactionType.USAGE)
        if existing is not None:
            return _replay(existing, user=user, amount=-amount, type=TransactionType.USAGE)
        raise refused.reason from None
    except IntegrityError:
        # The job was already charged (one usage per job): that charge stands, and our balance
        # change was rolled back with the failed INSERT.
        existing = credit_transaction_get_for_job(job_id=job_id, type=TransactionType.USAGE)
        if existing is None:
            raise
        return _replay(existing, user=user, amount=-amount, type=TransactionType.USAGE)


@dataclass(frozen=True)
class JobCharge:
    """One job of a charge of many (`credit_deduct_for_jobs`)."""

    job_id: uuid.UUID
    amount: int  # credits, > 0
    job_type: str
    description: str


def _entries(jobs: list[JobCharge], sign: int, job_types: list[str], member_ids: list[object]) -> dict[str, object]:
    """_many_entries' arrays, one element per job."""
    return {"ids": [uuid.uuid4() for _ in jobs], "amounts": [sign * j.amount for j in jobs],
            "job_ids": [j.job_id for j in jobs], "job_types": job_types,
            "descriptions": [j.description for j in jobs], "member_ids": member_ids}


def credit_deduct_for_jobs(*, user: User, charges: list[JobCharge], member_id: uuid.UUID | None = None) -> int:
    """Charge many new jobs, inserted in the caller's transaction, at once, all or none: one statement
    moves the balance by their sum, counts the sum on the charge's counters (a per-job limit holds
    each job) and writes each job's usage entry. Returns the sum. Raises InsufficientCredits or
    SpendCapReached (402) for the sum; the caller's transaction must not outlive the error."""
    if not connection.in_atomic_block:
        raise AssertionError("new jobs are charged in the transaction that inserts them")
    for charge in charges:
        _require_positive(charge.amount)
    total = sum(c.amount for c in charges)
    largest = max(c.amount for c in charges)
    _refused_by.set(())
    params = {"user_id": user.pk, "member_id": member_id, "amount": -total, "largest": largest,
              **_entries(charges, -1, [c.job_type for c in charges], [member_id] * len(charges))}
    with connection.cursor() as cursor:
        _CHARGE_MANY.execute(cursor, params)
        written, crossed, refused_by = cursor.fetchone()
    if written != len(charges):
        _refused_by.set(tuple(refused_by or ()))
        raise _refusal(user, member_id, total, largest=largest)
    cap_alerts_record(account_id=user.pk, job_id=charges[-1].job_id, crossed=crossed or [])
    logger.debug("credits usage %+d in %d jobs", -total, len(charges))
    return total


def credit_refund_jobs(*, user: User, refunds: list[JobCharge]) -> int:
    """Refund many jobs the caller has just ended in its transaction (their rows locked) at once, each
    by `amount` (1 to its charge), in one statement: each refund entry names its charge's member, and
    each counter that counted a charge gives it back in the charge's month. Returns the sum. A job
    refunded already fails the whole statement (one refund per job), and the caller's transaction."""
    if not connection.in_atomic_block:
        raise AssertionError("jobs are refunded in the transaction that ends them")
    if not refunds:
        return 0
    charges = {entry.job_id: entry for entry in CreditTransaction.objects.filter(
        user_id=user.pk, type=TransactionType.USAGE, job_id__in=[r.job_id for r in refunds])}
    for refund in refunds:
        charge = charges.get(refund.job_id)
        if charge is None or not 0 < refund.amount <= -charge.amount:
            raise ApplicationError("A refund is 1 to what the job was charged.", code="invalid_amount",
                                   details={"job_id": str(refund.job_id), "amount": refund.amount})
    total = sum(r.amount for r in refunds)
    # Each entry's member, and the counters and months given back, are its charge's (the function
    # reads them from the usage entries, as it checks each amount against its charge).
    params = {"user_id": user.pk, **_entries(refunds, 1, [r.job_type for r in refunds], [])}
    with connection.cursor() as cursor:
        _REFUND_MANY.execute(cursor, params)
        (written,) = cursor.fetchone()
    assert written == len(refunds), "an addition to an existing account cannot be refused"
    logger.debug("credits refund %+d in %d jobs", total, len(refunds))
    return total


def credit_refund_job(*, job_id: uuid.UUID, reason: str, amount: int | None = None) -> CreditTransaction:
    """Give back what the job was charged, or `amount` of it (1 to the charge), once.

    A job has at most one refund, whatever its amount: later calls return that refund and move
    nothing, so a partial refund and a full one racing for the same job still refund once.
    """
    reason = _require_text(reason, name="reason")
    usage = credit_transaction_get_for_job(job_id=job_id, type=TransactionType.USAGE)
    if usage is None:
        raise ApplicationError("This job was never charged, so there is nothing to refund.",
                               code="job_not_charged",
                               details={"job_id": str(job_id)})
    charged = -usage.amount
    if amount is None:
        amount = charged
    _require_positive(amount)
    if amount > charged:
        raise ApplicationError("A refund cannot exceed what the job was charged.", code="invalid_amount",
                               details={"amount": amount, "charged": charged})
    existing = credit_transaction_get_for_job(job_id=job_id, type=TransactionType.REFUND)
    if existing is not None:
        return existing
    try:
        with transaction.atomic():
            return _must(_post(user=usage.user, amount=amount, type=TransactionType.REFUND,
                               description=reason, job_id=job_id, member_id=usage.member_id, job_type=usage.job_type))
    except IntegrityError:
        # A concurrent refund of this job committed first (one refund per job); ours rolled back.
        existing = credit_transaction_get_for_job(job_id=job_id, type=TransactionType.REFUND)
        if existing is None:
            raise
        return existing


def credit_adjust(
    *,
    user: User,
    amount: int,
    reason: str,
    staff_user: User,
    idempotency_key: str | None = None,
) -> CreditTransaction:
    """A staff correction, recorded with who made it and why. It cannot make a balance negative."""
    if not (staff_user.is_active and staff_user.is_staff):
        raise ApplicationError("Only staff can adjust credits.", code="permission_denied")
    if isinstance(amount, bool) or not isinstance(amount, int) or amount == 0:
        raise ApplicationError("amount must be a non-zero integer.", code="invalid_amount", details={"amount": amount})
    reason = _require_text(reason, name="reason")
    existing = _existing_for_key(user, idempotency_key)
    if existing is not None:
        return _replay(existing, user=user, amount=amount, type=TransactionType.ADJUSTMENT)
    try:
        with transaction.atomic():
            entry = _post(user=user, amount=amount, type=TransactionType.ADJUSTMENT, description=reason,
                          idempotency_key=idempotency_key, created_by=staff_user)
            if entry is None:
                raise InsufficientCredits(balance=credit_balance_get(user=user), cost=-amount)
            return entry
    except IntegrityError:
        existing = _existing_for_key(user, idempotency_key)
        if existing is None:
            raise
        return _replay(existing, user=user, amount=amount, type=TransactionType.ADJUSTMENT)

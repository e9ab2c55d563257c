"""The nightly ledger audit: ledger_check's result, kept where the metrics exporter reads it."""

from __future__ import annotations

import time
from dataclasses import dataclass

from django.core.cache import cache

from credits.selectors import ledger_check

LAST_AUDIT_KEY = "credits:ledger_audit:last"


@dataclass(frozen=True)
class LedgerAudit:
    finished_at: float  # unix time
    problems: int
    accounts: int


def ledger_audit_run() -> LedgerAudit:
    """Run ledger_check and record its outcome (kept without expiry: the last run is the state)."""
    problems = ledger_check()
    audit = LedgerAudit(finished_at=time.time(), problems=len(problems),
                        accounts=len({problem.account_id for problem in problems}))
    cache.set(LAST_AUDIT_KEY, {"finished_at": audit.finished_at, "problems": audit.problems,
                               "accounts": audit.accounts}, None)
    return audit


def ledger_audit_last() -> LedgerAudit | None:
    value = cache.get(LAST_AUDIT_KEY)
    return LedgerAudit(**value) if isinstance(value, dict) else None

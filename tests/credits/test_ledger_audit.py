from __future__ import annotations

from credits.services.ledger_audit import ledger_audit_last
from credits.tasks import ledger_check


def test_nightly_ledger_check_records_its_result_for_the_exporter(db, user):
    assert ledger_check() == 0
    audit = ledger_audit_last()
    assert audit is not None and audit.problems == 0 and audit.accounts == 0 and audit.finished_at > 0

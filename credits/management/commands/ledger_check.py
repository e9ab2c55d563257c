from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from credits.models import CreditAccount
from credits.selectors import ledger_check


class Command(BaseCommand):
    help = ("Verify every credit account against its ledger (balance == sum of entries, an exact "
            "balance_after chain, exact refunds). Exits 1 and lists the accounts that are off.")

    def handle(self, *args: Any, **options: Any) -> None:
        problems = ledger_check()
        if not problems:
            self.stdout.write(f"ledger consistent: {CreditAccount.objects.count()} accounts")
            return
        for problem in problems:
            self.stdout.write(str(problem))
        accounts = len({problem.account_id for problem in problems})
        raise CommandError(f"ledger inconsistent: {accounts} account(s), {len(problems)} problem(s)", returncode=1)

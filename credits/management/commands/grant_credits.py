from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from auteur.core.errors import ApplicationError
from auteur.users.services import user_find
from credits.models import TransactionType
from credits.services.ledger import credit_grant


class Command(BaseCommand):
    help = ("Grant AMOUNT bonus credits to the existing account USER (its id, or an email only one account has), "
            "with a reason (for staff and scripts).")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("user", help="the account's id, or its email when no other account has it")
        parser.add_argument("amount", type=int, help="credits to add; a positive integer")
        parser.add_argument("--reason", required=True, help="why; recorded in the ledger entry")
        parser.add_argument("--idempotency-key", default=None,
                            help="makes a retried script safe: the same key never grants twice")

    def handle(self, *args: Any, user: str, amount: int, reason: str, idempotency_key: str | None,
               **options: Any) -> None:
        if amount <= 0:
            raise CommandError("AMOUNT must be a positive integer (to take credits away, use an admin adjustment)")
        if not reason.strip():
            raise CommandError("--reason must not be empty")
        try:
            account = user_find(ref=user)
        except ApplicationError as exc:
            raise CommandError(exc.message) from exc
        if account is None:
            raise CommandError(f"no user {user!r}; accounts are created by their first sign-in "
                               f"(or `manage.py issue_token EMAIL`)")
        try:
            entry = credit_grant(user=account, amount=amount, type=TransactionType.BONUS, description=reason.strip(),
                                 idempotency_key=idempotency_key)
        except ApplicationError as exc:
            raise CommandError(exc.message) from exc
        self.stdout.write(f"granted {entry.amount} credits to {account}: balance now {entry.balance_after} "
                          f"(transaction {entry.pk})")

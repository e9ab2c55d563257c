from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from auteur.errors import ApplicationError
from auteur.users.models import User
from credits.models import TransactionType
from credits.services.ledger import credit_grant


class Command(BaseCommand):
    help = "Grant AMOUNT bonus credits to the existing user EMAIL, with a reason (for staff and scripts)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("email")
        parser.add_argument("amount", type=int, help="credits to add; a positive integer")
        parser.add_argument("--reason", required=True, help="why; recorded in the ledger entry")
        parser.add_argument("--idempotency-key", default=None,
                            help="makes a retried script safe: the same key never grants twice")

    def handle(self, *args: Any, email: str, amount: int, reason: str, idempotency_key: str | None,
               **options: Any) -> None:
        if amount <= 0:
            raise CommandError("AMOUNT must be a positive integer (to take credits away, use an admin adjustment)")
        if not reason.strip():
            raise CommandError("--reason must not be empty")
        user = User.objects.filter(email=email.strip().lower()).first()
        if user is None:
            raise CommandError(f"no user with the email {email!r}; users are created by their first sign-in "
                               f"(or `manage.py issue_token EMAIL`)")
        try:
            entry = credit_grant(user=user, amount=amount, type=TransactionType.BONUS, description=reason.strip(),
                                 idempotency_key=idempotency_key)
        except ApplicationError as exc:
            raise CommandError(exc.message) from exc
        self.stdout.write(f"granted {entry.amount} credits to {user.email}: balance now {entry.balance_after} "
                          f"(transaction {entry.pk})")

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.core.validators import validate_email

from auteur.core.errors import ApplicationError
from auteur.users.services import user_get_or_create_by_email, user_issue_token


class Command(BaseCommand):
    help = "Print a valid API token for EMAIL (creating the user), for development and scripts."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("email")
        parser.add_argument("--days", type=float, default=7, help="validity in days (default 7)")

    def handle(self, *args: Any, email: str, days: float, **options: Any) -> None:
        try:
            validate_email(email)
        except ValidationError as exc:
            raise CommandError(f"not an email address: {email!r}") from exc
        if not 0 < days <= 365:
            raise CommandError("--days must be more than 0 and at most 365 (a fraction is fine: 0.5 is 12 hours)")
        try:
            user = user_get_or_create_by_email(email=email)
        except ApplicationError as exc:
            raise CommandError(exc.message) from exc
        self.stdout.write(user_issue_token(user=user, days=days))

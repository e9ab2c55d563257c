"""`manage.py usage_export [--since DATE] [--until DATE] [--type TYPE] [--user ID] [--member ID]`: usage analytics
as CSV on stdout (or `--output FILE`), oldest first: one row per ended job (jobs.events.usage)."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from auteur.core.rls import trusted
from jobs.events.usage import usage_write_csv
from jobs.models import UsageEvent
from jobs.specs import JOB_SPECS


def _day(value: str) -> datetime:
    try:
        return datetime.combine(date.fromisoformat(value), time.min, tzinfo=UTC)
    except ValueError:
        raise CommandError(f"not a date (YYYY-MM-DD): {value!r}") from None


class Command(BaseCommand):
    help = "Export usage analytics (one row per ended job) as CSV."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--since", help="first day (UTC, YYYY-MM-DD), included")
        parser.add_argument("--until", help="last day (UTC, YYYY-MM-DD), excluded")
        parser.add_argument("--type", action="append", default=[], help=f"job type, repeatable: {', '.join(JOB_SPECS)}")
        parser.add_argument("--user", help="an account's id (a team workspace's: its pool's usage)")
        parser.add_argument("--member", help="a person's id: the jobs they submitted, in any workspace")
        parser.add_argument("--output", help="a file to write instead of stdout")

    def handle(self, *args: Any, **options: Any) -> None:
        events = UsageEvent.objects.order_by("created_at", "id")
        if options["since"]:
            events = events.filter(created_at__gte=_day(options["since"]))
        if options["until"]:
            events = events.filter(created_at__lt=_day(options["until"]))
        unknown = sorted(set(options["type"]) - {t.value for t in JOB_SPECS})
        if unknown:
            raise CommandError(f"unknown job type(s): {', '.join(unknown)}")
        if options["type"]:
            events = events.filter(type__in=options["type"])
        if options["user"]:
            try:
                events = events.filter(user_id=uuid.UUID(options["user"]))
            except ValueError:
                raise CommandError(f"not an account id: {options['user']!r}") from None
        if options["member"]:
            try:
                events = events.filter(member_id=uuid.UUID(options["member"]))
            except ValueError:
                raise CommandError(f"not a member's id: {options['member']!r}") from None
        with trusted():
            if options["output"]:
                with open(options["output"], "w", newline="", encoding="utf-8") as out:
                    count = usage_write_csv(events.iterator(chunk_size=2000), out)
            else:
                count = usage_write_csv(events.iterator(chunk_size=2000), self.stdout)
        self.stderr.write(f"{count} usage events")

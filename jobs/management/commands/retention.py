"""``manage.py retention [--dry-run] [--only NAME]``: run the retention sweeps now, as beat does.

``--dry-run`` deletes nothing and prints what each sweep would delete.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from auteur.core.retention import registered_sweeps, run_sweep


class Command(BaseCommand):
    help = "Run the retention sweeps (docs/retention.md); --dry-run only counts."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--dry-run", action="store_true", help="delete nothing; print what would go")
        parser.add_argument("--only", action="append", metavar="NAME", default=[],
                            help="run only this sweep (repeatable)")
        parser.add_argument("--batch-size", type=int, default=None, help="rows per batch (default: the setting)")

    def handle(self, *args: Any, dry_run: bool, only: list[str], batch_size: int | None, **options: Any) -> None:
        names = [sweep.name for sweep in registered_sweeps()]
        unknown = sorted(set(only) - set(names))
        if unknown:
            raise CommandError(f"unknown sweep(s) {', '.join(unknown)}; choose from {', '.join(names)}")
        if batch_size is not None and batch_size < 1:
            raise CommandError("--batch-size must be at least 1")
        for sweep in registered_sweeps():
            if only and sweep.name not in only:
                continue
            result = run_sweep(sweep.name, dry_run=dry_run, batch_size=batch_size)
            self.stdout.write(f"{result.describe()}  ({sweep.rule})")

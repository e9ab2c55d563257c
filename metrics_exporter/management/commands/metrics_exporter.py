from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from metrics_exporter.exporter import Exporter


class Command(BaseCommand):
    help = ("Serve Prometheus metrics of the queues, workers, tasks and the business state on an internal "
            "port (AUTEUR_METRICS_EXPORTER_ADDRESS:AUTEUR_METRICS_EXPORTER_PORT).")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--address", default=settings.AUTEUR_METRICS_EXPORTER_ADDRESS)
        parser.add_argument("--port", type=int, default=settings.AUTEUR_METRICS_EXPORTER_PORT)
        parser.add_argument("--interval", type=float, default=settings.AUTEUR_METRICS_POLL_SECONDS)

    def handle(self, *args: Any, **options: Any) -> None:
        exporter = Exporter(backfill_seconds=settings.AUTEUR_METRICS_BACKFILL_SECONDS)
        exporter.serve(address=options["address"], port=options["port"], interval=options["interval"])

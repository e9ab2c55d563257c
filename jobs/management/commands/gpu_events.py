"""`manage.py gpu_events`: the deployment's one consumer of GPU calls' announcements.

Long-running: drains the announcement list in batches and moves each job on
(`jobs.life.announcements`). SIGTERM or SIGINT finishes the batch at hand, then exits.
"""

from __future__ import annotations

import signal
import threading
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from jobs.life.announcements import BATCH_SIZE, gpu_events_run


class Command(BaseCommand):
    help = "Consume GPU calls' completion and progress announcements (one per deployment)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--batch-size", type=int, default=BATCH_SIZE)

    def handle(self, *args: Any, **options: Any) -> None:
        stop = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
        self.stdout.write("gpu_events: consuming", ending="\n")
        self.stdout.flush()
        taken = gpu_events_run(stop=stop, batch_size=options["batch_size"])
        self.stdout.write(f"gpu_events: stopped after {taken} announcements")

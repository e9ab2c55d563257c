"""Imported by a test worker (`start_worker(include=...)`): planning a job's pieces kills the worker
process that runs it, as a file that exhausts its memory gets it killed by the kernel. Each run
first writes its pid to the file named by AUTEUR_TEST_CRASH_LOG, so the test counts the runs."""

from __future__ import annotations

import os
import signal
from typing import Any

from celery.signals import worker_process_init


@worker_process_init.connect
def _plan_kills_its_process(**_: Any) -> None:
    from jobs.life import pieces

    def killed(job: Any) -> Any:
        with open(os.environ["AUTEUR_TEST_CRASH_LOG"], "a") as log:
            log.write(f"{os.getpid()}\n")
        os.kill(os.getpid(), signal.SIGKILL)

    pieces.pieces_plan = killed

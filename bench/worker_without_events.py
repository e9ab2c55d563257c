"""A Celery worker as `celery -A auteur worker ARGS` starts it, with the metrics' events off.

    .venv/bin/python -m bench.worker_without_events worker -Q default -c 2 ...

Off: the task events (`worker_send_task_events`, which the metrics exporter and Flower read) and
the one queue-wait event per task run (auteur.celery.report_queue_wait). The B side of
bench/pipeline_throughput.py's `--events-ab`: the same worker, minus what the metrics cost it.
Production has no switch for either; this one lives in bench/ only.
"""

from __future__ import annotations

import sys

from celery.signals import task_prerun

from auteur.celery import app, report_queue_wait

if __name__ == "__main__":
    app.conf.worker_send_task_events = False
    if not task_prerun.disconnect(report_queue_wait):
        raise SystemExit("the queue-wait receiver was not connected: nothing would be switched off")
    app.worker_main(sys.argv[1:])

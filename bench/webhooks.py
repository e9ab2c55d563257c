"""Webhooks: what a job event costs the code that records it, and how soon a receiver has it.

    .venv/bin/python bench/webhooks.py [--events 400] [--concurrency 2]

Starts its own throwaway stack and one real Celery worker on the `webhooks` queue only, and a
receiver on 127.0.0.1 in this process (AUTEUR_WEBHOOK_ALLOW_LOOPBACK on), answering 200 at once.
Job events are recorded through `job_event_record` from this process, outside a transaction
(committed at once, so the after-commit hook runs inside the call).

Reports
  record_us            the mean time of one `job_event_record` (a `completed` event) for a user
                       without webhooks, and for a user with one account webhook (the hook's one
                       query, then the delivery row and its publish), and a `submitted` event
                       (no webhook event: no query);
  to_receiver_ms       p50/p99 from the delivery row's insert to the receiver's arrival, with
                       events sent one at a time, then as a burst of `--events`.
Writes bench/results/webhooks.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._stack import RESULTS_DIR, celery_worker_argv, django_stack
from bench._stack import percentile as pct

ARRIVALS: dict[str, float] = {}


class Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        ARRIVALS[self.headers["webhook-id"]] = time.time()
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=2, help="worker processes on the webhooks queue")
    args = parser.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    with django_stack(AUTEUR_WEBHOOK_ALLOW_LOOPBACK="1") as stack:
        stack.spawn("worker", celery_worker_argv("webhooks", concurrency=args.concurrency))
        results = run(args, f"http://127.0.0.1:{server.server_address[1]}/hook")
    server.shutdown()
    print(json.dumps(results, indent=2))
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / "webhooks.json").write_text(json.dumps(results, indent=2))


def _mean_us(fn: Any, n: int) -> float:
    started = time.perf_counter()
    for _ in range(n):
        fn()
    return round((time.perf_counter() - started) / n * 1e6, 1)


def _latencies(message_ids: dict[str, datetime], timeout: float = 120) -> list[float]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not all(m in ARRIVALS for m in message_ids):
        time.sleep(0.05)
    return [(ARRIVALS[m] - created.timestamp()) * 1000 for m, created in message_ids.items() if m in ARRIVALS]


def run(args: argparse.Namespace, url: str) -> dict[str, object]:
    from auteur.celery import warm_up_publisher
    from auteur.users.models import User
    from jobs.events.record import job_event_record
    from jobs.models import Job, JobEventType
    from projects.models import Project
    from webhooks.models import Delivery
    from webhooks.services import webhook_create

    warm_up_publisher()
    quiet = User.objects.create(email="quiet@bench.test")
    hooked = User.objects.create(email="hooked@bench.test")
    jobs = {}
    for user in (quiet, hooked):
        project = Project.objects.create(user=user, name="bench")
        jobs[user.pk] = Job.objects.create(user=user, project=project, type="tts", credits_cost=1)
    webhook_create(owner=hooked, url=url, event_types=["completed"])

    def record(user: User, type: JobEventType) -> None:
        job_event_record(jobs[user.pk].pk, type)

    n = 300
    record(quiet, JobEventType.COMPLETED)  # warm the query plans
    results: dict[str, object] = {
        "record_us": {
            "submitted_event": _mean_us(lambda: record(quiet, JobEventType.SUBMITTED), n),
            "completed_event_without_webhooks": _mean_us(lambda: record(quiet, JobEventType.COMPLETED), n),
            "completed_event_with_one_webhook": _mean_us(lambda: record(hooked, JobEventType.COMPLETED), n),
        },
        "worker_processes": args.concurrency,
    }
    _latencies(dict(Delivery.objects.values_list("message_id", "created_at")))  # the warm-up's arrive

    one_at_a_time: dict[str, datetime] = {}
    for _ in range(50):
        record(hooked, JobEventType.COMPLETED)
        last = Delivery.objects.order_by("-id").values_list("message_id", "created_at").first()
        assert last is not None
        one_at_a_time[last[0]] = last[1]
        _latencies({last[0]: last[1]})
    first_burst_id = Delivery.objects.order_by("-id").values_list("id", flat=True).first() or 0
    started = time.monotonic()
    for _ in range(args.events):
        record(hooked, JobEventType.COMPLETED)
    burst = dict(Delivery.objects.filter(id__gt=first_burst_id).values_list("message_id", "created_at"))
    burst_ms = _latencies(burst)
    elapsed = time.monotonic() - started
    single_ms = _latencies(one_at_a_time)
    results["to_receiver_ms"] = {
        "one_at_a_time": {"n": len(single_ms), "p50": round(pct(single_ms, 50), 1),
                          "p99": round(pct(single_ms, 99), 1)},
        "burst": {"n": len(burst_ms), "of": len(burst), "p50": round(pct(burst_ms, 50), 1),
                  "p99": round(pct(burst_ms, 99), 1), "deliveries_per_second": round(len(burst_ms) / elapsed, 1)},
    }
    results["missing"] = len(set(burst) - set(ARRIVALS)) + len(set(one_at_a_time) - set(ARRIVALS))
    return results


if __name__ == "__main__":
    main()

"""One real job's trace, drawn as a trace viewer draws it: docs/images/job-trace.png.

    .venv/bin/python bench/trace_waterfall.py [--out docs/images/job-trace.png]

On a throwaway stack: the API under gunicorn, a Celery worker on every queue and the GPU
announcements' consumer, with the `local` GPU backend (the TTS engine runs on the CPU), each
exporting its traces over OTLP/HTTP to a receiver in this process (bench/otlp_sink.py). One TTS
job is submitted over HTTP with a webhook to a receiver on loopback; once its webhook attempt is
in, its trace is drawn: one bar per span on the job's time line, indented under its parent,
coloured by process. The database and Redis spans under each step are left out of the drawing
(they are in the trace: their count is printed) so that the job's own spans stay readable.
Writes the trace's spans to bench/results/trace/spans.json.
"""

from __future__ import annotations

import argparse
import http.client
import http.server
import json
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._stack import (
    RESULTS_DIR,
    api_answers,
    celery_worker_argv,
    django_stack,
    free_port,
    gunicorn_argv,
    wait_until,
)
from bench.otlp_sink import Collector

HIDDEN_SCOPES = ("opentelemetry.instrumentation.psycopg", "opentelemetry.instrumentation.redis")
COLOURS = {"auteur-api": "#4C72B0", "auteur-worker": "#DD8452", "auteur-gpu-events": "#55A868"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("docs/images/job-trace.png"))
    args = parser.parse_args()
    collector = Collector()
    hooks: list[dict[str, str]] = []

    class Hook(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            hooks.append(dict(self.headers.items()))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *a: Any) -> None:
            return None

    hook_server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Hook)
    threading.Thread(target=hook_server.serve_forever, daemon=True).start()
    traced = {"OTEL_EXPORTER_OTLP_ENDPOINT": collector.url, "OTEL_BSP_SCHEDULE_DELAY": "100"}
    with django_stack(AUTEUR_GPU_BACKEND="local", AUTEUR_WEBHOOK_ALLOW_LOOPBACK="1") as stack:
        from auteur.users.models import User
        from auteur.users.services import user_issue_token
        from credits.services.ledger import credit_grant
        from jobs.models import TERMINAL_STATUSES, Job
        from projects.models import Project

        user = User.objects.create_user(email="trace@bench.invalid")
        credit_grant(user=user, amount=100, type="bonus", description="bench")
        token, project = user_issue_token(user=user), str(Project.objects.create(user=user, name="Film").pk)
        port = free_port()
        stack.spawn("api", gunicorn_argv(port, workers=1), OTEL_SERVICE_NAME="auteur-api", **traced)
        stack.spawn("worker", celery_worker_argv(concurrency=2), OTEL_SERVICE_NAME="auteur-worker", **traced)
        stack.spawn("gpu-events", [sys.executable, "manage.py", "gpu_events"], OTEL_SERVICE_NAME="auteur-gpu-events",
                    **traced)
        wait_until(lambda: api_answers(port), 60, "the API", every=0.1)
        time.sleep(5)  # the worker connects
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        conn.request("POST", "/api/v1/jobs/tts", body=json.dumps({
            "project_id": project, "text": "Every step of this job is one span of its trace.",
            "webhook": f"http://127.0.0.1:{hook_server.server_address[1]}/hook",
            "webhook_events_filter": ["completed"]}),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
        job_id = json.loads(conn.getresponse().read())["job_id"]
        wait_until(lambda: Job.objects.get(pk=job_id).status in TERMINAL_STATUSES, 120, "the job ending")
        job = Job.objects.get(pk=job_id)
        trace_id = job.traceparent.split("-")[1]
        wait_until(lambda: any(s["name"] == "webhook.attempt" for s in collector.trace(trace_id)), 60,
                   "the webhook attempt's span")
        time.sleep(1)
        spans = collector.trace(trace_id)
    collector.stop()
    hook_server.shutdown()
    shown = [s for s in spans if s["scope"] not in HIDDEN_SCOPES]
    print(json.dumps({"job": job_id, "status": job.status, "trace_id": trace_id, "spans": len(spans),
                      "drawn": len(shown), "database_and_redis_spans": len(spans) - len(shown)}, indent=2))
    (RESULTS_DIR / "trace").mkdir(parents=True, exist_ok=True)  # beside the figures, not one of them
    (RESULTS_DIR / "trace" / "spans.json").write_text(json.dumps(spans, indent=1))
    draw(shown, job_id, trace_id, args.out)


def ordered(spans: list[dict[str, Any]]) -> list[tuple[int, dict[str, Any]]]:
    """Depth-first from the root, children by start: (depth, span)."""
    children: dict[str, list[dict[str, Any]]] = {}
    ids = {s["span_id"] for s in spans}
    for span in spans:
        children.setdefault(span["parent"] if span["parent"] in ids else "", []).append(span)
    out: list[tuple[int, dict[str, Any]]] = []

    def walk(parent: str, depth: int) -> None:
        for span in sorted(children.get(parent, []), key=lambda s: s["start_ns"]):
            out.append((depth, span))
            walk(span["span_id"], depth + 1)

    walk("", 0)
    return out


def draw(spans: list[dict[str, Any]], job_id: str, trace_id: str, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    rows = ordered(spans)
    start = min(s["start_ns"] for s in spans)
    end = max(s["end_ns"] for s in spans)
    total_ms = (end - start) / 1e6
    fig, ax = plt.subplots(figsize=(13, 0.32 * len(rows) + 1.6))
    for y, (depth, span) in enumerate(rows):
        left = (span["start_ns"] - start) / 1e6
        width = max((span["end_ns"] - span["start_ns"]) / 1e6, total_ms / 400)
        colour = "#C44E52" if span["status"] == 2 else COLOURS.get(span["service"], "#8172B3")
        ax.barh(y, width, left=left, height=0.62, color=colour)
        ax.text(-0.36, y, "  " * depth + span["name"], ha="left", va="center", fontsize=8, family="monospace",
                transform=ax.get_yaxis_transform())
        ax.text(left + width + total_ms * 0.005, y, f"{(span['end_ns'] - span['start_ns']) / 1e6:.1f} ms",
                va="center", fontsize=7, color="#444444")
    ax.set_ylim(len(rows) - 0.5, -0.5)
    ax.set_xlim(0, total_ms * 1.1)
    ax.set_yticks([])
    ax.set_xlabel("ms since the submission's request began")
    ax.set_title(f"Trace {trace_id} of job {job_id}", fontsize=10, loc="left")
    ax.legend(handles=[Patch(color=c, label=name) for name, c in COLOURS.items()], loc="upper right", fontsize=8)
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110, bbox_inches="tight")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

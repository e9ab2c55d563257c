"""An OTLP/HTTP trace receiver on loopback: what a collector does for the sender, no more.

    .venv/bin/python -m bench.otlp_sink --port 4318 --stats sink.json

As a process (bench/pipeline_throughput.py --tracing-ab), it reads each batch and drops it,
counting requests and bytes (written to --stats on SIGTERM): traces on are then measured with an
exporter that really sends. As a `Collector` in a process (tests/jobs/test_tracing.py,
bench/trace_waterfall.py), it decodes every span it gets and keeps them in memory.
"""

from __future__ import annotations

import argparse
import http.server
import json
import signal
import threading
from pathlib import Path
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

ANSWER = ExportTraceServiceResponse().SerializeToString()


class Collector:
    """Receives on 127.0.0.1:`port` (a free one by default); `keep`: decode and keep every span."""

    def __init__(self, port: int = 0, *, keep: bool = True) -> None:
        self.spans: list[dict[str, Any]] = []
        self.raw: list[bytes] = []
        self.counts = {"requests": 0, "bytes": 0}
        self.lock = threading.Lock()
        collector = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                collector.add(body, keep)
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(ANSWER)))
                self.end_headers()
                self.wfile.write(ANSWER)

            def log_message(self, *args: Any) -> None:
                return None

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def add(self, body: bytes, keep: bool) -> None:
        found = _decoded(body) if keep else []
        with self.lock:
            self.counts["requests"] += 1
            self.counts["bytes"] += len(body)
            if keep:
                self.spans.extend(found)
                self.raw.append(body)

    def trace(self, trace_id: str) -> list[dict[str, Any]]:
        with self.lock:
            return [s for s in self.spans if s["trace_id"] == trace_id]

    def stop(self) -> None:
        self.server.shutdown()


def _decoded(body: bytes) -> list[dict[str, Any]]:
    request = ExportTraceServiceRequest()
    request.ParseFromString(body)
    found = []
    for resource_spans in request.resource_spans:
        service = next((a.value.string_value for a in resource_spans.resource.attributes
                        if a.key == "service.name"), "")
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                found.append({
                    "name": span.name, "trace_id": span.trace_id.hex(), "span_id": span.span_id.hex(),
                    "parent": span.parent_span_id.hex(), "kind": span.kind, "service": service,
                    "scope": scope_spans.scope.name, "status": span.status.code,
                    "status_message": span.status.message,
                    "start_ns": span.start_time_unix_nano, "end_ns": span.end_time_unix_nano,
                    "attributes": {a.key: _value(a.value) for a in span.attributes},
                    "events": [{a.key: _value(a.value) for a in e.attributes} for e in span.events],
                    "links": [(link.trace_id.hex(), link.span_id.hex()) for link in span.links],
                })
    return found


def _value(value: Any) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_value(v) for v in value.array_value.values]
    return getattr(value, kind) if kind else None


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--stats", type=Path, required=True)
    args = parser.parse_args()
    sink = Collector(args.port, keep=False)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    done.wait()
    args.stats.write_text(json.dumps(sink.counts))
    sink.stop()


if __name__ == "__main__":
    main()

"""Tracing's pieces in one process (auteur/core/tracing.py, gpu_tasks/call_trace.py): when it is on,
what leaves the process, what a log line carries, and what a call's trace record may hold.
The whole trace of a job across processes: tests/jobs/test_tracing.py."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode

from auteur.core import logging as auteur_logging
from auteur.core import trace_export, tracing
from auteur.core.logging import ContextFilter, JsonFormatter
from auteur.core.queues import CLOCK_TASKS
from gpu_tasks.call_trace import MAX_PHASES, CallPhases, CallTrace

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
NS = 1_800_000_000 * 10**9  # 2027


@pytest.mark.parametrize(("environ", "on"), [
    ({}, False),
    ({"OTEL_TRACES_EXPORTER": "none"}, False),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": ""}, False),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, True),
    ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, True),
    ({"OTEL_TRACES_EXPORTER": "console"}, True),
    ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, False),
    ({"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, False),
])
def test_traces_are_on_only_where_an_exporter_is_configured(environ: dict[str, str], on: bool) -> None:
    assert tracing.wanted(environ) is on


def test_an_exporter_that_is_not_installed_is_refused_by_name() -> None:
    with pytest.raises(ImproperlyConfigured, match="zipkin"):
        trace_export.exporters({"OTEL_TRACES_EXPORTER": "zipkin"})
    with pytest.raises(ImproperlyConfigured, match="http/protobuf"):
        trace_export.exporters({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"})


def test_the_default_sampler_keeps_units_of_work_and_drops_lone_client_calls_and_clock_ticks() -> None:
    sampler = trace_export.sampler({})
    decide = lambda kind, name="x": sampler.should_sample(None, 1, name, kind).decision.is_sampled()  # noqa: E731
    assert decide(SpanKind.SERVER) and decide(SpanKind.CONSUMER) and decide(SpanKind.INTERNAL)
    assert decide(SpanKind.PRODUCER, "apply_async/jobs.audio.prepare")
    assert not decide(SpanKind.CLIENT)  # a Redis poll of a worker's outside any task
    assert not decide(SpanKind.PRODUCER, f"apply_async/{sorted(CLOCK_TASKS)[0]}")  # beat's every few seconds


def exported(record: Any) -> list[Any]:
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(trace_export.ScrubbingExporter(memory)))
    record(provider.get_tracer("test"))
    return list(memory.get_finished_spans())


def test_only_the_allowed_attributes_leave_the_process_and_urls_keep_their_origin() -> None:
    def record(tracer: Any) -> None:
        with tracer.start_as_current_span("GET /storage/download/k?token=s1gn3d") as span:
            span.set_attributes({
                "http.target": "/storage/download/projects/p/my-secret-film.wav?token=s1gn3d&exp=1",
                "http.route": "storage/download/<path:key>",
                "url.full": "https://u:pw@bucket.example:9000/pub/tok3nsecret/name.mp4?X-Amz-Signature=abc123",
                "url.query": "token=s1gn3d",
                "http.request.header.authorization": ("Bearer eyJhbGciOi.eyJzdWIiOi.c2lnbmF0dXJl",),
                "enduser.email": "someone@example.com",
                "celery.retry.reason": "ValueError('the velvet lighthouse')",
                "auteur.job.credits": 7,
                "http.request.method": "GET",
            })
            span.add_event("exception", {"exception.type": "ValueError",
                                         "exception.message": "the velvet lighthouse",
                                         "exception.stacktrace": "Traceback ... the velvet lighthouse"})
            span.set_status(Status(StatusCode.ERROR, "ValueError: the velvet lighthouse"))

    (span,) = exported(record)
    text = json.dumps({"name": span.name, "attributes": dict(span.attributes), "status": span.status.description,
                       "events": [dict(e.attributes or {}) for e in span.events]})
    for secret in ("s1gn3d", "abc123", "eyJhbGciOi", "someone@example.com", "my-secret-film", "tok3nsecret",
                   "velvet", ":pw@"):
        assert secret not in text, secret
    assert dict(span.attributes) == {"http.route": "storage/download/<path:key>", "auteur.job.credits": 7,
                                     "url.full": "https://bucket.example:9000/", "http.request.method": "GET"}
    assert [dict(e.attributes or {}) for e in span.events] == [{"exception.type": "ValueError"}]
    assert span.status.description == "ValueError"


def test_the_exporter_answers_as_the_one_it_wraps() -> None:
    memory = InMemorySpanExporter()
    assert trace_export.ScrubbingExporter(memory).export([]) is SpanExportResult.SUCCESS


def test_a_line_logged_inside_a_span_carries_its_trace_and_span_ids(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tracing, "_enabled", True)
    monkeypatch.setattr(auteur_logging, "_trace_ids", tracing.log_ids)

    def line() -> dict[str, Any]:
        record = logging.LogRecord("auteur.test", logging.INFO, __file__, 1, "step done", (), None)
        ContextFilter().filter(record)
        return dict(json.loads(JsonFormatter().format(record)))

    with TracerProvider().get_tracer("test").start_as_current_span("step") as span:
        inside = line()
    context = span.get_span_context()
    assert inside["trace_id"] == format(context.trace_id, "032x")
    assert inside["span_id"] == format(context.span_id, "016x")
    assert "trace_id" not in line() and "span_id" not in line()


def test_off_every_helper_is_a_no_op() -> None:
    assert not tracing.enabled()
    assert tracing.current_traceparent() == "" and tracing.log_ids() == ("", "")
    with tracing.span_in("x", TRACEPARENT) as span:
        assert not span.is_recording()
    tracing.record_phases(object(), TRACEPARENT, [("engine.run", NS, NS + 1)])


def test_a_call_times_its_phases_only_where_its_payload_carries_a_traceparent() -> None:
    phases = CallPhases({"traceparent": TRACEPARENT})
    with phases.phase("engine.run"):
        pass
    record = phases.record()
    assert record is not None and CallTrace.of(record) == CallTrace(TRACEPARENT, tuple(phases.phases))
    untraced = CallPhases({"traceparent": "not-a-traceparent"})
    with untraced.phase("engine.run"):
        pass
    assert untraced.record() is None and CallPhases({}).record() is None


@pytest.mark.parametrize("value", [
    None, [], "x", {"traceparent": TRACEPARENT},
    {"traceparent": "00-" + "0" * 31 + "-b7ad6b7169203331-01", "phases": []},
    {"traceparent": TRACEPARENT + "\n", "phases": []},
    {"traceparent": TRACEPARENT, "phases": {"engine.run": [NS, NS]}},
    {"traceparent": TRACEPARENT, "phases": [["engine.run", NS]]},
    {"traceparent": TRACEPARENT, "phases": [["rm -rf", NS, NS]]},
    {"traceparent": TRACEPARENT, "phases": [["engine.run", NS + 5, NS]]},  # ends before it starts
    {"traceparent": TRACEPARENT, "phases": [["engine.run", 1, 2]]},  # 1970
    {"traceparent": TRACEPARENT, "phases": [["engine.run", float(NS), NS]]},
    {"traceparent": TRACEPARENT, "phases": [["engine.run", True, NS]]},
    {"traceparent": TRACEPARENT, "phases": [["engine.run", NS, 10**40]]},
    {"traceparent": TRACEPARENT, "phases": [["engine.run", NS, NS]] * (MAX_PHASES + 1)},
    {"traceparent": TRACEPARENT, "phases": [[["engine.run"], NS, NS]]},  # unhashable: refused, not raised
    {"traceparent": TRACEPARENT, "phases": [[{"a": 1}, NS, NS]]},
    {"traceparent": "00-" + "0" * 32 + "-b7ad6b7169203331-01", "phases": []},  # all-zero ids are invalid
    {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-" + "0" * 16 + "-01", "phases": []},
])
def test_a_call_trace_record_is_read_strictly(value: Any) -> None:
    """The record comes from the call's container: anything but the exact form is no trace."""
    assert CallTrace.of(value) is None


def test_a_call_trace_record_of_the_exact_form_is_read() -> None:
    found = CallTrace.of({"traceparent": TRACEPARENT,
                          "phases": [["engine.load", NS, NS + 5], ["engine.run", NS + 5, NS + 9]]})
    assert found is not None and [p.name for p in found.phases] == ["engine.load", "engine.run"]


@pytest.mark.parametrize(("value", "disabled"), [
    (None, {"psycopg", "redis"}), ("", {"psycopg", "redis"}), ("none", set()), ("celery", {"celery"}),
    ("psycopg, urllib3", {"psycopg", "urllib3"}),
])
def test_statement_and_command_spans_are_off_unless_asked_for(value: str | None, disabled: set[str]) -> None:
    environ = {} if value is None else {"OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": value}
    assert trace_export.disabled_instrumentations(environ) == disabled


_MEMORY = InMemorySpanExporter()


@pytest.fixture
def traced(monkeypatch: pytest.MonkeyPatch) -> InMemorySpanExporter:
    """Traces on in this process, into the SDK's in-memory exporter (the global provider is set
    once per process; off again after the test, the helpers make nothing)."""
    from opentelemetry import trace

    if not isinstance(trace.get_tracer_provider(), TracerProvider):
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(_MEMORY))
        trace.set_tracer_provider(provider)
    monkeypatch.setattr(tracing, "_enabled", True)
    _MEMORY.clear()
    return _MEMORY


def a_job(traceparent: str) -> Any:
    from datetime import UTC, datetime, timedelta
    from types import SimpleNamespace

    return SimpleNamespace(pk="j1", type="transcription", attempts=1, user_id="u1", credits_cost=3, member_id=None,
                           traceparent=traceparent, created_at=datetime.now(UTC) - timedelta(minutes=1))


def test_a_calls_phases_are_spans_of_the_job_under_the_span_that_spawned_it(traced: InMemorySpanExporter) -> None:
    import time

    job = a_job(TRACEPARENT)
    spawn = "00-0af7651916cd43dd8448eb211c80319c-1111111111111111-01"  # the job's trace, the spawn's span
    now = time.time_ns()
    tracing.record_phases(job, spawn, [("engine.load", now - 3000, now - 2000), ("engine.run", now - 2000, now - 10)])
    spans = traced.get_finished_spans()
    assert [s.name for s in spans] == ["gpu.engine.load", "gpu.engine.run"]
    assert all(format(s.context.trace_id, "032x") == "0af7651916cd43dd8448eb211c80319c" for s in spans)
    assert all(s.parent is not None and format(s.parent.span_id, "016x") == "1111111111111111" for s in spans)
    assert dict(spans[0].attributes or {})["auteur.job.id"] == "j1" and spans[1].end_time == now - 10


def test_a_call_cannot_put_spans_in_another_trace_nor_outside_the_jobs_life(traced: InMemorySpanExporter) -> None:
    import time

    now = time.time_ns()
    elsewhere = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    # Another trace's context: the phases go under the job's own span instead.
    tracing.record_phases(a_job(TRACEPARENT), elsewhere, [("engine.run", now - 1000, now - 10)])
    (span,) = traced.get_finished_spans()
    assert format(span.context.trace_id, "032x") == "0af7651916cd43dd8448eb211c80319c"
    assert span.parent is not None and format(span.parent.span_id, "016x") == "b7ad6b7169203331"
    traced.clear()
    # Before the job existed, or in the future: left out. A job without a trace of its own: none.
    tracing.record_phases(a_job(TRACEPARENT), TRACEPARENT, [("engine.run", NS, NS + 1),
                                                          ("engine.run", now - 10, now + 10**12)])
    tracing.record_phases(a_job(""), elsewhere, [("engine.run", now - 1000, now - 10)])
    assert traced.get_finished_spans() == ()

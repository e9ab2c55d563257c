"""Traces (OpenTelemetry): one trace per job, from the request that submits it to its webhooks.

Off unless an exporter is configured by the standard variables: `OTEL_TRACES_EXPORTER` (`otlp`,
`console`, or the entry point name of an installed exporter package), or an OTLP endpoint
(`OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`); `OTEL_SDK_DISABLED=true`
turns it off whatever else is set. Off, nothing is instrumented and every helper here costs one
test of a module flag. On, every process that sets Django up (the API, workers, beat, the GPU
announcements' consumer) exports its spans in batches (`OTEL_BSP_*`), with the maintained
instrumentations of Django, Celery, psycopg, Redis, requests and urllib3.

A job's trace: the submission's `job.submit` span (a child of the request's span, which starts a
trace of its own: auteur.core.trace_export says why) is stored on the job's row (`Job.traceparent`).
Whatever later works on the job (a step, the completion consumer, the reaper, a webhook attempt)
continues that context (`job_context`), so every span of a job is in its trace, whichever process
and whichever other job's work published it.

Span attributes carry ids, types and numbers only; what leaves the process is an allowlist of
attributes, scrubbed (auteur.core.trace_export).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from auteur.core.logging import use_trace_ids

logger = logging.getLogger(__name__)

TRACER_NAME = "auteur"
_PROPAGATOR = TraceContextTextMapPropagator()
_lock = threading.Lock()
_enabled = False


def enabled() -> bool:
    return _enabled


def wanted(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether the OTEL_* variables ask for traces: an exporter named (not `none`), or an OTLP endpoint."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporters = [name.strip() for name in environ.get("OTEL_TRACES_EXPORTER", "").split(",") if name.strip()]
    if exporters:
        return exporters != ["none"]
    return bool(environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"))


def configure(environ: Mapping[str, str] = os.environ) -> bool:
    """Set up the SDK and the instrumentations once per process, when `wanted`. True when on."""
    global _enabled
    with _lock:
        if _enabled or not wanted(environ):
            return _enabled
        from auteur.core import trace_export

        trace.set_tracer_provider(trace_export.provider(environ))
        trace_export.instrument(environ)
        use_trace_ids(log_ids)
        _enabled = True
        return True


def tracer() -> trace.Tracer:
    return trace.get_tracer(TRACER_NAME)


def current_traceparent() -> str:
    """The W3C `traceparent` of the current span ("" when none is recording)."""
    if not _enabled:
        return ""
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier)
    return carrier.get("traceparent", "")


def trace_id_of(traceparent: str) -> str:
    """The trace id (32 hex digits) of a `traceparent`, "" for none."""
    parts = traceparent.split("-")
    return parts[1] if len(parts) == 4 else ""


@contextlib.contextmanager
def job_context(traceparent: str) -> Iterator[None]:
    """Continue a job's trace here (its stored `traceparent`), unless the current span is already
    in it: a span started or a task published inside belongs to the job's trace."""
    if not _enabled or not traceparent:
        yield
        return
    current = trace.get_current_span().get_span_context()
    if current.is_valid and format(current.trace_id, "032x") == trace_id_of(traceparent):
        yield
        return
    token = otel_context.attach(_PROPAGATOR.extract({"traceparent": traceparent}))
    try:
        yield
    finally:
        otel_context.detach(token)


def job_attributes(job: Any, **extra: Any) -> dict[str, Any]:
    """What a span says of a job: ids, type, attempt and credits (never its inputs)."""
    attributes = {
        "auteur.job.id": str(job.pk), "auteur.job.type": str(job.type), "auteur.job.attempt": int(job.attempts),
        "auteur.user.id": str(job.user_id), "auteur.job.credits": int(job.credits_cost),
    }
    if getattr(job, "member_id", None):
        attributes["auteur.member.id"] = str(job.member_id)
    # `gpu_class=` -> `auteur.gpu.class`: the first underscore of a keyword names its namespace.
    attributes.update({f"auteur.{key.replace('_', '.', 1)}": value
                       for key, value in extra.items() if value is not None})
    return attributes


@contextlib.contextmanager
def job_span(name: str, job: Any, *, kind: SpanKind = SpanKind.INTERNAL, **extra: Any) -> Iterator[Any]:
    """A span of work on `job`, in the job's trace, with the job's attributes and `extra` ones
    (as `auteur.<key>`). Yields the span (a non-recording one when tracing is off)."""
    if not _enabled:
        yield trace.INVALID_SPAN
        return
    with span_in(name, getattr(job, "traceparent", ""), kind=kind, attributes=job_attributes(job, **extra)) as span:
        yield span


@contextlib.contextmanager
def span_in(name: str, traceparent: str, *, kind: SpanKind = SpanKind.INTERNAL,
            attributes: Mapping[str, Any] | None = None) -> Iterator[Any]:
    """A current span continuing `traceparent` (a job's): see job_context. An exception that
    escapes sets its status to the exception's code (or class), never its text."""
    if not _enabled:
        yield trace.INVALID_SPAN
        return
    with job_context(traceparent), tracer().start_as_current_span(
        name, kind=kind, attributes=attributes, record_exception=False, set_status_on_exception=False,
    ) as span:
        try:
            yield span
        except Exception as exc:
            mark_error(span, _code_of(exc))
            raise


def now_ns() -> int:
    """A span's start time, taken before work that `record_job_span` reports once it is done."""
    return time.time_ns() if _enabled else 0


def record_job_span(name: str, job: Any, start_ns: int, *, error_code: str = "", **extra: Any) -> None:
    """A span of work on `job` that began at `start_ns` and ends now (a terminal move, reported
    once it is decided), in the job's trace; `error_code` marks it failed."""
    if not _enabled or not start_ns:
        return
    with job_context(getattr(job, "traceparent", "")):
        span = tracer().start_span(name, attributes=job_attributes(job, **extra), start_time=start_ns)
    if error_code:
        mark_error(span, error_code)
    span.end()


def submission_span(job_type: str) -> contextlib.AbstractContextManager[Any]:
    """The `job.submit` span, current while a job is charged and created (in the request's trace):
    its context is the job's (Job.traceparent). A refusal sets its status to the refusal's code."""
    return span_in("job.submit", "", attributes={"auteur.job.type": str(job_type)})


@contextlib.contextmanager
def call_span(job: Any, payload: dict[str, Any], **extra: Any) -> Iterator[Any]:
    """`gpu.spawn`, current while a call of `job` is started: the call's `payload` carries the
    span's traceparent, which the call continues (gpu_tasks.call_trace)."""
    with job_span("gpu.spawn", job, kind=SpanKind.CLIENT, **extra) as span:
        if _enabled:
            payload["traceparent"] = current_traceparent()
        yield span


def _code_of(exc: BaseException) -> str:
    """An exception as a span's status says it: its machine-readable code, else its class."""
    code = getattr(exc, "code", None)
    return code if isinstance(code, str) and code else type(exc).__name__


def note_job(job: Any, **extra: Any) -> None:
    """Put the job's attributes on the current span (a step task's, say)."""
    if _enabled:
        span = trace.get_current_span()
        if span.is_recording():
            span.set_attributes(job_attributes(job, **extra))


def mark_error(span: Any, code: str) -> None:
    """A span whose work failed: its status says so, with the machine-readable code only."""
    if _enabled and span.is_recording():
        span.set_status(Status(StatusCode.ERROR, code))
        span.set_attribute("auteur.error.code", code)


def record_phases(job: Any, traceparent: str, phases: Sequence[tuple[str, int, int]]) -> None:
    """A GPU call's phases (name, start and end in ns since the epoch, as the call timed them) as
    spans `gpu.<name>` of the job's trace: children of the span that spawned the call (the
    `traceparent` it was given) when that is in the job's trace, else of the job's own span. The
    call's word is taken for nothing else: a job without a trace of its own gets none, and a phase
    outside the job's life (before its submission, or in the future) is left out."""
    own = getattr(job, "traceparent", "")
    if not _enabled or not phases or not own:
        return
    parent = traceparent if trace_id_of(traceparent) == trace_id_of(own) else own
    context = _PROPAGATOR.extract({"traceparent": parent})
    if not trace.get_current_span(context).get_span_context().is_valid:
        context = _PROPAGATOR.extract({"traceparent": own})
    earliest, latest = int(job.created_at.timestamp() * 1e9), time.time_ns()
    attributes = job_attributes(job)
    for name, start_ns, end_ns in phases:
        if earliest <= start_ns <= end_ns <= latest:
            span = tracer().start_span(f"gpu.{name}", context=context, attributes=attributes, start_time=start_ns)
            span.end(end_time=end_ns)


def record_call(job: Any, call_trace: Any) -> None:
    """record_phases for a finished call's `trace` (gpu_tasks.call_trace.CallTrace, or None)."""
    if _enabled and call_trace is not None:
        record_phases(job, call_trace.traceparent, [(p.name, p.start_ns, p.end_ns) for p in call_trace.phases])


def log_ids() -> tuple[str, str]:
    """The current trace and span ids for a log line, ("", "") when none."""
    if not _enabled:
        return "", ""
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return "", ""
    return format(context.trace_id, "032x"), format(context.span_id, "016x")


def flush(timeout_millis: int = 5000) -> None:
    """Export what is buffered (a process about to exit)."""
    if _enabled:
        provider = trace.get_tracer_provider()
        if hasattr(provider, "force_flush"):
            provider.force_flush(timeout_millis)

"""What traces are made of and what leaves the process: the SDK's set-up (auteur.core.tracing.configure
calls `provider`), the instrumentations, the sampler, the edge of the API, and the scrubbing of every
span on its way out.

The edge: a request's `traceparent` (or `tracestate`, `baggage`) is not continued. A client's
sampled flag would otherwise decide whether operators see its jobs at all, and its trace id would
be the trace id of its jobs (known to it in advance, shared with other jobs it chose). The
request's span starts a trace of its own and links to the client's span, so a client that traces
still finds its side from ours. Inside (Celery's messages, the GPU call's payload) W3C Trace
Context is carried as usual; baggage nowhere.

What leaves: an allowlist. A span keeps the attributes named below (ids, codes, numbers, methods,
routes, hosts) and no other: an instrumentation's free text (a retry's reason, an exception's
message or stack, a header) stays in the process. A URL keeps its scheme and host (its path may
hold an object key: a file's name, a public link's secret), a request's target becomes its route.
Status descriptions keep their leading code or exception class. Strings kept are still scrubbed
(auteur.core.logging.scrub).
"""

from __future__ import annotations

import functools
import importlib
import re
from collections.abc import Mapping, Sequence
from importlib.metadata import entry_points
from typing import Any
from urllib.parse import urlsplit

from django.core.exceptions import ImproperlyConfigured
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.propagators.textmap import CarrierT, Getter, default_getter
from opentelemetry.sdk.trace import Event, ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult
from opentelemetry.trace import Link, SpanKind, Status
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from auteur.core.logging import scrub

# The instrumentations, by the names OTEL_PYTHON_DISABLED_INSTRUMENTATIONS takes. Unset (or empty),
# psycopg's and Redis's are off: a span per statement and per command is most of a job's spans,
# and made the pipeline benchmark 0.76 as fast as without traces, against 0.9 at least; `none`
# turns every one on.
INSTRUMENTATIONS = ("django", "celery", "psycopg", "redis", "requests", "urllib3")
DISABLED_BY_DEFAULT = "psycopg,redis"


def disabled_instrumentations(environ: Mapping[str, str]) -> set[str]:
    value = environ.get("OTEL_PYTHON_DISABLED_INSTRUMENTATIONS", "").strip() or DISABLED_BY_DEFAULT
    return {name.strip() for name in value.split(",") if name.strip() and name.strip() != "none"}


def provider(environ: Mapping[str, str]) -> TracerProvider:
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    resource = Resource.create({"service.name": environ.get("OTEL_SERVICE_NAME") or "auteur"})
    made = TracerProvider(resource=resource, sampler=sampler(environ))
    for exporter in exporters(environ):
        made.add_span_processor(BatchSpanProcessor(ScrubbingExporter(exporter)))
    return made


def exporters(environ: Mapping[str, str]) -> list[SpanExporter]:
    names = [name.strip() for name in environ.get("OTEL_TRACES_EXPORTER", "otlp").split(",") if name.strip()]
    found: list[SpanExporter] = []
    for name in names:
        if name == "none":
            continue
        if name in ("otlp", "otlp_proto_http"):
            protocol = environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
            if protocol not in (None, "", "http/protobuf"):
                raise ImproperlyConfigured(
                    f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol}: only http/protobuf is installed (OTLP over HTTP, "
                    "port 4318 of a collector)")
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            found.append(OTLPSpanExporter())
        elif name == "console":
            from opentelemetry.sdk.trace.export import ConsoleSpanExporter

            found.append(ConsoleSpanExporter())
        else:
            points = entry_points(group="opentelemetry_traces_exporter", name=name)
            if not points:
                raise ImproperlyConfigured(f"OTEL_TRACES_EXPORTER names {name!r}, which no installed package provides")
            found.append(next(iter(points)).load()())
    return found


def sampler(environ: Mapping[str, str]) -> Sampler:
    """The sampler OTEL_TRACES_SAMPLER names; by default every trace of a unit of work (a request,
    a task, a job) is kept, but a lone client call outside any (a worker's poll of Redis) and the
    clock tasks beat sends every few seconds."""
    from opentelemetry.sdk.trace import sampling

    if environ.get("OTEL_TRACES_SAMPLER"):
        return sampling._get_from_env_or_default()
    return sampling.ParentBased(root=UnitsOfWork())


class UnitsOfWork(Sampler):
    """Root sampler: samples every root span but a client's (a database query, a Redis command, an
    outgoing request that no request, task or job span encloses) and a clock task's publish (whose
    run is its child, so dropped with it)."""

    def should_sample(self, parent_context: Any, trace_id: int, name: str, kind: SpanKind | None = None,
                      attributes: Any = None, links: Sequence[Any] | None = None, trace_state: Any = None
                      ) -> SamplingResult:
        from auteur.core.queues import CLOCK_TASKS

        if kind is SpanKind.CLIENT or (name.startswith("apply_async/") and name[12:] in CLOCK_TASKS):
            return SamplingResult(Decision.DROP)
        return SamplingResult(Decision.RECORD_AND_SAMPLE, attributes)

    def get_description(self) -> str:
        return "UnitsOfWork"


class InsidePropagator(TraceContextTextMapPropagator):
    """W3C Trace Context between this project's processes; nothing taken from a request's headers
    (the Django instrumentation reads them through a WSGI or ASGI getter): see the module's docstring."""

    def extract(self, carrier: CarrierT, context: Context | None = None,
                getter: Getter[CarrierT] = default_getter) -> Context:
        if getter is not default_getter and type(getter).__name__ in ("WSGIGetter", "ASGIGetter"):
            return context if context is not None else Context()
        return super().extract(carrier, context, getter)


_CLIENT_CONTEXT = TraceContextTextMapPropagator()


def link_client_span(span: Any, request: Any) -> None:
    """Django's request hook: the client's span (its `traceparent`), linked from the request's."""
    header = request.META.get("HTTP_TRACEPARENT", "")
    if header and span.is_recording():
        context = trace.get_current_span(_CLIENT_CONTEXT.extract({"traceparent": header})).get_span_context()
        if context.is_valid:
            span.add_link(context, {"auteur.link": "client"})


def instrument(environ: Mapping[str, str]) -> None:
    from opentelemetry import propagate

    propagate.set_global_textmap(InsidePropagator())
    # Each instrumentation's instrumentor and its options (Django's: a span per request, its
    # middleware first; urllib3's: URLs cut to their origin).
    options: dict[str, tuple[str, dict[str, Any]]] = {
        "django": ("DjangoInstrumentor", {"request_hook": link_client_span, "excluded_urls": environ.get(
            "OTEL_PYTHON_DJANGO_EXCLUDED_URLS", "healthz,readyz,metrics")}),
        "celery": ("CeleryInstrumentor", {}),
        "psycopg": ("PsycopgInstrumentor", {"skip_dep_check": True}),
        "redis": ("RedisInstrumentor", {}),
        "requests": ("RequestsInstrumentor", {}),
        "urllib3": ("URLLib3Instrumentor", {"url_filter": url_origin}),
    }
    disabled = disabled_instrumentations(environ)
    for name in INSTRUMENTATIONS:
        if name not in disabled:
            instrumentor, kwargs = options[name]
            module = importlib.import_module(f"opentelemetry.instrumentation.{name}")
            getattr(module, instrumentor)().instrument(**kwargs)


# ---- What leaves the process.

# Attributes kept (a key equal to one of these, or under one ending with "."); everything else is
# dropped. Strings kept are scrubbed; URL-valued keys are cut to their origin.
KEPT = (
    "auteur.", "http.request.method", "http.method", "http.status_code", "http.response.status_code",
    "http.route", "http.scheme", "http.flavor", "url.scheme", "network.", "net.", "server.", "error.type",
    "db.system", "db.name", "db.operation", "db.statement", "db.redis.database_index", "db.redis.args_length",
    "messaging.", "celery.action", "celery.state", "celery.task_name", "celery.hostname", "celery.delivery_info",
    "celery.retries", "celery.timelimit", "celery.countdown", "exception.type", "otel.", "code.function",
    "thread.",
)
URL_KEYS = frozenset({"http.url", "url.full"})
_CODE = re.compile(r"[A-Za-z_][\w.]*")


@functools.lru_cache(maxsize=1024)
def kept(key: str) -> bool:
    return key in URL_KEYS or any(key == allowed or (allowed.endswith(".") and key.startswith(allowed))
                                  for allowed in KEPT)


def url_origin(url: str) -> str:
    """A URL as a span may hold it: its scheme and host, never its path, query or credentials."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "[url]"
    return f"{parts.scheme}://{host}{port}/" if parts.scheme else "[url]"


@functools.lru_cache(maxsize=4096)
def _scrubbed(text: str) -> str:
    """scrub(), remembered: the strings of spans repeat (statements, routes, task names)."""
    return scrub(text)


def _value(key: str, value: Any) -> Any:
    if key in URL_KEYS and isinstance(value, str):
        return url_origin(value)
    if isinstance(value, str):
        return _scrubbed(value) if len(value) <= 4096 else scrub(value)
    if isinstance(value, tuple | list):
        return tuple(scrub(item) if isinstance(item, str) else item for item in value)
    return value


def attributes_out(attributes: Mapping[str, Any] | None) -> dict[str, Any]:
    return {key: _value(key, value) for key, value in (attributes or {}).items() if kept(key)}


def description_out(description: str | None) -> str | None:
    """A status description as it leaves: its leading code or exception class only."""
    if not description:
        return description
    match = _CODE.match(description.strip())
    return match.group(0) if match else None


class ScrubbingExporter(SpanExporter):
    """Wraps an exporter: every span goes through `span_out` first."""

    def __init__(self, inner: SpanExporter) -> None:
        self.inner = inner

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return self.inner.export([span_out(span) for span in spans])

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)


def span_out(span: ReadableSpan) -> ReadableSpan:
    return ReadableSpan(
        name=scrub(_PATH_QUERY.sub(r"\1\2?[query redacted]", span.name)), context=span.context, parent=span.parent,
        resource=span.resource, attributes=attributes_out(span.attributes),
        events=[Event(scrub(e.name), attributes_out(e.attributes), e.timestamp) for e in span.events],
        links=[Link(link.context, attributes_out(link.attributes)) for link in span.links],
        kind=span.kind, status=Status(span.status.status_code, description_out(span.status.description)),
        start_time=span.start_time, end_time=span.end_time, instrumentation_scope=span.instrumentation_scope,
    )


# A path with a query string in a span's name.
_PATH_QUERY = re.compile(r"(^|[\s\"'(])(/[^\s?\"']*)\?[^\s\"']*")

"""Structured logs: one JSON object per line, carrying request, user, job, trace and span ids when known.

The ids live in context variables set by the request middleware and by the job tasks, so a
line logged anywhere below them carries them without being passed around. Tokens, emails and
signed URLs never enter a log: scrub() masks them should a message contain one.
"""

from __future__ import annotations

import contextvars
import logging
import re
from collections.abc import Callable
from typing import Any

from pythonjsonlogger.json import JsonFormatter as _LibraryJsonFormatter

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
user_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("user_id", default=None)
job_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("job_id", default=None)

_SCRUBBERS = [
    (re.compile(r"(?i)bearer\s+[A-Za-z0-9._~+/=-]+"), "Bearer [redacted]"),
    # An API key (auteur/users/keys.py) wherever it appears: its visible prefix stays, to tell which.
    (re.compile(r"(auteur_sk_[A-Za-z0-9]{0,6})[A-Za-z0-9]*"), r"\1[redacted]"),
    (re.compile(r"eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*"), "[jwt redacted]"),
    # Query strings of signed URLs (S3 X-Amz-*, our own sig/exp) are credentials.
    (re.compile(r"(https?://[^\s?\"']+)\?[^\s\"']*"), r"\1?[query redacted]"),
    (re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}"), "[email redacted]"),
]


def scrub(text: str) -> str:
    for pattern, replacement in _SCRUBBERS:
        text = pattern.sub(replacement, text)
    return text


class ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get() or "-"
        record.user_id = user_id_var.get() or "-"
        record.job_id = getattr(record, "job_id", None) or job_id_var.get() or "-"
        trace_id, span_id = _trace_ids()
        record.trace_id, record.span_id = trace_id or "-", span_id or "-"
        return True


def _no_trace() -> tuple[str, str]:
    return "", ""


_trace_ids: Callable[[], tuple[str, str]] = _no_trace


def use_trace_ids(source: Callable[[], tuple[str, str]]) -> None:
    """Where the current trace and span ids come from (auteur.core.tracing, once traces are on)."""
    global _trace_ids
    _trace_ids = source


class ClockTaskFilter(logging.Filter):
    """Drops Celery's routine INFO lines about the tasks beat sends every few seconds
    (auteur.core.queues.CLOCK_TASKS): beat's "Sending due task", the worker's "received" and
    "succeeded". Anything above INFO about them (a failure, a retry) passes."""

    ROUTINE = frozenset({"celery.beat", "celery.worker.strategy", "celery.app.trace"})

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.INFO or record.name not in self.ROUTINE:
            return True
        from auteur.core.queues import CLOCK_TASKS

        args = record.args
        if isinstance(args, dict):  # the worker's lines: {"name": ..., "id": ...}
            return args.get("name") not in CLOCK_TASKS
        # beat's line: (entry name, task name)
        return not (isinstance(args, tuple) and len(args) == 2 and args[1] in CLOCK_TASKS)


class JsonFormatter(_LibraryJsonFormatter):
    """python-json-logger's formatter, writing only the fields below (in this order): the ids
    the ContextFilter set, when known, and every text scrubbed.

    Only these fields, not the record's extras: Django's loggers pass the request object, whose
    text (a path with its query string) scrub() would not recognise as a signed URL.
    """

    FIELDS = ("ts", "level", "logger", "msg", "request_id", "user_id", "job_id", "trace_id", "span_id", "exc")
    SCRUBBED = frozenset({"msg", "exc"})

    def __init__(self) -> None:
        super().__init__(
            ["levelname", "name", "message", "request_id", "user_id", "job_id", "trace_id", "span_id"],
            rename_fields={"levelname": "level", "name": "logger", "message": "msg", "exc_info": "exc"},
            timestamp="ts",
        )

    def process_log_record(self, log_data: dict[str, Any]) -> dict[str, Any]:
        log_data["ts"] = log_data["ts"].isoformat(timespec="milliseconds")
        entry: dict[str, Any] = {}
        for key in self.FIELDS:
            value = log_data.get(key)
            if value is None or value in ("", "-"):  # "-" is the ContextFilter's "not known"
                continue
            entry[key] = scrub(str(value)) if key in self.SCRUBBED else value
        return entry

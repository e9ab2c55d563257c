"""Log lines are one JSON object each: the known ids, and never a token, an email or a signed URL."""

from __future__ import annotations

import json
import logging

from auteur.core.logging import ClockTaskFilter, ContextFilter, JsonFormatter, job_id_var, request_id_var, user_id_var


def format_line(msg: str, *args: object, exc: bool = False, **extra: object) -> dict[str, object]:
    record = logging.LogRecord("auteur.test", logging.WARNING, __file__, 1, msg, args, None)
    record.__dict__.update(extra)
    if exc:
        try:
            raise RuntimeError("Bearer eyJhbGciOi.eyJzdWIiOi.c2lnbmF0dXJl from a@b.example")
        except RuntimeError:
            import sys

            record.exc_info = sys.exc_info()
    ContextFilter().filter(record)
    return json.loads(JsonFormatter().format(record))


def test_a_line_has_the_fields_and_only_the_ids_that_are_known():
    line = format_line("job %s done", 7, request=object(), status_code=500)
    assert list(line) == ["ts", "level", "logger", "msg"]
    assert line["level"] == "WARNING"
    assert line["logger"] == "auteur.test"
    assert line["msg"] == "job 7 done"
    assert str(line["ts"]).endswith("+00:00") and len(str(line["ts"])) == len("2026-01-01T00:00:00.000+00:00")


def test_context_ids_are_written_when_set():
    tokens = request_id_var.set("req-1"), user_id_var.set("user-1"), job_id_var.set("job-1")
    try:
        line = format_line("x")
    finally:
        request_id_var.reset(tokens[0])
        user_id_var.reset(tokens[1])
        job_id_var.reset(tokens[2])
    assert (line["request_id"], line["user_id"], line["job_id"]) == ("req-1", "user-1", "job-1")
    assert format_line("x", job_id="job-2")["job_id"] == "job-2"


def test_tokens_emails_and_signed_url_queries_are_scrubbed_from_message_and_traceback():
    line = format_line("fetch https://s3.example/b/k?X-Amz-Signature=abc for me@example.com", exc=True)
    assert line["msg"] == "fetch https://s3.example/b/k?[query redacted] for [email redacted]"
    assert "RuntimeError" in str(line["exc"])
    for secret in ("X-Amz-Signature", "me@example.com", "eyJhbGciOi", "a@b.example"):
        assert secret not in json.dumps(line)


def _celery_record(logger: str, level: int, msg: str, args: object) -> logging.LogRecord:
    return logging.LogRecord(logger, level, "celery.py", 1, msg, args, None)  # type: ignore[arg-type]


def test_the_clock_tasks_routine_lines_are_dropped_and_nothing_else():
    # Celery's own messages and arguments: beat's tuple, the worker's dict.
    sending = "Scheduler: Sending due task %s (%s)"
    received = "Task %(name)s[%(id)s] received"
    succeeded = "Task %(name)s[%(id)s] succeeded in %(runtime)ss: %(return_value)s"
    clock = {"name": "jobs.deadlines", "id": "1", "runtime": 0.01, "return_value": "{}"}
    work = {**clock, "name": "jobs.audio.infer"}
    keep = ClockTaskFilter().filter
    assert not keep(_celery_record("celery.beat", logging.INFO, sending, ("jobs-deadlines", "jobs.deadlines")))
    assert not keep(_celery_record("celery.beat", logging.INFO, sending, ("webhooks-sweep", "webhooks.sweep")))
    assert not keep(_celery_record("celery.worker.strategy", logging.INFO, received, clock))
    assert not keep(_celery_record("celery.app.trace", logging.INFO, succeeded, clock))
    # Users' work, the reaper, and anything above INFO about a clock task are kept.
    assert keep(_celery_record("celery.beat", logging.INFO, sending, ("jobs-reaper", "jobs.reap")))
    assert keep(_celery_record("celery.worker.strategy", logging.INFO, received, work))
    assert keep(_celery_record("celery.app.trace", logging.ERROR, "Task %(name)s[%(id)s] raised", clock))
    assert keep(_celery_record("jobs.tasks", logging.INFO, "deadlines: %s", ({"aborted": 1},)))


def test_the_clock_tasks_send_no_task_events():
    from auteur.celery import app
    from auteur.core.queues import CLOCK_TASKS

    app.loader.import_default_modules()
    assert CLOCK_TASKS and all(app.tasks[name].send_events is False for name in CLOCK_TASKS)
    assert app.tasks["jobs.reap"].send_events is True

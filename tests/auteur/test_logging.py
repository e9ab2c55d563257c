"""Log lines are one JSON object each: the known ids, and never a token, an email or a signed URL."""

from __future__ import annotations

import json
import logging

from auteur.logging import ContextFilter, JsonFormatter, job_id_var, request_id_var, user_id_var


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

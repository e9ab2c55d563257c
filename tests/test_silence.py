"""A Redis server that did not answer in time is left alone for a few seconds, by every caller."""

from __future__ import annotations

from typing import Any

import pytest
import redis
from django.conf import settings
from kombu.exceptions import OperationalError

from auteur.core import publishing, silence


def test_only_a_time_out_marks_a_server_silent_and_the_silence_ends(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [100.0]
    monkeypatch.setattr(silence.time, "monotonic", lambda: clock[0])
    url = "redis://10.0.0.9:6379/0"
    silence.note_failure(url, redis.ConnectionError("Connection refused"))
    assert not silence.is_silent(url), "a refused connection fails at once by itself"
    try:
        try:
            raise TimeoutError("timed out")
        except TimeoutError as exc:
            raise OperationalError("Timeout reading from socket") from exc  # as kombu re-raises it
    except OperationalError as wrapped:
        silence.note_failure(url, wrapped)
    assert silence.is_silent(url) and not silence.is_silent("redis://10.0.0.10:6379/0")
    clock[0] += silence.SILENT_SECONDS + 0.01
    assert not silence.is_silent(url)


def test_while_redis_is_silent_no_caller_waits_on_it(monkeypatch: pytest.MonkeyPatch, caplog: Any) -> None:
    """The rate limiter lets the request through and the publish is held for later: neither calls
    the silent server."""
    from auteur.core import throttling

    def no_call(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the silent server was called")

    monkeypatch.setattr(throttling, "hit", no_call)
    monkeypatch.setattr(publishing, "publisher", no_call)
    silence.note_failure(settings.REDIS_URL, redis.TimeoutError("Timeout reading from socket"))
    assert settings.CELERY_BROKER_URL == settings.REDIS_URL

    assert throttling.SlidingWindowThrottle()._allow("rl:u:someone", limit=1)
    held: list[Any] = []
    monkeypatch.setattr(publishing.unsent, "add", lambda message, what, **extra: held.append(message.args))
    assert publishing.send("jobs.audio.prepare", ("j",), what="prepare of job j") is False
    assert "could not publish prepare of job j: the broker did not answer lately; trying again" in caplog.text
    assert held == [("j",)], "held for the outbox"

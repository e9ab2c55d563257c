"""Work a process could not do against Redis is held and done once Redis answers, in order."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
import redis
from django.conf import settings
from django.utils import timezone
from kombu.exceptions import OperationalError

from auteur.core import outbox, publishing, silence
from jobs.events import stream


@pytest.fixture(autouse=True)
def quick(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(outbox, "RETRY_INTERVAL_SECONDS", 0.05)


def wait_until(predicate: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline
        time.sleep(0.02)


@pytest.fixture
def broker(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """A broker that refuses while "down" is in the list it returns, and records what it took."""
    taken: list[Any] = ["down"]

    def publish(message: publishing.Message) -> None:
        if "down" in taken:
            raise OperationalError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")
        taken.append((message.name, message.args))

    monkeypatch.setattr(publishing, "_publish", publish)
    monkeypatch.setattr(publishing, "unsent", outbox.Outbox(
        "test-publish", lambda: settings.CELERY_BROKER_URL, lambda m: publish(m), (OperationalError,), "a sweep"))
    return taken


def test_a_publish_the_broker_refused_is_sent_once_it_is_back(broker: list[Any], caplog: Any) -> None:
    assert publishing.send("media.probe", ("m1",), what="probe of media m1") is False
    assert publishing.send("media.probe", ("m2",), what="probe of media m2") is False
    time.sleep(0.3)
    assert broker == ["down"], "tried again while the broker refuses, and nothing taken"
    broker.remove("down")
    wait_until(lambda: len(broker) == 2)
    assert broker == [("media.probe", ("m1",)), ("media.probe", ("m2",))], "each once, in order"
    time.sleep(0.2)
    assert len(broker) == 2 and not publishing.unsent.holds()
    assert "done after all: publishing probe of media m1" in caplog.text


def test_nothing_is_tried_while_the_broker_is_silent_and_a_sweep_s_publish_is_left_to_it(broker: list[Any]) -> None:
    broker.remove("down")
    silence.note_failure(settings.CELERY_BROKER_URL, TimeoutError("timed out"))
    assert publishing.send("jobs.audio.prepare", ("j",)) is False
    assert publishing.send("media.probe", ("m",), resend=False) is False
    time.sleep(0.3)
    assert broker == [], "not tried while silent"
    silence.forget()
    wait_until(lambda: broker == [("jobs.audio.prepare", ("j",))])
    time.sleep(0.2)
    assert broker == [("jobs.audio.prepare", ("j",))], "the sweep's publish is its next sweep's"


def test_work_held_for_too_long_is_dropped_with_what_makes_up_for_it(
    broker: list[Any], monkeypatch: pytest.MonkeyPatch, caplog: Any
) -> None:
    monkeypatch.setattr(outbox, "KEEP_FOR_SECONDS", 0.1)
    assert publishing.send("media.probe", ("old",), what="probe of media old") is False
    time.sleep(0.3)
    broker.remove("down")
    time.sleep(0.3)
    assert broker == [] and "gave up on publishing probe of media old after 0 s; a sweep" in caplog.text


def test_events_redis_did_not_take_reach_the_stream_in_order_once_it_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    """While Redis is silent an event is held, and the events after it queue behind it even once
    Redis answers again: the user's stream gets them all, once each, in the order committed."""
    monkeypatch.setattr(stream, "unstreamed", outbox.Outbox(
        "test-stream", lambda: settings.REDIS_URL, lambda entry: stream._append(entry), (redis.RedisError,), ""))
    user_id = uuid.uuid4()
    events = [type("Event", (), {"job_id": uuid.uuid4(), "type": kind, "data": {}, "pk": n,
                                 "created_at": timezone.now()})()
              for n, kind in enumerate(("submitted", "started", "completed"))]  # fmt: skip
    state = stream.JobState(user_id=user_id, status="processing", progress=0)
    silence.note_failure(settings.REDIS_URL, redis.TimeoutError("Timeout reading from socket"))
    assert stream.job_stream_append(events[0], state) is None
    silence.forget()
    assert stream.job_stream_append(events[1], state) is None, "behind the held one"
    assert stream.job_stream_append(events[2], state) is None
    client = redis.Redis.from_url(settings.REDIS_URL)
    key = stream.stream_key(user_id)
    wait_until(lambda: client.xlen(key) == 3)
    time.sleep(0.2)
    entries: list[tuple[bytes, dict[Any, Any]]] = client.xrange(key)  # type: ignore[assignment]
    assert [stream.parse_entry(i, f)["type"] for i, f in entries] == ["submitted", "started", "completed"]
    assert not stream.unstreamed.holds()
    client.delete(key)
    assert stream.job_stream_append(events[2], state), "appended at once again"
    client.delete(key)


def test_work_past_the_bound_drops_the_oldest_with_a_log_line_and_a_counted_metric(
    broker: list[Any], client: Any, settings: Any, caplog: Any
) -> None:
    """The broker is down while a process holds MAX_HELD publishes; three more push the three
    oldest out. Each is logged by what it was (never the message itself) and counted in the
    metric the API's /metrics serves, so an operator can alert on it."""
    from prometheus_client import REGISTRY
    from prometheus_client.parser import text_string_to_metric_families

    def dropped() -> float:
        return REGISTRY.get_sample_value("auteur_outbox_dropped_total",
                                         {"outbox": "test-publish", "reason": "full"}) or 0.0

    before = dropped()
    held = publishing.unsent
    for n in range(outbox.MAX_HELD):
        held.add(publishing.Message("media.probe", (f"secret-{n}",), 0), f"publishing probe of media m{n}",
                 job_id=f"job-{n}")
    assert len(held.held) == outbox.MAX_HELD and dropped() == before, "nothing dropped up to the bound"
    for n in range(3):
        assert publishing.send("media.probe", (f"secret-new-{n}",), what=f"probe of media new{n}") is False
    assert len(held.held) == outbox.MAX_HELD
    assert (held.held[0].what, held.held[-1].what) == ("publishing probe of media m3", "publishing probe of media new2")
    assert dropped() == before + 3
    lines = [r for r in caplog.records if r.getMessage().startswith("gave up on")]
    assert [r.getMessage() for r in lines] == [
        f"gave up on publishing probe of media m{n} to make room (test-publish holds {outbox.MAX_HELD} at most); "
        "a sweep" for n in range(3)]
    assert [getattr(r, "job_id", None) for r in lines] == ["job-0", "job-1", "job-2"]
    assert "secret-" not in caplog.text, "what a held message carries is never logged"

    settings.AUTEUR_METRICS_TOKEN = "metrics-test-token-0123456789"
    scraped = client.get("/metrics", HTTP_AUTHORIZATION="Bearer metrics-test-token-0123456789").content.decode()
    samples = {(s.name, s.labels.get("outbox"), s.labels.get("reason")): s.value
               for f in text_string_to_metric_families(scraped) for s in f.samples}
    assert samples[("auteur_outbox_dropped_total", "test-publish", "full")] == before + 3
    assert samples[("auteur_outbox_dropped_total", "publish-resend", "full")] >= 0, "every outbox is exported"
    held.forget()


def test_an_append_renews_its_streams_age_trim_and_expiry_once_a_while(monkeypatch: pytest.MonkeyPatch) -> None:
    """Most appends are one XADD: the age trim and the key's expiry are renewed by the first
    append to a stream and again once RENEW_SECONDS have passed (the sweep covers what is between)."""
    client = redis.Redis.from_url(settings.REDIS_URL)
    key = stream.stream_key(uuid.uuid4())
    now = [1000.0]
    monkeypatch.setattr(stream, "_clock", lambda: now[0])
    monkeypatch.setattr(stream, "_renewed", stream.TTLCache(maxsize=10, ttl=10**9, timer=lambda: now[0]))
    try:
        stream._append((key, "{}"))
        assert 0 < client.ttl(key) <= settings.AUTEUR_EVENT_STREAM_MAX_AGE_SECONDS
        client.persist(key)
        stream._append((key, "{}"))  # renewed a moment ago: only added
        assert client.xlen(key) == 2 and client.ttl(key) == -1
        now[0] += stream.RENEW_SECONDS
        stream._append((key, "{}"))
        assert client.xlen(key) == 3 and client.ttl(key) > 0, "the expiry set again"
    finally:
        client.delete(key)

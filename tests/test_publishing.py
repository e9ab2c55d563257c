"""A publish that the broker did not take is tried again from a thread of the process."""

from __future__ import annotations

import time
from typing import Any

import pytest
from django.conf import settings
from kombu.exceptions import OperationalError

from auteur import publishing, silence


@pytest.fixture
def broker(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, tuple[object, ...]]]:
    """A broker that refuses while `down` is in the list it returns, and records what it took."""
    taken: list[Any] = ["down"]

    def publish(message: publishing.Message) -> None:
        if "down" in taken:
            raise OperationalError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")
        taken.append((message.name, message.args))

    monkeypatch.setattr(publishing, "_publish", publish)
    monkeypatch.setattr(publishing, "_unsent", publishing._Unsent())
    monkeypatch.setattr(publishing, "RESEND_INTERVAL_SECONDS", 0.05)
    return taken


def wait_until(predicate: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline
        time.sleep(0.02)


def test_a_publish_the_broker_refused_is_sent_once_it_is_back(broker: list[Any], caplog: Any) -> None:
    assert publishing.send("media.probe", ("m1",), what="probe of media m1") is False
    assert publishing.send("media.probe", ("m2",), what="probe of media m2") is False
    time.sleep(0.3)
    assert broker == ["down"], "tried again while the broker refuses, and nothing taken"
    broker.remove("down")
    wait_until(lambda: len(broker) == 2)
    assert broker == [("media.probe", ("m1",)), ("media.probe", ("m2",))], "each once, in order"
    time.sleep(0.2)
    assert len(broker) == 2 and not publishing._unsent.messages
    assert "published probe of media m1 after all" in caplog.text


def test_nothing_is_tried_while_the_broker_is_silent_and_a_sweep_s_publish_is_left_to_it(
    broker: list[Any],
) -> None:
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


def test_a_message_unsent_for_too_long_is_left_to_its_sweeper(
    broker: list[Any], monkeypatch: pytest.MonkeyPatch, caplog: Any
) -> None:
    monkeypatch.setattr(publishing, "RESEND_FOR_SECONDS", 0.1)
    assert publishing.send("media.probe", ("old",), what="probe of media old") is False
    time.sleep(0.3)
    broker.remove("down")
    time.sleep(0.3)
    assert broker == [] and "gave up publishing probe of media old; its sweeper sends it" in caplog.text

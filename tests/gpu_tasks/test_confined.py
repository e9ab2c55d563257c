"""The confined runner: a parser that runs away on its input (memory, CPU, time, recursion, a crash,
an answer without end) costs its child, never the caller, and the same warm server serves the next
call; a refusal reaches the caller as it was raised; a child taken over holds no secret and reaches
no network. Each attack is a real function run in a real child (tests/gpu_tasks/confined_attacks.py)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import psutil
import pytest

import gpu_tasks.confined as confined
from gpu_tasks import sandbox as isolation

ATTACKS = "tests.gpu_tasks.confined_attacks"
LIMITS = confined.Limits(memory_bytes=512 * 1024**2, cpu_seconds=2, timeout_seconds=20, max_result_bytes=1024**2)


@pytest.fixture(autouse=True)
def fresh_servers() -> Iterator[None]:
    confined.stop_servers()
    yield
    confined.stop_servers()


def run(name: str, limits: confined.Limits = LIMITS, **args: Any) -> Any:
    return confined.call(f"{ATTACKS}:{name}", limits=limits, data=b"document", **args)


def server() -> int:
    pid = confined.server_pid(confined.server_key(f"{ATTACKS}:echo", LIMITS))
    assert pid is not None
    return pid


def test_a_call_gets_its_data_and_arguments_and_answers_json():
    assert run("echo", suffix="!") == {"length": 8, "head": "document", "suffix": "!"}


def test_a_refusal_reaches_the_caller_as_raised():
    with pytest.raises(confined.Refused) as refused:
        run("refuse")
    assert (refused.value.code, refused.value.message, refused.value.details) == (
        "interchange_invalid", "The file is not one.", {"seen": 8})


@pytest.mark.parametrize(("attack", "cause", "limits"), [
    ("hog_memory", confined.CAUSE_MEMORY, LIMITS),
    ("spin", confined.CAUSE_CPU, LIMITS),
    ("sleep", confined.CAUSE_TIME, confined.Limits(timeout_seconds=1)),
    ("recurse", confined.CAUSE_NESTING, LIMITS),
    ("crash", confined.CAUSE_CRASH, LIMITS),
    ("flood", confined.CAUSE_MEMORY, LIMITS),
])
def test_a_child_that_runs_away_costs_only_itself_and_the_server_serves_on(attack, cause, limits):
    assert run("echo", suffix="") is not None
    serving = server()
    mine = psutil.Process().memory_info().rss
    with pytest.raises(confined.BudgetSpent) as spent:
        run(attack, limits)
    assert spent.value.cause == cause
    # The caller built nothing of it, and the server is the same one, without children.
    assert psutil.Process().memory_info().rss - mine < 64 * 1024**2
    assert server() == serving and psutil.Process(serving).children() == []
    assert run("echo", suffix="again") == {"length": 8, "head": "document", "suffix": "again"}


@pytest.mark.skipif(isolation.detect().mode == "none", reason="no sandbox on this machine")
def test_a_child_taken_over_holds_no_secret_and_reaches_no_network(monkeypatch):
    monkeypatch.setenv("DJANGO_SECRET_KEY", "s3cret-django-key")
    port = urlsplit(os.environ["REDIS_URL"]).port or 6379
    outcome = run("escape", port=port, worker=os.getpid())
    assert isinstance(outcome, dict)
    assert set(outcome["environ"]) <= {"PATH", "LANG"}
    assert outcome["worker_environ"] == "PermissionError"
    assert outcome["loopback"] in ("OSError", "ConnectionRefusedError")  # no interface up
    if isolation.detect().separate_uid:
        assert outcome["uid"] == isolation.detect().probe_uid != os.getuid()

"""The flush that ends each transactional test is tried again when PostgreSQL ends it as a deadlock
(tests/conftest.py): a worker kept between tests may still hold a job's rows while it runs."""

from __future__ import annotations

import re
import threading
import time

import psycopg
import pytest
from django.core.management.base import CommandError
from django.core.management.color import no_style
from django.core.management.sql import sql_flush
from django.db import connection
from django.test import TransactionTestCase

from auteur.users.models import User
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db(transaction=True)


class _Flush(TransactionTestCase):
    databases = {"default"}

    def runTest(self) -> None:
        """Never run: the instance is only for its flush."""


def _truncated_tables() -> list[str]:
    # The flush the teardown runs: one TRUNCATE of every table, which locks them in this order.
    [statement] = sql_flush(no_style(), connection, reset_sequences=False)
    return re.findall(r'"([^"]+)"', statement)


def test_a_flush_ended_as_a_deadlock_is_tried_again_and_empties_the_tables(monkeypatch: pytest.MonkeyPatch) -> None:
    from tests import conftest

    attempts: list[BaseException | None] = []
    flush = conftest._fixture_teardown

    def counted(self: TransactionTestCase) -> None:
        try:
            flush(self)
        except BaseException as exc:
            attempts.append(exc)
            raise
        attempts.append(None)

    monkeypatch.setattr(conftest, "_fixture_teardown", counted)
    UserFactory()
    tables = _truncated_tables()
    first, last = tables[0], tables[-1]
    dsn = connection.get_connection_params()
    holding = threading.Event()
    outcome: list[BaseException | str] = []

    def other_transaction() -> None:
        # Holds the flush's last table, waits until the flush holds its first one and waits for the
        # last, then asks for the first: a cycle, which PostgreSQL ends by failing one of the two.
        try:
            with psycopg.connect(**dsn) as other:
                other.execute(f'LOCK TABLE "{last}" IN ROW EXCLUSIVE MODE')
                holding.set()
                waited = 0
                while waited < 100 and not other.execute(
                        "SELECT 1 FROM pg_locks WHERE NOT granted AND mode = 'AccessExclusiveLock'").fetchone():
                    time.sleep(0.05)
                    waited += 1
                other.execute(f'SELECT 1 FROM "{first}" LIMIT 1')
                outcome.append("ended")
        except psycopg.errors.DeadlockDetected as exc:
            outcome.append(exc)

    thread = threading.Thread(target=other_transaction)
    thread.start()
    assert holding.wait(10)
    _Flush()._fixture_teardown()  # type: ignore[attr-defined]  # not in the stubs
    thread.join(30)
    # The flush waited first, so PostgreSQL's check found the cycle there and failed the flush; the
    # other transaction went on, and the flush, tried again, emptied the tables.
    assert outcome == ["ended"]
    assert [conftest._is_deadlock(a) if a else None for a in attempts] == [True, None]
    assert not User.objects.exists()


def test_any_other_flush_error_fails_the_teardown(monkeypatch: pytest.MonkeyPatch) -> None:
    from tests import conftest

    calls: list[int] = []

    def broken(self: TransactionTestCase) -> None:
        calls.append(1)
        raise CommandError("Database couldn't be flushed") from psycopg.errors.LockNotAvailable("lock timeout")

    monkeypatch.setattr(conftest, "_fixture_teardown", broken)
    with pytest.raises(CommandError):
        _Flush()._fixture_teardown()  # type: ignore[attr-defined]  # not in the stubs
    assert calls == [1]

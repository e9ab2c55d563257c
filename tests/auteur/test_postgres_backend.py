"""auteur.core.postgres: a kept connection used lately is checked without a round trip when its socket
is quiet, replaced when the server closed it, and checked by Django's `SELECT 1` whenever the socket
says something, the connection has been quiet a while, or the session is not idle."""

from __future__ import annotations

import select
from typing import Any

import psycopg
import pytest
from django.db import DEFAULT_DB_ALIAS, close_old_connections, connection, connections

from auteur.core.postgres.base import QUIET_SECONDS, DatabaseWrapper

pytestmark = pytest.mark.django_db(transaction=True)


def backend_pid() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return int(cursor.fetchone()[0])


def as_a_new_request() -> None:
    """What a server does at a request's start and a worker at a task's: the next query checks first."""
    close_old_connections()
    db: Any = connections[DEFAULT_DB_ALIAS]  # Django's stubs leave out the health check's state
    assert db.health_check_enabled and not db.health_check_done


def test_the_settings_use_this_backend():
    assert isinstance(connections[DEFAULT_DB_ALIAS], DatabaseWrapper)


def test_a_busy_kept_connection_is_used_without_a_round_trip(sent_statements):
    pid = backend_pid()
    as_a_new_request()
    sent_statements.clear()
    assert backend_pid() == pid  # the same session
    assert "SELECT 1" not in sent_statements
    db: Any = connections[DEFAULT_DB_ALIAS]
    assert db.health_check_done


def test_a_connection_the_server_closed_is_replaced_before_the_query_that_would_fail(sent_statements):
    pid = backend_pid()
    other = connections.create_connection(DEFAULT_DB_ALIAS)
    try:
        with other.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(%s, 5000)", [pid])  # waits until it has ended
            assert cursor.fetchone()[0] is True
    finally:
        other.close()
    as_a_new_request()
    sent_statements.clear()
    new_pid = backend_pid()  # no OperationalError: the check saw the closed session and reconnected
    assert new_pid != pid
    assert "SELECT 1" in sent_statements  # something was on the socket: Django's test ran, and failed


def test_a_live_connection_with_something_to_read_passes_djangos_test(sent_statements):
    pid = backend_pid()
    with connection.cursor() as cursor:
        cursor.execute("LISTEN auteur_backend_test")
    other = connections.create_connection(DEFAULT_DB_ALIAS)
    try:
        with other.cursor() as cursor:
            cursor.execute("NOTIFY auteur_backend_test, 'hello'")  # lands on the idle session's socket
    finally:
        other.close()
    poller = select.poll()
    poller.register(connection.connection.fileno(), select.POLLIN)
    assert poller.poll(5000), "the notification never reached the session"
    as_a_new_request()
    sent_statements.clear()
    assert backend_pid() == pid  # kept: the notice was read by the test, not taken for a closed session
    assert sent_statements[0] == "SELECT 1"
    with connection.cursor() as cursor:
        cursor.execute("UNLISTEN *")


def test_a_connection_quiet_for_a_while_gets_djangos_test(sent_statements):
    pid = backend_pid()
    db: Any = connections[DEFAULT_DB_ALIAS]
    db._used_at -= QUIET_SECONDS  # its last query, as long ago
    as_a_new_request()
    sent_statements.clear()
    assert backend_pid() == pid
    assert sent_statements == ["SELECT 1", "SELECT pg_backend_pid()"]


def test_a_session_in_a_failed_transaction_is_not_reused():
    backend_pid()
    raw = connection.connection
    raw.autocommit = False
    try:
        with pytest.raises(psycopg.errors.DivisionByZero):
            raw.execute("SELECT 1 / 0")
        assert not connection.is_usable()  # Django's test ran, and the failed transaction refused it
    finally:
        raw.rollback()
        raw.autocommit = True
    assert connection.is_usable()


def test_a_closed_or_broken_session_is_unusable_without_asking():
    backend_pid()
    connection.connection.close()
    assert not connection.is_usable()
    connection.close()

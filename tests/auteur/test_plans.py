"""Statements planned once per session (auteur/core/postgres/plans.py): prepared at a session's first
use and executed after, with each argument converted to its parameter's type as a literal would be,
the row-level security policies of whoever runs it, and nothing lost or wrongly kept by a rollback
or a new session."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import pytest
from django.db import DatabaseError, DataError, connection, transaction

from auteur.core import rls
from auteur.core.postgres import plans
from auteur.core.postgres.plans import Planned
from auteur.users.models import User
from credits.models import CreditAccount
from projects.models import Project

pytestmark = pytest.mark.django_db


def rows(statement: Planned, params=()) -> list[tuple]:
    with connection.cursor() as cursor:
        statement.execute(cursor, params)
        return cursor.fetchall()


def prepares(sent: list[str]) -> int:
    return sum("PREPARE auteur_" in sql for sql in sent)


def session_holds() -> set[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT name FROM pg_prepared_statements")
        return {name for (name,) in cursor.fetchall()}


@pytest.mark.django_db(transaction=True)
def test_a_session_prepares_a_statement_once_and_a_new_session_again(sent_statements: list[str]):
    statement = Planned("SELECT %s::int + %s::int")
    assert rows(statement, [1, 2]) == [(3,)]
    assert rows(statement, [3, 4]) == [(7,)]
    assert prepares(sent_statements) == 1
    assert sum(sql.startswith(f"EXECUTE {statement.name}(") for sql in sent_statements) == 2

    connection.close()  # the next query opens a new session, which has prepared nothing
    assert rows(statement, [5, 6]) == [(11,)]
    assert prepares(sent_statements) == 2


def test_named_placeholders_are_one_parameter_per_name_and_percent_signs_stay():
    statement = Planned("SELECT %(a)s::int * %(a)s::int + %(b)s::int, 'a%%b' LIKE 'a%%'")
    assert statement.names == ("a", "b")
    assert rows(statement, {"a": 3, "b": 1, "unused": 0}) == [(10, True)]


@pytest.mark.parametrize(("sql", "message"), [
    ("SELECT $1", "no \\$"),
    ("SELECT 'a%b'", "lone %"),
    ("SELECT %s, %(a)s", "all named or all positional"),
])
def test_a_statement_that_cannot_be_planned_is_refused_when_made(sql: str, message: str):
    with pytest.raises(ValueError, match=message):
        Planned(sql)


def test_the_wrong_number_of_arguments_is_refused_before_anything_is_sent():
    with pytest.raises(TypeError, match="takes 2 parameters, given"), connection.cursor() as cursor:
        Planned("SELECT %s::int, %s::int").execute(cursor, [1])
    with pytest.raises(TypeError, match="takes 1 parameters by name"), connection.cursor() as cursor:
        Planned("SELECT %(a)s::int").execute(cursor, [1])


def test_an_argument_out_of_its_columns_range_fails_as_a_literal_would(make_user: Callable[..., User]):
    """Bound on the client, each argument is a literal converted to its parameter's type: an
    integer too large for an `integer` column fails (bound on the server as binary int8, psycopg's
    other mode, the same UPDATE stored 0 without an error)."""
    user = make_user()
    CreditAccount.objects.get_or_create(user=user)
    update = Planned("UPDATE credit_accounts SET balance = %s WHERE user_id = %s")
    with pytest.raises(DataError, match="out of range"), transaction.atomic(), connection.cursor() as cursor:
        update.execute(cursor, [2**40, user.pk])
    with connection.cursor() as cursor:
        update.execute(cursor, [25, user.pk])
        assert cursor.rowcount == 1
    assert CreditAccount.objects.get(user=user).balance == 25


@pytest.mark.django_db(transaction=True)
def test_a_rollback_keeps_the_prepared_statement_and_a_failed_prepare_is_sent_again(sent_statements: list[str]):
    statement = Planned("SELECT count(*) FROM projects WHERE name = %s")
    with pytest.raises(RuntimeError), transaction.atomic():
        assert rows(statement, ["x"]) == [(0,)]
        raise RuntimeError  # PostgreSQL keeps a PREPARE whatever its transaction does
    assert rows(statement, ["x"]) == [(0,)]
    assert prepares(sent_statements) == 1

    other = Planned("SELECT count(*) FROM projects WHERE name <> %s")
    with pytest.raises(DatabaseError), transaction.atomic(), connection.cursor() as cursor:
        with pytest.raises(DatabaseError):
            cursor.execute("SELECT 1 / 0")
        other.execute(cursor, ["x"])  # refused by a failed transaction: not prepared
    assert other.name not in session_holds()
    assert rows(other, ["x"]) == [(0,)]
    assert prepares(sent_statements) == 3


@pytest.mark.django_db(transaction=True)
def test_a_statement_prepared_by_one_role_answers_each_scope_with_its_own_rows(make_user: Callable[..., User]):
    """PostgreSQL plans again when the role that runs a prepared statement changes: run by the
    tables' owner it sees everything, run in a user's scope only that user's rows, however many
    times it ran before (past the executions after which a generic plan may be kept)."""
    alice, bob = make_user(), make_user()
    mine = {user.pk: Project.objects.create(user=user, name=f"of {user.pk}").pk for user in (alice, bob)}
    statement = Planned("SELECT id FROM projects WHERE name LIKE %s ORDER BY id")
    everyone = sorted(mine.values())
    for _ in range(8):
        assert [row[0] for row in rows(statement, ["of %"])] == everyone
    with rls.request_scope():
        for user in (alice, bob, alice):
            rls.act_as(user.pk)
            for _ in range(8):
                assert rows(statement, ["of %"]) == [(mine[user.pk],)]
    for _ in range(8):
        assert [row[0] for row in rows(statement, ["of %"])] == everyone


def test_the_scope_travels_with_a_prepare_and_with_an_execute(sent_statements: list[str], make_user):
    """One round trip for a new caller's first statement, prepared or not."""
    alice, bob = make_user(), make_user()
    statement = Planned("SELECT count(*) FROM projects WHERE name = %s")
    sent_statements.clear()
    with rls.request_scope():
        rls.act_as(alice.pk)
        rows(statement, ["x"])
        rls.act_as(bob.pk)
        rows(statement, ["x"])
    assert len(sent_statements) == 3, sent_statements
    assert "set_config" in sent_statements[0] and "PREPARE auteur_" in sent_statements[0]
    assert sent_statements[1].startswith("EXECUTE ")
    assert "set_config" in sent_statements[2] and f"EXECUTE {statement.name}(" in sent_statements[2]


def test_two_texts_under_one_name_are_refused_and_one_text_made_twice_is_one_statement(monkeypatch):
    assert Planned("SELECT %s::int + 0").name == Planned("SELECT %s::int + 0").name
    real = hashlib.blake2b
    monkeypatch.setattr(plans.hashlib, "blake2b", lambda data, digest_size: real(b"one name", digest_size=8))
    monkeypatch.setattr(plans, "_MADE", {})
    Planned("SELECT %s::int + 1")
    with pytest.raises(AssertionError, match="share the name"):
        Planned("SELECT %s::int + 2")


# ---- a session and this process out of step: the statement fails once, the next one mends it


@pytest.mark.django_db(transaction=True)
def test_statements_deallocated_behind_its_back_are_prepared_again():
    statement = Planned("SELECT %s::int * 2")
    assert rows(statement, [1]) == [(2,)]
    with connection.cursor() as cursor:
        cursor.execute("DEALLOCATE ALL")  # a pooler's reset, say
    with pytest.raises(DatabaseError, match="does not exist"):
        rows(statement, [2])
    assert rows(statement, [3]) == [(6,)]


@pytest.mark.django_db(transaction=True)
def test_a_statement_the_session_prepared_unknown_to_the_process_is_taken_as_prepared():
    statement = Planned("SELECT %s::int * 4")
    with connection.cursor() as cursor:
        cursor.execute(statement.prepare)
    with pytest.raises(DatabaseError, match="already exists"):
        rows(statement, [1])
    assert rows(statement, [2]) == [(8,)]


@pytest.mark.django_db(transaction=True)
def test_an_interrupted_prepare_is_read_back_from_the_session(monkeypatch):
    """A time limit's signal between the server's answer to a PREPARE and its note in the process."""
    statement = Planned("SELECT %s::int * 5")
    with connection.cursor() as cursor:
        wrapper = type(cursor)
    real = wrapper.execute

    def interrupted(self, sql, params=None):
        result = real(self, sql, params)
        if sql.startswith("PREPARE "):
            raise KeyboardInterrupt
        return result

    monkeypatch.setattr(wrapper, "execute", interrupted)
    with pytest.raises(KeyboardInterrupt):
        rows(statement, [1])
    monkeypatch.undo()
    assert statement.name in session_holds()
    assert rows(statement, [2]) == [(10,)]


@pytest.mark.django_db(transaction=True)
def test_a_column_whose_type_changed_under_a_prepared_statement_is_planned_again():
    """A migration that changes the type of a column a prepared statement returns or compares:
    PostgreSQL refuses the statement once; it is deallocated and prepared again."""
    with connection.cursor() as cursor:
        cursor.execute("CREATE TEMPORARY TABLE planned_probe (n integer)")
        cursor.execute("INSERT INTO planned_probe VALUES (7)")
    statement = Planned("SELECT n, %s::int FROM planned_probe")
    assert rows(statement, [1]) == [(7, 1)]
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE planned_probe ALTER COLUMN n TYPE text")
    with pytest.raises(DatabaseError, match="cached plan must not change result type"):
        rows(statement, [2])
    assert rows(statement, [3]) == [("7", 3)]

    compared = Planned("SELECT count(*) FROM planned_probe WHERE n = %s")
    assert rows(compared, ["7"]) == [(1,)]  # the parameter is text, as the column now is
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE planned_probe ALTER COLUMN n TYPE integer USING n::integer")
    with pytest.raises(DatabaseError, match="operator does not exist"):
        rows(compared, [7])
    assert rows(compared, [7]) == [(1,)]

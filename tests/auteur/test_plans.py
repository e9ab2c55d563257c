"""Statements planned once per session (auteur/core/postgres/plans.py): prepared at a session's first
use and executed after, with each argument converted to its parameter's type as a literal would be,
the row-level security policies of whoever runs it, and nothing lost or wrongly kept by a rollback
or a new session."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.db import DatabaseError, DataError, connection, transaction

from auteur.core import rls
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
    assert other.name not in connection.planned  # type: ignore[attr-defined]
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

"""Statements PostgreSQL plans once per session instead of at every execution.

Planning a statement on `jobs` (many indexes, some partial, and the row-level security policies)
costs PostgreSQL 60-400 us, often more than running it. A `Planned` statement is sent as
`PREPARE` the first time a session runs it and as `EXECUTE name(arguments)` after: PostgreSQL
keeps the parsed statement for the session, plans its first executions for their values, and then
keeps a generic plan when that is estimated no worse. It plans again by itself whenever what the
plan depends on changes: a table or an index, the session's role or `row_security` (so the
row-level security policies always apply to the role that runs it), or the search path.

The arguments are still bound on the client (psycopg's client-side cursor, as every statement is
here): they travel as literals in the EXECUTE, and PostgreSQL converts each to its parameter's
type as it converts a literal written in a statement, so an integer out of its column's range
fails instead of being stored wrapped. The EXECUTE is one simple query, so the row-level
security scope still travels in the same message (auteur/core/rls.py).

Rules for a statement planned so:
- constants are written in its text, not passed as arguments: a status known when the plan is
  made lets the planner use the partial index of that status;
- its text is fixed: a statement whose shape changes with its input (an IN list of any length)
  would fill the session with plans;
- a placeholder's type must follow from where it stands (compared with or assigned to a column,
  or cast: `%(step)s::float8`), since PREPARE infers each parameter's type once for every later
  execution;
- a session keeps its prepared statements until it ends, whatever its transactions do (a
  rollback does not undo a PREPARE), so a connection pooler must give a client the same session
  for its whole life (PgBouncer's transaction mode would not; the row-level security scope needs
  the same). Django's own pool is fine: what a session prepared is kept with its psycopg
  connection, which the pool lends again with the session;
- the arguments are bound on the client (psycopg's ClientCursor, Django's default): the EXECUTE's
  arguments are part of its text.

When the session and this process disagree (a PREPARE interrupted after the server ran it, a
`DEALLOCATE` sent by something else) the statement fails once, and the next planned statement on
that session first reads back what the session holds. A statement prepared before a migration
changed the type of a column it returns or compares ("cached plan must not change result type")
fails once too, and is deallocated and prepared again at its next use.
"""

from __future__ import annotations

import hashlib
import re
import weakref
from collections.abc import Mapping, Sequence
from typing import Any

import psycopg
from django.db import DatabaseError

_PLACEHOLDER = re.compile(r"%(?:(%)|\(([^)]*)\)s|(s))|%")
PREFIX = "auteur_"  # of every planned statement's name
# Every statement made in this process, by name: two texts under one name would run each other's.
_MADE: dict[str, str] = {}
# The errors that say a session's prepared statements are not what this process holds: none by
# that name (26000), one already (42P05).
_OUT_OF_STEP = {"26000", "42P05"}
# The errors of an EXECUTE whose statement was prepared against columns of another type: its
# result's type changed (0A000), or a parameter's type no longer fits (42883, 42804). Prepared
# again, its types are inferred anew.
_STALE = {"0A000", "42883", "42804"}


class _Session:
    """What one session has prepared, kept with its psycopg connection."""

    __slots__ = ("names", "stale", "unsure")

    def __init__(self) -> None:
        self.names: set[str] = set()
        self.stale: set[str] = set()  # to deallocate and prepare again before their next use
        self.unsure = False  # `names` to be read back from the server before the next statement


_SESSIONS: weakref.WeakKeyDictionary[psycopg.Connection[Any], _Session] = weakref.WeakKeyDictionary()


class Planned:
    """A statement in psycopg's format (`%s` or `%(name)s` placeholders, `%%` for a percent sign),
    run by `execute(cursor, params)` as `cursor.execute(sql, params)` would run it."""

    __slots__ = ("count", "name", "names", "prepare", "run", "sql")

    def __init__(self, sql: str) -> None:
        if "$" in sql:
            raise ValueError("a planned statement numbers its own parameters: no $ in its text")
        order: list[str | int] = []  # per parameter $n: its name, or its position among the %s
        numbers: dict[str, int] = {}

        def number(match: re.Match[str]) -> str:
            percent, name, positional = match.groups()
            if percent:
                return "%"  # PREPARE is sent without parameters: its text is taken as it is
            if positional:
                order.append(len(order))
                return f"${len(order)}"
            if name is None:
                raise ValueError(f"a lone % in a planned statement (write %% for a percent sign): {sql}")
            if name not in numbers:  # a name used twice is one parameter
                order.append(name)
                numbers[name] = len(order)
            return f"${numbers[name]}"

        body = _PLACEHOLDER.sub(number, sql)
        if len({type(key) for key in order}) > 1:
            raise ValueError(f"a planned statement's placeholders are all named or all positional: {sql}")
        self.sql = sql
        self.name = PREFIX + hashlib.blake2b(body.encode(), digest_size=8).hexdigest()
        if _MADE.setdefault(self.name, body) != body:
            raise AssertionError(f"two planned statements share the name {self.name}")
        self.prepare = f"PREPARE {self.name} AS {body}"
        self.names = tuple(key for key in order if isinstance(key, str))  # of $1, $2, ... when named
        self.count = len(order)
        self.run = f"EXECUTE {self.name}({', '.join(['%s'] * len(order))})" if order else f"EXECUTE {self.name}"

    def execute(self, cursor: Any, params: Sequence[Any] | Mapping[str, Any] = ()) -> None:
        """Run it on a Django cursor: prepared first if its session has not prepared it yet."""
        if isinstance(params, Mapping) and len(self.names) == self.count:
            values = [params[name] for name in self.names]
        elif not isinstance(params, Mapping) and not self.names and len(params) == self.count:
            values = list(params)
        else:
            raise TypeError(f"{self.name} takes {self.count} parameters{' by name' if self.names else ''}, "
                            f"given {len(params)}")
        if not isinstance(cursor.cursor, psycopg.ClientCursor):
            raise TypeError("a planned statement's arguments are bound on the client: a ClientCursor only")
        connection = cursor.db.connection
        session = _SESSIONS.get(connection)
        if session is None:
            session = _SESSIONS[connection] = _Session()
        executing = False
        try:
            if session.unsure:
                cursor.execute("SELECT name FROM pg_prepared_statements WHERE starts_with(name, %s)", [PREFIX])
                session.names = {name for (name,) in cursor.fetchall()}
                session.unsure = False
            if self.name in session.stale:
                if self.name in session.names:
                    cursor.execute(f"DEALLOCATE {self.name}")
                    session.names.discard(self.name)
                session.stale.discard(self.name)
            if self.name not in session.names:
                cursor.execute(self.prepare)
                session.names.add(self.name)
            executing = True
            cursor.execute(self.run, values or None)
        except DatabaseError as exc:
            code = getattr(exc.__cause__, "sqlstate", None)
            if code in _OUT_OF_STEP:
                session.unsure = True
            elif executing and code in _STALE:
                session.stale.add(self.name)
            raise
        except BaseException:
            session.unsure = True  # interrupted (a time limit's signal, say): the server may have it
            raise

    def __repr__(self) -> str:
        return f"Planned({self.name}: {' '.join(self.sql.split())[:80]})"

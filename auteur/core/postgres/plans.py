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
  the same).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from typing import Any

_PLACEHOLDER = re.compile(r"%(?:(%)|\(([^)]*)\)s|(s))|%")


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
        self.name = "auteur_" + hashlib.blake2b(body.encode(), digest_size=8).hexdigest()
        self.prepare = f"PREPARE {self.name} AS {body}"
        self.names = tuple(key for key in order if isinstance(key, str))  # of $1, $2, ... when named
        self.count = len(order)
        self.run = f"EXECUTE {self.name}({', '.join(['%s'] * len(order))})" if order else f"EXECUTE {self.name}"

    def execute(self, cursor: Any, params: Sequence[Any] | Mapping[str, Any] = ()) -> None:
        """Run it on a Django cursor of this backend (auteur.core.postgres): prepared first if its
        session has not prepared it yet."""
        db = cursor.db
        if self.name not in db.planned:
            cursor.execute(self.prepare)
            db.planned.add(self.name)
        if isinstance(params, Mapping) and len(self.names) == self.count:
            values = [params[name] for name in self.names]
        elif not isinstance(params, Mapping) and not self.names and len(params) == self.count:
            values = list(params)
        else:
            raise TypeError(f"{self.name} takes {self.count} parameters{' by name' if self.names else ''}, "
                            f"given {params!r}"[:200])
        cursor.execute(self.run, values or None)

    def __repr__(self) -> str:
        return f"Planned({self.name}: {' '.join(self.sql.split())[:80]})"

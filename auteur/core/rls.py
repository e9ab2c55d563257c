"""Row-level security: a request of the API sees only its caller's rows, whatever its queries forget.

The database side (the migrations named ``*_row_level_security``): every table that holds a user's
data answers only with the rows of the user named by the session setting ``app.user_id`` when the
session's role is API_ROLE (``auteur_api``: no superuser, no BYPASSRLS, owner of nothing). The
tables' owner, the login that runs the migrations, is not restricted (PostgreSQL exempts a table's
owner unless FORCE ROW LEVEL SECURITY is set): workers, beat, management commands, the tests' own
setup and the admin use it.

The application side (this module): each request of the API runs in a Scope. It starts restricted
with nobody's id (an unauthenticated request sees no user's rows); a verified token names the user
(``act_as``); the views that act across users by design, the admin and Stripe's signed webhook,
are trusted (``READS_ACROSS_USERS`` on the view, or the admin's URLs). Just before any query, the
connection's session is brought to the scope of the code that runs the query: ``SET ROLE auteur_api``
and ``app.user_id``, or back to the login's own role. The session keeps what it was given, so a
client that polls costs one round trip when its first request lands on a connection, none after;
a connection reused by the next request (CONN_MAX_AGE) is moved to that request's scope before its
first query, so one request's id never reaches another's.

Which login the API uses decides what a SQL injection in the API could do:
- one login for everything (`make test`, and a deployment that gives the API the owner's
  DATABASE_URL): the restriction is `SET ROLE`, which an injected `RESET ROLE` undoes. It still
  guards every query the code sends against a forgotten owner filter.
- the API's own login (DATABASE_API_URL, `make run`): the API's connections log in as auteur_api,
  so nothing an injected statement can run gives more than one user's rows at a time (it could
  still set `app.user_id` to another user's id); the trusted views get a second connection, as
  the owner (OWNER_ALIAS), for their request only.
"""

from __future__ import annotations

import contextvars
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
from django.db import DEFAULT_DB_ALIAS, InterfaceError, connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.signals import connection_created
from django.http import HttpRequest, HttpResponse
from psycopg import pq
from psycopg.pq import TransactionStatus

from auteur.core.postgres import plans

API_ROLE = "auteur_api"
USER_SETTING = "app.user_id"
# The alias of the owner's login in a process whose `default` is the API's own login.
OWNER_ALIAS = "owner"
# A view class with this attribute set reads and writes across users (Stripe's webhook).
READS_ACROSS_USERS = "reads_across_users"


class Scope:
    """What the code of one request may see: no user yet, one user, or everything (trusted).

    Mutable, and shared by every context of the request (the ASGI wrapper's, Django's threads):
    the caller named by the token during the view is the caller of what runs after it too
    (a waiting submission's reads)."""

    __slots__ = ("trusted", "user_id")

    def __init__(self) -> None:
        self.trusted = False
        self.user_id = ""  # "": nobody's rows


_scope: contextvars.ContextVar[Scope | None] = contextvars.ContextVar("auteur_rls_scope", default=None)


def wanted() -> str | None:
    """The `app.user_id` the running code must query with, or None for the login's own role."""
    scope = _scope.get()
    if scope is None or scope.trusted:
        return None
    return scope.user_id


@contextmanager
def request_scope() -> Iterator[Scope]:
    """A restricted scope for one request; inside an enclosing one (ASGI), that one."""
    outer = _scope.get()
    if outer is not None:
        yield outer
        return
    scope = Scope()
    token = _scope.set(scope)
    try:
        yield scope
    finally:
        _scope.reset(token)


def act_as(user_id: uuid.UUID | str | None) -> None:
    """From now on the request's queries see this user's rows (its token was verified); None: no
    user's rows (the token named an account that may not sign in)."""
    scope = _scope.get()
    if scope is not None:
        scope.user_id = "" if user_id is None else str(uuid.UUID(str(user_id)))


@contextmanager
def trusted() -> Iterator[None]:
    """The request acts across users: the owner's login, unrestricted.

    Where the API logs in as auteur_api, its `default` connection is the owner's own for the
    duration (a transaction.atomic() inside then runs there too)."""
    scope = _scope.get()
    if scope is None:
        yield
        return
    was, scope.trusted = scope.trusted, True
    swapped = OWNER_ALIAS in connections.settings
    if swapped:
        api = connections[DEFAULT_DB_ALIAS]
        connections[DEFAULT_DB_ALIAS] = connections[OWNER_ALIAS]
    try:
        yield
    finally:
        scope.trusted = was
        if swapped:
            connections[DEFAULT_DB_ALIAS] = api


# ---- the session follows the scope


@dataclass(frozen=True)
class _Applied:
    user_id: str | None  # what the session was given (None: the login's own role)
    # Set outside a transaction, it lasts. Set inside one, a rollback would undo it: it counts only
    # until that transaction ends or rolls back to a savepoint.
    lasts: bool


_SET = "SELECT set_config('role', %s, false), set_config('" + USER_SETTING + "', %s, false)"
_STATE = "_auteur_rls"
# The statements the scope's may be sent with: queries, which may run inside a transaction block
# (unlike CREATE DATABASE or VACUUM) and do not end one (unlike ROLLBACK or COMMIT); and only a
# single statement (no ";"), so that nothing sent after the scope's can undo it unseen. EXECUTE
# runs a prepared statement, which PostgreSQL allows only for those queries; a planned
# statement's PREPARE makes one (PREPARE TRANSACTION, which ends a transaction, is not one).
_QUERIES = ("SELECT", "INSERT", "UPDATE", "DELETE", "WITH", "EXECUTE")
_PLANNED = f"PREPARE {plans.PREFIX}"


def _follow_scope(execute: Callable[..., Any], sql: str, params: Any, many: bool, context: dict[str, Any]) -> Any:
    db: BaseDatabaseWrapper = context["connection"]
    want = wanted()
    applied: _Applied | None = getattr(db, _STATE, None)
    status = db.connection.info.transaction_status
    head = sql.lstrip()[:8].upper() if isinstance(sql, str) else ""
    if head == "ROLLBACK":
        # Reads nothing, so it needs no scope (and a failed transaction would refuse the scope's
        # statement); it may undo a scope set inside the transaction: set again before the next query.
        try:
            return execute(sql, params, many, context)
        finally:
            if applied is None or not applied.lasts:
                setattr(db, _STATE, None)
    if status == TransactionStatus.INERROR:
        return execute(sql, params, many, context)  # refused by the server whatever its scope
    idle = status == TransactionStatus.IDLE
    if applied is None or applied.user_id != want or (idle and not applied.lasts):
        applied = _Applied(want, lasts=idle and db.get_autocommit())
        values = ("none" if want is None else API_ROLE, want or "")
        cursor = context["cursor"].cursor
        if (not many and (head.startswith(_QUERIES) or sql.startswith(_PLANNED)) and ";" not in sql
                and isinstance(cursor, psycopg.ClientCursor)
                and db.connection.pgconn.pipeline_status == pq.PipelineStatus.OFF):
            return _ahead_of(execute, sql, params, context, cursor, values, applied)
        with db.wrap_database_errors:
            db.connection.execute(_SET, values)
        setattr(db, _STATE, applied)
    return execute(sql, params, many, context)


def _ahead_of(execute: Callable[..., Any], sql: str, params: Any, context: dict[str, Any],
              cursor: psycopg.ClientCursor[Any], values: tuple[str, str], applied: _Applied) -> Any:
    """The scope's statement sent with the query in one message: one round trip, not two. As one
    simple query they succeed or fail together (in one implicit transaction when none is open), and
    the cursor is then moved on to the query's own result. Until both ran the session's scope is
    not known, so a failure leaves it to be set again before the next query."""
    db: BaseDatabaseWrapper = context["connection"]
    setattr(db, _STATE, None)
    scope_sql = cursor.mogrify(_SET, values)
    if params is not None:
        scope_sql = scope_sql.replace("%", "%%")  # the query's own placeholders follow
    result = execute(f"{scope_sql};\n{sql}", params, False, context)
    if not cursor.nextset():
        raise InterfaceError("The session's scope and the query sent with it did not both answer.")
    setattr(db, _STATE, applied)
    return result


def _on_connect(sender: Any, connection: BaseDatabaseWrapper, **kwargs: Any) -> None:
    # A session from a pool may carry a previous borrower's settings: nothing is assumed of a new
    # one. First in the list, so that a `with connection.execute_wrapper(...)` around this moment
    # pops its own wrapper, never this one.
    setattr(connection, _STATE, None)
    if _follow_scope not in connection.execute_wrappers:
        connection.execute_wrappers.insert(0, _follow_scope)


def install() -> None:
    connection_created.connect(_on_connect, dispatch_uid="auteur.core.rls")


# ---- the interfaces that open scopes


def _reads_across_users(request: HttpRequest, view_func: Any) -> bool:
    match = request.resolver_match
    if match is not None and "admin" in match.app_names:
        return True
    return bool(getattr(getattr(view_func, "cls", view_func), READS_ACROSS_USERS, False))


class RowLevelSecurityMiddleware:
    """Every request runs in a restricted scope; the views that act across users, trusted."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        with request_scope(), ExitStack() as until_the_response:
            request._rls_exit_stack = until_the_response  # type: ignore[attr-defined]
            return self.get_response(request)

    def process_view(self, request: HttpRequest, view_func: Any, args: Any, kwargs: Any) -> None:
        if _reads_across_users(request, view_func):
            request._rls_exit_stack.enter_context(trusted())  # type: ignore[attr-defined]


def scoped_asgi(app: Any) -> Any:
    """An ASGI application whose every call (a request, a WebSocket) runs in one restricted scope:
    what runs outside Django's middleware (a WebSocket consumer, a waiting submission's reads)
    is restricted too, and sees its caller's rows once the token is checked."""

    async def application(scope: Any, receive: Any, send: Any) -> None:
        with request_scope():
            await app(scope, receive, send)

    return application


# ---- the role's privileges and the policies, for the migrations

# The role and auteur_user_id() are made by users.0003_api_role; users.0005_api_grants gives the
# role what the API's requests do on each table, and nothing by default: a table a later migration
# creates is out of the role's reach until that migration grants it (api_grant), beside its policy,
# and depends on users.0005_api_grants (which takes back every grant made before it).
# tests/auteur/test_row_level_security.py fails for a table granted to the role without a policy
# (unless allow-listed there with its reason), and for any default privilege of the role. The
# ledger's tables (credit_accounts, credit_transactions, credit_spend_caps) are read-only to the role:
# a request's charges and refunds are SECURITY DEFINER functions (credits.0010_ledger_functions), so
# that no statement the role can send moves money without its ledger row. Every SECURITY DEFINER
# function pins its search_path (pg_catalog, pg_temp, with qualified names); the test lists them.


def api_grant(table: str, privileges: str) -> tuple[str, str]:
    """(forward, reverse) SQL: on `table` the API's role may do `privileges` and nothing else, e.g.
    "SELECT, INSERT" or "SELECT, UPDATE (status, updated_at)"."""
    return (
        f"REVOKE ALL ON {table} FROM {API_ROLE};\nGRANT {privileges} ON {table} TO {API_ROLE};",
        f"REVOKE ALL ON {table} FROM {API_ROLE};",
    )


def owner_policy(table: str, owner_column: str = "user_id") -> tuple[str, str]:
    """(forward, reverse) SQL: the table's rows are its owner's only. The USING clause checks
    written rows too: a row cannot be inserted or moved to another user."""
    return (
        f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY;\n"
        f"CREATE POLICY owner_only ON {table} USING ({owner_column} = auteur_user_id());",
        f"DROP POLICY owner_only ON {table};\nALTER TABLE {table} DISABLE ROW LEVEL SECURITY;",
    )


def parent_policy(table: str, fk_column: str, parent: str, owner_column: str = "user_id") -> tuple[str, str]:
    """(forward, reverse) SQL: the table's rows belong to the owner of the row they hang off."""
    check = (f"EXISTS (SELECT FROM {parent} p WHERE p.id = {table}.{fk_column} "
             f"AND p.{owner_column} = auteur_user_id())")
    return (
        f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY;\n"
        f"CREATE POLICY owner_only ON {table} USING ({check});",
        f"DROP POLICY owner_only ON {table};\nALTER TABLE {table} DISABLE ROW LEVEL SECURITY;",
    )

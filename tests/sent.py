"""What this process sends to PostgreSQL, seen at psycopg's level: Django's execute wrappers never
see what Django sends of its own (its health check) nor the session's scope (auteur/core/rls.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg
import pytest


def on_each_statement(monkeypatch: pytest.MonkeyPatch, record: Callable[[psycopg.Cursor[Any], str], None]) -> None:
    """`record(cursor, sql)` before each statement is sent, until `monkeypatch` is undone."""
    real_execute = psycopg.Cursor.execute

    def execute(cursor: psycopg.Cursor[Any], query: Any, *args: Any, **kwargs: Any) -> Any:
        record(cursor, query if isinstance(query, str) else repr(query))
        return real_execute(cursor, query, *args, **kwargs)

    monkeypatch.setattr(psycopg.Cursor, "execute", execute)

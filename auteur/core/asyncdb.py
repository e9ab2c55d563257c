"""Database work from long-lived async connections (event streams, WebSockets)."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import ParamSpec, TypeVar

from asgiref.sync import sync_to_async
from django.db import connections

P = ParamSpec("P")
R = TypeVar("R")


def released(fn: Callable[P, R]) -> Callable[P, Awaitable[R]]:
    """`fn` run in a thread that gives its database connections back when it returns.

    Django keeps a request's connection until the request finishes, and a stream or a socket
    finishes hours later: each would hold one of Postgres's few connections for nothing between
    its short reads."""

    @functools.wraps(fn)
    def call(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        finally:
            connections.close_all()

    return sync_to_async(call)

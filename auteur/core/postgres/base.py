"""Django's PostgreSQL backend, with a health check that costs no round trip on a busy connection.

A connection kept between requests and tasks (CONN_MAX_AGE) is tested before its first query
(CONN_HEALTH_CHECKS), so that one a server restart closed is replaced instead of failing that
query. Django's test is `SELECT 1`: a round trip, and a statement for the server to parse and run,
at the start of every request and every task.

An idle session has nothing to read on its socket. A server that closed it (a restart, an
administrator's terminate, a crash: the kernel closes the socket) leaves its FATAL message or the
end of the stream there. So a connection used in the last QUIET_SECONDS has its socket polled
without waiting, and gets Django's test only when something is there: the test tells a dead
session from a live one that was sent a notice (a reported parameter's new value), and reads that
notice. A connection quiet for longer, or a session not idle (inside a transaction, or one that
failed), gets Django's test as before: a peer gone without a word (a host lost, a database moved
to another machine behind the same address) answers only when written to, and a connection that
has been quiet a while is the one likely to meet it.
"""

from __future__ import annotations

import select
import time
from typing import Any

import psycopg
from django.db.backends.postgresql import base
from psycopg.pq import TransactionStatus

QUIET_SECONDS = 5.0
_READABLE = select.POLLIN | select.POLLPRI | select.POLLERR | select.POLLHUP


class DatabaseWrapper(base.DatabaseWrapper):
    _used_at = 0.0  # time.monotonic() when a cursor was last opened on the connection

    def create_cursor(self, name: str | None = None) -> Any:
        self._used_at = time.monotonic()  # after the health check, which Django runs just before
        return super().create_cursor(name)

    def is_usable(self) -> bool:
        conn = self.connection
        if conn is None or conn.closed or conn.broken:
            return False
        busy = time.monotonic() - self._used_at < QUIET_SECONDS
        if not busy or conn.info.transaction_status != TransactionStatus.IDLE:
            return bool(super().is_usable())
        try:
            poller = select.poll()
            poller.register(conn.fileno(), _READABLE)
            said_something = bool(poller.poll(0))
        except (OSError, ValueError, psycopg.Error):
            return False
        return not said_something or bool(super().is_usable())

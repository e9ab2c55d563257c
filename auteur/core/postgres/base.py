"""Django's PostgreSQL backend, with a health check that costs no round trip.

A connection kept between requests and tasks (CONN_MAX_AGE) is tested before its first query
(CONN_HEALTH_CHECKS), so that one a server restart closed is replaced instead of failing that
query. Django's test is `SELECT 1`: a round trip, and a statement for the server to parse and run,
at the start of every request and every task.

An idle session has nothing to read on its socket. A server that closed it (a restart, an
administrator's terminate, a crash: the kernel closes the socket) leaves its FATAL message or the
end of the stream there. So the socket is polled without waiting, and only when something is there
is Django's test run: it tells a dead session from a live one that was sent a notice (a reported
parameter's new value), and reads that notice. A session not idle (inside a transaction, or one
that failed) gets Django's test as before. What neither test sees in time is a peer gone without a
word (a host lost, a cable cut): the first query fails then, with either.
"""

from __future__ import annotations

import select

from django.db.backends.postgresql import base
from psycopg.pq import TransactionStatus

_READABLE = select.POLLIN | select.POLLPRI | select.POLLERR | select.POLLHUP


class DatabaseWrapper(base.DatabaseWrapper):
    def is_usable(self) -> bool:
        conn = self.connection
        if conn is None or conn.closed or conn.broken:
            return False
        if conn.info.transaction_status != TransactionStatus.IDLE:
            return bool(super().is_usable())
        try:
            poller = select.poll()
            poller.register(conn.fileno(), _READABLE)
            said_something = bool(poller.poll(0))
        except (OSError, ValueError):
            return False
        return not said_something or bool(super().is_usable())

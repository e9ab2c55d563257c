"""A table's planner statistics refreshed right after a bulk insert, not at autovacuum's next round.

Until a table is analyzed again the planner sees it as it was: a user who had a handful of rows
and now has thousands is still planned for a handful, and a read meant to take the first of them
by an index may fetch and sort them all instead. PostgreSQL's advice after a bulk load is to
ANALYZE; autovacuum does it too, but only at its next round (up to a minute away), and it takes
the table's counters, which a backend reports up to seconds after its commit. So whoever inserted
the rows says how many, and the table is analyzed at once when they are as many as autovacuum's
own rule asks for (its default threshold: 50 rows plus a tenth of the table's): a burst of small
inserts costs nothing, and a run of large ones one ANALYZE each, each of a table a tenth larger.
"""

from __future__ import annotations

import logging
from typing import Any

from django.db import connection

logger = logging.getLogger(__name__)

# autovacuum_analyze_threshold and autovacuum_analyze_scale_factor's defaults.
ANALYZE_THRESHOLD_ROWS = 50
ANALYZE_SCALE_FACTOR = 0.1
# The warning of an ANALYZE (SKIP_LOCKED) that found the table's lock taken.
_LOCK_NOT_AVAILABLE = "55P03"


def due(*, rows: int, table_rows: float) -> bool:
    """Whether `rows` new rows in a table of `table_rows` (the planner's estimate; negative when the
    table was never analyzed) call for an ANALYZE now."""
    return rows > ANALYZE_THRESHOLD_ROWS + ANALYZE_SCALE_FACTOR * max(table_rows, 0.0)


def analyze_after_insert(table: str, *, rows: int) -> bool:
    """ANALYZE `table` if `rows` just inserted into it make it due; whether it was analyzed.

    SKIP_LOCKED: when another ANALYZE or a VACUUM holds the table (autovacuum's, say) this one
    gives way at once. Waiting for the lock would do worse than queue: PostgreSQL cancels an
    autovacuum that blocks another session's lock for longer than deadlock_timeout."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT reltuples FROM pg_class WHERE oid = %s::regclass", [table])
        row = cursor.fetchone()
        if row is None or not due(rows=rows, table_rows=float(row[0])):
            return False
        skipped: list[str] = []

        def notice(diagnostic: Any) -> None:
            if diagnostic.sqlstate == _LOCK_NOT_AVAILABLE:
                skipped.append(diagnostic.message_primary or "")

        raw = connection.connection
        raw.add_notice_handler(notice)
        try:
            cursor.execute(f"ANALYZE (SKIP_LOCKED) {connection.ops.quote_name(table)}")
        finally:
            raw.remove_notice_handler(notice)
    if skipped:
        logger.info("statistics of %s: left to the ANALYZE or VACUUM under way", table)
        return False
    logger.info("statistics of %s refreshed after %d rows were inserted", table, rows)
    return True

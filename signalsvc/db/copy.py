"""Bulk upsert through COPY: rows are streamed into a per-connection staging table and merged
with one INSERT … ON CONFLICT, so a batch is one round trip of data and one statement, never a
per-row INSERT.

The COPY is binary with the columns' types declared: psycopg then dumps each value with the
column's own binary dumper, 4-5x faster than the text format's per-value adaptation (a chain of
882 options: 8 -> 1.6 ms; 45 moneyness rows: 0.95 -> 0.25 ms)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from django.db import connection

# Column types per table, read once per process (the schema changes only with a migration, and a
# migration restarts the processes).
_column_types: dict[str, dict[str, str]] = {}


def _types(cur, table: str) -> dict[str, str]:
    types = _column_types.get(table)
    if types is None:
        cur.execute(
            "SELECT attname, atttypid::regtype::text FROM pg_attribute "
            "WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped",
            [table],
        )
        types = _column_types[table] = dict(cur.fetchall())
    return types


def copy_upsert(
    *,
    table: str,
    columns: Sequence[str],
    rows: Iterable[Sequence],
    conflict: Sequence[str],
    update_sql: str,
    where_sql: str = "",
) -> int:
    """Merge ``rows`` into ``table``. ``update_sql`` is the SET list (may use ``excluded.`` and
    ``t.`` for the existing row), ``where_sql`` an optional guard on the update (e.g. never let
    an older computation overwrite a newer one). Must run inside a transaction. Returns the
    number of rows inserted or updated."""
    stage = f"_stage_{table}"
    cols = ", ".join(f'"{c}"' for c in columns)
    with connection.cursor() as cur:
        # One round trip for both (no parameters, so psycopg sends them as one simple query). DELETE,
        # not TRUNCATE: the stage is empty or small, and TRUNCATE makes a new file each time.
        cur.execute(
            f'CREATE TEMP TABLE IF NOT EXISTS "{stage}" (LIKE "{table}" INCLUDING DEFAULTS) ON COMMIT DELETE ROWS; '
            f'DELETE FROM "{stage}"'
        )
        types = _types(cur, table)
        with cur.copy(f'COPY "{stage}" ({cols}) FROM STDIN (FORMAT BINARY)') as copy:
            copy.set_types([types[c] for c in columns])
            for row in rows:
                copy.write_row(row)
        guard = f" WHERE {where_sql}" if where_sql else ""
        # Rows are merged in key order: concurrent batches over the same keys then lock them in
        # the same order and wait for each other instead of deadlocking.
        keys = ", ".join(f'"{c}"' for c in conflict)
        cur.execute(
            f'INSERT INTO "{table}" AS t ({cols}) SELECT {cols} FROM "{stage}" ORDER BY {keys} '
            f"ON CONFLICT ({', '.join(conflict)}) DO UPDATE SET {update_sql}{guard}"
        )
        return cur.rowcount

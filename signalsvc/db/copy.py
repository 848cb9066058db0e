"""Bulk upsert through COPY: rows are streamed into a per-connection staging table and merged
with one INSERT … ON CONFLICT, so a batch is one round trip of data and one statement, never a
per-row INSERT.

The COPY is binary with the columns' types declared: psycopg then dumps each value with the
column's own binary dumper, 4-5x faster than the text format's per-value adaptation (a chain of
882 options: 8 -> 1.6 ms; 45 moneyness rows: 0.95 -> 0.25 ms)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

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


@dataclass(frozen=True)
class Upsert:
    """One table's batch for :func:`copy_upsert_many` (the arguments of :func:`copy_upsert`)."""

    table: str
    columns: Sequence[str]
    rows: Iterable[Sequence]
    conflict: Sequence[str]
    update_sql: str
    where_sql: str = ""


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
    return copy_upsert_many([Upsert(table, columns, rows, conflict, update_sql, where_sql)])[0]


def copy_upsert_many(upserts: Sequence[Upsert]) -> list[int]:
    """:func:`copy_upsert` of several tables with as few round trips as there can be: the stages
    made and emptied in one, a COPY each, the merges in one. Returns the rows merged per table."""
    with connection.cursor() as cur:
        # No parameters, so psycopg sends these as one simple query. DELETE, not TRUNCATE: the
        # stage is empty or small, and TRUNCATE makes a new file each time.
        cur.execute(
            "; ".join(
                f'CREATE TEMP TABLE IF NOT EXISTS "_stage_{u.table}" (LIKE "{u.table}" INCLUDING DEFAULTS) '
                f'ON COMMIT DELETE ROWS; DELETE FROM "_stage_{u.table}"'
                for u in upserts
            )
        )
        merges = []
        for u in upserts:
            types = _types(cur, u.table)
            cols = ", ".join(f'"{c}"' for c in u.columns)
            with cur.copy(f'COPY "_stage_{u.table}" ({cols}) FROM STDIN (FORMAT BINARY)') as copy:
                copy.set_types([types[c] for c in u.columns])
                for row in u.rows:
                    copy.write_row(row)
            guard = f" WHERE {u.where_sql}" if u.where_sql else ""
            # Rows are merged in key order: concurrent batches over the same keys then lock them in
            # the same order and wait for each other instead of deadlocking.
            keys = ", ".join(f'"{c}"' for c in u.conflict)
            merges.append(
                f'INSERT INTO "{u.table}" AS t ({cols}) SELECT {cols} FROM "_stage_{u.table}" ORDER BY {keys} '
                f"ON CONFLICT ({', '.join(u.conflict)}) DO UPDATE SET {u.update_sql}{guard}"
            )
        cur.execute("; ".join(merges))
        counts = [cur.rowcount]
        while cur.nextset():
            counts.append(cur.rowcount)
        return counts

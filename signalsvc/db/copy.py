"""Bulk upsert through COPY: rows are streamed into a per-connection staging table and merged
with one INSERT … ON CONFLICT, so a batch is one round trip of data and one statement, never a
per-row INSERT."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from django.db import connection


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
        cur.execute(
            f'CREATE TEMP TABLE IF NOT EXISTS "{stage}" (LIKE "{table}" INCLUDING DEFAULTS) ON COMMIT DELETE ROWS'
        )
        cur.execute(f'TRUNCATE "{stage}"')
        with cur.copy(f'COPY "{stage}" ({cols}) FROM STDIN') as copy:
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

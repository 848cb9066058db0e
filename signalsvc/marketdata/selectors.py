from __future__ import annotations

import datetime as dt

from django.db import connection


def bars_between(*, instrument_id: int, start: dt.datetime, end: dt.datetime) -> list[tuple]:
    """1-minute bars with start <= ts < end, oldest first: (ts, open, high, low, close, volume, oi)."""
    with connection.cursor() as cur:
        cur.execute(
            """
            SELECT ts, open, high, low, close, volume, oi FROM market_bar_1m
            WHERE instrument_id = %s AND ts >= %s AND ts < %s ORDER BY ts
            """,
            [instrument_id, start, end],
        )
        return cur.fetchall()


def bars_range(*, instrument_id: int) -> tuple[dt.datetime | None, dt.datetime | None, int]:
    """First and last bar time held for an instrument, and the count."""
    with connection.cursor() as cur:
        cur.execute(
            "SELECT min(ts), max(ts), count(*) FROM market_bar_1m WHERE instrument_id = %s", [instrument_id]
        )
        return cur.fetchone()

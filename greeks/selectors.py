from __future__ import annotations

import datetime as dt
import json

from django.db import connection

from greeks.services import LATEST_PREFIX, redis_client

SERIES_FIELDS = (
    "iv", "delta", "gamma", "theta", "vega", "rho", "vanna", "vomma", "charm", "option_price", "underlying_price",
)  # fmt: skip
META_FIELDS = ("model", "forward", "forward_source", "price_source", "time_to_expiry", "source_ts")


def greeks_latest_many(*, keys: list[str]) -> dict[str, dict]:
    """Latest computed values per option key (those that have one)."""
    if not keys:
        return {}
    values = redis_client().mget([LATEST_PREFIX + k for k in keys])
    return {k: json.loads(v) for k, v in zip(keys, values, strict=True) if v is not None}


def greeks_series(*, instrument_id: int, start: dt.datetime, end: dt.datetime) -> list[dict]:
    """Per-minute rows in [start, end), oldest first."""
    columns = ("ts", *SERIES_FIELDS, *META_FIELDS)
    with connection.cursor() as cur:
        cur.execute(
            f"SELECT {', '.join(columns)} FROM greeks_option_1m "
            "WHERE instrument_id = %s AND ts >= %s AND ts < %s ORDER BY ts",
            [instrument_id, start, end],
        )
        return [dict(zip(columns, row, strict=True)) for row in cur.fetchall()]

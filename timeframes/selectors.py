"""Reads of the timeframes app: session-anchored aggregation in PostgreSQL (SPEC §8).

Buckets are computed in the database by joining each 1-minute row to its session (an ``unnest``
of the sessions from the market calendar, only those the range needs) and binning with
``date_bin`` from that session's open (``timeframes.core.buckets.sql_bucket_expression``): the
bucket starts at ``open + floor((ts - open)/N)*N`` and ends at ``least(start + N, close)``; ``1d``
is the session. OHLC = first/max/min/last, volume summed, oi = last non-NULL (``BAR_AGGREGATES``).
A bucket is returned when its start lies in ``[start, end)``, and it always holds all its 1-minute
bars (the last bucket may reach past ``end``); rows outside every session are ignored.

Results travel as one row of ``bytea`` columns (``timestamptz_send``/``float8send`` aggregated with
``string_agg``) decoded with ``numpy.frombuffer``: no per-row Python objects on the hot path.

Arrays returned by the bar selectors (a ``dict``): ``start``/``end`` ``datetime64[us]`` (UTC), ``open
high low close volume oi`` float64 (``oi`` NaN when no bar of the bucket has one), ``count`` int64
(1-minute bars in the bucket), sorted by ``start``.
"""

from __future__ import annotations

import bisect
import datetime as dt
import time
from collections.abc import Collection, Sequence

import numpy as np
from django.conf import settings
from django.db import connection, transaction

from signalsvc.core.calendar import MarketCalendar, Session, get_calendar
from signalsvc.instruments.selectors import option_expiries
from timeframes.core.buckets import SessionTable, aggregate_series, sql_bucket_expression
from timeframes.core.buckets import aware_to_us as to_us
from timeframes.core.grammar import Timeframe, parse_timeframe
from timeframes.models import CustomTimeframe

UTC = dt.UTC
US = np.dtype("datetime64[us]")
PG_EPOCH_US = 946_684_800_000_000  # 2000-01-01 (PostgreSQL's binary timestamp epoch) in Unix µs
BAR_FIELDS = ("start", "end", "open", "high", "low", "close", "volume", "oi", "count")
ROLLUP_TIMEFRAMES = ("5m", "15m", "30m", "1h", "4h", "1d")  # standard timeframes kept as rollups
CACHE_TRACKER = "cache"  # watermark row of the Redis bar cache's invalidation
GREEK_VALUE_FIELDS = (
    "iv", "delta", "gamma", "theta", "vega", "rho", "vanna", "vomma", "charm", "option_price", "underlying_price",
)  # fmt: skip


def market_calendar() -> MarketCalendar:
    return get_calendar(settings.MARKET_CALENDAR, settings.MARKET_EXTRA_HOLIDAYS)


def timeframe_parse(text: object) -> Timeframe:
    """``parse_timeframe`` with the calendar's session length as the longest intraday timeframe."""
    return parse_timeframe(text, max_minutes=market_calendar().session_minutes)


def is_rollup_timeframe(timeframe: Timeframe) -> bool:
    return timeframe.label in ROLLUP_TIMEFRAMES


# -- SQL building blocks -------------------------------------------------------------------------

SESSIONS_CTE = (
    "s(sd, so, sc) AS (SELECT * FROM unnest(%(s_dates)s::date[], %(s_opens)s::timestamptz[], "
    "%(s_closes)s::timestamptz[]))"
)

# Aggregates of the 1-minute rows ``b`` of one bucket. First/last = the value in the least/greatest
# of ARRAY[epoch seconds of ts, value]: ``date_part('epoch', ts)`` is a float8 that keeps distinct
# microsecond timestamps distinct and ordered (its spacing is < 1 µs until 2200) and ts is unique
# per instrument, so the comparison is decided by the time alone. Unlike ``array_agg(... ORDER BY
# ts)`` (PostgreSQL 15 sorts every group of an ordered aggregate separately, and such aggregates
# cannot run in parallel), these are plain combinable aggregates: the planner can aggregate
# partially in its parallel workers.
BAR_AGGREGATES = """
    (min(ARRAY[date_part('epoch', b.ts), b.open]))[2] AS open, max(b.high) AS high, min(b.low) AS low,
    (max(ARRAY[date_part('epoch', b.ts), b.close]))[2] AS close, sum(b.volume) AS volume,
    (max(ARRAY[date_part('epoch', b.ts), b.oi]) FILTER (WHERE b.oi IS NOT NULL))[2] AS oi,
    count(*)::int AS bars
"""

# The same aggregates for a whole range, without the per-row ARRAY of BAR_AGGREGATES (which
# costs more than the scan): the group keeps the open of the row at the bucket start and the
# close/oi of the row in the bucket's last minute, with the first and last times; a bucket whose
# first (last) row is elsewhere (a gap, a time off the minute) looks that row up by its time
# (one index probe, only for such buckets), and a bucket whose last row has no oi looks up its
# last non-NULL oi. Complete data needs no lookup. Columns: (bs, be, open, ..., oi, bars).
_GROUPED_BARS = """
SELECT g.bs, g.be,
    CASE WHEN g.t0 = g.bs THEN g.open0
         ELSE (SELECT l.open FROM market_bar_1m l WHERE l.instrument_id = %(iid)s AND l.ts = g.t0) END AS open,
    g.high, g.low,
    CASE WHEN g.t1 = g.be - interval '1 minute' THEN g.close1
         ELSE (SELECT l.close FROM market_bar_1m l WHERE l.instrument_id = %(iid)s AND l.ts = g.t1) END AS close,
    g.volume,
    CASE WHEN g.with_oi = 0 THEN NULL
         WHEN g.t1 = g.be - interval '1 minute' AND g.oi1 IS NOT NULL THEN g.oi1
         ELSE (SELECT l.oi FROM market_bar_1m l
               WHERE l.instrument_id = %(iid)s AND l.ts >= g.bs AND l.ts < g.be AND l.oi IS NOT NULL
               ORDER BY l.ts DESC LIMIT 1) END AS oi,
    g.bars
FROM (
    SELECT {bs} AS bs, {be} AS be, min(b.ts) AS t0, max(b.ts) AS t1,
        max(b.open) FILTER (WHERE b.ts = {bs}) AS open0,
        max(b.close) FILTER (WHERE b.ts = {be} - interval '1 minute') AS close1,
        max(b.oi) FILTER (WHERE b.ts = {be} - interval '1 minute') AS oi1, count(b.oi) AS with_oi,
        max(b.high) AS high, min(b.low) AS low, sum(b.volume) AS volume, count(*)::int AS bars
    FROM market_bar_1m b {join}
    WHERE b.instrument_id = %(iid)s AND b.ts >= %(lo)s AND b.ts < %(hi)s
    GROUP BY 1, 2
) g
"""

# One row of bytea columns from rows (bs, be, open, high, low, close, volume, oi, bars). The
# string_aggs of one aggregate node consume the same rows in the same order, so the columns stay
# aligned; the order itself is not guaranteed without ORDER BY, so the decoder sorts by start.
_AS_BLOBS = """
SELECT string_agg(timestamptz_send(x.bs), ''), string_agg(timestamptz_send(x.be), ''),
       string_agg(float8send(x.open), ''), string_agg(float8send(x.high), ''),
       string_agg(float8send(x.low), ''), string_agg(float8send(x.close), ''),
       string_agg(float8send(x.volume), ''), string_agg(float8send(coalesce(x.oi, 'NaN')), ''),
       string_agg(int4send(x.bars), '')
FROM ({inner}) x
"""


def session_params(sessions: Sequence[Session]) -> dict:
    return {
        "s_dates": [s.date for s in sessions],
        "s_opens": [s.open for s in sessions],
        "s_closes": [s.close for s in sessions],
    }


# Sessions keyed by the local calendar day holding them, for scans over many instruments: a hash
# join on date_bin('1 day', ts, local midnight) instead of a range join per session.
DAY_SESSIONS_CTE = (
    "s(sd, sday, so, sc) AS (SELECT * FROM unnest(%(s_dates)s::date[], %(s_days)s::timestamptz[], "
    "%(s_opens)s::timestamptz[], %(s_closes)s::timestamptz[]))"
)
DAY_JOIN = "JOIN s ON s.sday = date_bin('1 day', b.ts, %(day_origin)s) AND b.ts >= s.so AND b.ts < s.sc"
RANGE_JOIN = "JOIN s ON b.ts >= s.so AND b.ts < s.sc"


def day_session_params(sessions: Sequence[Session]) -> tuple[dict, str]:
    """Parameters for ``DAY_SESSIONS_CTE`` and the join to use: ``DAY_JOIN`` when every session lies
    within one local day of a fixed UTC offset (NSE, NSE-DEMO), else ``RANGE_JOIN``."""
    tz = market_calendar().timezone
    origin = dt.datetime(2000, 1, 1, tzinfo=tz)
    day = dt.timedelta(days=1)
    days = [origin + ((s.open - origin) // day) * day for s in sessions]
    aligned = all(
        d == dt.datetime.combine(s.date, dt.time(0), tzinfo=tz)
        and s.close - d <= day
        and d.utcoffset() == origin.utcoffset()
        for s, d in zip(sessions, days, strict=True)
    )
    params = {**session_params(sessions), "s_days": days, "day_origin": origin}
    return params, DAY_JOIN if aligned else RANGE_JOIN


def _span(sessions: Sequence[Session]) -> tuple[dt.datetime, dt.datetime]:
    return min(s.open for s in sessions), max(s.close for s in sessions)


def empty_bars() -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {"start": np.empty(0, US), "end": np.empty(0, US)}
    for field in ("open", "high", "low", "close", "volume", "oi"):
        out[field] = np.empty(0, np.float64)
    out["count"] = np.empty(0, np.int64)
    return out


def _ts(blob: bytes) -> np.ndarray:
    return (np.frombuffer(blob, ">i8").astype(np.int64) + PG_EPOCH_US).view(US)


def _decode_bars(row: Sequence[bytes | None] | None) -> dict[str, np.ndarray]:
    if row is None or row[0] is None:
        return empty_bars()
    out = {"start": _ts(row[0]), "end": _ts(row[1])}
    for field, blob in zip(("open", "high", "low", "close", "volume", "oi"), row[2:8], strict=True):
        out[field] = np.frombuffer(blob, ">f8").astype(np.float64)
    out["count"] = np.frombuffer(row[8], ">i4").astype(np.int64)
    order = np.argsort(out["start"].view(np.int64), kind="stable")
    if not (order == np.arange(len(order))).all():
        out = {k: v[order] for k, v in out.items()}
    return out


def tune_for_aggregation(cur) -> None:
    """Settings for the aggregation queries, for the current transaction only, in one round trip.
    JIT compilation costs far more than these queries run (the planner overestimates the session
    join); parallel workers did not make them faster here and take the other core from concurrent
    requests; grouping a year of buckets wants more than the default work_mem."""
    cur.execute(
        "SELECT set_config('jit', 'off', true), set_config('max_parallel_workers_per_gather', '0', true), "
        "set_config('work_mem', '64MB', true)"
    )


def _fetch_one(sql: str, params: dict) -> tuple | None:
    with transaction.atomic(), connection.cursor() as cur:
        tune_for_aggregation(cur)
        cur.execute(sql, params)
        return cur.fetchone()


def filter_range(bars: dict[str, np.ndarray], start: dt.datetime, end: dt.datetime) -> dict[str, np.ndarray]:
    """Buckets whose start lies in ``[start, end)``."""
    s = bars["start"].view(np.int64)
    lo, hi = np.searchsorted(s, [to_us(start), to_us(end)], side="left")
    if lo == 0 and hi == len(s):
        return bars
    return {k: v[lo:hi] for k, v in bars.items()}


# -- bars ------------------------------------------------------------------------------------------


def bars_from_minutes(*, instrument_id: int, timeframe: Timeframe, sessions: Sequence[Session]) -> dict:
    """Every bucket of ``sessions`` aggregated from ``market_bar_1m`` (one query)."""
    if not sessions:
        return empty_bars()
    bs, be = sql_bucket_expression(timeframe, "b.ts", "s.so", "s.sc")
    # A hash join on the local day where sessions allow it: the range join against every session
    # is a nested loop (rows x sessions) and dominated the cold read.
    params, join = day_session_params(sessions)
    if timeframe.minutes == 1:
        inner = (
            f"SELECT {bs} AS bs, {be} AS be, b.open, b.high, b.low, b.close, b.volume, b.oi, 1 AS bars "
            f"FROM market_bar_1m b {join} "
            "WHERE b.instrument_id = %(iid)s AND b.ts >= %(lo)s AND b.ts < %(hi)s"
        )
    else:
        inner = _GROUPED_BARS.format(bs=bs, be=be, join=join)
    lo, hi = _span(sessions)
    sql = f"WITH {DAY_SESSIONS_CTE} " + _AS_BLOBS.format(inner=inner)
    return _decode_bars(_fetch_one(sql, {"iid": instrument_id, "lo": lo, "hi": hi, **params}))


def bars_from_rollup(
    *, instrument_id: int, timeframe: Timeframe, sessions: Sequence[Session], watermark: dt.datetime
) -> dict:
    """Every bucket of ``sessions`` from the rollup table, except the buckets holding a 1-minute
    bar changed after ``watermark`` (written or corrected since the last refresh): those are
    aggregated from ``market_bar_1m`` in the same query, so the result is always current."""
    if not sessions:
        return empty_bars()
    bs, be = sql_bucket_expression(timeframe, "b.ts", "s.so", "s.sc")
    sql = f"""
    WITH {SESSIONS_CTE},
    d AS (
        SELECT DISTINCT {bs} AS bs, {be} AS be
        FROM market_bar_1m b JOIN s ON b.ts >= s.so AND b.ts < s.sc
        WHERE b.instrument_id = %(iid)s AND b.ts >= %(lo)s AND b.ts < %(hi)s AND b.updated_at > %(w)s
    ),
    f AS (
        SELECT d.bs, d.be, x.*
        FROM d CROSS JOIN LATERAL (
            SELECT {BAR_AGGREGATES}
            FROM market_bar_1m b WHERE b.instrument_id = %(iid)s AND b.ts >= d.bs AND b.ts < d.be
        ) x
        WHERE x.bars > 0
    ),
    r AS (
        SELECT r.bucket_start AS bs, r.bucket_end AS be, r.open, r.high, r.low, r.close, r.volume, r.oi, r.bars
        FROM timeframe_rollup r
        WHERE r.instrument_id = %(iid)s AND r.timeframe = %(tf)s
          AND r.bucket_start >= %(lo)s AND r.bucket_start < %(hi)s
          AND r.session_date = ANY(%(s_dates)s::date[])
          AND NOT EXISTS (SELECT 1 FROM d WHERE d.bs = r.bucket_start)
    )
    """ + _AS_BLOBS.format(inner="SELECT * FROM f UNION ALL SELECT * FROM r")
    lo, hi = _span(sessions)
    params = {
        "iid": instrument_id,
        "lo": lo,
        "hi": hi,
        "w": watermark,
        "tf": timeframe.label,
        **session_params(sessions),
    }
    return _decode_bars(_fetch_one(sql, params))


def watermark_get(*, tracker: str, max_age: float = 0.0) -> dt.datetime | None:
    """The tracker's watermark (see models.RollupWatermark); None before its first refresh.

    ``max_age`` > 0 accepts a value this process read at most that many seconds ago. An older
    watermark is always safe for readers (more buckets count as changed and are recomputed);
    the refresh forgets the remembered values when it commits in this process."""
    if max_age > 0:
        remembered = _watermarks.get(tracker)
        if remembered is not None and time.monotonic() - remembered[1] <= max_age:
            return remembered[0]
    fetched_at = time.monotonic()
    with connection.cursor() as cur:
        cur.execute("SELECT watermark FROM timeframe_rollup_watermark WHERE timeframe = %s", [tracker])
        row = cur.fetchone()
    value = row[0] if row else None
    _watermarks[tracker] = (value, fetched_at)
    return value


_watermarks: dict[str, tuple[dt.datetime | None, float]] = {}


def watermarks_forget() -> None:
    _watermarks.clear()


def sessions_changed_after(
    *, instrument_id: int, sessions: Sequence[Session], watermark: dt.datetime
) -> set[dt.date]:
    """Trading dates of ``sessions`` holding a 1-minute bar with ``updated_at > watermark``.

    One query through the ``market_bar_1m (updated_at)`` index, reduced to one (first, last) pair
    per local calendar day; every session overlapping such a span counts as changed (a superset
    when a day holds two sessions, which only costs a recomputation)."""
    if not sessions:
        return set()
    lo, hi = _span(sessions)
    origin = dt.datetime(2000, 1, 1, tzinfo=market_calendar().timezone)
    with connection.cursor() as cur:
        cur.execute(
            "SELECT min(ts), max(ts) FROM market_bar_1m "
            "WHERE instrument_id = %s AND ts >= %s AND ts < %s AND updated_at > %s "
            "GROUP BY date_bin('1 day', ts, %s)",
            [instrument_id, lo, hi, watermark, origin],
        )
        spans = cur.fetchall()
    return {s.date for s in sessions if any(s.open <= last and first < s.close for first, last in spans)}


def bars_at(*, instrument_id: int, timeframe: Timeframe, start: dt.datetime, end: dt.datetime) -> dict:
    """Bars of ``timeframe`` whose bucket starts in ``[start, end)``, straight from PostgreSQL
    (no cache): rollup rows plus the changed buckets for a standard timeframe, an aggregation of
    the 1-minute bars otherwise. Always current."""
    sessions = market_calendar().sessions_overlapping(start, end)
    if not sessions:
        return empty_bars()
    watermark = watermark_get(tracker=timeframe.label) if is_rollup_timeframe(timeframe) else None
    if watermark is None:
        bars = bars_from_minutes(instrument_id=instrument_id, timeframe=timeframe, sessions=sessions)
    else:
        bars = bars_from_rollup(
            instrument_id=instrument_id, timeframe=timeframe, sessions=sessions, watermark=watermark
        )
    return filter_range(bars, start, end)


def custom_timeframes_in_use(
    *, since: dt.datetime, instrument_ids: Collection[int] | None = None
) -> list[tuple[int, str]]:
    """(instrument id, timeframe label) of the custom timeframes requested at or after ``since``
    (as recorded in ``signal_custom_timeframes``), of ``instrument_ids`` when given."""
    rows = CustomTimeframe.objects.filter(last_requested_at__gte=since)
    if instrument_ids is not None:
        rows = rows.filter(instrument_id__in=list(instrument_ids))
    return sorted(rows.values_list("instrument_id", "timeframe"))


def latest_bar_ts(*, instrument_id: int, before: dt.datetime | None = None) -> dt.datetime | None:
    """Time of the instrument's most recent 1-minute bar (before ``before`` when given)."""
    sql = "SELECT ts FROM market_bar_1m WHERE instrument_id = %s"
    params: list = [instrument_id]
    if before is not None:
        sql += " AND ts < %s"
        params.append(before)
    with connection.cursor() as cur:
        cur.execute(sql + " ORDER BY ts DESC LIMIT 1", params)
        row = cur.fetchone()
    return row[0] if row else None


def earliest_bar_ts(*, instrument_id: int) -> dt.datetime | None:
    with connection.cursor() as cur:
        cur.execute(
            "SELECT ts FROM market_bar_1m WHERE instrument_id = %s ORDER BY ts LIMIT 1", [instrument_id]
        )
        row = cur.fetchone()
    return row[0] if row else None


# -- Greeks series -------------------------------------------------------------------------------

_OPTION_META = ("model", "forward", "forward_source", "price_source", "time_to_expiry", "source_ts")
_OPTION_KINDS = {"model": "text", "forward_source": "text", "price_source": "text", "source_ts": "ts"}


# Kinds of the columns of a bucketed series, as they travel from PostgreSQL: one bytea per column
# (``string_agg`` of the binary send form), decoded with numpy. NULL becomes NaN (f8, ts as µs),
# or None (i8, date, text) once rendered.
_SEND = {
    "f8": "float8send(coalesce(m.{c}, 'NaN'))",
    "i8": "int8send(coalesce(m.{c}::bigint, -9223372036854775808))",
    "date": "int4send(coalesce(m.{c} - DATE '2000-01-01', -2147483648))",
    "ts": "timestamptz_send(coalesce(m.{c}, '-infinity'))",
}
_I8_NULL = -9223372036854775808
_DATE_NULL = -2147483648
_PG_EPOCH_DAY = np.datetime64("2000-01-01", "D")
_TEXT_SEPARATOR = "\x1f"  # the unit separator: never in a model name or a status


def _decode_column(kind: str, blob: bytes | str | None, n: int) -> np.ndarray:
    """A column as floats for bucketing: f8 as is, i8/date/ts as numbers with NaN for NULL (ids,
    day numbers and µs since 1970 are exact in a float64), text as the row's position (its value is
    looked up by the last row of each bucket)."""
    if n == 0 or blob is None:
        return np.full(n, np.nan)
    if kind == "f8":
        return np.frombuffer(blob, ">f8").astype(np.float64)
    if kind == "i8":
        raw = np.frombuffer(blob, ">i8")
        return np.where(raw == _I8_NULL, np.nan, raw.astype(np.float64))
    if kind == "date":
        raw = np.frombuffer(blob, ">i4")
        return np.where(raw == _DATE_NULL, np.nan, raw.astype(np.float64))
    if kind == "ts":
        raw = np.frombuffer(blob, ">i8")
        # -infinity (NULL) is the smallest int64; everything else is µs since 2000-01-01.
        return np.where(raw == _I8_NULL, np.nan, (raw + PG_EPOCH_US).astype(np.float64))
    raise ValueError(f"unknown column kind {kind!r}")


def _render_value(kind: str, values: np.ndarray, texts: list[str] | None = None) -> list:
    """Bucketed numbers back to Python values: None for NaN; ints, dates, aware datetimes, text."""
    finite = np.isfinite(values)
    if kind == "f8":
        return np.where(finite, values, None).tolist()
    if kind == "i8":
        return [int(v) if ok else None for v, ok in zip(values.tolist(), finite.tolist(), strict=True)]
    if kind == "date":
        days = (_PG_EPOCH_DAY + np.where(finite, values, 0).astype(np.int64)).tolist()
        return [d if ok else None for d, ok in zip(days, finite.tolist(), strict=True)]
    if kind == "ts":
        stamps = np.where(finite, values, 0).astype(np.int64).view(US).tolist()
        return [t.replace(tzinfo=UTC) if ok else None for t, ok in zip(stamps, finite.tolist(), strict=True)]
    if kind == "text":
        assert texts is not None
        return [
            texts[int(i)] or None if ok else None
            for i, ok in zip(values.tolist(), finite.tolist(), strict=True)
        ]
    raise ValueError(f"unknown column kind {kind!r}")


def bucketed_series(
    *,
    minute_sql: str,
    value_columns: Sequence[str],
    meta_columns: Sequence[str],
    timeframe: Timeframe,
    agg: str,
    sessions: Sequence[Session],
    params: dict,
    start: dt.datetime,
    end: dt.datetime,
    kinds: dict[str, str] | None = None,
) -> list[dict]:
    """Bucket the per-minute rows of ``minute_sql`` (columns ``ts`` + value and meta columns):
    each value column = its last non-NULL observation (``agg="last"``) or the mean of the non-NULL
    ones (``agg="mean"``); each meta column = its last non-NULL observation in the bucket. Buckets
    are those of ``sessions`` (anchored at each open, never across a close); a bucket is returned
    when its start lies in ``[start, end)``, as a dict: bucket_start, bucket_end, observations and
    the columns. ``kinds`` names the type of a column that is not a float (``i8``, ``date``,
    ``ts``, ``text``).

    The minute rows travel as one row of bytea columns and are bucketed with numpy
    (``timeframes.core.buckets.aggregate_series``): 38 ordered aggregates per bucket in SQL cost
    ~80 ms for a month of one-minute rows, this ~10 ms (docs/moneyness.md)."""
    if agg not in ("last", "mean"):
        raise ValueError(f"agg must be 'last' or 'mean', got {agg!r}")
    kinds = kinds or {}
    columns = [*value_columns, *meta_columns]
    parts = ["count(*)", "string_agg(timestamptz_send(m.ts), '')"]
    for c in columns:
        kind = kinds.get(c, "f8")
        if kind == "text":
            parts.append(f"string_agg(coalesce(m.{c}::text, ''), chr(31))")
        else:
            parts.append(f"string_agg({_SEND[kind].format(c=c)}, '')")
    # No ORDER BY: the aggregates of one node read the same rows in the same order, so the columns
    # stay aligned; numpy orders them by time.
    sql = f"WITH m AS ({minute_sql}) SELECT {', '.join(parts)} FROM m"
    lo, hi = _span(sessions)
    with transaction.atomic(), connection.cursor() as cur:
        tune_for_aggregation(cur)
        cur.execute(sql, {**params, "lo": lo, "hi": hi})
        row = cur.fetchone()
    n = int(row[0])
    if n == 0:
        return []
    ts = _ts(row[1])
    texts: dict[str, list[str]] = {}
    decoded = {}
    for c, blob in zip(columns, row[2:], strict=True):
        kind = kinds.get(c, "f8")
        if kind == "text":
            texts[c] = blob.split(_TEXT_SEPARATOR)
            decoded[c] = np.arange(n, dtype=np.float64)  # the row's position: its text is looked up
        else:
            decoded[c] = _decode_column(kind, blob, n)
    table = SessionTable.of(sessions)
    values = aggregate_series(ts, np.column_stack([decoded[c] for c in value_columns]), table, timeframe, agg)
    metas = aggregate_series(
        ts, np.column_stack([decoded[c] for c in meta_columns] or [np.zeros(n)]), table, timeframe, "last"
    )
    keep = (values.start >= np.datetime64(to_us(start), "us")) & (
        values.start < np.datetime64(to_us(end), "us")
    )
    out: dict[str, list] = {
        "bucket_start": _render_value("ts", values.start[keep].view(np.int64).astype(np.float64)),
        "bucket_end": _render_value("ts", values.end[keep].view(np.int64).astype(np.float64)),
        "observations": values.count[keep].tolist(),
    }
    for i, c in enumerate(value_columns):
        out[c] = _render_value(kinds.get(c, "f8"), values.values[keep, i], texts.get(c))
    for i, c in enumerate(meta_columns):
        out[c] = _render_value(kinds.get(c, "f8"), metas.values[keep, i], texts.get(c))
    names = list(out)
    return [dict(zip(names, row, strict=True)) for row in zip(*out.values(), strict=True)]


def option_series_at(
    *, instrument_id: int, timeframe: Timeframe, start: dt.datetime, end: dt.datetime, agg: str = "last"
) -> list[dict]:
    """IV and Greeks of one option per bucket (dicts: bucket_start, bucket_end, observations, the
    value fields of ``GREEK_VALUE_FIELDS`` and the metadata of the bucket's last minute)."""
    sessions = market_calendar().sessions_overlapping(start, end)
    if not sessions:
        return []
    minute_sql = (
        f"SELECT ts, {', '.join(GREEK_VALUE_FIELDS)}, {', '.join(_OPTION_META)} FROM greeks_option_1m "
        "WHERE instrument_id = %(iid)s AND ts >= %(lo)s AND ts < %(hi)s"
    )
    return bucketed_series(
        minute_sql=minute_sql,
        value_columns=GREEK_VALUE_FIELDS,
        meta_columns=_OPTION_META,
        kinds=_OPTION_KINDS,
        timeframe=timeframe,
        agg=agg,
        sessions=sessions,
        params={"iid": instrument_id},
        start=start,
        end=end,
    )


ATM_SIDE_FIELDS = (
    "iv", "delta", "gamma", "theta", "vega", "rho", "vanna", "vomma", "charm", "option_price",
)  # fmt: skip
_ATM_META = ("expiry", "atm_strike", "forward", "model", "call_instrument_id", "put_instrument_id")
_ATM_KINDS = {"expiry": "date", "model": "text", "call_instrument_id": "i8", "put_instrument_id": "i8"}


def atm_value_columns() -> tuple[str, ...]:
    return (
        *GREEK_VALUE_FIELDS,
        "atm_iv",
        *(f"call_{f}" for f in ATM_SIDE_FIELDS),
        *(f"put_{f}" for f in ATM_SIDE_FIELDS),
    )


def front_expiries(
    *, underlying_id: int, sessions: Sequence[Session], pinned: dt.date | None
) -> list[tuple[Session, dt.date]]:
    """(session, expiry) for each session that has one: ``pinned`` on the sessions up to its date,
    else the nearest listed option expiry of the underlying on or after the session's date."""
    if pinned is not None:
        return [(s, pinned) for s in sessions if s.date <= pinned]
    if not sessions:
        return []
    expiries = option_expiries(underlying_id=underlying_id, since=sessions[0].date)
    out = []
    for session in sessions:
        i = bisect.bisect_left(expiries, session.date)
        if i < len(expiries):
            out.append((session, expiries[i]))
    return out


# The session spans and expiries of ``front_expiries`` as a CTE ``f(fo, fc, fx)``: a per-minute
# table joined to it reads only the rows of each session's front expiry (index ranges).
FRONTS_CTE = (
    "WITH f(fo, fc, fx) AS (SELECT * FROM unnest(%(f_opens)s::timestamptz[], %(f_closes)s::timestamptz[], "
    "%(f_expiries)s::date[]))"
)


def fronts_params(fronts: Sequence[tuple[Session, dt.date]]) -> dict:
    """The parameters of ``FRONTS_CTE``."""
    return {
        "f_opens": [s.open for s, _ in fronts],
        "f_closes": [s.close for s, _ in fronts],
        "f_expiries": [x for _, x in fronts],
    }


def atm_series_at(
    *,
    underlying_id: int,
    timeframe: Timeframe,
    start: dt.datetime,
    end: dt.datetime,
    agg: str = "last",
    expiry: dt.date | None = None,
) -> list[dict]:
    """The at-the-money series of an underlying, per bucket, from the ATM IV table
    (``signal_atm_iv``, one row per expiry and minute, written with the chain).

    In each session: the expiry is the nearest listed option expiry of the underlying that has not
    expired (expiry date >= the session's trading date), or ``expiry`` when given (up to its date).
    At each minute the ATM strike is the listed strike of that expiry nearest the chain's forward
    (tie: the lower strike). The value fields are the mean of the call's and the put's (``iv`` =
    mean of call and put IV; either side alone when the other has no value), ``atm_iv`` the IV at
    the forward (total variance interpolated between the bracketing OTM options), and
    ``call_*``/``put_*`` hold each side. Then bucketed like an option series.
    """
    sessions = market_calendar().sessions_overlapping(start, end)
    fronts = front_expiries(underlying_id=underlying_id, sessions=sessions, pinned=expiry)
    if not fronts:
        return []
    # Mean of the two sides, or the one that has a value.
    means = ", ".join(
        f"(coalesce(a.call_{f}, a.put_{f}) + coalesce(a.put_{f}, a.call_{f})) / 2 AS {f}"
        for f in ATM_SIDE_FIELDS
    )
    sides = ", ".join(f"a.{side}_{f}" for side in ("call", "put") for f in ATM_SIDE_FIELDS)
    minute_sql = f"""
        {FRONTS_CTE}
        SELECT a.ts, a.expiry, a.atm_strike, a.forward, a.model, a.underlying_price, a.iv AS atm_iv,
               a.call_instrument_id, a.put_instrument_id, {means}, {sides}
        FROM f JOIN signal_atm_iv a
          ON a.underlying_id = %(uid)s AND a.expiry = f.fx AND a.ts >= f.fo AND a.ts < f.fc
    """
    return bucketed_series(
        minute_sql=minute_sql,
        value_columns=atm_value_columns(),
        meta_columns=_ATM_META,
        kinds=_ATM_KINDS,
        timeframe=timeframe,
        agg=agg,
        sessions=[s for s, _ in fronts],
        params={"uid": underlying_id, **fronts_params(fronts)},
        start=start,
        end=end,
    )

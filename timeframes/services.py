"""Writes of the timeframes app: the incremental rollup refresh and the custom-timeframe registry.

Incremental refresh (every minute, ``tasks.refresh_rollups``)
-------------------------------------------------------------
Bars are upserted and can change after the fact, so the refresh follows
``market_bar_1m.updated_at`` instead of time: for each tracker (a standard timeframe, or ``cache``)
it takes the 1-minute bars with ``watermark < updated_at <= upper``, finds the (instrument,
bucket) pairs they touch, re-aggregates exactly those buckets from all their 1-minute bars and
upserts them into ``timeframe_rollup`` (one ``INSERT … SELECT … ON CONFLICT`` per timeframe, no
data through Python). The ``cache`` tracker instead forgets the Redis cache tokens of the touched
(instrument, session) pairs. Then the watermarks move to ``min(upper, now - SETTLE)``.

Why ``now - SETTLE``: ``updated_at`` is stamped by the writer before its transaction commits, so a
bar can become visible with an ``updated_at`` slightly in the past. Rows newer than the new
watermark are simply processed again next time (idempotent); a writer transaction that stays open
longer than ``SETTLE`` could be missed, which is why SETTLE is generous (the ingest commits every
batch within a second). Readers treat every bar newer than the watermark as not yet rolled up
and aggregate its bucket from the 1-minute bars, so results never wait for the refresh.

One refresh runs at a time (a transaction-level advisory lock; a second one returns at once),
each run handles at most ``batch_rows`` changed bars (oldest first) so a backlog is worked off in
bounded steps, and the whole run is one transaction: a killed run leaves nothing half done.
"""

from __future__ import annotations

import datetime as dt
import logging
import time

from django.db import connection, transaction

from signalsvc.db.partitions import partitions_ensure
from signalsvc.instruments.models import Instrument
from timeframes import cache, selectors
from timeframes.core.buckets import sql_bucket_expression
from timeframes.models import CustomTimeframe, RollupWatermark

log = logging.getLogger(__name__)

UTC = dt.UTC
SETTLE = dt.timedelta(seconds=120)
BATCH_ROWS = 500_000
TRACKERS = (*selectors.ROLLUP_TIMEFRAMES, selectors.CACHE_TRACKER)
ROLLUP_TABLE = "timeframe_rollup"
_LOCK = "timeframes.rollups_refresh"


def _upsert_rollup_sql(timeframe_label: str, join: str) -> str:
    timeframe = selectors.timeframe_parse(timeframe_label)
    bs, be = sql_bucket_expression(timeframe, "b.ts", "s.so", "s.sc")
    return f"""
    WITH {selectors.DAY_SESSIONS_CTE},
    t AS (
        SELECT DISTINCT b.instrument_id, s.sd, {bs} AS bs, {be} AS be
        FROM market_bar_1m b {join}
        WHERE b.updated_at > %(w)s AND b.updated_at <= %(u)s
    ),
    a AS (
        SELECT t.instrument_id, t.sd, t.bs, t.be, x.*
        FROM t CROSS JOIN LATERAL (
            SELECT {selectors.BAR_AGGREGATES}
            FROM market_bar_1m b WHERE b.instrument_id = t.instrument_id AND b.ts >= t.bs AND b.ts < t.be
        ) x
        WHERE x.bars > 0
    )
    INSERT INTO {ROLLUP_TABLE} AS r
        (instrument_id, timeframe, bucket_start, bucket_end, session_date, open, high, low, close, volume, oi, bars,
         computed_at)
    SELECT a.instrument_id, %(tf)s, a.bs, a.be, a.sd, a.open, a.high, a.low, a.close, a.volume, a.oi, a.bars, now()
    FROM a
    ON CONFLICT (instrument_id, timeframe, bucket_start) DO UPDATE SET
        bucket_end = excluded.bucket_end, session_date = excluded.session_date, open = excluded.open, high = excluded.high, low = excluded.low,
        close = excluded.close, volume = excluded.volume, oi = excluded.oi, bars = excluded.bars,
        computed_at = excluded.computed_at
    """


def _touched_sessions_sql(join: str) -> str:
    return f"""
    WITH {selectors.DAY_SESSIONS_CTE}
    SELECT DISTINCT b.instrument_id, s.sd
    FROM market_bar_1m b {join}
    WHERE b.updated_at > %(w)s AND b.updated_at <= %(u)s
    """


def rollups_refresh(*, batch_rows: int = BATCH_ROWS, settle: dt.timedelta = SETTLE) -> dict:
    """One incremental refresh step (see the module docstring). Idempotent. Returns a small report:
    ``{"skipped": bool, "rows": changed bars handled, "buckets": {timeframe: upserted},
    "sessions_invalidated": n, "backlog": bool, "watermark": iso}``."""
    started = time.perf_counter()
    with transaction.atomic(), connection.cursor() as cur:
        cur.execute("SELECT pg_try_advisory_xact_lock(hashtext(%s))", [_LOCK])
        if not cur.fetchone()[0]:
            return {"skipped": True}
        selectors.tune_for_aggregation(cur)
        for tracker in TRACKERS:
            RollupWatermark.objects.get_or_create(timeframe=tracker)
        marks = {
            m.timeframe: m for m in RollupWatermark.objects.select_for_update().filter(timeframe__in=TRACKERS)
        }
        cur.execute("SELECT statement_timestamp()")
        cutoff = cur.fetchone()[0] - settle
        floor = dt.datetime(1970, 1, 1, tzinfo=UTC)
        lowest = min((m.watermark or floor) for m in marks.values())

        # Bound the step to about batch_rows changes, oldest first, never splitting one write time
        # (a single larger group of equal updated_at is taken whole).
        cur.execute(
            "SELECT updated_at FROM market_bar_1m WHERE updated_at > %s ORDER BY updated_at OFFSET %s LIMIT 1",
            [lowest, batch_rows],
        )
        row = cur.fetchone()
        backlog = row is not None
        upper = dt.datetime.max.replace(tzinfo=UTC)
        if backlog:
            cur.execute(
                "SELECT max(updated_at) FROM market_bar_1m WHERE updated_at > %s AND updated_at < %s",
                [lowest, row[0]],
            )
            upper = cur.fetchone()[0] or row[0]
        cur.execute(
            "SELECT min(ts), max(ts), count(*) FROM market_bar_1m WHERE updated_at > %s AND updated_at <= %s",
            [lowest, upper],
        )
        first_ts, last_ts, rows = cur.fetchone()
        report: dict = {"skipped": False, "rows": int(rows), "buckets": {}, "backlog": backlog}
        invalidated = 0
        if rows:
            sessions = selectors.market_calendar().sessions_overlapping(
                first_ts, last_ts + dt.timedelta(minutes=1)
            )
            params, join = selectors.day_session_params(sessions)
            if sessions:
                # A bucket starts at its session's open, which can precede the bar by up to a day.
                partitions_ensure(table=ROLLUP_TABLE, start=sessions[0].open, end=sessions[-1].close)
            for label in selectors.ROLLUP_TIMEFRAMES:
                mark = marks[label].watermark or floor
                if not sessions or mark >= upper:
                    report["buckets"][label] = 0
                    continue
                cur.execute(_upsert_rollup_sql(label, join), {**params, "w": mark, "u": upper, "tf": label})
                report["buckets"][label] = cur.rowcount
            mark = marks[selectors.CACHE_TRACKER].watermark or floor
            if sessions and mark < upper:
                cur.execute(_touched_sessions_sql(join), {**params, "w": mark, "u": upper})
                # Before the watermark moves (commit below): see cache.py for why the order matters.
                invalidated = cache.sessions_invalidate(pairs=cur.fetchall())
        report["sessions_invalidated"] = invalidated

        new_mark = min(upper, cutoff)
        now = dt.datetime.now(UTC)
        elapsed_ms = (time.perf_counter() - started) * 1e3
        for label, mark in marks.items():
            if mark.watermark is None or new_mark > mark.watermark:
                mark.watermark = new_mark
            mark.refreshed_at = now
            mark.last_rows = int(rows)
            mark.last_buckets = report["buckets"].get(
                label, invalidated if label == selectors.CACHE_TRACKER else 0
            )
            mark.last_duration_ms = elapsed_ms
            mark.save()
        report["watermark"] = new_mark.isoformat()
        transaction.on_commit(selectors.watermarks_forget)
    selectors.watermarks_forget()
    return report


def custom_timeframes_flush() -> int:
    """Move the request counters of custom timeframes from Redis into ``signal_custom_timeframes``
    (one upsert per instrument and timeframe). Returns how many rows were written."""
    cache.stats_flush()  # this process's buffered counters first
    stats = cache.stats_drain()
    if not stats:
        return 0
    existing_ids = set(
        Instrument.objects.filter(id__in={s["instrument_id"] for s in stats}).values_list("id", flat=True)
    )
    written = 0
    with transaction.atomic():
        for s in stats:
            if s["instrument_id"] not in existing_ids or s["first"] is None:
                continue
            try:
                minutes = selectors.timeframe_parse(s["timeframe"]).minutes
            except ValueError:
                continue
            row, created = CustomTimeframe.objects.select_for_update().get_or_create(
                instrument_id=s["instrument_id"],
                timeframe=s["timeframe"],
                defaults={
                    "minutes": minutes,
                    "first_requested_at": s["first"],
                    "last_requested_at": s["last"] or s["first"],
                    "request_count": s["requests"],
                    "sessions_from_cache": s["cached"],
                    "sessions_computed": s["computed"],
                },
            )
            if not created:
                row.first_requested_at = min(row.first_requested_at, s["first"])
                row.last_requested_at = max(row.last_requested_at, s["last"] or s["first"])
                row.request_count += s["requests"]
                row.sessions_from_cache += s["cached"]
                row.sessions_computed += s["computed"]
                row.save()
            written += 1
    return written

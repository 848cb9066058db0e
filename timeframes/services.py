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

Custom timeframes on the farm ("on schedules and on demand")
------------------------------------------------------------
The custom timeframes in use (requested within ``TIMEFRAMES_WARM_IN_USE_DAYS``, as recorded in
``signal_custom_timeframes``) are kept warm: a farm task per (instrument, timeframe)
(``tasks.warm_custom_timeframe`` -> ``custom_timeframe_warm``) puts every closed session of the
last ``TIMEFRAMES_WARM_HISTORY_DAYS`` into the Redis cache. It runs on the ``greeks.<shard>``
queue of the instrument's underlying and is queued

* when a session has closed (``custom_timeframes_warm_closed``, in the minute task right after
  the refresh);
* after a refresh committed a change to a closed session of an instrument in use: a correction,
  or the session's last bars settling after the close (``rollups_refresh`` ->
  ``custom_timeframes_warm_corrected``);
* on demand, when a read of a custom timeframe is cold (``cache.bars_read``): the rest of its
  history is warm before the next request;
* when a timeframe comes into use (``custom_timeframes_flush``), which also covers a first
  request that was not cold (only the open session).

Queueing is coalesced (``custom_timeframes_warm_enqueue``): at most one warm per pair waits.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import time
from collections.abc import Iterable, Sequence
from functools import partial

from django.conf import settings
from django.db import connection, transaction

from signalsvc.core.keys import parse_key
from signalsvc.db.partitions import partitions_ensure
from signalsvc.farm.routing import greeks_queue
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
# A warm that has not started within this long is stale: dropped by the worker, and its pending
# mark expires with it, so the next trigger queues a fresh one.
WARM_EXPIRES_SECONDS = 600
WARM_CLOSED_MARK_SECONDS = 7 * 86400


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
                touched = cur.fetchall()
                # Before the watermark moves (commit below): see cache.py for why the order matters.
                invalidated = cache.sessions_invalidate(pairs=touched)
                # After it: a warm that ran before the commit would still see the session as
                # changed and skip it. A failure to queue costs a cold read, never a wrong one.
                transaction.on_commit(partial(custom_timeframes_warm_corrected, pairs=touched), robust=True)
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
    in_use_since = warm_in_use_since(dt.datetime.now(UTC))
    coming_into_use = []
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
            if created or row.last_requested_at < in_use_since:
                coming_into_use.append((row.instrument_id, row.timeframe))
            if not created:
                row.first_requested_at = min(row.first_requested_at, s["first"])
                row.last_requested_at = max(row.last_requested_at, s["last"] or s["first"])
                row.request_count += s["requests"]
                row.sessions_from_cache += s["cached"]
                row.sessions_computed += s["computed"]
                row.save()
            written += 1
        if coming_into_use:
            # Its first request warmed only the range it asked for: warm the whole history now.
            transaction.on_commit(partial(custom_timeframes_warm_enqueue, pairs=coming_into_use), robust=True)
    return written


# -- custom timeframes on the farm ------------------------------------------------------------------


def warm_in_use_since(now: dt.datetime) -> dt.datetime:
    """A custom timeframe requested at or after this time is in use. The default window is the
    session entries' TTL: a timeframe idle for longer would have lost its entries anyway."""
    return now - dt.timedelta(days=getattr(settings, "TIMEFRAMES_WARM_IN_USE_DAYS", 7))


def warm_history_start(now: dt.datetime) -> dt.datetime:
    """The warm covers the sessions since this time: by default as far back as a request may ask."""
    days = getattr(settings, "TIMEFRAMES_WARM_HISTORY_DAYS", settings.API_HISTORICAL_MAX_DAYS)
    return now - dt.timedelta(days=days)


def custom_timeframe_warm(*, instrument_id: int, timeframe: str, now: dt.datetime | None = None) -> dict:
    """Every closed session of the history window of one custom timeframe of one instrument into the
    cache (``cache.sessions_warm``); the work of ``tasks.warm_custom_timeframe``. Idempotent.

    The pending mark is cleared first: a correction that lands while this runs queues another warm
    instead of being folded into this one, which may have read PostgreSQL before it."""
    now = now or dt.datetime.now(UTC)
    client = cache.redis_client()
    client.delete(cache.warm_pending_key(instrument_id, timeframe))
    try:
        parsed = selectors.timeframe_parse(timeframe)
    except ValueError as exc:  # e.g. longer than the sessions of a calendar changed since
        return {"skipped": str(exc)}
    report = cache.sessions_warm(
        instrument_id=instrument_id,
        timeframe=parsed,
        start=warm_history_start(now),
        end=now,
        now=now,
        client=client,
    )
    return dataclasses.asdict(report)


def custom_timeframes_warm_enqueue(*, pairs: Iterable[tuple[int, str]]) -> int:
    """Queue ``tasks.warm_custom_timeframe`` for each (instrument id, timeframe label) that has none
    waiting, on the ``greeks.<shard>`` queue of the instrument's underlying: the farm's routing,
    so all the work of one underlying runs in one place. Coalesced: a pending mark per pair (SET NX,
    expiring with the task) that the task clears when it starts, so a burst of triggers queues one
    warm per pair. Returns how many were queued."""
    from timeframes.tasks import warm_custom_timeframe

    pairs = sorted(set(pairs))
    if not pairs:
        return 0
    client = cache.redis_client()
    pipe = client.pipeline(transaction=False)
    for instrument_id, label in pairs:
        pipe.set(cache.warm_pending_key(instrument_id, label), 1, nx=True, ex=WARM_EXPIRES_SECONDS)
    claimed = [pair for pair, fresh in zip(pairs, pipe.execute(), strict=True) if fresh]
    keys = dict(Instrument.objects.filter(id__in={i for i, _ in claimed}).values_list("id", "key"))
    queued = 0
    try:
        for instrument_id, label in claimed:
            key = keys.get(instrument_id)
            if key is None:  # deleted since it was requested
                client.delete(cache.warm_pending_key(instrument_id, label))
                continue
            queue = greeks_queue(parse_key(key).underlying_key, settings.SHARD_COUNT)
            warm_custom_timeframe.apply_async(
                args=[instrument_id, label], queue=queue, expires=WARM_EXPIRES_SECONDS
            )
            queued += 1
    except Exception:
        # Not queued: release the marks, or the next trigger would wait for their expiry.
        client.delete(*(cache.warm_pending_key(i, label) for i, label in claimed[queued:]))
        raise
    return queued


def custom_timeframes_warm_closed(*, now: dt.datetime | None = None) -> int:
    """The session-close trigger (in ``tasks.refresh_rollups``, after the refresh): once a session
    has closed, queue a warm for every custom timeframe in use. An instrument whose last bars are
    not settled yet (written within the settle window before the close, or after it) has that
    session skipped by this warm, like a reader would, and warmed by the correction trigger of the
    refresh that settles them. Once per session: a Redis mark, set after the warms are queued (a
    rerun after a failure re-queues only coalesced warms). After a Redis loss the mark is gone
    with the cache, and everything in use is warmed again. Returns how many warms were queued."""
    now = now or dt.datetime.now(UTC)
    last = selectors.market_calendar().previous_sessions(now, 1, include_current=False)
    if not last:
        return 0
    client = cache.redis_client()
    mark = f"{cache.WARM_CLOSED_PREFIX}{last[0].date.isoformat()}"
    if client.exists(mark):
        return 0
    queued = custom_timeframes_warm_enqueue(
        pairs=selectors.custom_timeframes_in_use(since=warm_in_use_since(now))
    )
    client.set(mark, 1, ex=WARM_CLOSED_MARK_SECONDS)
    return queued


def custom_timeframes_warm_corrected(
    *, pairs: Sequence[tuple[int, dt.date]], now: dt.datetime | None = None
) -> int:
    """The correction trigger (after a refresh commits): queue a warm for the custom timeframes in
    use of every instrument among ``pairs`` (instrument id, session date) with a changed *closed*
    session in the history window. The open session changes every minute and is never cached:
    it triggers nothing. Returns how many warms were queued."""
    now = now or dt.datetime.now(UTC)
    oldest = warm_history_start(now).date()
    dates = {day for _, day in pairs if day >= oldest}
    if not dates:
        return 0
    closes = {s.date: s.close for s in selectors.market_calendar().sessions(min(dates), max(dates))}
    instruments = {i for i, day in pairs if day in closes and closes[day] <= now}
    if not instruments:
        return 0
    in_use = selectors.custom_timeframes_in_use(since=warm_in_use_since(now), instrument_ids=instruments)
    return custom_timeframes_warm_enqueue(pairs=in_use)

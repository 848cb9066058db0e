"""Custom-timeframe bars through the endpoint, against pandas in the same run.

Workload: one year of 1-minute bars of one instrument (the last 250 regular NSE sessions before
today x 375 minutes = 93,750 rows; they span ~368 days, so the bench sets API_HISTORICAL_MAX_DAYS=372, loaded by COPY into its own database ``signal_bench``, never the
dev data), aggregated to 7 minutes (250 x 54 = 13,500 buckets) by
``GET /api/v2/signals/historical/bars/{key}?timeframe=7m`` over the whole year, in-process through
Django's test client (middleware, auth, throttling and JSON included).

Rows:
* cold: cache miss (every ``tf:*`` key of the bench's Redis database deleted and the in-process
  tier cleared before each call, after the previous call's cache fill has landed): the
  aggregation in PostgreSQL and rendering; the cache fill follows the response (write-behind).
* cold, fill in the request: the same with write-behind off (the fill is part of the latency).
* warm: the same request again (range level, in-process tier; validated against PostgreSQL and
  Redis on every call).
* warm, from Redis: the in-process tier cleared first (the range comes out of Redis).
* warm, sessions: only the per-session entries exist (a range never asked before).
* SQL aggregation alone (``selectors.bars_from_minutes``), for scale.
* baselines: the 93,750 rows fetched from PostgreSQL (``cursor.fetchall``) and aggregated with
  pandas per session, no HTTP, no JSON: vectorised (``groupby`` on session and bucket index; the
  ratio is against this one, the faster) and ``groupby`` session + ``resample(origin=session open)``.

Custom timeframes on the farm (issue 11, item 7), in the same run:
* endpoint after the farm warm: every ``tf:*`` key deleted, then the farm's task body
  (``services.custom_timeframe_warm``) for (instrument, 7m), then the whole year requested: a
  range never asked before, served from the session entries the task wrote.
* the warm task itself: a whole year (the first warm of a timeframe), one session (after a
  close or a correction), nothing new (TTL renewal only); and queueing one warm (coalescing mark
  plus the publish to its ``greeks.<shard>`` queue), the per-task overhead that decided one task
  per (instrument, timeframe) rather than one per underlying.
* cold-read ratio over a simulated day, with the farm and without it (today's behaviour), same
  sequence: four custom timeframes (7m 13m 45m 2h) come into use one after another during the
  last session (first request ever at minutes 0, 3, 6, 9), each minute 4 reads of a random
  timeframe already in use over the last 1, 5, 20 or 250 sessions up to the simulated now,
  ``cache.bars_read`` with a simulated clock (the endpoint has none); at the end of each minute the
  minute task (refresh with no settle window, counters flushed to ``signal_custom_timeframes``,
  the session-close trigger), then the queued warms run from the shard queues with the simulated
  clock (the bench plays the worker; it also runs the warm a cold read queues on demand right
  after that read, as an idle worker would). The last session closes after minute 12 (its last bar
  written at the close); a bar of an earlier session is corrected in minute 15; 18 minutes, 72
  reads. A read is cold when it
  aggregates in PostgreSQL a closed session the cache could have held (``cache.read_outcome``);
  the floor is the four first requests.

Targets (issue 4): cold p50 < 100 ms, warm p50 < 10 ms.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable

BENCH_DATABASE = os.environ.get("BENCH_DATABASE_NAME", "signal_bench")
BENCH_REDIS_DB = int(os.environ.get("BENCH_REDIS_DB", "9"))
KEY = "NSE@BENCHIDX@equity_spot"
SESSIONS = 250
MINUTES = 375
TIMEFRAME = "7m"
COLD_TARGET_S = 0.100
WARM_TARGET_S = 0.010
_BENCH = "timeframes: 1y of 1m -> 7m bars"


def _configure() -> None:
    """Point Django at the bench database and Redis DB, create and migrate it, before anything
    else imports settings."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "signalsvc.settings")
    os.environ["DATABASE_URL"] = f"postgres://postgres@127.0.0.1:5432/{BENCH_DATABASE}"
    os.environ["REDIS_URL"] = f"redis://127.0.0.1:6379/{BENCH_REDIS_DB}"
    os.environ["MARKET_CALENDAR"] = "NSE"
    os.environ["API_ANONYMOUS_READ"] = "true"
    os.environ["API_ANONYMOUS_RATE_PER_MINUTE"] = "100000000"
    # 250 NSE sessions take ~368 calendar days (a year has ~248): lift the 365-day API limit a little.
    os.environ["API_HISTORICAL_MAX_DAYS"] = "372"
    import psycopg

    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [BENCH_DATABASE]).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{BENCH_DATABASE}"')
    import django
    from django.conf import settings

    django.setup()
    name = settings.DATABASES["default"]["NAME"]
    if name != BENCH_DATABASE:
        raise RuntimeError(f"Django was already configured for database {name!r}; run this benchmark alone")
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)


def _sessions():
    from signalsvc.core.calendar import get_calendar

    calendar = get_calendar("NSE")
    today = dt.datetime.now(dt.UTC)
    candidates = calendar.previous_sessions(
        today - dt.timedelta(days=1), SESSIONS + 40, include_current=False
    )
    regular = [s for s in candidates if s.minutes == MINUTES][-SESSIONS:]
    if regular[-1].close - regular[0].open > dt.timedelta(days=372):
        raise RuntimeError("250 regular sessions span more than the 372-day limit set for the bench")
    return regular


def _load(sessions) -> int:
    """The instrument and its 93,750 bars (reloaded only when they are not exactly there)."""
    import numpy as np
    from django.db import connection, transaction

    from signalsvc.core.keys import InstrumentSpec
    from signalsvc.db.partitions import partitions_ensure
    from signalsvc.instruments.models import Instrument
    from signalsvc.instruments.services import instruments_upsert
    from timeframes.services import rollups_refresh

    instruments_upsert(specs=[InstrumentSpec.from_key(KEY)])
    instrument_id = Instrument.objects.get(key=KEY).id
    with connection.cursor() as cur:
        cur.execute(
            "SELECT count(*), min(ts), max(ts) FROM market_bar_1m WHERE instrument_id = %s", [instrument_id]
        )
        count, first, last = cur.fetchone()
    expected_last = sessions[-1].close - dt.timedelta(minutes=1)
    if count != SESSIONS * MINUTES or first != sessions[0].open or last != expected_last:
        rng = np.random.default_rng(4)
        n = SESSIONS * MINUTES
        close = 24_000.0 + np.cumsum(rng.normal(0.0, 4.0, n))
        open_ = np.concatenate(([24_000.0], close[:-1]))
        high = np.maximum(open_, close) + rng.random(n) * 3
        low = np.minimum(open_, close) - rng.random(n) * 3
        volume = rng.integers(0, 5_000, n).astype(float)
        written = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)  # historical data, settled long ago
        minute = dt.timedelta(minutes=1)
        stamps = [s.open + i * minute for s in sessions for i in range(MINUTES)]
        with transaction.atomic(), connection.cursor() as cur:
            cur.execute("DELETE FROM market_bar_1m WHERE instrument_id = %s", [instrument_id])
            cur.execute("DELETE FROM timeframe_rollup WHERE instrument_id = %s", [instrument_id])
            cur.execute("DELETE FROM timeframe_rollup_watermark")
            partitions_ensure(table="market_bar_1m", start=sessions[0].open, end=sessions[-1].close)
            columns = "instrument_id, ts, open, high, low, close, volume, oi, updated_at"
            with cur.copy(f"COPY market_bar_1m ({columns}) FROM STDIN") as copy:
                for i, ts in enumerate(stamps):
                    copy.write_row(
                        (instrument_id, ts, open_[i], high[i], low[i], close[i], volume[i], None, written)
                    )
        with connection.cursor() as cur:
            cur.execute("ANALYZE market_bar_1m")
    while rollups_refresh().get("backlog"):  # the minute task, until caught up
        pass
    return instrument_id


def _fetch_frame(instrument_id: int, sessions):
    import pandas as pd
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute(
            "SELECT ts, open, high, low, close, volume, oi FROM market_bar_1m "
            "WHERE instrument_id = %s AND ts >= %s AND ts < %s ORDER BY ts",
            [instrument_id, sessions[0].open, sessions[-1].close],
        )
        rows = cur.fetchall()
    frame = pd.DataFrame(rows, columns=["ts", "open", "high", "low", "close", "volume", "oi"])
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True)
    frame["oi"] = frame["oi"].astype(float)
    return frame


_AGG = {"open": "first", "high": "max", "low": "min", "close": "last", "volume": "sum", "oi": "last"}


def _pandas_baselines(instrument_id: int, sessions) -> tuple[Callable[[], int], Callable[[], int]]:
    """(vectorised groupby on (session, bucket index), groupby session + resample per session)."""
    import numpy as np
    import pandas as pd

    opens = pd.DatetimeIndex([s.open for s in sessions])
    open_ns = opens.tz_localize(None).to_numpy(dtype="datetime64[ns]")
    close_ns = (
        pd.DatetimeIndex([s.close for s in sessions]).tz_localize(None).to_numpy(dtype="datetime64[ns]")
    )
    minutes = int(TIMEFRAME[:-1])

    def in_sessions(frame):
        ts = frame["ts"].dt.tz_localize(None).to_numpy(dtype="datetime64[ns]")
        index = np.searchsorted(open_ns, ts, side="right") - 1
        inside = (index >= 0) & (ts < close_ns[index.clip(0)])
        frame = frame[inside].copy()
        frame["session"] = index[inside]
        frame["offset"] = ts[inside] - open_ns[index[inside]]
        return frame

    def grouped() -> int:
        frame = in_sessions(_fetch_frame(instrument_id, sessions))
        frame["bucket"] = frame["offset"].to_numpy() // np.timedelta64(minutes, "m")
        return len(frame.groupby(["session", "bucket"], sort=True).agg(_AGG))

    def resampled() -> int:
        frame = in_sessions(_fetch_frame(instrument_id, sessions))
        parts = [
            group.set_index("ts")
            .resample(f"{minutes}min", origin=opens[session], closed="left", label="left")
            .agg(_AGG)
            .dropna(subset=["open"])
            for session, group in frame.groupby("session", sort=True)
        ]
        return len(pd.concat(parts))

    return grouped, resampled


FARM_TIMEFRAMES = ("7m", "13m", "45m", "2h")
FARM_SPANS = (1, 5, 20, SESSIONS)  # sessions up to the simulated now
FARM_MINUTES = 18
FARM_CLOSE_AFTER = 12  # the last session closes after this many simulated minutes
FARM_CORRECTION_AT = 15
FARM_READS_PER_MINUTE = 4


def _take_warms() -> list[tuple[int, str]]:
    """Take the warms waiting on the shard queues, oldest first (other messages stay where they are)."""
    import base64
    import json

    from django.conf import settings

    from signalsvc.farm.routing import shard_queues
    from signalsvc.redis_clients import client_for_url
    from timeframes.tasks import WARM_TASK

    broker = client_for_url(settings.CELERY_BROKER_URL)
    taken = []
    for queue in shard_queues(settings.SHARD_COUNT):
        for raw in reversed(broker.lrange(queue, 0, -1)):  # kombu pushes left and pops right
            message = json.loads(raw)
            if message["headers"]["task"] == WARM_TASK and broker.lrem(queue, 1, raw):
                instrument_id, label = json.loads(base64.b64decode(message["body"]))[0]
                taken.append((instrument_id, label))
    return taken


def _farm_reset(instrument_id: int, flush_all: Callable[[], None]) -> None:
    """No cache entries, no usage recorded, no warms waiting: as before the first request ever."""
    from timeframes import cache
    from timeframes.models import CustomTimeframe

    cache.stats_flush()  # the counters of earlier requests go to Redis, deleted with tf:* below
    flush_all()
    CustomTimeframe.objects.filter(instrument_id=instrument_id).delete()
    _take_warms()
    cache.read_counts_reset()


def _work_the_farm(now: dt.datetime) -> int:
    """Run the warms waiting on the shard queues with the simulated clock (the bench is the worker)."""
    from timeframes.services import custom_timeframe_warm

    warms = _take_warms()
    for instrument_id, label in warms:
        custom_timeframe_warm(instrument_id=instrument_id, timeframe=label, now=now)
    return len(warms)


def _farm_sequence(instrument_id: int, sessions, *, farm: bool) -> dict:
    """The simulated day of the module docstring; returns the read outcomes and latencies."""
    import statistics
    import time

    import numpy as np
    from django.db import connection

    from signalsvc.marketdata.services import BarIn, bars_upsert
    from timeframes import cache, selectors
    from timeframes.services import custom_timeframes_flush, custom_timeframes_warm_closed, rollups_refresh

    def bar_at(ts: dt.datetime) -> tuple:
        with connection.cursor() as cur:
            cur.execute(
                "SELECT open, high, low, close, volume, oi FROM market_bar_1m WHERE instrument_id = %s AND ts = %s",
                [instrument_id, ts],
            )
            return cur.fetchone()

    rng = np.random.default_rng(7)
    last = sessions[-1]
    last_minute = last.close - dt.timedelta(minutes=1)
    corrected_ts = sessions[-10].open + dt.timedelta(minutes=100)
    original = bar_at(corrected_ts)
    timeframes = [selectors.timeframe_parse(label) for label in FARM_TIMEFRAMES]
    in_use: list = []
    latencies = []
    warms = 0
    cold_when = dict.fromkeys(("first request", "its first minute", "later"), 0)
    for minute in range(FARM_MINUTES):
        if minute < FARM_CLOSE_AFTER:
            now = last.open + dt.timedelta(hours=3, minutes=minute)
        else:
            now = last.close + dt.timedelta(minutes=minute - FARM_CLOSE_AFTER, seconds=30)
        if minute == FARM_CLOSE_AFTER:  # the last minute's bar is written at the close
            bars_upsert(bars=[BarIn(instrument_id, last_minute, *bar_at(last_minute))])
        if minute % 3 == 0 and len(in_use) < len(timeframes):
            in_use.append(timeframes[len(in_use)])
            picks = [(in_use[-1], 5)]  # its first request ever
        else:
            picks = []
        picks += [
            (in_use[rng.integers(len(in_use))], int(rng.choice(FARM_SPANS)))
            for _ in range(FARM_READS_PER_MINUTE - len(picks))
        ]
        for i, (timeframe, span) in enumerate(picks):
            if minute == FARM_CORRECTION_AT and i == FARM_READS_PER_MINUTE // 2:
                o, h, low, c, v, oi = original
                bars_upsert(bars=[BarIn(instrument_id, corrected_ts, o, h + 5.0, low, c, v, oi)])
            colds = cache.read_counts()["cold"]
            started = time.perf_counter()
            cache.bars_read(
                instrument_id=instrument_id, timeframe=timeframe, start=sessions[-span].open, end=now, now=now
            )
            latencies.append(time.perf_counter() - started)
            if farm:  # an idle worker takes a warm queued on demand by a cold read at once
                warms += _work_the_farm(now)
            if cache.read_counts()["cold"] > colds:
                introduced = 3 * FARM_TIMEFRAMES.index(timeframe.label)  # the minute of its first request
                if minute != introduced:
                    cold_when["later"] += 1
                elif i == 0:
                    cold_when["first request"] += 1
                else:
                    cold_when["its first minute"] += 1
        # The minute task, then the farm (or, without it, nobody consumes the shard queues).
        rollups_refresh(settle=dt.timedelta(0))
        custom_timeframes_flush()
        custom_timeframes_warm_closed(now=now)
        if farm:
            warms += _work_the_farm(now)
    cache.fills_wait()
    bars_upsert(bars=[BarIn(instrument_id, corrected_ts, *original)])  # the bench's data as loaded
    rollups_refresh(settle=dt.timedelta(0))
    return {
        **cache.read_counts(),
        "reads": len(latencies),
        "p50": statistics.median(latencies),
        "mean": statistics.fmean(latencies),
        "warms": warms,
        "cold_when": cold_when,
    }


def _farm_rows(instrument_id: int, sessions, request, flush_all, buckets: int, cold: float) -> list:
    from benchmarks.common import Result, median_time
    from timeframes import cache
    from timeframes.services import custom_timeframe_warm, custom_timeframes_warm_enqueue

    redis = cache.redis_client()

    def warm() -> dict:
        return custom_timeframe_warm(instrument_id=instrument_id, timeframe=TIMEFRAME)

    def flush_and_warm() -> None:
        flush_all()
        warm()

    def drop_last_session() -> None:
        for key in redis.scan_iter(
            match=f"{cache.ENTRY_PREFIX}{instrument_id}:{TIMEFRAME}:{sessions[-1].date}:*"
        ):
            redis.delete(key)

    def enqueue() -> None:
        redis.delete(cache.warm_pending_key(instrument_id, TIMEFRAME))
        custom_timeframes_warm_enqueue(pairs=[(instrument_id, TIMEFRAME)])

    after_warm = median_time(request, repeats=7, warmup=0, before=flush_and_warm)
    warm_year = median_time(warm, repeats=5, warmup=0, before=flush_all)
    year_report = warm()
    warm_one = median_time(warm, repeats=7, warmup=0, before=drop_last_session)
    warm_none = median_time(warm, repeats=7)
    queue_one = median_time(enqueue, repeats=20)

    without = _farm_sequence_reset(instrument_id, sessions, flush_all, farm=False)
    with_farm = _farm_sequence_reset(instrument_id, sessions, flush_all, farm=True)
    _farm_reset(instrument_id, flush_all)

    def ratio(r: dict) -> str:
        when = ", ".join(f"{k} {v}" for k, v in r["cold_when"].items())
        share = r["cold"] / r["reads"]
        return f"cold {r['cold']} of {r['reads']} reads ({share:.0%}; {when}), changed {r['changed']}"

    return [
        Result(
            _BENCH,
            "endpoint after the farm warm",
            buckets,
            after_warm,
            f"p50; whole year never asked: session entries written by the warm task; {cold / after_warm:.1f}x "
            "faster than cold",
        ),
        Result(
            _BENCH,
            "farm warm task: a year (first warm)",
            year_report["sessions"],
            warm_year,
            "p50; services.custom_timeframe_warm, every closed session aggregated and written",
        ),
        Result(_BENCH, "farm warm task: one session closed", 1, warm_one, "p50; + TTL renewal of the year"),
        Result(
            _BENCH, "farm warm task: nothing new", year_report["sessions"], warm_none, "p50; TTL renewal only"
        ),
        Result(
            _BENCH, "queue one warm (mark + publish)", 1, queue_one, "p50; coalescing SET NX + apply_async"
        ),
        Result(
            _BENCH,
            "day of reads, no farm (today)",
            without["reads"],
            without["p50"],
            f"p50 of the reads, mean {without['mean'] * 1e3:.1f} ms; {ratio(without)}",
        ),
        Result(
            _BENCH,
            "day of reads, with the farm",
            with_farm["reads"],
            with_farm["p50"],
            f"p50 of the reads, mean {with_farm['mean'] * 1e3:.1f} ms; {ratio(with_farm)}; "
            f"{with_farm['warms']} warms ran; floor: {len(FARM_TIMEFRAMES)} first requests",
        ),
    ]


def _farm_sequence_reset(instrument_id: int, sessions, flush_all, *, farm: bool) -> dict:
    _farm_reset(instrument_id, flush_all)
    return _farm_sequence(instrument_id, sessions, farm=farm)


def run() -> list:
    from benchmarks.common import Result, load_note, median_time, verdict

    _configure()
    from django.conf import settings
    from django.test import Client

    from timeframes import cache, selectors

    sessions = _sessions()
    instrument_id = _load(sessions)
    client = Client()
    url = f"/api/v2/signals/historical/bars/{KEY}"
    params = {
        "start_time": sessions[0].open.isoformat(),
        "end_time": sessions[-1].close.isoformat(),
        "timeframe": TIMEFRAME,
    }
    redis = cache.redis_client()

    def request() -> dict:
        response = client.get(url, params)
        if response.status_code != 200:
            raise RuntimeError(f"{response.status_code}: {response.content[:300]!r}")
        return response

    def flush_all() -> None:
        cache.fills_wait()  # the previous request's cache fill must not land after the flush
        keys = list(redis.scan_iter(match="tf:*", count=10_000))
        for i in range(0, len(keys), 1000):
            redis.delete(*keys[i : i + 1000])
        cache.local_ranges.clear()

    def flush_local() -> None:
        cache.local_ranges.clear()

    def flush_ranges() -> None:
        cache.fills_wait()
        keys = list(redis.scan_iter(match=f"{cache.RANGE_PREFIX}*", count=10_000))
        if keys:
            redis.delete(*keys)
        cache.local_ranges.clear()

    flush_all()
    body = request().json()
    buckets = body["data_points"]
    baseline, baseline_resample = _pandas_baselines(instrument_id, sessions)
    agreed = baseline() == buckets == baseline_resample()
    timeframe = selectors.timeframe_parse(TIMEFRAME)

    load = load_note()
    cold = median_time(request, repeats=7, warmup=0, before=flush_all)
    settings.TIMEFRAMES_CACHE_WRITE_BEHIND = False
    cold_inline = median_time(request, repeats=7, warmup=0, before=flush_all)
    settings.TIMEFRAMES_CACHE_WRITE_BEHIND = True
    request()
    warm = median_time(request, repeats=30, warmup=0)
    warm_redis = median_time(request, repeats=10, warmup=0, before=flush_local)
    warm_sessions = median_time(request, repeats=7, warmup=0, before=flush_ranges)
    sql = median_time(
        lambda: selectors.bars_from_minutes(
            instrument_id=instrument_id, timeframe=timeframe, sessions=sessions
        ),
        repeats=7,
    )
    base = median_time(baseline, repeats=5, warmup=0)
    base_resample = median_time(baseline_resample, repeats=3, warmup=0)
    farm_rows = _farm_rows(instrument_id, sessions, request, flush_all, buckets, cold)
    rows_note = f"{SESSIONS * MINUTES:,} rows -> {buckets:,} buckets" + (
        "" if agreed else "; COUNT MISMATCH vs pandas"
    )
    return [
        Result(
            _BENCH,
            "endpoint cold (cache miss)",
            buckets,
            cold,
            f"p50; target < 100 ms: {verdict(cold < COLD_TARGET_S)}; {base / cold:.1f}x pandas baseline; "
            f"{rows_note} {load}",
        ),
        Result(
            _BENCH,
            "endpoint cold, fill in the request",
            buckets,
            cold_inline,
            "p50; TIMEFRAMES_CACHE_WRITE_BEHIND=false: the cache entries are written before the response",
        ),
        Result(
            _BENCH,
            "endpoint warm (cache hit)",
            buckets,
            warm,
            f"p50; target < 10 ms: {verdict(warm < WARM_TARGET_S)}; {base / warm:.0f}x pandas baseline",
        ),
        Result(
            _BENCH, "endpoint warm, range from Redis", buckets, warm_redis, "p50; in-process tier cleared"
        ),
        Result(
            _BENCH, "endpoint warm, sessions from Redis", buckets, warm_sessions, "p50; range entries cleared"
        ),
        Result(_BENCH, "SQL aggregation only (no HTTP, JSON)", buckets, sql, "selectors.bars_from_minutes"),
        Result(
            _BENCH,
            "baseline: fetchall + pandas groupby",
            buckets,
            base,
            "groupby (session, floor((ts - open)/7m)), first/max/min/last/sum; no HTTP, no JSON",
        ),
        Result(
            _BENCH,
            "baseline: fetchall + pandas resample",
            buckets,
            base_resample,
            "groupby session + resample(origin=session open); no HTTP, no JSON",
        ),
        *farm_rows,
    ]


if __name__ == "__main__":  # pragma: no cover
    for result in run():
        print(result)

"""Session-anchored buckets and the reference OHLCV aggregation, against an independent pandas
computation (per-session resample with the session open as origin)."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from signalsvc.core.calendar import get_calendar
from timeframes.core.buckets import (
    SessionTable,
    aggregate_last,
    aggregate_mean,
    aggregate_ohlcv,
    aggregate_series,
    assign_buckets,
    bucket_for,
    session_buckets,
    session_index,
    sql_bucket_expression,
    to_datetime64,
)
from timeframes.core.grammar import Timeframe, parse_timeframe

IST = ZoneInfo("Asia/Kolkata")
UTC = dt.UTC
NSE = get_calendar("NSE")
DEMO = get_calendar("NSE-DEMO")


def ist(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=IST)


def utc64(value: dt.datetime) -> np.datetime64:
    return np.datetime64(value.astimezone(UTC).replace(tzinfo=None), "us")


def minutes_of(session) -> np.ndarray:
    """Start of every minute of a session, datetime64[us] UTC."""
    return np.arange(utc64(session.open), utc64(session.close), np.timedelta64(1, "m"))


def day(calendar, date: dt.date):
    (session,) = calendar.sessions(date, date)
    return session


# -- fixed examples ----------------------------------------------------------------------------


def test_7m_on_an_nse_day_is_53_full_buckets_and_one_of_4_minutes():
    session = day(NSE, dt.date(2025, 3, 13))
    starts, ends = session_buckets([session], parse_timeframe("7m"))
    lengths = (ends - starts) // np.timedelta64(1, "m")
    assert len(starts) == 54
    assert (lengths[:53] == 7).all()
    assert lengths[53] == 4
    assert starts[0] == utc64(ist(2025, 3, 13, 9, 15))
    assert starts[-1] == utc64(ist(2025, 3, 13, 15, 26))
    assert ends[-1] == utc64(ist(2025, 3, 13, 15, 30))


def test_4h_on_an_nse_day_is_0915_to_1315_and_a_short_1315_to_1530():
    session = day(NSE, dt.date(2025, 3, 13))
    starts, ends = session_buckets([session], parse_timeframe("4h"))
    assert starts.tolist() == [utc64(ist(2025, 3, 13, 9, 15)), utc64(ist(2025, 3, 13, 13, 15))]
    assert ends.tolist() == [utc64(ist(2025, 3, 13, 13, 15)), utc64(ist(2025, 3, 13, 15, 30))]


def test_1h_buckets_start_at_quarter_past():
    session = day(NSE, dt.date(2025, 3, 13))
    starts, ends = session_buckets([session], parse_timeframe("1h"))
    local = [pd.Timestamp(s).tz_localize("UTC").tz_convert(IST).strftime("%H:%M") for s in starts]
    assert local == ["09:15", "10:15", "11:15", "12:15", "13:15", "14:15", "15:15"]
    assert ends[-1] - starts[-1] == np.timedelta64(15, "m")


def test_1d_is_the_session():
    sessions = NSE.sessions(dt.date(2025, 3, 10), dt.date(2025, 3, 18))
    starts, ends = session_buckets(sessions, parse_timeframe("1d"))
    assert starts.tolist() == [utc64(s.open) for s in sessions]
    assert ends.tolist() == [utc64(s.close) for s in sessions]


def test_muhurat_session_buckets_are_anchored_at_its_own_open():
    session = day(NSE, dt.date(2024, 11, 1))
    starts, ends = session_buckets([session], parse_timeframe("7m"))
    assert starts[0] == utc64(ist(2024, 11, 1, 18, 0))
    assert len(starts) == 9
    assert ends[-1] - starts[-1] == np.timedelta64(4, "m")


def test_demo_day_is_anchored_at_local_midnight():
    session = day(DEMO, dt.date(2025, 3, 15))  # a Saturday
    tf = parse_timeframe("7m", max_minutes=DEMO.session_minutes)
    starts, ends = session_buckets([session], tf)
    assert starts[0] == utc64(ist(2025, 3, 15, 0, 0))
    assert len(starts) == 206  # 205 x 7 = 1435 minutes, then a 5-minute bucket
    assert ends[-1] - starts[-1] == np.timedelta64(5, "m")
    assert ends[-1] == utc64(ist(2025, 3, 16, 0, 0))


def test_session_buckets_of_several_sessions_never_cross_a_close():
    sessions = NSE.sessions(dt.date(2024, 10, 28), dt.date(2024, 11, 8))
    for n in (1, 7, 60, 240, 375):
        starts, ends = session_buckets(sessions, Timeframe.of_minutes(n))
        idx = session_index(starts, sessions)
        closes = np.array([utc64(s.close) for s in sessions])
        assert (idx >= 0).all()
        assert (ends <= closes[idx]).all()
        assert (starts[1:] >= ends[:-1]).all()
        per_session = np.bincount(idx, minlength=len(sessions))
        assert per_session.tolist() == [-(-s.minutes // n) for s in sessions]


def test_assign_buckets_marks_timestamps_outside_sessions():
    sessions = NSE.sessions(dt.date(2025, 3, 13), dt.date(2025, 3, 17))
    ts = np.array(
        [
            utc64(ist(2025, 3, 13, 9, 14)),  # before the open
            utc64(ist(2025, 3, 13, 9, 15)),
            utc64(ist(2025, 3, 13, 9, 22)),
            utc64(ist(2025, 3, 13, 15, 29)),
            utc64(ist(2025, 3, 13, 15, 30)),  # the close
            utc64(ist(2025, 3, 14, 10, 0)),  # Holi
            utc64(ist(2025, 3, 17, 9, 20)),
        ]
    )
    result = assign_buckets(ts, sessions, parse_timeframe("7m"))
    assert result.outside.tolist() == [True, False, False, False, True, True, False]
    assert result.start[1] == result.start[1] == utc64(ist(2025, 3, 13, 9, 15))
    assert result.start[2] == utc64(ist(2025, 3, 13, 9, 22))
    assert result.start[3] == utc64(ist(2025, 3, 13, 15, 26))
    assert result.end[3] == utc64(ist(2025, 3, 13, 15, 30))
    assert result.start[6] == utc64(ist(2025, 3, 17, 9, 15))
    assert np.isnat(result.end[[0, 4, 5]]).all()
    start, end = result  # a plain (start, end) pair
    assert start is result.start and end is result.end


def test_bucket_for_scalar():
    sessions = NSE.sessions(dt.date(2025, 3, 13), dt.date(2025, 3, 13))
    assert bucket_for(ist(2025, 3, 13, 15, 29, 30), sessions, parse_timeframe("7m")) == (
        ist(2025, 3, 13, 15, 26),
        ist(2025, 3, 13, 15, 30),
    )
    assert bucket_for(ist(2025, 3, 13, 15, 30), sessions, parse_timeframe("7m")) is None
    assert bucket_for(ist(2025, 3, 13, 12, 0), sessions, parse_timeframe("1d")) == (
        ist(2025, 3, 13, 9, 15),
        ist(2025, 3, 13, 15, 30),
    )
    start, _ = bucket_for(ist(2025, 3, 13, 12, 0), sessions, parse_timeframe("1d"))
    assert start.tzinfo is UTC


def test_naive_datetimes_are_rejected():
    sessions = NSE.sessions(dt.date(2025, 3, 13), dt.date(2025, 3, 13))
    with pytest.raises(ValueError, match="naive datetime"):
        bucket_for(dt.datetime(2025, 3, 13, 10, 0), sessions, parse_timeframe("5m"))
    with pytest.raises(ValueError, match="naive datetime"):
        assign_buckets([dt.datetime(2025, 3, 13, 10, 0)], sessions, parse_timeframe("5m"))


def test_aware_datetimes_and_pandas_timestamps_are_accepted():
    sessions = NSE.sessions(dt.date(2025, 3, 13), dt.date(2025, 3, 13))
    aware = [ist(2025, 3, 13, 9, 30), pd.Timestamp("2025-03-13 04:05", tz="UTC")]
    assert to_datetime64(aware).tolist() == [utc64(ist(2025, 3, 13, 9, 30)), utc64(ist(2025, 3, 13, 9, 35))]
    start, _ = assign_buckets(pd.to_datetime(aware, utc=True), sessions, parse_timeframe("15m"))
    assert start.tolist() == [utc64(ist(2025, 3, 13, 9, 30)), utc64(ist(2025, 3, 13, 9, 30))]


def test_timeframe_must_be_parsed():
    sessions = NSE.sessions(dt.date(2025, 3, 13), dt.date(2025, 3, 13))
    with pytest.raises(TypeError, match="parse_timeframe"):
        session_buckets(sessions, "5m")


def test_session_table_rejects_overlapping_or_unsorted_sessions():
    a, b = NSE.sessions(dt.date(2025, 3, 12), dt.date(2025, 3, 13))
    with pytest.raises(ValueError, match="sorted and non-overlapping"):
        SessionTable.of([b, a])
    with pytest.raises(ValueError, match="close after it opens"):
        SessionTable(np.array([utc64(a.close)]), np.array([utc64(a.open)]))


def test_aggregate_ohlcv_small_example():
    sessions = NSE.sessions(dt.date(2025, 3, 13), dt.date(2025, 3, 13))
    ts = np.array([utc64(ist(2025, 3, 13, 9, 15 + i)) for i in range(9)] + [utc64(ist(2025, 3, 13, 16, 0))])
    price = np.arange(10, dtype=float) + 100
    oi = np.array([1, 2, 3, 4, 5, 6, np.nan, np.nan, np.nan, 99.0])
    bars = aggregate_ohlcv(
        ts, price, price + 1, price - 1, price + 0.5, np.ones(10), oi, sessions, parse_timeframe("7m")
    )
    assert bars.start.tolist() == [utc64(ist(2025, 3, 13, 9, 15)), utc64(ist(2025, 3, 13, 9, 22))]
    assert bars.end.tolist() == [utc64(ist(2025, 3, 13, 9, 22)), utc64(ist(2025, 3, 13, 9, 29))]
    assert bars.open.tolist() == [100.0, 107.0]
    assert bars.high.tolist() == [107.0, 109.0]
    assert bars.low.tolist() == [99.0, 106.0]
    assert bars.close.tolist() == [106.5, 108.5]
    assert bars.volume.tolist() == [7.0, 2.0]
    assert bars.oi[0] == 6.0  # last observation with a value
    assert np.isnan(bars.oi[1])  # no observation with a value: "no value", not a made-up one
    assert bars.count.tolist() == [7, 2]
    assert bars.dropped == 1


def test_aggregate_with_no_rows():
    sessions = NSE.sessions(dt.date(2025, 3, 13), dt.date(2025, 3, 13))
    empty = np.array([], dtype="datetime64[us]")
    bars = aggregate_ohlcv(empty, [], [], [], [], [], None, sessions, parse_timeframe("5m"))
    assert len(bars) == 0
    assert bars.dropped == 0
    series = aggregate_last(empty, [], sessions, parse_timeframe("5m"))
    assert series.values.shape == (0,)


def test_aggregate_series_last_and_mean_skip_missing_observations():
    sessions = NSE.sessions(dt.date(2025, 3, 13), dt.date(2025, 3, 13))
    ts = np.array([utc64(ist(2025, 3, 13, 9, 15 + i)) for i in range(10)])
    iv = np.array([0.1, 0.2, np.nan, 0.4, 0.5, np.nan, np.nan, np.nan, np.nan, np.nan])
    last = aggregate_last(ts, iv, sessions, parse_timeframe("5m"))
    mean = aggregate_mean(ts, iv, sessions, parse_timeframe("5m"))
    assert last.values[0] == 0.5
    assert np.isnan(last.values[1])
    assert mean.values[0] == pytest.approx(0.3)
    assert np.isnan(mean.values[1])
    assert last.count.tolist() == [5, 5]


def test_aggregate_series_of_several_columns():
    sessions = NSE.sessions(dt.date(2025, 3, 13), dt.date(2025, 3, 13))
    ts = np.array([utc64(ist(2025, 3, 13, 9, 15 + i)) for i in range(6)])
    values = np.column_stack([np.arange(6.0), 10 * np.arange(6.0)])
    values[5, 1] = np.nan
    out = aggregate_series(ts, values, sessions, parse_timeframe("5m"), agg="last")
    assert out.values[0].tolist() == [4.0, 40.0]
    assert out.values[1, 0] == 5.0
    assert np.isnan(out.values[1, 1])  # the only observation of that bucket has no value
    with pytest.raises(ValueError, match="agg must be"):
        aggregate_series(ts, values, sessions, parse_timeframe("5m"), agg="median")


def test_row_count_mismatch_is_an_error():
    sessions = NSE.sessions(dt.date(2025, 3, 13), dt.date(2025, 3, 13))
    ts = np.array([utc64(ist(2025, 3, 13, 9, 15))])
    with pytest.raises(ValueError, match="expected 1"):
        aggregate_ohlcv(ts, [1.0, 2.0], [1.0], [1.0], [1.0], [1.0], None, sessions, parse_timeframe("5m"))


def test_sql_bucket_expression_uses_the_session_open_as_origin():
    start, end = sql_bucket_expression(parse_timeframe("7m"), "b.ts", "s.open_ts", "s.close_ts")
    assert start == "date_bin(interval '7 minutes', b.ts, s.open_ts)"
    assert end == "least(date_bin(interval '7 minutes', b.ts, s.open_ts) + interval '7 minutes', s.close_ts)"
    assert sql_bucket_expression(parse_timeframe("1d"), "b.ts", "s.open_ts", "s.close_ts") == (
        "s.open_ts",
        "s.close_ts",
    )
    with pytest.raises(ValueError, match="identifier"):
        sql_bucket_expression(parse_timeframe("7m"), "ts; drop table x")


# -- property: every bucket equals an independent pandas computation ---------------------------


def pandas_reference(frame: pd.DataFrame, sessions, timeframe: Timeframe) -> pd.DataFrame:
    """Per-session resample with origin = session open; the end is clipped at the close."""
    parts = []
    for s in sessions:
        open_, close = pd.Timestamp(s.open), pd.Timestamp(s.close)
        inside = frame[(frame.index >= open_) & (frame.index < close)]
        if inside.empty:
            continue
        if timeframe.is_daily:
            grouper = inside.groupby(np.zeros(len(inside), dtype=int))
        else:
            grouper = inside.resample(f"{timeframe.minutes}min", origin=open_, closed="left", label="left")
        agg = grouper.agg(
            {"open": "first", "high": "max", "low": "min", "close": "last", "volume": "sum", "oi": "last"}
        )
        agg["count"] = grouper.size()
        agg = agg[agg["count"] > 0]
        if timeframe.is_daily:
            agg.index = pd.DatetimeIndex([open_])
            agg["end"] = close
        else:
            agg["end"] = np.minimum(agg.index + pd.Timedelta(minutes=timeframe.minutes), close)
        parts.append(agg)
    return pd.concat(parts) if parts else pd.DataFrame()


@st.composite
def market_minutes(draw):
    calendar = draw(st.sampled_from([NSE, DEMO]))
    first = draw(st.dates(min_value=dt.date(2024, 1, 1), max_value=dt.date(2025, 12, 20)))
    sessions = calendar.sessions(first, first + dt.timedelta(days=draw(st.integers(2, 8))))
    if calendar is DEMO:
        sessions = sessions[: draw(st.integers(1, 3))]
    daily = draw(st.integers(0, 9)) == 0
    timeframe = (
        Timeframe.daily() if daily else Timeframe.of_minutes(draw(st.integers(1, calendar.session_minutes)))
    )
    seed = draw(st.integers(0, 2**32 - 1))
    keep = draw(st.floats(0.05, 1.0))
    return calendar, sessions, timeframe, seed, keep


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(market_minutes())
def test_buckets_equal_a_per_session_pandas_resample(case):
    calendar, sessions, timeframe, seed, keep = case
    rng = np.random.default_rng(seed)
    minutes = (
        np.concatenate([minutes_of(s) for s in sessions]) if sessions else np.array([], "datetime64[us]")
    )
    minutes = minutes[rng.random(len(minutes)) < keep]  # gaps: missing minutes
    if calendar is NSE and sessions:
        # rows outside every session (pre-open, post-close, a weekend) must be dropped and reported
        stray = np.array(
            [
                utc64(sessions[0].open) - np.timedelta64(1, "m"),
                utc64(sessions[-1].close),
                utc64(sessions[-1].close) + np.timedelta64(3, "h"),
            ]
        )
        minutes = np.concatenate([minutes, stray])
        n_stray = 3
    else:
        n_stray = 0
    n = len(minutes)
    close = 100 + np.cumsum(rng.normal(0, 1, n))
    open_ = close + rng.normal(0, 0.5, n)
    high = np.maximum(open_, close) + rng.random(n)
    low = np.minimum(open_, close) - rng.random(n)
    volume = rng.integers(0, 10_000, n).astype(float)
    oi = np.where(rng.random(n) < 0.2, np.nan, rng.integers(1_000, 2_000, n).astype(float))
    order = rng.permutation(n)  # rows in any order

    bars = aggregate_ohlcv(
        minutes[order],
        open_[order],
        high[order],
        low[order],
        close[order],
        volume[order],
        oi[order],
        sessions,
        timeframe,
    )

    frame = pd.DataFrame(
        {"open": open_, "high": high, "low": low, "close": close, "volume": volume, "oi": oi},
        index=pd.DatetimeIndex(minutes).tz_localize("UTC"),
    ).sort_index()
    ref = pandas_reference(frame, sessions, timeframe)

    assert bars.dropped == n_stray
    assert len(bars) == len(ref)
    if len(ref) == 0:
        return
    assert bars.start.tolist() == ref.index.tz_convert(None).as_unit("us").to_numpy().tolist()
    assert (
        bars.end.tolist() == pd.DatetimeIndex(ref["end"]).tz_convert(None).as_unit("us").to_numpy().tolist()
    )
    for field in ("open", "high", "low", "close", "oi"):
        np.testing.assert_array_equal(getattr(bars, field), ref[field].to_numpy(), err_msg=field)
    np.testing.assert_allclose(bars.volume, ref["volume"].to_numpy(), rtol=0, atol=1e-6)
    assert bars.count.tolist() == ref["count"].tolist()
    assert bars.volume.sum() == pytest.approx(volume[session_index(minutes, sessions) >= 0].sum())

    # no bucket crosses a session close; buckets start at open + k*N
    idx = session_index(bars.start, sessions)
    opens = np.array([utc64(s.open) for s in sessions])
    closes = np.array([utc64(s.close) for s in sessions])
    assert (idx >= 0).all()
    assert (bars.end <= closes[idx]).all()
    if not timeframe.is_daily:
        offset = (bars.start - opens[idx]) // np.timedelta64(1, "m")
        assert (offset % timeframe.minutes == 0).all()
        expected_end = np.minimum(bars.start + np.timedelta64(timeframe.minutes, "m"), closes[idx])
        assert (bars.end == expected_end).all()
    # every non-empty bucket is one of the calendar's buckets
    all_starts, all_ends = session_buckets(sessions, timeframe)
    pos = np.searchsorted(all_starts, bars.start)
    assert (all_starts[pos] == bars.start).all()
    assert (all_ends[pos] == bars.end).all()


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 375), st.integers(0, 2**32 - 1))
def test_greeks_series_last_and_mean_equal_pandas(n, seed):
    rng = np.random.default_rng(seed)
    sessions = NSE.sessions(dt.date(2025, 3, 10), dt.date(2025, 3, 13))
    minutes = np.concatenate([minutes_of(s) for s in sessions])
    minutes = minutes[rng.random(len(minutes)) < 0.7]
    iv = np.where(rng.random(len(minutes)) < 0.1, np.nan, rng.random(len(minutes)))
    tf = Timeframe.of_minutes(n)
    last = aggregate_last(minutes, iv, sessions, tf)
    mean = aggregate_mean(minutes, iv, sessions, tf)
    frame = pd.DataFrame({"iv": iv}, index=pd.DatetimeIndex(minutes).tz_localize("UTC"))
    ref_last, ref_mean = [], []
    for s in sessions:
        inside = frame[(frame.index >= pd.Timestamp(s.open)) & (frame.index < pd.Timestamp(s.close))]
        grouped = inside.resample(f"{n}min", origin=pd.Timestamp(s.open), closed="left", label="left")
        counts = grouped.size()
        ref_last.append(grouped["iv"].last()[counts > 0])
        ref_mean.append(grouped["iv"].mean()[counts > 0])
    np.testing.assert_array_equal(last.values, pd.concat(ref_last).to_numpy())
    np.testing.assert_allclose(mean.values, pd.concat(ref_mean).to_numpy(), rtol=1e-12)

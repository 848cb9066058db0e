"""Session-anchored aggregation in PostgreSQL (selectors) against an independent pandas reference."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
from django.db import connection, transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.timeframes.conftest import put_bars, random_rows, refresh
from tests.timeframes.reference import reference_bars
from timeframes import selectors
from timeframes.core.buckets import assign_buckets
from timeframes.core.grammar import Timeframe, parse_timeframe

pytestmark = pytest.mark.django_db

SESSIONS_2025 = (dt.date(2025, 2, 3), dt.date(2025, 3, 28))


def _reset(instrument_id: int) -> None:
    with connection.cursor() as cur:
        cur.execute("DELETE FROM market_bar_1m WHERE instrument_id = %s", [instrument_id])
        cur.execute("DELETE FROM timeframe_rollup WHERE instrument_id = %s", [instrument_id])
        cur.execute("DELETE FROM timeframe_rollup_watermark")


def _assert_equal(bars: dict, ref) -> None:
    assert len(bars["start"]) == len(ref)
    assert bars["start"].tolist() == [t.to_pydatetime().replace(tzinfo=None) for t in ref["start"]]
    assert bars["end"].tolist() == [t.to_pydatetime().replace(tzinfo=None) for t in ref["end"]]
    for field in ("open", "high", "low", "close", "volume", "oi"):
        np.testing.assert_array_equal(bars[field], ref[field].to_numpy(dtype=float), err_msg=field)
    np.testing.assert_array_equal(bars["count"], ref["count"].to_numpy())


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    first=st.integers(0, 30),
    n_sessions=st.integers(2, 4),
    keep=st.sampled_from([1.0, 0.85, 0.4]),
    with_oi=st.booleans(),
    minutes=st.integers(1, 375),
    seed=st.integers(0, 2**31),
)
def test_buckets_equal_pandas_per_session(spot, nse, first, n_sessions, keep, with_oi, minutes, seed):
    _reset(spot.id)
    sessions = nse.sessions(*SESSIONS_2025)[first : first + n_sessions]
    rows = random_rows(sessions, seed=seed, keep=keep, with_oi=with_oi)
    # Bars outside every session (pre-open, after the close) belong to no bucket.
    stray = [(s.open - dt.timedelta(minutes=5), 1.0, 2.0, 0.5, 1.5, 7.0, None) for s in sessions]
    stray += [(s.close + dt.timedelta(minutes=3), 1.0, 2.0, 0.5, 1.5, 7.0, None) for s in sessions]
    put_bars(spot.id, rows + stray)
    timeframe = Timeframe.of_minutes(minutes)

    bars = selectors.bars_at(
        instrument_id=spot.id, timeframe=timeframe, start=sessions[0].open, end=sessions[-1].close
    )

    _assert_equal(bars, reference_bars(rows, sessions, minutes))
    # No bucket crosses a session close, and the volume of every in-session bar is counted once.
    opens = np.array([s.open.replace(tzinfo=None) for s in sessions], dtype="datetime64[us]")
    closes = np.array([s.close.replace(tzinfo=None) for s in sessions], dtype="datetime64[us]")
    session = np.searchsorted(opens, bars["start"], side="right") - 1
    assert (bars["start"] >= opens[session]).all()
    assert (bars["end"] <= closes[session]).all()
    assert bars["volume"].sum() == sum(r[5] for r in rows)


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    first=st.integers(0, 30),
    label=st.sampled_from(["5m", "15m", "30m", "1h", "4h", "1d"]),
    keep=st.sampled_from([1.0, 0.6]),
    seed=st.integers(0, 2**31),
)
def test_rollup_reads_equal_pandas_per_session(spot, nse, first, label, keep, seed):
    _reset(spot.id)
    sessions = nse.sessions(*SESSIONS_2025)[first : first + 3]
    rows = random_rows(sessions, seed=seed, keep=keep, with_oi=True)
    put_bars(spot.id, rows)
    refresh()
    timeframe = parse_timeframe(label)

    bars = selectors.bars_at(
        instrument_id=spot.id, timeframe=timeframe, start=sessions[0].open, end=sessions[-1].close
    )

    assert selectors.watermark_get(tracker=label) is not None
    _assert_equal(bars, reference_bars(rows, sessions, timeframe.minutes))


def test_first_and_last_are_looked_up_where_a_bucket_has_no_bar_at_its_edges(spot, nse):
    # The range aggregation keeps the bars at each bucket's first and last minute and looks up
    # the others: exercise every branch against the pandas reference.
    session = nse.sessions(dt.date(2025, 3, 12), dt.date(2025, 3, 12))[0]
    minute = dt.timedelta(minutes=1)
    rows = random_rows([session], seed=5, with_oi=True)
    by_ts = {r[0]: r for r in rows}

    def at(m):
        return session.open + m * minute

    for m in (0, 1, 13, 20):  # 09:15 bucket: no first two minutes; 09:22 bucket: no last minute
        by_ts.pop(at(m), None)
    by_ts[at(27)] = (*by_ts[at(27)][:6], None)  # last minute of 09:29 without oi, earlier ones with
    for m in range(35, 42):  # 09:50 bucket: no oi at all
        by_ts[at(m)] = (*by_ts[at(m)][:6], None)
    for m in (43, 44):  # off-minute times (not written by the APIs, still aggregated right)
        by_ts[at(m) + dt.timedelta(seconds=30)] = (at(m) + dt.timedelta(seconds=30), *by_ts.pop(at(m))[1:])
    late = at(48) + dt.timedelta(seconds=30)  # after the bar of the 09:57 bucket's last minute
    by_ts[late] = (late, *by_ts[at(47)][1:])
    rows = sorted(by_ts.values())
    put_bars(spot.id, rows)

    bars = selectors.bars_at(
        instrument_id=spot.id, timeframe=parse_timeframe("7m"), start=session.open, end=session.close
    )

    _assert_equal(bars, reference_bars(rows, [session], 7))


def test_a_7_minute_day_has_53_full_buckets_and_one_of_4_minutes(spot, nse):
    session = nse.sessions(dt.date(2025, 3, 12), dt.date(2025, 3, 12))[0]
    put_bars(spot.id, random_rows([session], seed=1))

    bars = selectors.bars_at(
        instrument_id=spot.id, timeframe=parse_timeframe("7m"), start=session.open, end=session.close
    )

    lengths = (bars["end"] - bars["start"]).astype("timedelta64[m]").astype(int)
    assert lengths.tolist() == [7] * 53 + [4]
    assert bars["count"].tolist() == [7] * 53 + [4]
    assert str(bars["start"][-1]) == "2025-03-12T09:56:00.000000"  # 15:26 IST
    assert str(bars["end"][-1]) == "2025-03-12T10:00:00.000000"  # the 15:30 close


def test_buckets_are_labelled_by_start_and_filtered_by_it(spot, nse):
    session = nse.sessions(dt.date(2025, 3, 12), dt.date(2025, 3, 12))[0]
    put_bars(spot.id, random_rows([session], seed=2))
    start = session.open + dt.timedelta(minutes=10)  # inside the 09:22-09:29 bucket
    end = session.open + dt.timedelta(minutes=22)

    bars = selectors.bars_at(instrument_id=spot.id, timeframe=parse_timeframe("7m"), start=start, end=end)

    # 09:29 and 09:36 start in the range; 09:22 started before it. Whole buckets, never partial.
    assert [str(t)[11:16] for t in bars["start"]] == ["03:59", "04:06"]
    assert bars["count"].tolist() == [7, 7]


@pytest.mark.parametrize("label", ["1m", "7m", "13m", "1h", "4h", "375m", "1d"])
def test_database_buckets_match_assign_buckets_including_muhurat(spot, nse, label):
    # docs/timeframes.md: re-check the SQL anchoring against the pure core on real sessions,
    # including the 2024-11-01 Muhurat evening session (18:00-19:00 IST).
    sessions = nse.sessions(dt.date(2024, 10, 22), dt.date(2024, 11, 6))
    assert any(s.date == dt.date(2024, 11, 1) and s.minutes == 60 for s in sessions)
    rows = random_rows(sessions, seed=3)
    put_bars(spot.id, rows)
    timeframe = parse_timeframe(label)

    bars = selectors.bars_at(
        instrument_id=spot.id, timeframe=timeframe, start=sessions[0].open, end=sessions[-1].close
    )

    ts = np.array([r[0].replace(tzinfo=None) for r in rows], dtype="datetime64[us]")
    expected = assign_buckets(ts, sessions, timeframe)
    starts, first = np.unique(expected.start, return_index=True)
    assert bars["start"].tolist() == starts.tolist()
    assert bars["end"].tolist() == expected.end[first].tolist()


def test_aggregation_settings_last_for_the_transaction_only(transactional_db):
    with transaction.atomic(), connection.cursor() as cur:
        selectors.tune_for_aggregation(cur)
        cur.execute(
            "SELECT current_setting('jit'), current_setting('max_parallel_workers_per_gather'), "
            "current_setting('work_mem')"
        )
        assert cur.fetchone() == ("off", "0", "64MB")
    with connection.cursor() as cur:
        cur.execute("SELECT current_setting('work_mem')")
        assert cur.fetchone() != ("64MB",)

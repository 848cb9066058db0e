"""Historical moneyness endpoints over ten minutes of the simulated market, each minute's chain
computed as the chain task does: stored rows, bucketed at any timeframe, with statistics."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
from django.db import connection

from greeks.services import chain_compute
from tests.conftest import DEMO_START

pytestmark = pytest.mark.django_db

BASE = "/api/v2/signals/historical/moneyness/"
NIFTY = "NSE@NIFTY@equity_spot"
MINUTES = 10
RANGE = {
    "start_time": DEMO_START.isoformat(),
    "end_time": (DEMO_START + dt.timedelta(minutes=MINUTES)).isoformat(),
}


@pytest.fixture
def history(demo_market, redis_client):
    """The chain computed once a minute for ten minutes (the first at DEMO_START + 12 s)."""
    from signalsvc.marketdata.stream import ticks_ingest

    for minute in range(MINUTES):
        if minute:
            ticks = []
            for second in range(0, 12, 2):
                ticks += demo_market.step(DEMO_START + dt.timedelta(minutes=minute, seconds=second))
            ticks_ingest(redis_client, ticks, consumer_name="test")
        chain_compute(underlying_key=NIFTY, client=redis_client)
    return demo_market


def _stored(sql: str) -> list[tuple]:
    with connection.cursor() as cur:
        cur.execute(sql)
        return cur.fetchall()


def _get(api, path, **params):
    return api.get(BASE + path, {**RANGE, **params})


def test_a_stored_level_per_minute(api, history):
    body = _get(api, "NIFTY/greeks/OTM25delta").json()

    assert (body["instrument_key"], body["moneyness_level"], body["timeframe"]) == (NIFTY, "OTM25delta", "1m")
    assert body["data_points"] == MINUTES
    front = min(r[0] for r in _stored("SELECT DISTINCT expiry FROM signal_moneyness_greeks"))
    stored = _stored(
        "SELECT ts, puts_iv, calls_delta, puts_count FROM signal_moneyness_greeks "
        f"WHERE level = 'OTM25delta' AND expiry = '{front}' ORDER BY ts"
    )
    for point, (ts, puts_iv, calls_delta, puts_count) in zip(body["time_series"], stored, strict=True):
        assert point["timestamp"] == ts.isoformat()
        assert point["value"]["puts"]["iv"] == puts_iv
        assert point["value"]["calls"]["delta"] == calls_delta
        assert point["value"]["puts"]["count"] == puts_count
        assert point["metadata"]["expiry"] == front.isoformat()
        assert point["metadata"]["put_interp_strike"] is not None


@pytest.mark.parametrize("agg", ["last", "mean"])
def test_a_stored_level_in_5_minute_buckets(api, history, agg):
    minutes = _get(api, "NIFTY/greeks/ATM").json()["time_series"]
    body = _get(api, "NIFTY/greeks/ATM", timeframe="5m", agg=agg).json()

    assert body["data_points"] == 2
    for bucket, chunk in zip(body["time_series"], (minutes[:5], minutes[5:]), strict=True):
        assert bucket["metadata"]["observations"] == 5
        ivs = [p["value"]["all"]["iv"] for p in chunk]
        expected = ivs[-1] if agg == "last" else float(np.mean(ivs))
        assert bucket["value"]["all"]["iv"] == pytest.approx(expected, rel=1e-12)


def test_atm_iv_history_with_statistics(api, history):
    body = _get(api, "NIFTY/atm-iv/history").json()

    assert body["data_points"] == MINUTES
    ivs = [p["value"]["iv"] for p in body["time_series"]]
    stats = body["statistics"]
    assert stats["mean"] == pytest.approx(np.mean(ivs))
    assert stats["std"] == pytest.approx(np.std(ivs))
    assert (stats["min"], stats["max"], stats["current"]) == (min(ivs), max(ivs), ivs[-1])
    assert stats["change"] == pytest.approx(ivs[-1] - ivs[0])
    assert stats["change_pct"] == pytest.approx((ivs[-1] - ivs[0]) / ivs[0] * 100)
    point = body["time_series"][0]
    assert {"iv", "call_iv", "put_iv", "iv_skew", "forward", "atm_strike"} == set(point["value"])


def test_the_30_day_history(api, history):
    body = _get(api, "NIFTY/atm-iv/history", tenor="30d", timeframe="5m").json()
    assert (body["tenor"], body["data_points"]) == ("30d", 2)
    assert all(p["metadata"]["status"] == "interpolated" for p in body["time_series"])
    assert body["statistics"]["current"] == body["time_series"][-1]["value"]["iv"]


def test_the_atm_series_of_an_underlying_reads_the_atm_iv_table(api, history):
    body = api.get("/api/v2/signals/historical/greeks/" + NIFTY, RANGE).json()
    rows = _stored(
        "SELECT ts, call_iv, put_iv, iv, atm_strike FROM signal_atm_iv "
        "WHERE expiry = (SELECT min(expiry) FROM signal_atm_iv) ORDER BY ts"
    )
    assert body["data_points"] == MINUTES
    for point, (ts, call_iv, put_iv, atm_iv, strike) in zip(body["time_series"], rows, strict=True):
        assert point["timestamp"] == ts.isoformat()
        assert point["value"]["call"]["iv"] == call_iv
        assert point["value"]["iv"] == pytest.approx((call_iv + put_iv) / 2)
        assert point["value"]["atm_iv"] == atm_iv
        assert point["metadata"]["atm_strike"] == strike


@pytest.mark.parametrize(
    ("path", "params", "status", "code"),
    [
        ("NIFTY/greeks/OTM7", {}, 422, "level_not_stored"),
        ("NIFTY/greeks/nope", {}, 400, "invalid_level"),
        ("NIFTY/greeks/ATM", {"timeframe": "7x"}, 400, "invalid_timeframe"),
        ("NIFTY/greeks/ATM", {"agg": "max"}, 400, "invalid_parameter"),
        ("NIFTY/greeks/ATM", {"start_time": "2024-01-01", "end_time": "2026-01-01"}, 400, "range_too_large"),
        ("NIFTY/greeks/ATM", {"end_time": "2020-01-01"}, 400, "invalid_range"),
        ("NOSUCH/greeks/ATM", {}, 404, "unknown_underlying"),
        ("NIFTY/atm-iv/history", {"tenor": "60d"}, 422, "tenor_not_stored"),
        ("NIFTY/atm-iv/history", {"tenor": "x"}, 400, "invalid_parameter"),
        ("NIFTY/atm-iv/history", {"start_time": ""}, 400, "missing_parameter"),
    ],
)
def test_bad_historical_input(api, db, path, params, status, code):
    response = _get(api, path, **params)
    assert response.status_code == status, response.content
    assert response.json()["error"]["code"] == code

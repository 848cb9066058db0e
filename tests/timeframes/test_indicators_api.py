"""Indicator endpoints: TA-Lib's own output on the same bars (through PostgreSQL and the API),
exact from the first returned value; the listing; the batch; every kind of bad input."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
import talib

from tests.timeframes.conftest import SPOT_KEY, put_bars, random_rows, refresh
from tests.timeframes.reference import reference_bars
from timeframes.core import indicators

pytestmark = pytest.mark.django_db

HIST = "/api/v2/signals/historical/indicators/"
LIVE = "/api/v2/signals/realtime/indicators/"
MINUTES = {"5m": 5, "7m": 7, "15m": 15, "30m": 30, "1h": 60, "1d": None}


@pytest.fixture(scope="module")
def sessions():
    from signalsvc.core.calendar import get_calendar

    return get_calendar("NSE").sessions(
        dt.date(2025, 2, 24), dt.date(2025, 3, 14)
    )  # 14 sessions (03-14: Holi)


@pytest.fixture
def market(spot, sessions):
    rows = random_rows(sessions, seed=40, start_price=24_000.0)
    put_bars(spot.id, rows)
    refresh()
    return rows


def _ref(rows, sessions, label):
    return reference_bars(rows, sessions, MINUTES[label])


def _arrays(ref):
    return {f: ref[f].to_numpy(dtype=float) for f in ("open", "high", "low", "close", "volume")}


def _series(api, indicator, label, start, end, **params):
    response = api.get(
        HIST + SPOT_KEY + "/" + indicator,
        {"start_time": start.isoformat(), "end_time": end.isoformat(), "timeframe": label, **params},
    )
    assert response.status_code == 200, response.json()
    return response.json()


def _assert_close(got, expected):
    got = np.array([np.nan if v is None else v for v in got], dtype=float)
    scale = max(1.0, float(np.nanmax(np.abs(expected))))
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-9 * scale, equal_nan=True)


def _first(ref, start) -> int:
    """Index of the first reference bucket starting at or after ``start``."""
    return int((ref["start"] < start).sum())


def _starts(ref):
    return [t.to_pydatetime().astimezone(dt.UTC).isoformat() for t in ref["start"]]


CASES = [
    ("rsi", "5m", {"period": "14"}, lambda b: {"rsi": talib.RSI(b["close"], timeperiod=14)}),
    ("ema", "5m", {"period": "9"}, lambda b: {"ema": talib.EMA(b["close"], timeperiod=9)}),
    ("sma", "30m", {"timeperiod": "20"}, lambda b: {"sma": talib.SMA(b["close"], timeperiod=20)}),
    (
        "macd",
        "7m",
        {"fastperiod": "6", "slowperiod": "13", "signalperiod": "5"},
        lambda b: dict(
            zip(
                ("macd", "macdsignal", "macdhist"),
                talib.MACD(b["close"], fastperiod=6, slowperiod=13, signalperiod=5),
                strict=True,
            )
        ),
    ),
    (
        "bbands",
        "15m",
        {"period": "10", "nbdevup": "2.5"},
        lambda b: dict(
            zip(
                ("upperband", "middleband", "lowerband"),
                talib.BBANDS(b["close"], timeperiod=10, nbdevup=2.5),
                strict=True,
            )
        ),
    ),
    (
        "atr",
        "5m",
        {"period": "5"},
        lambda b: {"atr": talib.ATR(b["high"], b["low"], b["close"], timeperiod=5)},
    ),
    ("willr", "5m", {}, lambda b: {"willr": talib.WILLR(b["high"], b["low"], b["close"])}),
]


@pytest.mark.parametrize("name, label, params, reference", CASES, ids=[c[0] for c in CASES])
def test_equals_talib_on_the_same_bars_from_the_first_value(
    api, market, sessions, name, label, params, reference
):
    ref = _ref(market, sessions, label)
    expected = reference(_arrays(ref))  # TA-Lib over all the history there is
    start, end = sessions[11].open, sessions[-1].close
    first = _first(ref, start)

    body = _series(api, name, label, start, end, **params)

    assert body["warmup"]["complete"] is True
    assert body["outputs"] == list(expected)
    assert [p["timestamp"] for p in body["time_series"]] == _starts(ref)[first:]
    for output, values in expected.items():
        _assert_close([p["value"][output] for p in body["time_series"]], values[first:])
    # Across the warm-up boundary: starting one bucket later gives the same value for that bucket.
    later = _series(api, name, label, ref["start"].iloc[first + 1].to_pydatetime(), end, **params)
    for output in expected:
        assert later["time_series"][0]["value"][output] == pytest.approx(
            body["time_series"][1]["value"][output],
            rel=0,
            abs=1e-9 * max(1.0, abs(expected[output][first + 1])),
        )


def test_session_anchored_vwap_and_obv_restart_at_each_session(api, market, sessions):
    ref = _ref(market, sessions, "30m")
    b = _arrays(ref)
    session_of = np.array([sum(s.open <= t for s in sessions) - 1 for t in ref["start"]])
    vwap = np.empty(len(ref))
    obv = np.empty(len(ref))
    for i in np.unique(session_of):
        m = session_of == i
        typical = (b["high"][m] + b["low"][m] + b["close"][m]) / 3
        vwap[m] = np.cumsum(typical * b["volume"][m]) / np.cumsum(b["volume"][m])
        obv[m] = talib.OBV(b["close"][m], b["volume"][m])
    start = sessions[5].open + dt.timedelta(hours=2)  # mid-session: the anchor is that session's open
    first = _first(ref, start)

    got_vwap = _series(api, "vwap", "30m", start, sessions[-1].close)
    got_obv = _series(api, "obv", "30m", start, sessions[-1].close)

    _assert_close([p["value"]["vwap"] for p in got_vwap["time_series"]], vwap[first:])
    _assert_close([p["value"]["obv"] for p in got_obv["time_series"]], obv[first:])


def test_short_history_is_reported_and_computed_on_what_exists(api, market, sessions):
    ref = _ref(market, sessions, "1d")
    expected = talib.RSI(_arrays(ref)["close"], timeperiod=3)

    body = _series(api, "rsi", "1d", sessions[10].open, sessions[-1].close, period="3")

    assert body["warmup"] == {"memory": "decaying", "bars_required": 123, "bars_found": 10, "complete": False}
    _assert_close([p["value"]["rsi"] for p in body["time_series"]], expected[10:])


def test_illiquid_history_is_extended_to_the_stored_bars(api, spot, sessions):
    traded = sessions[0:12:2]  # bars only every other session
    rows = random_rows(traded, seed=41)
    put_bars(spot.id, rows)
    ref = reference_bars(rows, traded, 60)
    expected = talib.SMA(_arrays(ref)["close"], timeperiod=30)
    put_bars(spot.id, random_rows(sessions[12:], seed=42))
    ref_all = reference_bars(rows + random_rows(sessions[12:], seed=42), sessions, 60)
    expected = talib.SMA(_arrays(ref_all)["close"], timeperiod=30)
    first = len(ref)

    body = _series(api, "sma", "1h", sessions[12].open, sessions[-1].close, period="30")

    assert body["warmup"]["bars_required"] == 29
    assert body["warmup"]["bars_found"] >= 29
    assert body["warmup"]["complete"] is True
    _assert_close([p["value"]["sma"] for p in body["time_series"]], expected[first:])


def test_realtime_is_the_last_value(api, market, sessions):
    ref = _ref(market, sessions, "5m")
    expected = talib.RSI(_arrays(ref)["close"], timeperiod=14)

    response = api.get(LIVE + SPOT_KEY + "/rsi", {"timeframe": "5m", "period": "14"})

    assert response.status_code == 200
    body = response.json()
    assert body == {
        "instrument_key": SPOT_KEY,
        "indicator": "rsi",
        "params": {"period": 14},
        "timeframe": "5m",
        "timestamp": "2025-03-13T09:55:00+00:00",
        "value": {"rsi": pytest.approx(expected[-1], rel=0, abs=1e-7)},
        "metadata": {
            "bucket_end": "2025-03-13T10:00:00+00:00",
            "bucket_closed": True,
            "last_bar": "2025-03-13T09:59:00+00:00",
        },
        "warmup": {"memory": "decaying", "bars_required": 574, "bars_found": 599, "complete": True},
    }


def test_realtime_on_a_custom_timeframe_without_a_refresh(api, spot, sessions):
    rows = random_rows(sessions[-3:], seed=43)
    put_bars(spot.id, rows)
    ref = reference_bars(rows, sessions[-3:], 13)

    body = api.get(LIVE + SPOT_KEY + "/sma", {"timeframe": "13m", "period": "4"}).json()

    assert body["value"]["sma"] == pytest.approx(ref["close"].iloc[-4:].mean(), rel=1e-12)
    assert body["timestamp"] == "2025-03-13T09:49:00+00:00"  # 15:19 IST: the last 13m bucket, 11 minutes
    assert body["metadata"]["bucket_end"] == "2025-03-13T10:00:00+00:00"


def test_no_bars_is_a_404(api, spot):
    response = api.get(LIVE + SPOT_KEY + "/rsi")

    assert response.status_code == 404
    assert response.json() == {
        "error": {"code": "no_data", "message": f"no 1-minute bars stored for {SPOT_KEY}", "details": {}}
    }


def _invalid(name, params=None):
    try:
        indicators.validate(name, params)
    except indicators.InvalidIndicator as exc:
        return str(exc)
    raise AssertionError("expected InvalidIndicator")


@pytest.mark.parametrize("url", [HIST, LIVE])
def test_unknown_indicator(api, spot, url):
    response = api.get(url + SPOT_KEY + "/rsx", {"start_time": "2025-03-12", "end_time": "2025-03-13"})

    assert response.status_code == 400
    assert response.json() == {
        "error": {
            "code": "invalid_indicator",
            "message": _invalid("rsx"),
            "details": {"indicator": "rsx", "valid_indicators": indicators.indicator_names()},
        }
    }
    assert "did you mean rsi" in response.json()["error"]["message"]


@pytest.mark.parametrize(
    "params",
    [
        {"period": "abc"},
        {"period": "1"},
        {"period": "14.5"},
        {"foo": "1"},
        {"period": "14", "timeperiod": "14"},
    ],
)
@pytest.mark.parametrize("url", [HIST, LIVE])
def test_bad_indicator_parameters(api, spot, url, params):
    response = api.get(
        url + SPOT_KEY + "/rsi", {"start_time": "2025-03-12", "end_time": "2025-03-13", **params}
    )

    assert response.status_code == 400
    assert response.json() == {
        "error": {
            "code": "invalid_indicator",
            "message": _invalid("rsi", params),
            "details": {
                "indicator": "rsi",
                "parameters": [p.as_dict() for p in indicators.get_spec("rsi").parameters],
            },
        }
    }


def test_a_parameter_given_twice(api, spot):
    response = api.get(HIST + SPOT_KEY + "/rsi?start_time=2025-03-12&end_time=2025-03-13&period=3&period=4")

    assert response.status_code == 400
    assert response.json() == {
        "error": {
            "code": "invalid_parameter",
            "message": "parameter 'period' is given 2 times; give it once",
            "details": {},
        }
    }


@pytest.mark.parametrize(
    "url, params, status, code",
    [
        (
            HIST,
            {"timeframe": "9y", "start_time": "2025-03-12", "end_time": "2025-03-13"},
            400,
            "invalid_timeframe",
        ),
        (LIVE, {"timeframe": "0m"}, 400, "invalid_timeframe"),
        (HIST, {"end_time": "2025-03-13"}, 400, "missing_parameter"),
        (HIST, {"start_time": "2025-03-13", "end_time": "2025-03-12"}, 400, "invalid_range"),
        (HIST, {"start_time": "2024-03-13", "end_time": "2025-03-14"}, 400, "range_too_large"),
    ],
)
def test_bad_timeframe_and_range(api, spot, url, params, status, code):
    response = api.get(url + SPOT_KEY + "/rsi", params)

    assert response.status_code == status
    assert response.json()["error"]["code"] == code


@pytest.mark.parametrize("url", [HIST, LIVE])
@pytest.mark.parametrize(
    "key, status, code",
    [
        ("NSE@NOSUCH@equity_spot", 404, "unknown_instrument"),
        ("NSE@@equity_spot", 400, "invalid_instrument_key"),
    ],
)
def test_bad_keys(api, db, url, key, status, code):
    response = api.get(url + key + "/rsi", {"start_time": "2025-03-12", "end_time": "2025-03-13"})

    assert response.status_code == status
    assert response.json()["error"]["code"] == code


def test_indicator_listing(api, db):
    response = api.get("/api/v2/signals/indicators")

    assert response.status_code == 200
    body = response.json()
    assert body["count"] == len(body["indicators"]) == len(indicators.indicator_names())
    by_name = {i["name"]: i for i in body["indicators"]}
    for name in ("sma", "ema", "wma", "rsi", "macd", "bbands", "atr", "adx", "cci", "mfi", "obv", "stoch", "willr", "roc",
                 "vwap", "supertrend"):  # fmt: skip
        assert name in by_name
    assert by_name["rsi"] == indicators.get_spec("rsi").as_dict()
    assert by_name["rsi"]["parameters"][0]["name"] == "period"


BATCH = "/api/v2/signals/batch/indicators"


def test_batch_reports_each_item(api, market, make_instruments):
    make_instruments("NSE@BANKNIFTY@equity_spot")
    items = [
        {"instrument_key": SPOT_KEY, "indicator": "rsi", "timeframe": "5m", "params": {"period": 14}},
        {"instrument_key": SPOT_KEY, "indicator": "sma", "params": {"period": "3"}},
        {"instrument_key": SPOT_KEY, "indicator": "rsx"},
        {"instrument_key": SPOT_KEY, "indicator": "rsi", "timeframe": "7y"},
        {"instrument_key": "NSE@NOSUCH@equity_spot", "indicator": "rsi"},
        {"instrument_key": "bad", "indicator": "rsi"},
        {"instrument_key": "NSE@BANKNIFTY@equity_spot", "indicator": "rsi"},
        {"instrument_key": SPOT_KEY, "indicator": "rsi", "params": [14]},
        {"instrument_key": SPOT_KEY},
        "rsi",
        {"instrument_key": SPOT_KEY, "indicator": "rsi", "period": 14},
        {"instrument_key": SPOT_KEY, "indicator": "rsi", "timeframe": 5},
    ]

    response = api.post(BATCH, {"items": items}, format="json")

    assert response.status_code == 200
    body = response.json()
    assert (body["requested"], body["succeeded"], body["failed"]) == (12, 2, 10)
    results = body["results"]
    assert [r["index"] for r in results] == list(range(12))
    assert [r["status"] for r in results] == ["ok", "ok"] + ["error"] * 10
    assert (
        results[0]["result"] == api.get(LIVE + SPOT_KEY + "/rsi", {"timeframe": "5m", "period": "14"}).json()
    )
    assert results[1]["result"]["timeframe"] == "1m"
    assert [r["error"]["code"] for r in results[2:]] == [
        "invalid_indicator", "invalid_timeframe", "unknown_instrument", "invalid_instrument_key", "no_data",
        "invalid_input", "invalid_input", "invalid_input", "invalid_input", "invalid_timeframe",
    ]  # fmt: skip
    assert results[2]["error"]["details"]["indicator"] == "rsx"
    assert results[4]["error"]["details"] == {"instrument_key": "NSE@NOSUCH@equity_spot"}


@pytest.mark.parametrize("body", [{}, {"items": []}, {"items": "rsi"}, [1, 2], {"instruments": ["x"]}])
def test_batch_bad_bodies(api, db, body):
    response = api.post(BATCH, body, format="json")

    assert response.status_code == 400
    assert response.json() == {
        "error": {
            "code": "invalid_input",
            "message": 'body must be {"items": [{"instrument_key", "indicator", "timeframe", "params"}, ...]}',
            "details": {},
        }
    }


def test_batch_over_the_limit(api, db, settings):
    settings.API_V2_BATCH_SIZE = 3
    items = [{"instrument_key": SPOT_KEY, "indicator": "rsi"}] * 4

    response = api.post(BATCH, {"items": items}, format="json")

    assert response.status_code == 400
    assert response.json() == {
        "error": {"code": "batch_too_large", "message": "at most 3 items per batch, got 4", "details": {}}
    }


def test_batch_echoes_only_text_fields(api, db):
    """Found by tests/fuzz: an item's non-text field was echoed as is, against the result's schema
    (the echoed fields are strings or null)."""
    items = [{"instrument_key": {}, "indicator": ["rsi"], "timeframe": 5}]

    response = api.post(BATCH, {"items": items}, format="json")

    assert response.status_code == 200
    result = response.json()["results"][0]
    assert (result["instrument_key"], result["indicator"], result["timeframe"]) == (None, None, None)
    assert result["error"]["code"] == "invalid_input"


def test_batch_malformed_json(api, db):
    response = api.generic("POST", BATCH, "{not json", content_type="application/json")

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "malformed_request"


def test_historical_without_bars_is_an_empty_series(api, spot):
    response = api.get(
        HIST + SPOT_KEY + "/macd", {"start_time": "2025-03-12", "end_time": "2025-03-13", "timeframe": "15m"}
    )

    assert response.status_code == 200
    body = response.json()
    assert (body["data_points"], body["time_series"], body["outputs"]) == (
        0,
        [],
        ["macd", "macdsignal", "macdhist"],
    )
    assert body["warmup"]["complete"] is False

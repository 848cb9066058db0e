"""GET historical/bars and available-timeframes: exact JSON, and every kind of bad input."""

from __future__ import annotations

import datetime as dt

import pytest

from tests.timeframes.conftest import SPOT_KEY, put_bars, random_rows, refresh
from tests.timeframes.reference import reference_bars
from timeframes.core.grammar import STANDARD_TIMEFRAMES, TIMEFRAME_GRAMMAR, parse_timeframe

pytestmark = pytest.mark.django_db

URL = "/api/v2/signals/historical/bars/"
DAY = dt.date(2025, 3, 12)
GRAMMAR_DETAILS = {
    "grammar": TIMEFRAME_GRAMMAR,
    "standard_timeframes": list(STANDARD_TIMEFRAMES),
    "min_minutes": 1,
    "max_minutes": 375,
}


@pytest.fixture
def day(spot, nse):
    session = nse.sessions(DAY, DAY)[0]
    rows = random_rows([session], seed=30, with_oi=True)
    put_bars(spot.id, rows)
    return session, rows


def _iso(ts) -> str:
    return ts.to_pydatetime().astimezone(dt.UTC).isoformat()


def _expected_items(rows, session, minutes):
    ref = reference_bars(rows, [session], minutes)
    return [
        {
            "timestamp": _iso(r.start),
            "value": {
                "open": r.open, "high": r.high, "low": r.low, "close": r.close, "volume": r.volume,
                "oi": None if r.oi != r.oi else r.oi,
            },
            "metadata": {"bucket_end": _iso(r.end), "bars": r.count},
        }
        for r in ref.itertuples()
    ]  # fmt: skip


@pytest.mark.parametrize(
    "timeframe, minutes, label", [("1h", 60, "1h"), ("custom_7", 7, "7m"), ("60m", 60, "1h")]
)
def test_bars_of_a_day(api, day, timeframe, minutes, label):
    session, rows = day
    params = {"start_time": "2025-03-12T09:15:00", "end_time": "2025-03-12T15:30:00", "timeframe": timeframe}

    response = api.get(URL + SPOT_KEY, params)

    assert response.status_code == 200
    body = response.json()
    assert body == {
        "instrument_key": SPOT_KEY,
        "start_time": "2025-03-12T03:45:00+00:00",
        "end_time": "2025-03-12T10:00:00+00:00",
        "timeframe": label,
        "data_points": len(body["time_series"]),
        "cache": {"source": "database", "sessions_cached": 0, "sessions_computed": 1},
        "time_series": _expected_items(rows, session, minutes),
    }
    assert body["time_series"][-1]["metadata"]["bucket_end"] == "2025-03-12T10:00:00+00:00"


def test_bars_default_to_one_minute_and_come_from_the_cache_the_second_time(api, day):
    session, rows = day
    refresh()
    params = {"start_time": "2025-03-12T09:15:00+05:30", "end_time": "2025-03-12T09:20:00+05:30"}

    first = api.get(URL + SPOT_KEY, params).json()
    second = api.get(URL + SPOT_KEY, params).json()

    assert first["timeframe"] == "1m"
    assert first["data_points"] == 5
    assert first["time_series"] == _expected_items(rows, session, 1)[:5]
    assert second["cache"] == {"source": "range", "sessions_cached": 1, "sessions_computed": 0}
    assert second["time_series"] == first["time_series"]


def test_bars_of_a_range_without_data(api, spot):
    response = api.get(
        URL + SPOT_KEY, {"start_time": "2025-03-15", "end_time": "2025-03-17", "timeframe": "1d"}
    )

    assert response.status_code == 200
    body = response.json()
    assert (body["data_points"], body["time_series"]) == (0, [])


def test_daily_bars(api, day):
    session, rows = day

    body = api.get(
        URL + SPOT_KEY, {"start_time": "2025-03-12", "end_time": "2025-03-13", "timeframe": "1d"}
    ).json()

    assert body["time_series"] == _expected_items(rows, session, None)
    assert body["time_series"][0]["metadata"]["bars"] == 375


@pytest.mark.parametrize(
    "timeframe", ["0m", "7x", "376m", "7h", "2d", "5M", "", " 5m", "05m", "1.5h", "60", "custom_0"]
)
def test_bad_timeframe(api, spot, timeframe):
    response = api.get(
        URL + SPOT_KEY, {"start_time": "2025-03-12", "end_time": "2025-03-13", "timeframe": timeframe}
    )

    assert response.status_code == 400
    try:
        parse_timeframe(timeframe)
    except ValueError as exc:
        message = str(exc)
    assert response.json() == {
        "error": {"code": "invalid_timeframe", "message": message, "details": GRAMMAR_DETAILS}
    }


@pytest.mark.parametrize(
    "params, code, message",
    [
        ({"end_time": "2025-03-13"}, "missing_parameter", "start_time is required (ISO-8601)"),
        ({"start_time": "2025-03-12"}, "missing_parameter", "end_time is required (ISO-8601)"),
        (
            {"start_time": "yesterday", "end_time": "2025-03-13"},
            "invalid_parameter",
            "start_time='yesterday' is not an ISO-8601 time (e.g. 2025-07-10T09:15:00+05:30)",
        ),
        (
            {"start_time": "2025-03-13", "end_time": "2025-03-12"},
            "invalid_range",
            "end_time must be after start_time",
        ),
        (
            {"start_time": "2025-03-12", "end_time": "2025-03-12"},
            "invalid_range",
            "end_time must be after start_time",
        ),
        (
            {"start_time": "2024-01-01", "end_time": "2025-03-12"},
            "range_too_large",
            "the range may span at most 365 days",
        ),
    ],
)
def test_bad_range(api, spot, params, code, message):
    response = api.get(URL + SPOT_KEY, params)

    assert response.status_code == 400
    assert response.json() == {"error": {"code": code, "message": message, "details": {}}}


def test_unknown_instrument(api, db):
    key = "NSE@NOSUCH@equity_spot"

    response = api.get(URL + key, {"start_time": "2025-03-12", "end_time": "2025-03-13"})

    assert response.status_code == 404
    assert response.json() == {
        "error": {
            "code": "unknown_instrument",
            "message": f"unknown instrument '{key}'",
            "details": {"instrument_key": key},
        }
    }


def test_malformed_instrument_key(api, db):
    response = api.get(URL + "NSE@NIFTY@options", {"start_time": "2025-03-12", "end_time": "2025-03-13"})

    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["code"], error["details"]) == ("invalid_instrument_key", {})
    assert "EXCHANGE@SYMBOL@PRODUCT" in error["message"]


AVAILABLE = "/api/v2/signals/historical/available-timeframes/"


def test_available_timeframes(api, day):
    response = api.get(AVAILABLE + SPOT_KEY)

    assert response.status_code == 200
    assert response.json() == {
        "instrument_key": SPOT_KEY,
        "standard_timeframes": ["1m", "5m", "15m", "30m", "1h", "4h", "1d"],
        "custom_timeframes": {
            "grammar": TIMEFRAME_GRAMMAR,
            "min_minutes": 1,
            "max_minutes": 375,
            "examples": ["7m", "45m", "2h", "custom_90"],
            "recently_requested": [],
        },
        "market_calendar": "NSE",
        "data_range": {"start": "2025-03-12T03:45:00+00:00", "end": "2025-03-12T10:00:00+00:00", "bars": 375},
    }


def test_available_timeframes_lists_the_custom_timeframes_in_use(api, day):
    from timeframes.services import custom_timeframes_flush

    api.get(URL + SPOT_KEY, {"start_time": "2025-03-12", "end_time": "2025-03-13", "timeframe": "7m"})
    custom_timeframes_flush()

    body = api.get("/api/v2/signals/available-timeframes/" + SPOT_KEY).json()

    assert body["custom_timeframes"]["recently_requested"] == ["7m"]


def test_available_timeframes_without_data(api, spot):
    body = api.get(AVAILABLE + SPOT_KEY).json()

    assert body["data_range"] == {"start": None, "end": None, "bars": 0}


@pytest.mark.parametrize(
    "key, status, code",
    [("NSE@NOSUCH@equity_spot", 404, "unknown_instrument"), ("bad", 400, "invalid_instrument_key")],
)
def test_available_timeframes_bad_keys(api, db, key, status, code):
    response = api.get(AVAILABLE + key)

    assert response.status_code == status
    assert response.json()["error"]["code"] == code


@pytest.mark.parametrize(
    "start, end, code, message",
    [
        (
            "1900-01-01T00:00:00+00:00",
            "1900-01-02T00:00:00+00:00",
            "invalid_range",
            "start_time and end_time must lie between 1971-01-01 and 2199-01-01",
        ),
        (
            "2199-06-01T00:00:00+00:00",
            "2199-06-02T00:00:00+00:00",
            "invalid_range",
            "start_time and end_time must lie between 1971-01-01 and 2199-01-01",
        ),
        (
            "0001-01-01",
            "0001-01-02",
            "invalid_parameter",
            "start_time='0001-01-01' is out of range",
        ),
    ],
)
def test_times_outside_the_calendar(api, spot, start, end, code, message):
    response = api.get(URL + SPOT_KEY, {"start_time": start, "end_time": end})

    assert response.status_code == 400
    assert response.json() == {"error": {"code": code, "message": message, "details": {}}}

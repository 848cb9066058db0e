"""GET historical/greeks: an option's series and an underlying's ATM series, bucketed."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import transaction

from signalsvc.core.keys import build_key
from signalsvc.db.copy import copy_upsert
from signalsvc.db.partitions import partitions_ensure
from tests.timeframes.conftest import SPOT_KEY

pytestmark = pytest.mark.django_db

URL = "/api/v2/signals/historical/greeks/"
FIELDS = ("iv", "delta", "gamma", "theta", "vega", "rho", "vanna", "vomma", "charm", "option_price")
NEAR, NEXT = dt.date(2025, 3, 13), dt.date(2025, 3, 20)
STRIKES = (22400, 22500, 22600)
OPEN_12 = dt.datetime(2025, 3, 12, 3, 45, tzinfo=dt.UTC)  # 09:15 IST
OPEN_17 = dt.datetime(2025, 3, 17, 3, 45, tzinfo=dt.UTC)  # after NEAR expired
# Forward at minute m of a day: ATM 22500 (nearest), 22500 (tie 22500/22600 -> lower), 22600, ...
FORWARDS = (22460.0, 22550.0, 22590.0, 22510.0, 22440.0, 22449.0, 22551.0)


def value(field: str, strike: int, side: str, expiry: dt.date, minute: int) -> float:
    base = {"call": 1.0, "put": 2.0}[side] + (strike - 22000) / 1000 + (expiry.day / 100)
    return round(base * (1 + FIELDS.index(field)) + minute / 1000, 9)


@pytest.fixture
def chain(make_instruments):
    keys = [SPOT_KEY] + [
        build_key("NSE", "NIFTY", "equity_options", e, side, k)
        for e in (NEAR, NEXT)
        for side in ("call", "put")
        for k in STRIKES
    ]
    instruments = make_instruments(*keys)
    spot = instruments[SPOT_KEY]
    rows = []
    for day_open in (OPEN_12, OPEN_17):
        for minute, forward in enumerate(FORWARDS):
            ts = day_open + dt.timedelta(minutes=minute)
            for inst in instruments.values():
                if (
                    inst.product != "equity_options"
                    or inst.expiry < (ts + dt.timedelta(hours=5, minutes=30)).date()
                ):
                    continue
                side, strike = inst.option_type, int(inst.strike)
                if minute == 5 and side == "put":
                    continue  # a minute where the puts were not computed: the ATM value is the call alone
                fwd = forward + (10.0 if inst.expiry == NEXT else 0.0)
                values = [value(f, strike, side, inst.expiry, minute) for f in FIELDS]
                rows.append(
                    (inst.id, ts, spot.id, inst.expiry, float(strike), side, "black76", ts, 22480.0 + minute, fwd,
                     "parity", values[-1], "mid", 0.01, values[0], 0, *values[1:-1], ts)
                )  # fmt: skip
    with transaction.atomic():
        partitions_ensure(table="greeks_option_1m", start=OPEN_12, end=OPEN_17 + dt.timedelta(days=1))
        copy_upsert(
            table="greeks_option_1m",
            columns=[
                "instrument_id",
                "ts",
                "underlying_id",
                "expiry",
                "strike",
                "option_type",
                "model",
                "source_ts",
                "underlying_price",
                "forward",
                "forward_source",
                "option_price",
                "price_source",
                "time_to_expiry",
                "iv",
                "iv_reason",
                "delta",
                "gamma",
                "theta",
                "vega",
                "rho",
                "vanna",
                "vomma",
                "charm",
                "computed_at",
            ],
            rows=rows,
            conflict=["instrument_id", "ts"],
            update_sql="iv = excluded.iv",
        )
        _write_atm_rows(instruments, spot)
    return instruments


def _write_atm_rows(instruments, spot) -> None:
    """The ATM IV table as the chain task writes it for these chains: per minute and expiry, the
    strike nearest the forward (tie: lower) with its call and put (the puts missing at minute 5)."""
    options = {(i.expiry, i.option_type, int(i.strike)): i for i in instruments.values() if i.expiry}
    sides = ("call", "put")
    columns = ["underlying_id", "expiry", "ts", "source_ts", "model", "underlying_price", "forward",
               "forward_source", "time_to_expiry", "atm_strike", "iv", "call_iv", "put_iv", "option_count",
               "call_instrument_id", "put_instrument_id",
               *(f"{side}_{f}" for side in sides for f in FIELDS[1:]), "computed_at"]  # fmt: skip
    rows = []
    for day_open in (OPEN_12, OPEN_17):
        for minute, forward in enumerate(FORWARDS):
            ts = day_open + dt.timedelta(minutes=minute)
            for expiry in (NEAR, NEXT):
                if expiry < (ts + dt.timedelta(hours=5, minutes=30)).date():
                    continue
                fwd = forward + (10.0 if expiry == NEXT else 0.0)
                strike = min(STRIKES, key=lambda k: (abs(k - fwd), k))
                present = [s for s in sides if not (minute == 5 and s == "put")]
                side_values = {
                    s: [value(f, strike, s, expiry, minute) if s in present else None for f in FIELDS]
                    for s in sides
                }
                rows.append(
                    (spot.id, expiry, ts, ts, "black76", 22480.0 + minute, fwd, "parity", 0.01, float(strike),
                     0.15, side_values["call"][0], side_values["put"][0], 6,
                     options[(expiry, "call", strike)].id,
                     options[(expiry, "put", strike)].id if "put" in present else None,
                     *side_values["call"][1:], *side_values["put"][1:], ts)
                )  # fmt: skip
    partitions_ensure(table="signal_atm_iv", start=OPEN_12, end=OPEN_17 + dt.timedelta(days=1))
    copy_upsert(
        table="signal_atm_iv",
        columns=columns,
        rows=rows,
        conflict=["underlying_id", "expiry", "ts"],
        update_sql="iv = excluded.iv",
    )


def _get(api, key, **params):
    base = {"start_time": "2025-03-12T09:15:00", "end_time": "2025-03-12T09:22:00"}
    return api.get(URL + key, {**base, **params})


def test_option_series_per_minute(api, chain):
    key = build_key("NSE", "NIFTY", "equity_options", NEAR, "call", 22500)

    response = _get(api, key)

    assert response.status_code == 200
    body = response.json()
    assert {
        k: body[k]
        for k in ("instrument_key", "start_time", "end_time", "timeframe", "agg", "series", "data_points")
    } == {
        "instrument_key": key,
        "start_time": "2025-03-12T03:45:00+00:00",
        "end_time": "2025-03-12T03:52:00+00:00",
        "timeframe": "1m",
        "agg": "last",
        "series": "option",
        "data_points": 7,
    }
    first = body["time_series"][0]
    assert first["timestamp"] == "2025-03-12T03:45:00+00:00"
    assert first["value"] == {
        **{f: value(f, 22500, "call", NEAR, 0) for f in FIELDS},
        "underlying_price": 22480.0,
    }
    assert first["metadata"] == {
        "bucket_end": "2025-03-12T03:46:00+00:00",
        "observations": 1,
        "model": "black76",
        "forward": 22460.0,
        "forward_source": "parity",
        "price_source": "mid",
        "time_to_expiry": 0.01,
        "source_ts": "2025-03-12T03:45:00+00:00",
    }


@pytest.mark.parametrize("agg", ["last", "mean"])
def test_option_series_bucketed(api, chain, agg):
    key = build_key("NSE", "NIFTY", "equity_options", NEAR, "put", 22400)

    body = _get(api, key, timeframe="5m", agg=agg).json()

    assert [p["timestamp"] for p in body["time_series"]] == [
        "2025-03-12T03:45:00+00:00",
        "2025-03-12T03:50:00+00:00",
    ]
    first, second = body["time_series"]
    assert first["metadata"]["bucket_end"] == "2025-03-12T03:50:00+00:00"
    assert first["metadata"]["observations"] == 5
    assert second["metadata"]["observations"] == 1  # minute 5 has no put row; minute 6 has
    if agg == "last":
        assert first["value"]["iv"] == value("iv", 22400, "put", NEAR, 4)
        assert first["metadata"]["forward"] == FORWARDS[4]
    else:
        expected = sum(value("iv", 22400, "put", NEAR, m) for m in range(5)) / 5
        assert first["value"]["iv"] == pytest.approx(expected, rel=1e-15)
        assert first["value"]["underlying_price"] == pytest.approx(22482.0)


def _atm_expected(minute: int, expiry: dt.date, strike: int) -> dict:
    sides = ("call",) if minute == 5 else ("call", "put")
    mean = {f: sum(value(f, strike, s, expiry, minute) for s in sides) / len(sides) for f in FIELDS}
    return mean


def test_atm_series_of_an_underlying(api, chain):
    response = _get(api, SPOT_KEY)

    assert response.status_code == 200
    body = response.json()
    assert (body["series"], body["data_points"]) == ("atm", 7)
    strikes = [p["metadata"]["atm_strike"] for p in body["time_series"]]
    assert strikes == [22500.0, 22500.0, 22600.0, 22500.0, 22400.0, 22400.0, 22600.0]
    for minute, point in enumerate(body["time_series"]):
        strike = int(strikes[minute])
        meta = point["metadata"]
        assert meta["expiry"] == "2025-03-13"
        assert meta["forward"] == FORWARDS[minute]
        assert meta["call_instrument_key"] == build_key(
            "NSE", "NIFTY", "equity_options", NEAR, "call", strike
        )
        expected = _atm_expected(minute, NEAR, strike)
        for f in FIELDS:
            assert point["value"][f] == pytest.approx(expected[f], rel=1e-15), (minute, f)
        assert point["value"]["call"]["iv"] == value("iv", strike, "call", NEAR, minute)
        if minute == 5:
            assert point["value"]["put"]["iv"] is None
            assert meta["put_instrument_key"] is None
        else:
            assert point["value"]["put"]["iv"] == value("iv", strike, "put", NEAR, minute)


def test_atm_rolls_to_the_next_expiry_once_the_nearest_has_expired(api, chain):
    body = api.get(
        URL + SPOT_KEY, {"start_time": "2025-03-17T09:15:00", "end_time": "2025-03-17T09:17:00"}
    ).json()

    assert [p["metadata"]["expiry"] for p in body["time_series"]] == ["2025-03-20", "2025-03-20"]
    # NEXT's forward is 10 higher: 22470 -> 22500, 22560 -> 22600.
    assert [p["metadata"]["atm_strike"] for p in body["time_series"]] == [22500.0, 22600.0]


def test_atm_of_a_pinned_expiry(api, chain):
    body = _get(api, SPOT_KEY, expiry_date="2025-03-20", timeframe="1h").json()

    assert body["data_points"] == 1
    point = body["time_series"][0]
    assert point["metadata"]["expiry"] == "2025-03-20"
    assert point["metadata"]["observations"] == 7
    assert point["metadata"]["atm_strike"] == 22600.0  # last minute: forward 22561


@pytest.mark.parametrize(
    "params, code, message",
    [
        ({"agg": "median"}, "invalid_parameter", "agg='median': expected last or mean"),
        (
            {"expiry_date": "2025-13-01"},
            "invalid_parameter",
            "expiry_date='2025-13-01' is not an ISO date (YYYY-MM-DD)",
        ),
    ],
)
def test_bad_greeks_params(api, chain, params, code, message):
    response = _get(api, SPOT_KEY, **params)

    assert response.status_code == 400
    assert response.json() == {"error": {"code": code, "message": message, "details": {}}}


def test_expiry_date_is_for_underlyings_only(api, chain):
    key = build_key("NSE", "NIFTY", "equity_options", NEAR, "call", 22500)

    response = _get(api, key, expiry_date="2025-03-13")

    assert response.status_code == 400
    assert response.json() == {
        "error": {
            "code": "invalid_parameter",
            "message": "expiry_date applies to underlying keys only; an option key has its own expiry",
            "details": {},
        }
    }


def test_futures_have_no_greeks(api, make_instruments):
    key = "NSE@NIFTY@equity_futures@2025-03-27"
    make_instruments(key)

    response = _get(api, key)

    assert response.status_code == 400
    assert response.json() == {
        "error": {
            "code": "not_an_option",
            "message": f"{key} has no Greeks: use an option key, or an underlying (equity_spot) key for its ATM series",
            "details": {},
        }
    }


def test_greeks_bad_timeframe_and_unknown_key(api, db):
    bad = _get(api, "NSE@NOSUCH@equity_spot", timeframe="7q")
    unknown = _get(api, "NSE@NOSUCH@equity_spot")

    assert (bad.status_code, bad.json()["error"]["code"]) == (400, "invalid_timeframe")
    assert (unknown.status_code, unknown.json()["error"]["code"]) == (404, "unknown_instrument")


def test_greeks_range_without_rows(api, chain):
    body = api.get(URL + SPOT_KEY, {"start_time": "2025-03-14", "end_time": "2025-03-15"}).json()

    assert (body["data_points"], body["time_series"]) == (0, [])

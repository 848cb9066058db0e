"""Realtime and batch moneyness endpoints on the simulated market: shapes, values from the latest
chain, and a clear error for every kind of bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest

from greeks.services import chain_compute
from signalsvc.core.keys import parse_key

pytestmark = pytest.mark.django_db

BASE = "/api/v2/signals/realtime/moneyness/"
NIFTY = "NSE@NIFTY@equity_spot"
GREEK_FIELDS = {"delta", "gamma", "theta", "vega", "rho", "iv", "count"}


@pytest.fixture
def live(demo_market, redis_client):
    for key in (NIFTY, "NSE@BANKNIFTY@equity_spot"):
        chain_compute(underlying_key=key, client=redis_client)
    return demo_market.truth()


def _expiries(truth, symbol="NIFTY"):
    return sorted(truth["underlyings"][symbol]["expiries"])


def test_the_seed_level_example(api, live):
    response = api.get(BASE + "NIFTY/greeks/ATM")

    assert response.status_code == 200
    body = response.json()
    assert {
        "underlying",
        "spot_price",
        "moneyness_level",
        "expiry",
        "timestamp",
        "aggregated_greeks",
        "strikes",
    } <= set(body)
    assert (body["underlying"], body["moneyness_level"], body["expiry"]) == (
        "NIFTY",
        "ATM",
        _expiries(live)[0],
    )
    assert set(body["aggregated_greeks"]) == {"all", "calls", "puts"}
    for group in body["aggregated_greeks"].values():
        assert set(group) == GREEK_FIELDS
    atm = body["aggregated_greeks"]
    assert (atm["all"]["count"], atm["calls"]["count"], atm["puts"]["count"]) == (2, 1, 1)
    assert 0.4 < atm["calls"]["delta"] < 0.6 and -0.6 < atm["puts"]["delta"] < -0.4
    assert body["strikes"]["count"] == 1 and body["strikes"]["min"] == body["strikes"]["max"]


def test_the_seed_otm_delta_example(api, live):
    response = api.get(BASE + "NIFTY/otm-delta", {"delta": "0.05", "option_type": "put"})

    assert response.status_code == 200
    body = response.json()
    assert {"underlying", "expiry", "delta_target", "option_type", "strike", "instrument_key", "greeks", "iv",
            "interpolated", "timestamp"} <= set(body)  # fmt: skip
    assert (body["delta_target"], body["option_type"]) == (0.05, "put")
    assert abs(body["greeks"]["delta"] + 0.05) < 0.02
    assert body["strike"] < body["forward"]
    key = parse_key(body["instrument_key"])
    assert (key.option_type, float(key.strike), key.expiry.isoformat()) == (
        "put",
        body["strike"],
        body["expiry"],
    )
    interpolated = body["interpolated"]
    assert interpolated["strike"] is not None and interpolated["iv"] > 0


def test_a_symbol_and_its_key_give_the_same_answer(api, live):
    by_symbol = api.get(BASE + "NIFTY/greeks/OTM2").json()
    by_key = api.get(BASE + NIFTY + "/greeks/otm2").json()
    assert by_symbol == by_key


def _members(api, level):
    body = api.get(BASE + "NIFTY/greeks/" + level, {"include": "instruments"}).json()
    return body, {m["option_type"]: m for m in body["instruments"]}


def test_a_step_level_that_is_not_stored_is_computed_from_the_latest_chain(api, live):
    atm = api.get(BASE + "NIFTY/atm-iv").json()["atm_strike"]
    body, sides = _members(api, "OTM7")
    assert (sides["put"]["strike"], sides["call"]["strike"]) == (atm - 7 * 50, atm + 7 * 50)  # NIFTY: 50
    assert (body["strikes"]["min"], body["strikes"]["max"], body["strikes"]["count"]) == (
        atm - 350,
        atm + 350,
        2,
    )
    assert body["aggregated_greeks"]["calls"]["delta"] == sides["call"]["delta"]


@pytest.mark.parametrize(("level", "target"), [("ITM40delta", 0.60), ("OTM12.5delta", 0.125)])
def test_a_delta_level_that_is_not_stored_picks_the_nearest_delta(api, live, level, target):
    body, sides = _members(api, level)
    assert set(sides) == {"call", "put"}
    for side in sides.values():
        assert abs(abs(side["delta"]) - target) < 0.05, side
    itm = level.startswith("ITM")
    assert (sides["call"]["strike"] < body["forward"]) == itm
    assert (sides["put"]["strike"] > body["forward"]) == itm


@pytest.mark.parametrize("band", ["DOTM", "ITM"])
def test_a_band_holds_exactly_the_options_on_its_side_of_the_forward(api, live, band):
    body = api.get(BASE + "NIFTY/greeks/" + band, {"include": "instruments"}).json()
    forward = body["forward"]
    members = body["instruments"]
    assert len(members) > 2
    for m in members:
        k = math.log(m["strike"] / forward)
        itm = k < 0 if m["option_type"] == "call" else k > 0
        assert itm == (band == "ITM")
        assert (abs(k) > 0.05) == band.startswith("D")
    priced = sum(m["iv"] is not None for m in members)
    assert body["aggregated_greeks"]["all"]["count"] == priced


def test_a_later_expiry(api, live):
    later = _expiries(live)[-1]
    body = api.get(BASE + "NIFTY/greeks/ATM", {"expiry_date": later}).json()
    assert body["expiry"] == later
    assert body["time_to_expiry"] > 0.02


def test_include_instruments_lists_the_members(api, live):
    body = api.get(BASE + "NIFTY/greeks/OTM1", {"include": "instruments"}).json()
    members = body["instruments"]
    assert len(members) == 2
    sides = {m["option_type"]: m for m in members}
    assert sides["call"]["strike"] > body["forward"] > sides["put"]["strike"]
    for m in members:
        key = parse_key(m["instrument_key"])
        assert (key.option_type, float(key.strike)) == (m["option_type"], m["strike"])


def test_atm_iv(api, live):
    body = api.get(BASE + "NIFTY/atm-iv").json()
    truth = live["underlyings"]["NIFTY"]["expiries"][body["expiry"]]
    assert {"underlying", "moneyness", "expiry", "iv", "call_iv", "put_iv", "iv_skew", "forward", "atm_strike",
            "timestamp", "option_count"} <= set(body)  # fmt: skip
    assert body["moneyness"] == "ATM"
    assert body["iv"] == pytest.approx(truth["atm_vol"], abs=0.0025)
    assert body["iv_skew"] == pytest.approx(body["put_iv"] - body["call_iv"])


def test_atm_iv_at_a_constant_maturity(api, live):
    body = api.get(BASE + "NIFTY/atm-iv", {"tenor": "30d"}).json()
    assert (body["tenor"], body["status"]) == ("30d", "interpolated")
    assert body["lower"]["time_to_expiry"] <= 30 / 365 <= body["upper"]["time_to_expiry"]
    lo, hi = sorted([body["lower"]["iv"], body["upper"]["iv"]])
    assert lo - 0.01 <= body["iv"] <= hi + 0.01
    # One side only: said so, never extrapolated.
    short = api.get(BASE + "NIFTY/atm-iv", {"tenor": "1d"}).json()
    assert (short["iv"], short["status"]) == (None, "only_longer_expiries")


def test_smile(api, live):
    body = api.get(BASE + "NIFTY/smile").json()
    assert body["fit"]["status"] == "ok"
    assert body["fit"]["rmse_vol"] < 0.003
    points = body["points"]
    assert len(points) > 100
    assert all((p["option_type"] == "call") == (p["strike"] >= body["forward"]) for p in points)
    near = [p for p in points if abs(p["log_moneyness"]) < 0.02 and p["iv"] is not None]
    assert near and all(abs(p["iv"] - p["fitted_iv"]) < 0.003 for p in near)


def test_summary(api, live, redis_client):
    # The demo market's date is fixed: a lookback of ten years keeps its minute in the history.
    body = api.get(BASE + "NIFTY/summary", {"lookback_days": "3650"}).json()
    # The open interest of the expiry's options, read from their latest ticks (not the snapshot).
    oi = {"call": {}, "put": {}}
    for name in redis_client.scan_iter(f"md:last:NSE@NIFTY@equity_options@{body['expiry']}@*"):
        key = parse_key(name.removeprefix("md:last:"))
        oi[key.option_type][float(key.strike)] = float(redis_client.hget(name, "oi"))
    pcr = body["put_call_ratio"]["open_interest"]
    assert pcr["ratio"] == pytest.approx(sum(oi["put"].values()) / sum(oi["call"].values()), rel=1e-12)
    assert body["put_call_ratio"]["volume"]["ratio"] > 0
    strikes = sorted(set(oi["call"]) | set(oi["put"]))

    def payout(s):
        return sum(q * max(s - k, 0) for k, q in oi["call"].items()) + sum(
            q * max(k - s, 0) for k, q in oi["put"].items()
        )

    assert body["max_pain"]["strike"] == min(strikes, key=lambda s: (payout(s), s))
    distribution = body["moneyness_distribution"]
    assert list(distribution) == ["DITM", "ITM", "ATM", "OTM", "DOTM"]
    assert sum(band["all"]["count"] for band in distribution.values()) == 2 * len(strikes)
    rank = body["iv_rank"]
    assert (rank["tenor"], rank["history"]["observations"]) == ("30d", 1)  # one computed minute so far


# -- bad input ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "params", "status", "code", "says"),
    [
        (
            "NIFTY/otm-delta",
            {"delta": "0", "option_type": "put"},
            400,
            "invalid_parameter",
            "between 0 and 0.5",
        ),
        (
            "NIFTY/otm-delta",
            {"delta": "0.7", "option_type": "put"},
            400,
            "invalid_parameter",
            "between 0 and 0.5",
        ),
        (
            "NIFTY/otm-delta",
            {"delta": "abc", "option_type": "put"},
            400,
            "invalid_parameter",
            "between 0 and 0.5",
        ),
        (
            "NIFTY/otm-delta",
            {"delta": "nan", "option_type": "put"},
            400,
            "invalid_parameter",
            "between 0 and 0.5",
        ),
        ("NIFTY/otm-delta", {"option_type": "put"}, 400, "missing_parameter", "delta"),
        (
            "NIFTY/otm-delta",
            {"delta": "0.25", "option_type": "both"},
            400,
            "invalid_parameter",
            "call or put",
        ),
        ("NIFTY/otm-delta", {"delta": "0.25"}, 400, "missing_parameter", "call or put"),
        ("NIFTY/greeks/ATMX", {}, 400, "invalid_level", "ITM<n> or OTM<n>"),
        ("NIFTY/greeks/OTM0", {}, 400, "invalid_level", "n must be 1..200"),
        ("NIFTY/greeks/OTM60delta", {}, 400, "invalid_level", "between 0 and 50"),
        ("NIFTY/greeks/OTM200", {}, 422, "level_beyond_chain", "beyond the listed strikes"),
        ("NIFTY/greeks/ATM", {"expiry_date": "2026-13-01"}, 400, "invalid_parameter", "YYYY-MM-DD"),
        ("NIFTY/greeks/ATM", {"expiry_date": "2026-11-24"}, 422, "expiry_expired", "live expiries"),
        ("NIFTY/greeks/ATM", {"expiry_date": "2031-01-07"}, 404, "unknown_expiry", "live expiries"),
        ("NIFTY/greeks/ATM", {"include": "everything"}, 400, "invalid_parameter", "instruments"),
        ("NOSUCH/greeks/ATM", {}, 404, "unknown_underlying", "NSE@NOSUCH@equity_spot"),
        ("NSE@NIFTY@equity_futures@2026-12-29/atm-iv", {}, 400, "not_an_underlying", "NIFTY"),
        ("NSE@@x/atm-iv", {}, 400, "invalid_underlying", "EXCHANGE@SYMBOL@PRODUCT"),
        ("NIFTY/atm-iv", {"tenor": "30x"}, 400, "invalid_parameter", "Nd"),
        ("NIFTY/atm-iv", {"tenor": "0d"}, 400, "invalid_parameter", "Nd"),
        ("NIFTY/atm-iv", {"tenor": "30d", "expiry_date": "2026-12-29"}, 400, "invalid_parameter", "not both"),
        ("NIFTY/summary", {"lookback_days": "-1"}, 400, "invalid_parameter", "1..3650"),
        # Found by tests/fuzz (were 500s): int() refuses more than 4300 digits and "²".isdigit().
        ("NIFTY/summary", {"lookback_days": "9" * 5000}, 400, "invalid_parameter", "1..3650"),
        ("NIFTY/summary", {"lookback_days": "²"}, 400, "invalid_parameter", "1..3650"),
    ],
)
def test_bad_input_gets_a_clear_error(api, live, path, params, status, code, says):
    response = api.get(BASE + path, params)

    assert response.status_code == status, response.content
    error = response.json()["error"]
    assert error["code"] == code
    assert says in error["message"]


def test_an_underlying_without_a_computed_chain_is_a_404(api, make_instruments):
    make_instruments("NSE@FINNIFTY@equity_spot")
    response = api.get(BASE + "FINNIFTY/greeks/ATM")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "no_data"


def test_a_level_without_priced_options_is_count_0_and_nulls(api, demo_market, redis_client, monkeypatch):
    """Deep in-the-money quotes below intrinsic have no IV: the DITM calls of a short expiry can all be
    unpriced; whatever the level, no priced option means a count of 0 and nulls, never zeros."""
    from greeks import services

    real = services.chain_price

    def without_iv(**kwargs):
        chain = real(**kwargs)
        chain.iv[:] = np.nan
        for values in chain.values.values():
            values[:] = np.nan
        return chain

    monkeypatch.setattr(services, "chain_price", without_iv)
    chain_compute(underlying_key=NIFTY, client=redis_client)
    body = api.get(BASE + "NIFTY/greeks/ATM").json()
    for group in body["aggregated_greeks"].values():
        assert group == {
            "delta": None,
            "gamma": None,
            "theta": None,
            "vega": None,
            "rho": None,
            "iv": None,
            "count": 0,
        }
    assert body["strikes"]["count"] == 1  # the ATM strike is listed; its options have no IV


# -- batch ---------------------------------------------------------------------------------------------------


def test_batch_reports_per_item_errors_without_failing(api, live):
    later = _expiries(live)[-1]
    response = api.post(
        "/api/v2/signals/batch/moneyness/greeks",
        {
            "items": [
                {"underlying": "NIFTY", "moneyness_level": "ATM"},
                {"underlying": NIFTY, "moneyness_level": "OTM25delta", "expiry_date": later},
                {"underlying": "BANKNIFTY", "moneyness_level": "bad"},
                {"underlying": "NOSUCH", "moneyness_level": "ATM"},
                "not an object",
            ]
        },
        format="json",
    )

    assert response.status_code == 200
    body = response.json()
    assert (body["requested"], body["succeeded"], body["failed"]) == (5, 2, 3)
    results = body["results"]
    assert results[0]["result"]["moneyness_level"] == "ATM"
    assert results[1]["result"]["expiry"] == later
    assert [r["error"]["code"] for r in results[2:]] == [
        "invalid_level",
        "unknown_underlying",
        "invalid_input",
    ]
    assert api.get(BASE + "NIFTY/greeks/ATM").json() == results[0]["result"]


@pytest.mark.parametrize(
    ("body", "code"),
    [({}, "invalid_input"), ({"items": []}, "invalid_input"), ([1], "invalid_input"),
     ({"items": [{"underlying": "NIFTY", "moneyness_level": "ATM"}] * 101}, "batch_too_large")],
)  # fmt: skip
def test_batch_bad_bodies(api, db, body, code):
    response = api.post("/api/v2/signals/batch/moneyness/greeks", body, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == code


def test_batch_echoes_only_text_fields(api, db):
    """Found by tests/fuzz: an item's non-text field was echoed as is, against the result's schema
    (the echoed fields are strings or null)."""
    response = api.post(
        "/api/v2/signals/batch/moneyness/greeks",
        {
            "items": [
                {"underlying": 7, "moneyness_level": {}},
                {"underlying": "NIFTY", "moneyness_level": ["ATM"]},
            ]
        },
        format="json",
    )

    assert response.status_code == 200
    results = response.json()["results"]
    assert [(r["underlying"], r["moneyness_level"]) for r in results] == [(None, None), ("NIFTY", None)]
    assert [r["error"]["code"] for r in results] == ["invalid_input", "invalid_input"]


def test_realtime_reads_never_recompute_the_chain(api, live, monkeypatch):
    from greeks import services

    def fail(**kwargs):
        raise AssertionError("a realtime read recomputed the chain")

    monkeypatch.setattr(services, "chain_price", fail)
    for path in ("NIFTY/greeks/OTM7", "NIFTY/atm-iv", "NIFTY/smile", "NIFTY/summary"):
        assert api.get(BASE + path).status_code == 200


@pytest.mark.parametrize(
    "path",
    [
        "realtime/moneyness/NIFTY/greeks/ATM",
        "realtime/moneyness/NIFTY/atm-iv?tenor=30d",
        "realtime/greeks/{key}",
    ],
)
def test_an_unreachable_redis_is_a_503_not_a_500(api, live, settings, path):
    key = next(iter(live["underlyings"]["NIFTY"]["expiries"].values()))["options"]
    path = path.format(key=next(iter(key)))
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there
    response = api.get("/api/v2/signals/" + path)
    assert response.status_code == 503, response.content
    assert response.json()["error"]["code"] == "redis_unavailable"
    assert response["Retry-After"] == "5"

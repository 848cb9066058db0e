from __future__ import annotations

import datetime as dt
import itertools
import json
import math

import numpy as np
import pytest

from signalsvc.core.keys import parse_key
from signalsvc.simulator import DemoMarket
from tests.signalsvc.simulator.conftest import START
from tests.signalsvc.simulator.reference import black76, expiry_instant, implied_vol, vega, years


def chains(truth):
    for symbol, underlying in truth["underlyings"].items():
        for expiry in underlying["expiries"].values():
            yield symbol, underlying, expiry


def atm_keys(expiry):
    """The call and put keys of the listed strike nearest the forward."""
    options = expiry["options"]
    strike = min({o["strike"] for o in options.values()}, key=lambda k: abs(k - expiry["forward"]))
    return [key for key, o in options.items() if o["strike"] == strike]


def test_truth_is_json(recording):
    truth = recording.steps[-1][2]
    assert json.loads(json.dumps(truth, allow_nan=False)) == truth
    assert dt.datetime.fromisoformat(truth["timestamp"]) == recording.steps[-1][0]
    assert (truth["rate"], truth["dividend_yield"], truth["model"]) == (0.065, 0.0, "black76")


def test_time_to_expiry_forward_and_discount(recording):
    now, _, truth = recording.steps[-1]
    for _, underlying, expiry in chains(truth):
        day = dt.date.fromisoformat(expiry["expiry"])
        assert dt.datetime.fromisoformat(expiry["expiry_ts"]) == expiry_instant(day)
        assert expiry["t"] == pytest.approx(years(now, day), rel=1e-12)
        assert expiry["forward"] == pytest.approx(
            underlying["spot"] * math.exp(0.065 * expiry["t"]), rel=1e-12
        )
        assert expiry["discount"] == pytest.approx(math.exp(-0.065 * expiry["t"]), rel=1e-12)


def test_futures_trade_at_fair_basis(recording):
    for now, ticks, truth in recording.steps:
        by_key = {t.key: t for t in ticks}
        for underlying in truth["underlyings"].values():
            for key, future in underlying["futures"].items():
                fair = underlying["spot"] * math.exp(
                    0.065 * years(now, dt.date.fromisoformat(future["expiry"]))
                )
                assert future["fair_price"] == pytest.approx(fair, rel=1e-12)
                # tiny noise (1e-5 relative stdev) and the 0.05 rounding
                assert abs(future["price"] / fair - 1) < 6e-5
                assert abs(by_key[key].ltp - future["price"]) <= 0.025 + 1e-9


def test_expiry_future_price_matches_the_listed_future(recording):
    truth = recording.steps[-1][2]
    seen = 0
    for _, underlying, expiry in chains(truth):
        if expiry["kind"] == "monthly":
            assert underlying["futures"][expiry["future_key"]]["price"] == expiry["future_price"]
            seen += 1
        else:
            assert (expiry["future_key"], expiry["future_price"]) == (None, None)
    assert seen == 5  # NIFTY's two monthlies and BANKNIFTY's three


def test_truth_prices_are_black76_of_the_true_vol(recording):
    truth = recording.steps[-1][2]
    for _, _, expiry in chains(truth):
        for option in expiry["options"].values():
            expected = black76(
                expiry["forward"],
                option["strike"],
                expiry["t"],
                option["vol"],
                0.065,
                option["type"] == "call",
            )
            assert option["price"] == pytest.approx(expected, rel=1e-9, abs=1e-10)
            assert option["k"] == pytest.approx(math.log(option["strike"] / expiry["forward"]), abs=1e-12)


def test_put_call_parity_on_the_truth(recording):
    truth = recording.steps[-1][2]
    for _, _, expiry in chains(truth):
        calls = {o["strike"]: o["price"] for o in expiry["options"].values() if o["type"] == "call"}
        puts = {o["strike"]: o["price"] for o in expiry["options"].values() if o["type"] == "put"}
        assert calls.keys() == puts.keys()
        for strike, call in calls.items():
            parity = expiry["discount"] * (expiry["forward"] - strike)
            assert call - puts[strike] == pytest.approx(parity, abs=1e-9 * expiry["forward"])


def test_call_and_put_share_the_true_vol(recording):
    truth = recording.steps[-1][2]
    for _, _, expiry in chains(truth):
        by_strike = {}
        for option in expiry["options"].values():
            by_strike.setdefault(option["strike"], set()).add(option["vol"])
        assert all(len(vols) == 1 for vols in by_strike.values())


def ssvi(k, theta, rho, eta, gamma):
    """Independent SSVI with power-law phi (Gatheral & Jacquier 2014)."""
    phi = eta / (theta**gamma * (1 + theta) ** (1 - gamma))
    return theta / 2 * (1 + rho * phi * k + np.sqrt((phi * k + rho) ** 2 + 1 - rho**2))


def test_vols_follow_the_published_surface(recording):
    truth = recording.steps[-1][2]
    for _, _, expiry in chains(truth):
        s = expiry["surface"]
        assert expiry["atm_vol"] == pytest.approx(math.sqrt(s["theta"] / expiry["t"]), rel=1e-12)
        for option in expiry["options"].values():
            w = ssvi(option["k"], s["theta"], s["rho"], s["eta"], s["gamma"])
            assert option["vol"] == pytest.approx(math.sqrt(w / expiry["t"]), rel=1e-12)


def test_surface_has_realistic_levels_and_put_skew(recording):
    truth = recording.steps[-1][2]
    for symbol, _, expiry in chains(truth):
        assert 0.07 < expiry["atm_vol"] < 0.35, symbol
        s, t = expiry["surface"], expiry["t"]
        vol = {
            k: math.sqrt(ssvi(k, s["theta"], s["rho"], s["eta"], s["gamma"]) / t) for k in (-0.05, 0.0, 0.05)
        }
        assert vol[-0.05] > vol[0.0] and vol[-0.05] > vol[0.05]
        assert vol[-0.05] - vol[0.05] < 0.15  # skew, but not absurd


def test_no_butterfly_arbitrage_on_the_listed_strikes(recording):
    truth = recording.steps[-1][2]
    for _, _, expiry in chains(truth):
        calls = sorted((o["strike"], o["price"]) for o in expiry["options"].values() if o["type"] == "call")
        prices = np.array([price for _, price in calls])
        assert np.all(np.diff(prices) < 1e-9)  # decreasing in strike
        assert np.all(np.diff(prices, 2) > -1e-8)  # convex in strike
        # the risk-neutral density, with the published surface, on a fine grid (Durrleman's g >= 0)
        s = expiry["surface"]
        k = np.linspace(-0.4, 0.4, 4001)
        w = ssvi(k, s["theta"], s["rho"], s["eta"], s["gamma"])
        w1, w2 = np.gradient(w, k), np.gradient(np.gradient(w, k), k)
        g = (1 - k * w1 / (2 * w)) ** 2 - w1**2 / 4 * (1 / w + 0.25) + w2 / 2
        assert g.min() > 0


def test_no_calendar_arbitrage_between_expiries(recording):
    truth = recording.steps[-1][2]
    k = np.linspace(-0.4, 0.4, 801)
    for underlying in truth["underlyings"].values():
        expiries = sorted(underlying["expiries"].values(), key=lambda e: e["t"])
        total = [
            ssvi(k, e["surface"]["theta"], e["surface"]["rho"], e["surface"]["eta"], e["surface"]["gamma"])
            for e in expiries
        ]
        for near, far in itertools.pairwise(total):
            assert np.all(far >= near)


def test_true_vol_and_price_lookups_match_the_truth():
    market = DemoMarket(start=START, seed=7)
    market.step(START + dt.timedelta(seconds=1))
    truth = market.truth()
    for _, _, expiry in chains(truth):
        for key in atm_keys(expiry):
            assert market.true_vol(key) == expiry["options"][key]["vol"]
            assert market.true_price(key) == expiry["options"][key]["price"]


def test_implied_vol_of_atm_ltp_and_mid_recovers_the_true_vol(recording):
    """The acceptance check: brentq on Black-76 (same F, r, t) within 0.1 vol points."""
    checked = 0
    for now, ticks, truth in recording.steps:
        published = {t.key: t for t in ticks}
        for _, _, expiry in chains(truth):
            t = years(now, dt.date.fromisoformat(expiry["expiry"]))
            for key in atm_keys(expiry):
                if key not in published:
                    continue
                tick, option = published[key], expiry["options"][key]
                is_call = option["type"] == "call"
                for price in (tick.ltp, 0.5 * (tick.bid + tick.ask)):
                    iv = implied_vol(price, expiry["forward"], option["strike"], t, 0.065, is_call)
                    assert abs(iv - option["vol"]) < 0.001
                checked += 1
    assert checked > 100


def test_implied_vol_error_is_only_the_price_rounding(recording):
    """For every out-of-the-money option worth at least a rupee, |IV error| <= half a tick / vega."""
    now, ticks, truth = recording.steps[-1]
    checked = 0
    for tick in ticks:
        parsed = parse_key(tick.key)
        if not parsed.is_option:
            continue
        expiry = truth["underlyings"][parsed.symbol]["expiries"][parsed.expiry.isoformat()]
        option = expiry["options"][tick.key]
        otm = (option["k"] > 0) == (option["type"] == "call")
        if not otm or tick.ltp < 1.0:
            continue
        t = years(now, parsed.expiry)
        iv = implied_vol(tick.ltp, expiry["forward"], option["strike"], t, 0.065, option["type"] == "call")
        bound = 0.025 / vega(expiry["forward"], option["strike"], t, min(iv, option["vol"]), 0.065)
        assert abs(iv - option["vol"]) <= bound * 1.01 + 1e-9
        checked += 1
    assert checked > 50


def test_write_truth_is_atomic_json(tmp_path):
    market = DemoMarket(start=START, seed=7)
    path = tmp_path / "demo" / "truth.json"
    assert market.write_truth(path) == path
    market.step(START + dt.timedelta(seconds=1))
    market.write_truth(path)
    assert json.loads(path.read_text()) == market.truth()
    assert [p.name for p in path.parent.iterdir()] == ["truth.json"]

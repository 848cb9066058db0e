from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pytest

from signalsvc.simulator import DemoMarket, MarketConfig
from signalsvc.simulator.dynamics import ProcessParams, cir_step
from tests.signalsvc.simulator.conftest import START
from tests.signalsvc.simulator.reference import KOLKATA, implied_vol, years

FEW_STRIKES = MarketConfig(strike_range=0.005)  # the path does not depend on the strikes
SPOTS = ("NSE@NIFTY@equity_spot", "NSE@BANKNIFTY@equity_spot")


def realised_vol(closes) -> float:
    """Annualised in calendar time, like the model (the demo market runs 24x7)."""
    returns = np.diff(np.log(closes))
    return float(np.sqrt(np.sum(returns**2) * 365 / ((len(closes) - 1) / 144)))


def simulate_day(seed: int):
    market = DemoMarket(start=START, seed=seed, config=FEW_STRIKES)
    path = {key: [] for key in SPOTS}
    inst_vol = {key: [] for key in SPOTS}
    for i in range(0, 144 + 1):  # a day of 10-minute steps
        for tick in market.step(START + dt.timedelta(minutes=10 * i)):
            if tick.key in path:
                path[tick.key].append(tick.ltp)
        for key, underlying in zip(SPOTS, ("NIFTY", "BANKNIFTY"), strict=True):
            inst_vol[key].append(market.truth()["underlyings"][underlying]["instantaneous_vol"])
    return market, path, inst_vol


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_realised_vol_of_a_simulated_day_is_realistic(seed):
    _, path, inst_vol = simulate_day(seed)
    for key in SPOTS:
        rv = realised_vol(path[key])
        assert 0.06 < rv < 0.30, key
        # and consistent with the model's own instantaneous vol (jumps and sampling aside)
        assert 0.6 < rv / float(np.mean(inst_vol[key])) < 1.5, key
        assert abs(math.log(path[key][-1] / path[key][0])) < 0.06


def test_spot_stays_in_a_realistic_band_over_a_month():
    config = MarketConfig(strike_range=0.005, max_substep_seconds=3 * 3600)
    market = DemoMarket(start=START, seed=13, config=config)
    for hours in range(3, 24 * 30 + 1, 3):
        market.step(START + dt.timedelta(hours=hours))
    assert 20000 < market.spot("NIFTY") < 30000
    assert 45000 < market.spot("BANKNIFTY") < 65000
    truth = market.truth()
    for underlying in truth["underlyings"].values():
        assert 0.03 < underlying["instantaneous_vol"] < 0.5


@pytest.mark.parametrize("seconds", [1.0, 86400.0])
def test_variance_transition_is_exact_for_any_step(seconds):
    n = 200_000
    kappa, theta, xi, v0 = 5.0, 0.0169, 0.22, 0.03
    full = np.ones(n)
    params = ProcessParams(
        kappa=kappa * full,
        theta=theta * full,
        xi=xi * full,
        rho=-0.6 * full,
        jump_intensity=0 * full,
        jump_mean=0 * full,
        jump_stdev=0 * full,
        anchor_log=0 * full,
        pull=0 * full,
        chol=np.eye(1),
    )
    dt_years = seconds / (365 * 86400)
    v_next, z = cir_step(np.random.default_rng(1), v0 * full, dt_years, params)
    decay = math.exp(-kappa * dt_years)
    mean = theta + (v0 - theta) * decay
    var = v0 * xi**2 * decay * (1 - decay) / kappa + theta * xi**2 * (1 - decay) ** 2 / (2 * kappa)
    assert np.all(v_next > 0)
    assert v_next.mean() == pytest.approx(mean, abs=5 * math.sqrt(var / n))
    assert v_next.var() == pytest.approx(var, rel=0.02)
    assert abs(z.mean()) < 0.01 and z.std() == pytest.approx(1.0, rel=0.01)


def test_atm_implied_vol_recovered_an_hour_before_expiry():
    start = dt.datetime(2025, 10, 7, 14, 30, tzinfo=KOLKATA)
    market = DemoMarket(start=start, seed=21)
    checked = 0
    for s in range(1, 31):
        now = start + dt.timedelta(seconds=s)
        ticks = {t.key: t for t in market.step(now)}
        expiry = market.truth()["underlyings"]["NIFTY"]["expiries"]["2025-10-07"]
        strike = min(
            {o["strike"] for o in expiry["options"].values()}, key=lambda k: abs(k - expiry["forward"])
        )
        for key, option in expiry["options"].items():
            if option["strike"] == strike and key in ticks:
                t = years(now, dt.date(2025, 10, 7))
                iv = implied_vol(
                    ticks[key].ltp, expiry["forward"], strike, t, 0.065, option["type"] == "call"
                )
                assert abs(iv - option["vol"]) < 0.001
                checked += 1
    assert checked >= 10


# ---------------------------------------------------------------- history


@pytest.fixture(scope="module")
def day_of_history():
    market = DemoMarket(start=START, seed=7)
    ticks = market.step(START + dt.timedelta(seconds=30))
    end = market.now
    return market, {t.key: t for t in ticks}, end, market.history(end=end, minutes=1440)


def test_history_bars_cover_the_minutes_before_end(day_of_history):
    market, _, end, bars = day_of_history
    keys = [s.key for s in market.instruments() if s.product in ("equity_spot", "equity_futures")]
    assert len(bars) == 1440 * len(keys)
    last = end.replace(second=0, microsecond=0)
    minutes = sorted({b.ts for b in bars})
    assert minutes == [last - dt.timedelta(minutes=1440 - m) for m in range(1440)]
    assert all(b.ts.utcoffset() == dt.timedelta(0) for b in bars)
    for ts in minutes[:3]:
        assert sorted(b.key for b in bars if b.ts == ts) == sorted(keys)


def test_history_ends_at_the_current_prices(day_of_history):
    _, ticks, _, bars = day_of_history
    final = {b.key: b for b in bars[-8:]}
    for key, bar in final.items():
        assert bar.close == ticks[key].ltp
        assert bar.oi == ticks[key].oi


def test_history_bars_are_consistent(day_of_history):
    _, _, _, bars = day_of_history
    previous_close = {}
    for bar in bars:
        assert bar.low <= min(bar.open, bar.close) <= max(bar.open, bar.close) <= bar.high
        for price in (bar.open, bar.high, bar.low, bar.close):
            assert price > 0 and abs(price * 20 - round(price * 20)) < 1e-6
        assert bar.volume >= 0 and bar.oi >= 0
        if "futures" in bar.key:
            assert bar.oi > 0
        if bar.key in previous_close:
            assert bar.open == previous_close[bar.key]
        previous_close[bar.key] = bar.close


def test_history_has_a_realistic_vol(day_of_history):
    _, _, _, bars = day_of_history
    for key in SPOTS:
        closes = [b.close for b in bars if b.key == key]
        rv = float(np.sqrt(np.sum(np.diff(np.log(closes)) ** 2) * 365))
        assert 0.06 < rv < 0.30, key


def test_history_is_deterministic(day_of_history):
    market, _, end, bars = day_of_history
    assert market.history(end=end, minutes=1440) == bars


def test_history_rejects_bad_arguments():
    market = DemoMarket(start=START)
    assert market.history(end=START, minutes=0) == []
    with pytest.raises(ValueError, match="after the market time"):
        market.history(end=START + dt.timedelta(minutes=5), minutes=10)
    with pytest.raises(ValueError, match="minutes must be"):
        market.history(end=START, minutes=-1)
    with pytest.raises(ValueError, match="timezone-aware"):
        market.history(end=dt.datetime(2025, 10, 6, 10, 0), minutes=10)

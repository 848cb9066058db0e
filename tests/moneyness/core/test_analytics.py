"""Aggregated Greeks, ATM IV in total variance, options by delta: against chains priced by our
engine from known smiles, where the right answer is known in closed form."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy.stats import norm

from greeks import engine
from moneyness.core.analytics import aggregate_greeks, atm_iv, otm_by_delta

R = 0.065


def priced_chain(forward, t, vol_of, strikes):
    """Calls and puts at every strike, Greeks from the engine (Black-76) at ``vol_of(k)``,
    k = ln(K/F)."""
    strikes = np.repeat(np.asarray(strikes, dtype=float), 2)
    is_call = np.tile([True, False], len(strikes) // 2)
    iv = np.array([vol_of(math.log(k / forward)) for k in strikes])
    option_type = np.where(is_call, "call", "put")
    values = engine.greeks(option_type, forward, strikes, t, R, iv, model="black76")
    values = {f: np.asarray(values[f], dtype=float) for f in ("delta", "gamma", "theta", "vega", "rho")}
    values["iv"] = iv
    return strikes, is_call, values


@given(
    forward=st.floats(20000, 30000),
    t=st.floats(1 / 365, 1.0),
    level=st.floats(0.05, 0.6),
    slope=st.floats(-0.05, 0.05),
    step=st.sampled_from([50.0, 100.0]),
)
def test_atm_iv_is_exact_for_a_smile_linear_in_total_variance(forward, t, level, slope, step):
    # w(k) = level^2 t + slope * t * k: linear in k, so the interpolation is exact at k = 0.
    def vol_of(k):
        return math.sqrt(max(level**2 + slope * k, 1e-6))

    strikes = np.arange(
        round(forward / step) * step - 20 * step, round(forward / step) * step + 21 * step, step
    )
    s, c, values = priced_chain(forward, t, vol_of, strikes)

    result = atm_iv(s, c, forward, t, values["iv"])

    assert result.iv == pytest.approx(vol_of(0.0), rel=1e-12)
    assert result.lower_strike <= forward <= result.upper_strike
    assert result.upper_strike - result.lower_strike <= step
    atm = result.atm_strike
    assert result.call_iv == pytest.approx(vol_of(math.log(atm / forward)))
    assert result.skew == pytest.approx(result.put_iv - result.call_iv)


def test_atm_iv_skips_strikes_without_an_iv_and_is_nan_without_a_bracket():
    forward, t = 24030.0, 0.05
    s, c, values = priced_chain(forward, t, lambda k: 0.15, np.arange(23500.0, 24600.0, 100.0))
    iv = values["iv"].copy()
    iv[(s == 24100.0) & c] = np.nan  # nearest OTM call has no IV: the next one up is used

    result = atm_iv(s, c, forward, t, iv)

    assert (result.lower_strike, result.upper_strike) == (24000.0, 24200.0)
    assert result.iv == pytest.approx(0.15, rel=1e-12)
    no_calls = np.where(c, np.nan, iv)
    assert math.isnan(atm_iv(s, c, forward, t, no_calls).iv)
    assert math.isnan(atm_iv(s, c, forward, 0.0, iv).iv)


def test_a_strike_at_the_forward_uses_both_options_there():
    s, c, values = priced_chain(24000.0, 0.1, lambda k: 0.2 + k, np.arange(23500.0, 24600.0, 100.0))
    iv = values["iv"].copy()
    iv[(s == 24000.0) & ~c] = 0.22  # put and call IVs differ at K = F

    result = atm_iv(s, c, 24000.0, 0.1, iv)

    assert result.iv == pytest.approx(math.sqrt((0.2**2 + 0.22**2) / 2), rel=1e-12)
    assert (result.call_iv, result.put_iv) == (pytest.approx(0.2), pytest.approx(0.22))
    assert result.skew == pytest.approx(0.02)


def test_aggregated_greeks_are_means_over_the_level_per_type():
    forward, t = 24030.0, 0.05
    s, c, values = priced_chain(forward, t, lambda k: 0.15 - 0.1 * k, np.arange(23000.0, 25050.0, 50.0))
    values["iv"][(s == 24050.0) & ~c] = np.nan  # an option the engine could not price
    for field in ("delta", "gamma", "theta", "vega", "rho"):
        values[field][(s == 24050.0) & ~c] = np.nan

    stats = aggregate_greeks("OTM", s, c, forward, values)

    otm_calls = c & (s > forward) & (np.abs(np.log(s / forward)) <= 0.05)
    otm_puts = ~c & (s < forward) & (np.abs(np.log(s / forward)) <= 0.05)
    assert stats["calls"].count == otm_calls.sum()
    assert stats["calls"].delta == pytest.approx(values["delta"][otm_calls].mean())
    assert stats["puts"].vega == pytest.approx(np.nanmean(values["vega"][otm_puts]))
    assert stats["all"].count == stats["calls"].count + stats["puts"].count
    assert stats["all"].iv == pytest.approx(np.nanmean(values["iv"][otm_calls | otm_puts]))
    atm = aggregate_greeks("ATM", s, c, forward, values)
    # ATM is 24050 (nearest 24030); its put has no IV, so only the call counts.
    assert (atm["calls"].count, atm["puts"].count, atm["all"].count) == (1, 0, 1)
    assert atm["all"].delta == pytest.approx(values["delta"][(s == 24050.0) & c][0])
    empty = aggregate_greeks("ITM200", s, c, forward, values)
    assert empty["all"].count == 0 and math.isnan(empty["all"].delta)


@pytest.mark.parametrize("call", [True, False])
@pytest.mark.parametrize("target", [0.05, 0.1, 0.25, 0.4])
def test_the_strike_at_an_exact_delta_matches_the_closed_form_on_a_flat_smile(call, target):
    forward, t, vol = 24000.0, 30 / 365, 0.14
    s, c, values = priced_chain(forward, t, lambda k: vol, np.arange(20000.0, 28010.0, 10.0))

    pick = otm_by_delta(target, call, s, c, forward, values["delta"], values["iv"])

    # Black-76: |delta| = e^{-rt} N(+-d1), d1 = (-ln(K/F) + vol^2 t / 2) / (vol sqrt t).
    d1 = norm.ppf(target * math.exp(R * t)) * (1 if call else -1)
    exact = forward * math.exp(-(d1 * vol * math.sqrt(t)) + 0.5 * vol**2 * t)
    assert pick.interpolated_strike == pytest.approx(exact, abs=2.0)  # 10-point strike grid
    assert pick.interpolated_iv == pytest.approx(vol, rel=1e-12)
    chosen = s[pick.index]
    assert abs(chosen - exact) <= 10.0 and bool(c[pick.index]) is call
    assert (chosen > forward) if call else (chosen < forward)


def test_no_out_of_the_money_option_no_pick():
    s = np.array([24000.0, 24000.0])
    c = np.array([True, False])
    pick = otm_by_delta(0.25, True, s, c, 24100.0, np.array([0.4, -0.6]), np.array([0.2, 0.2]))
    assert pick.index is None and pick.interpolated_strike is None
    with pytest.raises(ValueError, match=r"between 0 and 0\.5"):
        otm_by_delta(0.5, True, s, c, 24100.0, np.array([0.4, -0.6]), np.array([0.2, 0.2]))


@given(
    forward=st.floats(23000, 25000),
    t=st.floats(2 / 365, 0.3),
    holes=st.lists(st.integers(0, 80), max_size=10),
    unpriced=st.lists(st.integers(0, 161), max_size=40),
)
def test_levels_at_once_equal_each_level_alone(forward, t, holes, unpriced):
    """The stacked computation of many levels gives what level_greeks gives for each, including
    missing quotes (no IV, no Greeks) and holes in the strike ladder."""
    from moneyness.core.analytics import level_greeks, levels_greeks
    from moneyness.core.levels import parse_level

    ladder = np.delete(np.arange(22000.0, 26050.0, 50.0), holes)
    strikes, is_call, values = priced_chain(forward, t, lambda k: 0.13 - 0.2 * k + 0.5 * k * k, ladder)
    missing = [i for i in unpriced if i < len(strikes)]
    for array in values.values():
        array[missing] = np.nan
    names = [
        "ATM",
        "ITM1",
        "OTM3",
        "ITM",
        "OTM",
        "DITM",
        "DOTM",
        "OTM5delta",
        "OTM25delta",
        "ITM25delta",
        "OTM90",
    ]
    levels = [parse_level(n) for n in names]

    together = levels_greeks(levels, strikes, is_call, forward, values)

    for level, got in zip(levels, together, strict=True):
        alone = level_greeks(level, strikes, is_call, forward, values)
        assert got.level == alone.level
        assert (got.members == alone.members).all()
        assert (got.strike_min, got.strike_max, got.strike_count) == pytest.approx(
            (alone.strike_min, alone.strike_max, alone.strike_count), nan_ok=True
        )
        for group in ("all", "calls", "puts"):
            a, b = got.groups[group], alone.groups[group]
            assert a.count == b.count
            for field in ("delta", "gamma", "theta", "vega", "rho", "iv"):
                assert getattr(a, field) == pytest.approx(
                    getattr(b, field), rel=1e-12, abs=1e-15, nan_ok=True
                )
        assert got.interpolated == alone.interpolated

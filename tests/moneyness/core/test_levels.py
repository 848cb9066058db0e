"""Moneyness levels of a chain: grammar, ATM, strike steps, bands, delta levels."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from moneyness.core.levels import InvalidLevel, atm_strike, level_members, parse_level

STRIKES = np.arange(23000.0, 25050.0, 100.0)  # 23000 .. 25000


def chain(strikes=STRIKES):
    """Every strike twice: the call, then the put."""
    return np.repeat(strikes, 2), np.tile([True, False], len(strikes))


@pytest.mark.parametrize(
    ("text", "name", "kind"),
    [
        ("ATM", "ATM", "atm"),
        ("atm", "ATM", "atm"),
        ("ITM1", "ITM1", "steps"),
        ("OTM12", "OTM12", "steps"),
        ("itm", "ITM", "band"),
        ("DOTM", "DOTM", "band"),
        ("DITM", "DITM", "band"),
        ("OTM25delta", "OTM25delta", "delta"),
        ("otm5DELTA", "OTM5delta", "delta"),
        ("ITM25delta", "ITM25delta", "delta"),
        ("OTM12.5delta", "OTM12.5delta", "delta"),
    ],
)
def test_grammar(text, name, kind):
    level = parse_level(text)
    assert (level.name, level.kind) == (name, kind)


@pytest.mark.parametrize(
    "text", ["", "ITM0", "OTM201", "OTM0delta", "OTM50delta", "NEAR", "ITM-1", "DATM", None, 3]
)
def test_anything_else_is_refused_with_the_grammar(text):
    with pytest.raises(InvalidLevel, match="levels: ATM; ITM<n>"):
        parse_level(text)


def test_atm_is_the_listed_strike_nearest_the_forward_ties_to_the_lower():
    assert atm_strike(STRIKES, 24040.0) == 24000.0
    assert atm_strike(STRIKES, 24060.0) == 24100.0
    assert atm_strike(STRIKES, 24050.0) == 24000.0  # tie
    assert atm_strike(STRIKES, 10.0) == 23000.0 and atm_strike(STRIKES, 1e9) == 25000.0
    assert math.isnan(atm_strike(np.array([]), 24000.0)) and math.isnan(atm_strike(STRIKES, math.nan))


@given(forward=st.floats(22000, 26000), strikes=st.lists(st.integers(200, 260), min_size=1, max_size=30))
def test_atm_matches_a_brute_force_search(forward, strikes):
    listed = np.array(sorted(set(strikes)), dtype=float) * 100
    best = min(listed.tolist(), key=lambda k: (abs(k - forward), k))
    assert atm_strike(listed, forward) == best


def test_steps_count_listed_strikes_into_and_out_of_the_money_for_each_type():
    strikes, is_call = chain()
    forward = 24030.0  # ATM 24000

    def members(text):
        mask = level_members(parse_level(text), strikes, is_call, forward)
        return sorted(
            zip(strikes[mask].tolist(), np.where(is_call[mask], "call", "put").tolist(), strict=True)
        )

    assert members("ATM") == [(24000.0, "call"), (24000.0, "put")]
    assert members("ITM1") == [(23900.0, "call"), (24100.0, "put")]
    assert members("OTM2") == [(23800.0, "put"), (24200.0, "call")]
    assert members("ITM10") == [(23000.0, "call"), (25000.0, "put")]
    assert members("ITM11") == []  # beyond the listed strikes
    # A chain with holes counts the strikes that are listed, not price distance.
    holes = np.array([23500.0, 23900.0, 24000.0, 24300.0])
    s, c = chain(holes)
    mask = level_members(parse_level("OTM1"), s, c, forward)
    assert sorted(s[mask].tolist()) == [23900.0, 24300.0]


def test_bands_split_at_five_percent_log_moneyness_of_the_forward():
    strikes, is_call = chain(np.array([22000.0, 22900.0, 23900.0, 24000.0, 24100.0, 25100.0, 26000.0]))
    forward = 24000.0  # ln(22900/24000) = -4.7 %, ln(22000/24000) = -8.7 %, ln(25100/24000) = +4.5 %

    def members(text):
        mask = level_members(parse_level(text), strikes, is_call, forward)
        return sorted(
            zip(strikes[mask].tolist(), np.where(is_call[mask], "call", "put").tolist(), strict=True)
        )

    assert members("ITM") == [(22900.0, "call"), (23900.0, "call"), (24100.0, "put"), (25100.0, "put")]
    assert members("DITM") == [(22000.0, "call"), (26000.0, "put")]
    assert members("OTM") == [(22900.0, "put"), (23900.0, "put"), (24100.0, "call"), (25100.0, "call")]
    assert members("DOTM") == [(22000.0, "put"), (26000.0, "call")]
    # Struck exactly at the forward: in neither band. Every other option is in exactly one.
    bands = [level_members(parse_level(b), strikes, is_call, forward) for b in ("ITM", "DITM", "OTM", "DOTM")]
    assert (np.sum(bands, axis=0) == (strikes != forward)).all()


def test_delta_levels_pick_one_option_of_each_type():
    strikes, is_call = chain()
    # Deltas falling with the strike for calls (0.98 .. 0.02), puts = call - 1.
    call_delta = np.linspace(0.98, 0.02, len(STRIKES))
    delta = np.where(is_call, np.repeat(call_delta, 2), np.repeat(call_delta, 2) - 1.0)
    forward = 24000.0

    otm = level_members(parse_level("OTM25delta"), strikes, is_call, forward, delta=delta)
    itm = level_members(parse_level("ITM25delta"), strikes, is_call, forward, delta=delta)

    def brute_force(call: bool, side_of: str, target: float) -> float:
        """The strike a plain search picks: right type and side, |delta| nearest, lower strike on a tie."""
        itm_side = (strikes < forward) if call else (strikes > forward)
        wanted = (is_call == call) & (itm_side if side_of == "ITM" else ~itm_side & (strikes != forward))
        return min(
            strikes[wanted].tolist(),
            key=lambda k: (abs(abs(delta[wanted][strikes[wanted] == k][0]) - target), k),
        )

    def chosen(mask):
        return {
            ("call" if c else "put", k)
            for k, c in zip(strikes[mask].tolist(), is_call[mask].tolist(), strict=True)
        }

    assert chosen(otm) == {("call", brute_force(True, "OTM", 0.25)), ("put", brute_force(False, "OTM", 0.25))}
    assert chosen(itm) == {("call", brute_force(True, "ITM", 0.75)), ("put", brute_force(False, "ITM", 0.75))}
    with pytest.raises(ValueError, match="needs the options' deltas"):
        level_members(parse_level("OTM25delta"), strikes, is_call, forward)


def _members(text, strikes, is_call, forward, delta=None):
    mask = level_members(parse_level(text), strikes, is_call, forward, delta=delta)
    return sorted(zip(strikes[mask].tolist(), np.where(is_call[mask], "call", "put").tolist(), strict=True))


@pytest.mark.parametrize(
    ("forward", "atm"),
    [(24000.0, 24000.0), (24049.99, 24000.0), (24050.0, 24000.0), (24050.01, 24100.0), (23960.0, 24000.0)],
)
def test_steps_on_both_sides_of_the_forward_and_at_a_tie(forward, atm):
    """Whether the forward sits above, below or exactly between two strikes, ATM is the nearest (the
    lower on a tie), and calls and puts step away from it in opposite directions."""
    strikes, is_call = chain()
    assert _members("ATM", strikes, is_call, forward) == [(atm, "call"), (atm, "put")]
    assert _members("ITM2", strikes, is_call, forward) == [(atm - 200, "call"), (atm + 200, "put")]
    assert _members("OTM2", strikes, is_call, forward) == [(atm - 200, "put"), (atm + 200, "call")]


def test_at_the_chains_edges_only_the_side_that_is_listed_remains():
    strikes, is_call = chain()
    low, high = float(STRIKES[0]), float(STRIKES[-1])
    # Forward below the lowest strike: ATM is the lowest; nothing lies "into the money" for a call.
    assert _members("ATM", strikes, is_call, 22000.0) == [(low, "call"), (low, "put")]
    assert _members("ITM1", strikes, is_call, 22000.0) == [(low + 100, "put")]
    assert _members("OTM1", strikes, is_call, 22000.0) == [(low + 100, "call")]
    # Forward above the highest: the mirror image.
    assert _members("ITM1", strikes, is_call, 26000.0) == [(high - 100, "call")]
    assert _members("OTM1", strikes, is_call, 26000.0) == [(high - 100, "put")]
    # The last listed step on each side, and one beyond it.
    assert _members("OTM10", strikes, is_call, 24000.0) == [(low, "put"), (high, "call")]
    assert _members("OTM11", strikes, is_call, 24000.0) == []
    # The lowest strike lies 5.1 % below a forward of 24200: deep, on each type's own side.
    assert (low, "put") in _members("DOTM", strikes, is_call, 24200.0)
    assert (low, "call") in _members("DITM", strikes, is_call, 24200.0)
    assert (high, "put") in _members("ITM", strikes, is_call, 24200.0)


def test_missing_quotes_keep_their_strike_place_but_are_never_a_delta_pick():
    """An option without a quote (no IV, so no delta) still occupies its listed strike: the strike
    ladder and the bands do not move. It just cannot be the option picked by a delta level."""
    strikes, is_call = chain()
    call_delta = np.linspace(0.98, 0.02, len(STRIKES))
    delta = np.where(is_call, np.repeat(call_delta, 2), np.repeat(call_delta, 2) - 1.0)
    forward = 24000.0
    picked = _members("OTM25delta", strikes, is_call, forward, delta=delta)
    assert len(picked) == 2
    # Remove the quotes of exactly the picked options: the next nearest are picked instead.
    missing = delta.copy()
    for strike, side in picked:
        missing[(strikes == strike) & (is_call == (side == "call"))] = np.nan
    repicked = _members("OTM25delta", strikes, is_call, forward, delta=missing)
    assert len(repicked) == 2 and not set(repicked) & set(picked)
    # Steps and bands ignore quotes.
    assert _members("OTM1", strikes, is_call, forward, delta=missing) == _members(
        "OTM1", strikes, is_call, forward
    )
    # No quote at all on one side: that side has no delta pick.
    no_puts = np.where(is_call, delta, np.nan)
    assert [side for _, side in _members("OTM10delta", strikes, is_call, forward, delta=no_puts)] == ["call"]

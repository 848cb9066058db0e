"""The summary: put-call ratio, max pain, the band distribution, IV rank and percentile, on small
hand-computed chains and against brute force."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from moneyness.core.summary import BANDS, band_distribution, iv_rank_percentile, max_pain, put_call_ratio

NAN = math.nan


# --- put-call ratio ---------------------------------------------------------------------------


def test_put_call_ratio_sums_the_known_values():
    is_call = [True, False, True, False, False]
    ratio = put_call_ratio(is_call, [100.0, 150.0, 50.0, NAN, 30.0])

    assert (ratio.puts, ratio.calls) == (180.0, 150.0)
    assert (ratio.put_count, ratio.call_count) == (2, 2)
    assert ratio.ratio == pytest.approx(1.2, rel=1e-15)
    assert ratio.note == ""


@pytest.mark.parametrize(
    ("values", "note"),
    [
        ([0.0, 10.0, 0.0], "the calls' total is 0"),
        ([NAN, 10.0, NAN], "no call has a known value"),
        ([5.0, NAN, 5.0], "no put has a known value"),
    ],
)
def test_put_call_ratio_is_none_without_a_denominator_or_a_numerator(values, note):
    ratio = put_call_ratio([True, False, True], values)

    assert ratio.ratio is None
    assert ratio.note == note


def test_an_unknown_side_total_is_nan_not_zero():
    ratio = put_call_ratio([True, False], [5.0, NAN])

    assert ratio.calls == 5.0
    assert math.isnan(ratio.puts) and ratio.put_count == 0


def test_zero_puts_over_known_calls_is_a_ratio_of_zero():
    assert put_call_ratio([True, False], [5.0, 0.0]).ratio == 0.0


# --- max pain ---------------------------------------------------------------------------------


def chain_of(calls: dict[float, float], puts: dict[float, float]):
    strikes = [*calls, *puts]
    is_call = [True] * len(calls) + [False] * len(puts)
    oi = [*calls.values(), *puts.values()]
    return np.array(strikes), np.array(is_call), np.array(oi)


def test_max_pain_by_hand():
    # S=100: puts 15*10 + 25*20 = 650; S=110: calls 10*10 + puts 25*10 = 350;
    # S=120: calls 10*20 + 20*10 = 400.
    strikes, is_call, oi = chain_of({100.0: 10, 110.0: 20, 120.0: 5}, {100.0: 5, 110.0: 15, 120.0: 25})

    result = max_pain(strikes, is_call, oi)

    assert (result.strike, result.total_payout) == (110.0, 350.0)
    assert result.options_with_oi == 6


def test_max_pain_tie_goes_to_the_lower_strike():
    # S=100 pays the put at 110: 10 * 10; S=110 pays the call at 100: 10 * 10.
    strikes, is_call, oi = chain_of({100.0: 10, 110.0: 0}, {100.0: 0, 110.0: 10})

    assert max_pain(strikes, is_call, oi).strike == 100.0


def test_max_pain_leaves_unknown_oi_out_but_keeps_every_listed_strike_as_a_candidate():
    # Known OI: the 100 call (30) and the 110 put (50); the 120 call's and 130 put's are unknown.
    # S=100: 50*10 = 500; S=110: 30*10 = 300; S=120: 30*20 = 600; S=130: 30*30 = 900.
    strikes = np.array([100.0, 110.0, 120.0, 130.0])
    is_call = np.array([True, False, True, False])
    oi = np.array([30.0, 50.0, NAN, NAN])

    result = max_pain(strikes, is_call, oi)

    assert result.options_with_oi == 2
    assert (result.strike, result.total_payout) == (110.0, 300.0)


def test_a_strike_whose_options_have_no_known_oi_can_be_max_pain():
    # Only the 100 call has OI: S=90 and S=100 both pay 0, and 90 is the lower.
    result = max_pain([90.0, 100.0, 110.0], [False, True, True], [NAN, 10.0, NAN])

    assert (result.strike, result.total_payout) == (90.0, 0.0)


@pytest.mark.parametrize(
    ("oi", "note"),
    [
        ([NAN, NAN], "no option has a known open interest"),
        ([0.0, NAN], "open interest is 0 on every option: every strike pays 0"),
    ],
)
def test_max_pain_is_none_without_open_interest(oi, note):
    result = max_pain([100.0, 110.0], [True, False], oi)

    assert (result.strike, result.total_payout) == (None, None)
    assert result.note == note


def brute_force_max_pain(strikes, is_call, oi):
    best = None
    for s in sorted({k for k in strikes if math.isfinite(k)}):
        payout = 0.0
        for k, call, o in zip(strikes, is_call, oi, strict=True):
            if math.isfinite(o) and math.isfinite(k):
                payout += o * (max(s - k, 0.0) if call else max(k - s, 0.0))
        if best is None or payout < best[1]:  # strict: the lower strike keeps a tie
            best = (s, payout)
    return best


@given(
    st.lists(
        st.tuples(
            st.integers(380, 520).map(lambda i: i * 50.0),
            st.booleans(),
            st.one_of(st.integers(0, 10**7).map(float), st.just(NAN)),
        ),
        min_size=1,
        max_size=60,
    )
)
def test_max_pain_matches_brute_force(options):
    strikes, is_call, oi = (list(column) for column in zip(*options, strict=True))

    result = max_pain(np.array(strikes), np.array(is_call), np.array(oi))

    known = [o for o in oi if math.isfinite(o)]
    if not known or not any(known):
        assert result.strike is None
        return
    strike, payout = brute_force_max_pain(strikes, is_call, oi)
    # Integer strikes and OI keep every sum exact in float64, so ties are exact too.
    assert (result.strike, result.total_payout) == (strike, payout)


# --- band distribution ------------------------------------------------------------------------

STRIKES = np.array([22000.0, 23000.0, 23800.0, 24000.0, 24200.0, 25000.0, 26000.0])
# ln(K/F) at F = 24030: -0.088, -0.044, -0.010, -0.001, 0.007, 0.040, 0.079; ATM strike 24000.


def band_chain():
    strikes = np.concatenate([STRIKES, STRIKES])
    is_call = np.array([True] * 7 + [False] * 7)
    oi = np.array([1.0, 2, 3, 4, 5, 6, 7, 10, 20, 30, 40, 50, 60, 70])
    volume = np.array([1.0, NAN, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, NAN])
    return strikes, is_call, oi, volume


def test_band_distribution_by_hand():
    strikes, is_call, oi, volume = band_chain()

    bands = band_distribution(strikes, is_call, 24030.0, oi, volume)

    assert list(bands) == list(BANDS)
    # calls: 22000 DITM; 23000, 23800 ITM; 24000 ATM; 24200, 25000 OTM; 26000 DOTM
    assert {b: bands[b]["calls"]["count"] for b in BANDS} == {
        "DITM": 1,
        "ITM": 2,
        "ATM": 1,
        "OTM": 2,
        "DOTM": 1,
    }
    assert {b: bands[b]["calls"]["oi"] for b in BANDS} == {
        "DITM": 1,
        "ITM": 5,
        "ATM": 4,
        "OTM": 11,
        "DOTM": 7,
    }
    # puts mirror: 22000 DOTM; 23000, 23800 OTM; 24000 ATM; 24200, 25000 ITM; 26000 DITM
    assert {b: bands[b]["puts"]["oi"] for b in BANDS} == {
        "DITM": 70,
        "ITM": 110,
        "ATM": 40,
        "OTM": 50,
        "DOTM": 10,
    }
    assert bands["ITM"]["calls"]["oi_share"] == pytest.approx(5 / 28)
    assert bands["DITM"]["puts"]["oi_share"] == pytest.approx(70 / 280)
    assert bands["ATM"]["all"] == {
        "count": 2,
        "oi": 44.0,
        "oi_count": 2,
        "oi_share": pytest.approx(44 / 308),
        "volume": 3.0,
        "volume_count": 2,
        "volume_share": pytest.approx(3 / 18),  # calls 6 + puts 12 known
    }
    # the 23000 call's volume is unknown: counted as an option, not as volume
    assert (bands["ITM"]["calls"]["volume"], bands["ITM"]["calls"]["volume_count"]) == (1.0, 1)
    assert bands["DITM"]["puts"]["volume_count"] == 0 and bands["DITM"]["puts"]["volume"] == 0.0


def test_an_option_struck_at_the_forward_is_atm_and_counted_once():
    strikes, is_call, oi, volume = band_chain()

    bands = band_distribution(strikes, is_call, 24000.0, oi, volume)

    assert bands["ATM"]["calls"]["oi"] == 4.0 and bands["ATM"]["puts"]["oi"] == 40.0
    assert sum(bands[b]["all"]["count"] for b in BANDS) == 14


def test_shares_are_none_without_a_total():
    strikes, is_call, _, _ = band_chain()
    nothing = np.full(14, NAN)

    bands = band_distribution(strikes, is_call, 24030.0, nothing, np.zeros(14))

    assert all(bands[b][side]["oi_share"] is None for b in BANDS for side in ("calls", "puts", "all"))
    assert all(bands[b][side]["volume_share"] is None for b in BANDS for side in ("calls", "puts", "all"))
    assert bands["ITM"]["calls"]["count"] == 2


def test_without_a_forward_no_option_is_placed():
    strikes, is_call, oi, volume = band_chain()

    bands = band_distribution(strikes, is_call, NAN, oi, volume)

    assert all(bands[b]["all"]["count"] == 0 and bands[b]["all"]["oi_share"] is None for b in BANDS)


@given(
    forward=st.floats(23000.0, 25000.0),
    options=st.lists(
        st.tuples(
            st.integers(400, 560).map(lambda i: i * 50.0),
            st.booleans(),
            st.one_of(st.floats(0.0, 1e6), st.just(NAN)),
            st.one_of(st.floats(0.0, 1e6), st.just(NAN)),
        ),
        min_size=1,
        max_size=80,
    ),
)
def test_the_bands_partition_the_chain(forward, options):
    strikes, is_call, oi, volume = (np.array(column) for column in zip(*options, strict=True))

    bands = band_distribution(strikes, is_call, forward, oi, volume)

    for side, mask in (("calls", is_call), ("puts", ~is_call), ("all", np.ones(is_call.shape, bool))):
        assert sum(bands[b][side]["count"] for b in BANDS) == mask.sum()
        total_oi = np.nansum(oi[mask])
        assert sum(bands[b][side]["oi"] for b in BANDS) == pytest.approx(total_oi, rel=1e-12, abs=1e-9)
        assert sum(bands[b][side]["oi_count"] for b in BANDS) == np.isfinite(oi[mask]).sum()
        if total_oi > 0:
            assert sum(bands[b][side]["oi_share"] for b in BANDS) == pytest.approx(1.0, rel=1e-12)
        total_volume = np.nansum(volume[mask])
        assert sum(bands[b][side]["volume"] for b in BANDS) == pytest.approx(
            total_volume, rel=1e-12, abs=1e-9
        )


# --- IV rank and percentile -------------------------------------------------------------------


def test_iv_rank_and_percentile_by_hand():
    result = iv_rank_percentile([0.10, 0.20, NAN, 0.15, 0.12], 0.18)

    assert result.rank == pytest.approx(80.0, rel=1e-12)  # (0.18 - 0.10) / (0.20 - 0.10)
    assert result.percentile == 75.0  # 0.10, 0.15, 0.12 of 4 below
    assert (result.observations, result.low, result.high) == (4, 0.10, 0.20)


def test_a_current_iv_beyond_the_history_is_its_own_extreme():
    above = iv_rank_percentile([0.10, 0.20], 0.30)
    below = iv_rank_percentile([0.10, 0.20], 0.05)

    assert (above.rank, above.percentile, above.high) == (100.0, 100.0, 0.30)
    assert (below.rank, below.percentile, below.low) == (0.0, 0.0, 0.05)


def test_percentile_counts_strictly_below():
    assert iv_rank_percentile([0.1, 0.2, 0.2, 0.3], 0.2).percentile == 25.0


@pytest.mark.parametrize(
    ("history", "current", "note"),
    [
        ([0.15], 0.2, "1 finite observation(s) in the history; need 2"),
        ([NAN, NAN, 0.15], 0.2, "1 finite observation(s) in the history; need 2"),
        ([], 0.2, "0 finite observation(s) in the history; need 2"),
        ([0.15, 0.15, 0.15], 0.15, "the history and the current IV are all equal"),
        ([0.1, 0.2], NAN, "the current IV is unknown"),
    ],
)
def test_iv_rank_is_none_not_zero_without_a_range(history, current, note):
    result = iv_rank_percentile(history, current)

    assert (result.rank, result.percentile) == (None, None)
    assert result.note == note

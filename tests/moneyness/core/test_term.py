"""30-day constant-maturity ATM IV: linear in total variance between the bracketing expiries, never
extrapolated."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from moneyness.core.term import DAYS_PER_YEAR, constant_maturity_iv, years_from_days

T30 = years_from_days(30.0)


def test_thirty_days_is_thirty_over_365_years():
    assert DAYS_PER_YEAR == 365.0
    assert T30 == 30.0 / 365.0


def test_a_hand_computed_interpolation():
    # w(7d) = 0.16^2 * 7/365, w(35d) = 0.14^2 * 35/365; weight on 35d = (30 - 7) / (35 - 7).
    t = np.array([7.0, 35.0, 63.0]) / 365.0
    result = constant_maturity_iv(t, [0.16, 0.14, 0.15], target_t=T30)

    weight = 23.0 / 28.0
    w = (1 - weight) * 0.16**2 * 7 / 365 + weight * 0.14**2 * 35 / 365
    assert result.status == "interpolated"
    assert result.iv == pytest.approx(math.sqrt(w / T30), rel=1e-14)
    assert (result.lower_index, result.upper_index) == (0, 1)
    assert (result.lower_t, result.upper_t) == (t[0], t[1])
    assert result.weight == pytest.approx(weight, rel=1e-14)
    assert result.target_days == pytest.approx(30.0)
    assert result.calendar_arbitrage is False


@given(
    level=st.floats(0.0004, 0.25),  # instantaneous forward variance (vol^2 per year)
    intercept=st.floats(0.0, 0.002),
    days=st.lists(st.floats(1.0, 400.0), min_size=2, max_size=8, unique=True),
    target_days=st.floats(1.0, 400.0),
)
def test_exact_on_a_term_structure_linear_in_total_variance(level, intercept, days, target_days):
    # w(t) = intercept + level * t is linear in t, so interpolating it in t is exact.
    t = np.array(days) / DAYS_PER_YEAR
    target = target_days / DAYS_PER_YEAR
    iv = np.sqrt((intercept + level * t) / t)

    result = constant_maturity_iv(t, iv, target_t=target)

    # An expiry within 1e-12 (relative) of the target is the target.
    if t.min() <= target * (1 + 1e-12) and target * (1 - 1e-12) <= t.max():
        assert result.status in ("interpolated", "exact")
        assert result.iv == pytest.approx(math.sqrt((intercept + level * target) / target), rel=1e-9)
    else:
        assert result.status in ("only_shorter_expiries", "only_longer_expiries")
        assert math.isnan(result.iv)


@given(
    ivs=st.lists(st.floats(0.05, 1.0), min_size=2, max_size=2),
    short_days=st.floats(1.0, 29.0),
    long_days=st.floats(31.0, 120.0),
)
def test_the_value_lies_between_the_bracketing_total_variances(ivs, short_days, long_days):
    t = np.array([short_days, long_days]) / DAYS_PER_YEAR
    result = constant_maturity_iv(t, ivs, target_t=T30)

    w = result.iv**2 * T30
    w_short, w_long = ivs[0] ** 2 * t[0], ivs[1] ** 2 * t[1]
    assert result.status == "interpolated"
    assert min(w_short, w_long) * (1 - 1e-12) <= w <= max(w_short, w_long) * (1 + 1e-12)
    assert 0.0 < result.weight < 1.0
    assert result.calendar_arbitrage is bool(w_long < w_short)


def test_only_shorter_expiries_is_nan_not_extrapolated():
    result = constant_maturity_iv(np.array([3.0, 10.0, 24.0]) / 365, [0.2, 0.18, 0.17], target_t=T30)

    assert result.status == "only_shorter_expiries"
    assert math.isnan(result.iv) and math.isnan(result.weight)
    assert (result.lower_index, result.upper_index) == (2, None)
    assert result.lower_t == 24.0 / 365 and math.isnan(result.upper_t)


def test_only_longer_expiries_is_nan_not_extrapolated():
    result = constant_maturity_iv(np.array([45.0, 90.0]) / 365, [0.15, 0.16], target_t=T30)

    assert result.status == "only_longer_expiries"
    assert math.isnan(result.iv)
    assert (result.lower_index, result.upper_index) == (None, 0)
    assert math.isnan(result.lower_t) and result.upper_t == 45.0 / 365


def test_expiries_without_an_iv_or_already_expired_are_skipped():
    t = np.array([28.0, 29.0, 31.0, -1.0, 33.0]) / 365
    iv = np.array([0.15, np.nan, np.nan, 0.5, 0.16])  # 29d and 31d unknown, -1d expired

    result = constant_maturity_iv(t, iv, target_t=T30)

    assert (result.lower_index, result.upper_index) == (0, 4)
    weight = 2.0 / 5.0
    w = (1 - weight) * 0.15**2 * 28 / 365 + weight * 0.16**2 * 33 / 365
    assert result.iv == pytest.approx(math.sqrt(w / T30), rel=1e-14)


def test_an_expiry_at_the_target_is_used_alone():
    t = np.array([7.0, 30.0, 58.0]) / 365
    result = constant_maturity_iv(t, [0.2, 0.14, 0.3], target_t=T30)

    assert result.status == "exact"
    assert result.iv == 0.14
    assert (result.lower_index, result.upper_index) == (1, 1)
    assert result.weight == 1.0


def test_unsorted_input_indexes_refer_to_the_input_order():
    t = np.array([63.0, 7.0, 35.0]) / 365
    result = constant_maturity_iv(t, [0.15, 0.16, 0.14], target_t=T30)

    assert (result.lower_index, result.upper_index) == (1, 2)


def test_of_two_expiries_with_the_same_t_the_first_is_used():
    t = np.array([7.0, 35.0, 7.0, 35.0]) / 365
    result = constant_maturity_iv(t, [0.16, 0.14, 0.5, 0.5], target_t=T30)

    assert (result.lower_index, result.upper_index) == (0, 1)


@pytest.mark.parametrize("iv", [[], [np.nan, np.nan], [0.0, -0.1]])
def test_no_usable_expiry_is_no_data(iv):
    t = np.array([7.0, 35.0][: len(iv)]) / 365

    result = constant_maturity_iv(t, iv, target_t=T30)

    assert result.status == "no_data"
    assert math.isnan(result.iv)
    assert (result.lower_index, result.upper_index) == (None, None)


@pytest.mark.parametrize("target", [0.0, -0.1, math.nan])
def test_a_target_that_is_not_a_positive_maturity_is_refused(target):
    with pytest.raises(ValueError, match="target_t"):
        constant_maturity_iv([0.1], [0.2], target_t=target)


def test_arrays_of_different_lengths_are_refused():
    with pytest.raises(ValueError, match="differ in length"):
        constant_maturity_iv([0.1, 0.2], [0.2], target_t=T30)

"""Implied volatility: round trips over the whole domain, the hard corners, and reason codes."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from greeks.engine import IVReason, describe_reason, greeks, implied_vol, price

HOUR = 1 / (365 * 24)
EPS = np.finfo(np.float64).eps


def reprices(p_solved: np.ndarray, p_target: np.ndarray) -> np.ndarray:
    """The spec's criterion: within 1e-10 relative or 1e-12 absolute."""
    err = np.abs(p_solved - p_target)
    return (err <= 1e-10 * np.abs(p_target)) | (err <= 1e-12)


def forward(S: float, t: float, r: float, q: float, model: str) -> float:
    return S if model == "black76" else S * math.exp((r - q) * t)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    model=st.sampled_from(["black_scholes", "black76"]),
    option_type=st.sampled_from(["call", "put", "c", "p", "CE", "PE"]),
    S=st.floats(1.0, 1e5),
    moneyness=st.floats(-3.0, 3.0),  # ln(F/K) in units of sigma sqrt(t)
    t=st.floats(HOUR, 5.0),
    sigma=st.floats(0.01, 3.0),
    r=st.floats(-0.02, 0.15),
    q=st.floats(0.0, 0.08),
)
def test_round_trip_property(
    model: str, option_type: str, S: float, moneyness: float, t: float, sigma: float, r: float, q: float
) -> None:
    K = forward(S, t, r, q, model) * math.exp(-moneyness * sigma * math.sqrt(t))
    p = price(option_type, S, K, t, r, sigma, q=q, model=model)
    iv, reason = implied_vol(p, option_type, S, K, t, r, q=q, model=model, return_reason=True)
    assert reason == IVReason.OK
    assert reprices(price(option_type, S, K, t, r, iv, q=q, model=model), p)
    assert iv == pytest.approx(sigma, rel=1e-7)


@pytest.mark.parametrize("model", ["black_scholes", "black76"])
def test_round_trip_vectorised_domain(model: str) -> None:
    rng = np.random.default_rng(23 if model == "black76" else 29)
    n = 100_000
    option_type = np.where(rng.random(n) < 0.5, "call", "put")
    S = rng.uniform(1, 5e4, n)
    t = np.exp(rng.uniform(np.log(HOUR), np.log(5), n))
    sigma = np.exp(rng.uniform(np.log(0.01), np.log(3), n))
    r = rng.uniform(-0.02, 0.15, n)
    q = rng.uniform(0, 0.08, n)
    F = S if model == "black76" else S * np.exp((r - q) * t)
    K = F * np.exp(-rng.uniform(-3, 3, n) * sigma * np.sqrt(t))
    p = price(option_type, S, K, t, r, sigma, q=q, model=model)
    iv, reason = implied_vol(p, option_type, S, K, t, r, q=q, model=model, return_reason=True)
    assert (reason == IVReason.OK).all()
    assert reprices(price(option_type, S, K, t, r, iv, q=q, model=model), p).all()
    # and much tighter than the spec in relative terms over this whole domain
    rel = np.abs(price(option_type, S, K, t, r, iv, q=q, model=model) / p - 1)
    assert rel.max() < 1e-10
    np.testing.assert_allclose(iv, sigma, rtol=1e-7)


def test_hull_implied_volatility_example() -> None:
    # Hull, "Options, Futures, and Other Derivatives", ch. "The Black-Scholes-Merton model",
    # implied volatility: a call worth 1.875 with S = 21, K = 20, r = 10 %, T = 0.25 has an
    # implied volatility of 0.235 (23.5 % per annum).
    assert float(implied_vol(1.875, "call", 21.0, 20.0, 0.25, 0.10)) == pytest.approx(0.235, abs=5e-4)


# ---- the hard corners --------------------------------------------------------------------------

S0, R0, Q0 = 100.0, 0.05, 0.02
EXPIRIES = [HOUR, 1 / 365, 0.25, 1.0, 5.0]


def _otm_strike(option_type: str, t: float, log_distance: float) -> float:
    F = S0 * math.exp((R0 - Q0) * t)
    return F * math.exp(log_distance) if option_type == "call" else F * math.exp(-log_distance)


@pytest.mark.parametrize("t", EXPIRIES)
@pytest.mark.parametrize("option_type", ["call", "put"])
@pytest.mark.parametrize("fraction", [1e-12, 1e-9, 1e-6, 1e-3])
def test_deep_out_of_the_money_prices_down_to_1e12_of_spot(
    option_type: str, t: float, fraction: float
) -> None:
    distances = np.array([0.001, 0.01, 0.1, 0.5, 1.0, 2.0])
    K = np.array([_otm_strike(option_type, t, d) for d in distances])
    p = np.full(K.shape, fraction * S0)
    iv, reason = implied_vol(p, option_type, S0, K, t, R0, q=Q0, return_reason=True)
    assert (reason == IVReason.OK).all()
    repriced = price(option_type, S0, K, t, R0, iv, q=Q0)
    # strict relative accuracy, not merely the 1e-12 absolute escape hatch
    np.testing.assert_allclose(repriced, p, rtol=1e-10, atol=0)


@pytest.mark.parametrize("t", EXPIRIES)
@pytest.mark.parametrize("option_type", ["call", "put"])
@pytest.mark.parametrize("time_value", [1e-10, 1e-8, 1e-5])
def test_deep_in_the_money_time_value_down_to_1e10_of_spot(
    option_type: str, t: float, time_value: float
) -> None:
    distances = np.array([0.01, 0.1, 0.5, 1.0, 2.0])
    other = "put" if option_type == "call" else "call"
    K = np.array([_otm_strike(other, t, d) for d in distances])  # OTM for `other` = ITM for us
    sign = 1.0 if option_type == "call" else -1.0
    intrinsic = np.maximum(sign * (S0 * math.exp(-Q0 * t) - K * math.exp(-R0 * t)), 0.0)
    assert (intrinsic > 0).all()
    p = intrinsic + time_value * S0
    iv, reason = implied_vol(p, option_type, S0, K, t, R0, q=Q0, return_reason=True)
    assert (reason == IVReason.OK).all()
    repriced = price(option_type, S0, K, t, R0, iv, q=Q0)
    np.testing.assert_allclose(repriced, p, rtol=1e-10, atol=0)
    # the tiny time value itself is reproduced to what double precision allows: the price is a
    # difference of terms of the size of S and K, so a few ulps of those
    assert (np.abs(repriced - p) <= 8 * EPS * np.maximum(S0, K)).all()


@pytest.mark.parametrize("option_type", ["call", "put"])
@pytest.mark.parametrize("sigma", [0.01, 0.05, 0.2, 1.0, 3.0])
def test_one_hour_expiry_across_strikes(option_type: str, sigma: float) -> None:
    F = S0 * math.exp((R0 - Q0) * HOUR)
    K = F * np.exp(np.linspace(-3, 3, 25) * sigma * math.sqrt(HOUR))
    p = price(option_type, S0, K, HOUR, R0, sigma, q=Q0)
    iv, reason = implied_vol(p, option_type, S0, K, HOUR, R0, q=Q0, return_reason=True)
    assert (reason == IVReason.OK).all()
    np.testing.assert_allclose(price(option_type, S0, K, HOUR, R0, iv, q=Q0), p, rtol=1e-10, atol=0)
    np.testing.assert_allclose(iv, sigma, rtol=1e-7)


@pytest.mark.parametrize("option_type", ["call", "put"])
@pytest.mark.parametrize("gap", [1e-2, 1e-4, 1e-6, 1e-9, 1e-12])
@pytest.mark.parametrize("model", ["black_scholes", "black76"])
def test_prices_just_below_the_upper_bound(option_type: str, gap: float, model: str) -> None:
    t = 1.0
    K = np.array([50.0, 100.0, 200.0])
    # a call is worth less than the discounted forward, a put less than the discounted strike
    underlying_pv = S0 * math.exp(-R0 * t) if model == "black76" else S0 * math.exp(-Q0 * t)
    bound = underlying_pv if option_type == "call" else K * math.exp(-R0 * t)
    p = bound * (1 - gap) * np.ones_like(K)
    iv, reason = implied_vol(p, option_type, S0, K, t, R0, q=Q0, model=model, return_reason=True)
    assert (reason == IVReason.OK).all()
    assert (iv > 1.0).all()  # only huge volatilities get this close to the bound
    np.testing.assert_allclose(price(option_type, S0, K, t, R0, iv, q=Q0, model=model), p, rtol=1e-10, atol=0)


@pytest.mark.parametrize("option_type", ["call", "put"])
def test_prices_just_above_intrinsic_at_short_expiry(option_type: str) -> None:
    t = HOUR
    K = np.array([_otm_strike(option_type, t, d) for d in (0.0005, 0.002, 0.01)])
    p = np.full(K.shape, 1e-12 * S0)
    iv, reason = implied_vol(p, option_type, S0, K, t, R0, q=Q0, return_reason=True)
    assert (reason == IVReason.OK).all()
    np.testing.assert_allclose(price(option_type, S0, K, t, R0, iv, q=Q0), p, rtol=1e-10, atol=0)


# ---- no solution, bad input: NaN with the right reason ------------------------------------------


def test_at_and_below_intrinsic_and_at_and_above_bound() -> None:
    t, K = 0.5, 90.0
    call_intrinsic = S0 * math.exp(-Q0 * t) - K * math.exp(-R0 * t)
    call_bound = S0 * math.exp(-Q0 * t)
    p = np.array([call_intrinsic, call_intrinsic * (1 - 1e-9), 0.0, call_bound, call_bound * 1.01])
    K_ = np.array([K, K, 120.0, K, K])  # the 0.0 price is an OTM call: at its intrinsic value
    iv, reason = implied_vol(p, "call", S0, K_, t, R0, q=Q0, return_reason=True)
    expected = [IVReason.BELOW_INTRINSIC] * 3 + [IVReason.ABOVE_BOUND] * 2
    assert reason.tolist() == expected
    assert np.isnan(iv).all()


def test_put_upper_bound_is_discounted_strike() -> None:
    t, K = 1.0, 120.0
    bound = K * math.exp(-R0 * t)
    iv, reason = implied_vol(
        [bound * (1 - 1e-6), bound, bound * 1.001], "put", S0, K, t, R0, q=Q0, return_reason=True
    )
    assert reason.tolist() == [IVReason.OK, IVReason.ABOVE_BOUND, IVReason.ABOVE_BOUND]
    assert np.isfinite(iv[0]) and np.isnan(iv[1:]).all()


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"price": math.nan}, IVReason.NON_FINITE_INPUT),
        ({"price": math.inf}, IVReason.NON_FINITE_INPUT),
        ({"S": math.nan}, IVReason.NON_FINITE_INPUT),
        ({"S": math.inf}, IVReason.NON_FINITE_INPUT),
        ({"K": -math.inf}, IVReason.NON_FINITE_INPUT),
        ({"t": math.nan}, IVReason.NON_FINITE_INPUT),
        ({"r": math.nan}, IVReason.NON_FINITE_INPUT),
        ({"q": math.inf}, IVReason.NON_FINITE_INPUT),
        ({"S": 0.0}, IVReason.INVALID_INPUT),
        ({"S": -100.0}, IVReason.INVALID_INPUT),
        ({"K": 0.0}, IVReason.INVALID_INPUT),
        ({"price": -0.01}, IVReason.INVALID_INPUT),
        ({"t": 0.0}, IVReason.NON_POSITIVE_TIME),
        ({"t": -0.1}, IVReason.NON_POSITIVE_TIME),
        ({"t": -0.1, "S": math.nan}, IVReason.NON_FINITE_INPUT),  # first applicable check wins
        ({"t": -0.1, "K": -1.0}, IVReason.INVALID_INPUT),
    ],
)
def test_invalid_input_reason(kwargs: dict, expected: IVReason) -> None:
    base = {"price": 5.0, "S": 100.0, "K": 100.0, "t": 0.5, "r": 0.05, "q": 0.0}
    base.update(kwargs)
    args = {k: np.array([base[k], 5.0 if k == "price" else {"S": 100.0, "K": 100.0, "t": 0.5, "r": 0.05, "q": 0.0}[k]])
            for k in base}  # fmt: skip
    iv, reason = implied_vol(
        args["price"], "call", args["S"], args["K"], args["t"], args["r"], q=args["q"], return_reason=True
    )
    assert reason[0] == expected
    assert math.isnan(iv[0])
    # the well-formed neighbour in the same array is solved normally
    assert reason[1] == IVReason.OK and iv[1] > 0


def test_scalar_invalid_input_does_not_raise() -> None:
    iv, reason = implied_vol(5.0, "put", -1.0, 100.0, 0.5, 0.05, return_reason=True)
    assert math.isnan(iv) and reason == IVReason.INVALID_INPUT
    assert iv.shape == () and reason.dtype == np.int8


def test_no_silent_zeros_nan_iff_not_ok() -> None:
    rng = np.random.default_rng(31)
    n = 5_000
    option_type = np.where(rng.random(n) < 0.5, "c", "p")
    K = rng.uniform(50, 150, n)
    t = rng.uniform(-0.1, 1.0, n)
    p = rng.uniform(-1.0, 60.0, n)  # a mix of solvable, below intrinsic, above bound, negative
    p[::97] = np.nan
    iv, reason = implied_vol(p, option_type, 100.0, K, t, 0.05, return_reason=True)
    ok = reason == IVReason.OK
    assert ok.any() and (~ok).any()
    assert np.isfinite(iv[ok]).all() and (iv[ok] > 0).all()
    assert np.isnan(iv[~ok]).all()
    assert set(np.unique(reason).tolist()) <= {int(r) for r in IVReason}
    np.testing.assert_allclose(price(option_type[ok], 100.0, K[ok], t[ok], 0.05, iv[ok]), p[ok], rtol=1e-10)


def test_describe_reason_covers_every_code() -> None:
    texts = {describe_reason(code) for code in IVReason}
    assert len(texts) == len(IVReason)
    assert describe_reason(np.int8(1)) == describe_reason(IVReason.BELOW_INTRINSIC)
    with pytest.raises(ValueError, match="unknown IV reason code 99"):
        describe_reason(99)


def test_reason_codes_are_stable() -> None:
    # stored and sent to clients as integers: the numbering is part of the contract
    assert [(r.name, int(r)) for r in IVReason] == [
        ("OK", 0),
        ("BELOW_INTRINSIC", 1),
        ("ABOVE_BOUND", 2),
        ("NON_POSITIVE_TIME", 3),
        ("NON_FINITE_INPUT", 4),
        ("INVALID_INPUT", 5),
        ("NO_CONVERGENCE", 6),
    ]


# ---- shapes, option types, threads ----------------------------------------------------------------


def test_shapes_and_broadcasting() -> None:
    K = np.array([90.0, 100.0, 110.0, 120.0])[None, :]
    t = np.array([0.1, 0.5, 1.0])[:, None]
    p = price("call", 100.0, K, t, 0.05, 0.3)
    iv = implied_vol(p, "call", 100.0, K, t, 0.05)
    assert iv.shape == (3, 4)
    np.testing.assert_allclose(iv, 0.3, rtol=1e-10)
    assert implied_vol(5.0, "c", 100.0, 100.0, 0.5, 0.05).shape == ()
    iv0, reason0 = implied_vol([], "c", 100.0, 100.0, 0.5, 0.05, return_reason=True)
    assert iv0.shape == (0,) and reason0.shape == (0,)


def test_mixed_option_type_spellings_in_one_array() -> None:
    types = ["call", "PUT", "c", "P", "CE", "pe", "Call", "Pe"]
    is_call = np.array([True, False] * 4)
    p = price(types, 100.0, 105.0, 0.3, 0.05, 0.25)
    np.testing.assert_array_equal(p, price(is_call, 100.0, 105.0, 0.3, 0.05, 0.25))
    np.testing.assert_array_equal(p, price(is_call.astype(int), 100.0, 105.0, 0.3, 0.05, 0.25))
    np.testing.assert_allclose(implied_vol(p, types, 100.0, 105.0, 0.3, 0.05), 0.25, rtol=1e-12)


def test_unknown_option_type_or_model_is_a_caller_error() -> None:
    with pytest.raises(ValueError, match=r"unknown option type.*'straddle'.*call, c, ce, put, p, pe"):
        implied_vol([1.0, 1.0], ["call", "straddle"], 100.0, 100.0, 0.5, 0.05)
    with pytest.raises(ValueError, match="unknown model 'bachelier'; valid models: black_scholes, black76"):
        implied_vol(1.0, "call", 100.0, 100.0, 0.5, 0.05, model="bachelier")


def test_threads_give_identical_results() -> None:
    rng = np.random.default_rng(41)
    n = 70_000  # several chunks
    option_type = rng.random(n) < 0.5
    K = rng.uniform(80, 120, n)
    t = rng.uniform(0.01, 2, n)
    p = price(option_type, 100.0, K, t, 0.05, rng.uniform(0.05, 1.0, n))
    one = implied_vol(p, option_type, 100.0, K, t, 0.05, threads=1, return_reason=True)
    two = implied_vol(p, option_type, 100.0, K, t, 0.05, threads=2, return_reason=True)
    np.testing.assert_array_equal(one[0], two[0])
    np.testing.assert_array_equal(one[1], two[1])
    with pytest.raises(ValueError, match="threads must be >= 1"):
        implied_vol(p, option_type, 100.0, K, t, 0.05, threads=0)


@pytest.mark.parametrize("base_iterations", [0, 1])
def test_safeguarded_fallback_alone_reaches_full_accuracy(
    monkeypatch: pytest.MonkeyPatch, base_iterations: int
) -> None:
    # Normally two Householder steps from Jäckel's guess suffice and the bracketed fallback is
    # only a safety net; force every element through it to prove the net holds.
    from greeks.engine import implied

    monkeypatch.setattr(implied, "_BASE_ITERATIONS", base_iterations)
    rng = np.random.default_rng(43)
    n = 3_000
    option_type = rng.random(n) < 0.5
    t = np.exp(rng.uniform(np.log(HOUR), np.log(5), n))
    sigma = np.exp(rng.uniform(np.log(0.01), np.log(3), n))
    K = 100.0 * np.exp(rng.uniform(-3, 3, n) * sigma * np.sqrt(t))
    p = price(option_type, 100.0, K, t, 0.03, sigma)
    iv, reason = implied_vol(p, option_type, 100.0, K, t, 0.03, return_reason=True)
    assert (reason == IVReason.OK).all()
    assert reprices(price(option_type, 100.0, K, t, 0.03, iv), p).all()
    # sigma itself where the price actually depends on it (not deep ITM with ~zero time value)
    elasticity = greeks(option_type, 100.0, K, t, 0.03, sigma)["vega"] * 100 * sigma / p
    sensitive = elasticity > 1e-3
    assert sensitive.mean() > 0.9
    np.testing.assert_allclose(iv[sensitive], sigma[sensitive], rtol=1e-7)

"""Every Greek against central finite differences of ``price`` (both models, q = 0 and q != 0).

The differences are taken on the engine's own ``price`` in the documented units, so these tests
pin both the formulas and the unit conventions (per day, per vol point, per 1 % rate, charm as
the change of delta as one calendar day passes).
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from greeks.engine import GREEK_KEYS, greeks, price

DAYS = 365.0

# (S, K, t, sigma): ITM/ATM/OTM for calls, short and long dated
POINTS = [
    (100.0, 90.0, 0.5, 0.25),
    (100.0, 100.0, 0.1, 0.30),
    (100.0, 115.0, 1.5, 0.20),
    (24_000.0, 25_000.0, 7 / 365, 0.14),
    (50.0, 45.0, 3.0, 0.60),
]
CASES = [
    pytest.param(model, q, option_type, point, id=f"{model}-q{q}-{option_type}-{i}")
    for (model, q, option_type), (i, point) in itertools.product(
        [("black_scholes", 0.0, "call"), ("black_scholes", 0.0, "put"), ("black_scholes", 0.03, "call"),
         ("black_scholes", 0.03, "put"), ("black76", 0.0, "call"), ("black76", 0.0, "put")],
        enumerate(POINTS),
    )
]  # fmt: skip
R = 0.065


def _p(option_type: str, model: str, q: float, S: float, K: float, t: float, r: float, sigma: float) -> float:
    return float(price(option_type, S, K, t, r, sigma, q=q, model=model))


def _numerical(
    option_type: str, model: str, q: float, S: float, K: float, t: float, sigma: float
) -> dict[str, float]:
    def p(S: float = S, t: float = t, r: float = R, sigma: float = sigma) -> float:
        return _p(option_type, model, q, S, K, t, r, sigma)

    hS = 1e-4 * S
    hv = 1e-4
    ht = 1e-4 * t
    hr = 1e-5
    base = p()
    d_dS = (p(S=S + hS) - p(S=S - hS)) / (2 * hS)
    d2_dS2 = (p(S=S + hS) - 2 * base + p(S=S - hS)) / hS**2
    d_dv = (p(sigma=sigma + hv) - p(sigma=sigma - hv)) / (2 * hv)
    d2_dv2 = (p(sigma=sigma + hv) - 2 * base + p(sigma=sigma - hv)) / hv**2
    d_dt = (p(t=t + ht) - p(t=t - ht)) / (2 * ht)
    d_dr = (p(r=R + hr) - p(r=R - hr)) / (2 * hr)
    d2_dSdv = (
        p(S=S + hS, sigma=sigma + hv)
        - p(S=S + hS, sigma=sigma - hv)
        - p(S=S - hS, sigma=sigma + hv)
        + p(S=S - hS, sigma=sigma - hv)
    ) / (4 * hS * hv)
    d2_dSdt = (
        p(S=S + hS, t=t + ht) - p(S=S + hS, t=t - ht) - p(S=S - hS, t=t + ht) + p(S=S - hS, t=t - ht)
    ) / (4 * hS * ht)
    return {
        "price": base,
        "delta": d_dS,
        "gamma": d2_dS2,
        "theta": -d_dt / DAYS,  # value change as one calendar day passes (t is time to expiry)
        "vega": d_dv / 100,
        "rho": d_dr / 100,
        "vanna": d2_dSdv / 100,
        "vomma": d2_dv2 / 1e4,
        "charm": -d2_dSdt / DAYS,  # delta change as one calendar day passes
    }


@pytest.mark.parametrize(("model", "q", "option_type", "point"), CASES)
def test_greeks_match_finite_differences(model: str, q: float, option_type: str, point: tuple) -> None:
    S, K, t, sigma = point
    analytic = {k: float(v) for k, v in greeks(option_type, S, K, t, R, sigma, q=q, model=model).items()}
    numeric = _numerical(option_type, model, q, S, K, t, sigma)
    assert set(analytic) == set(GREEK_KEYS)
    # scale for the absolute tolerance: the size of the quantity across its natural range
    scale = {"price": S, "delta": 1.0, "gamma": 1.0 / S, "theta": S / DAYS, "vega": S / 100, "rho": S / 100,
             "vanna": 1.0 / 100, "vomma": S / 1e4, "charm": 1.0 / DAYS}  # fmt: skip
    for key in GREEK_KEYS:
        assert analytic[key] == pytest.approx(numeric[key], rel=2e-5, abs=2e-6 * scale[key]), key


def test_black76_rho_is_minus_t_times_price_per_percent() -> None:
    g = greeks(["call", "put"], 105.0, 100.0, 0.5, 0.10, 0.36, model="black76")
    np.testing.assert_allclose(g["rho"], -0.5 * g["price"] / 100, rtol=1e-14)


@pytest.mark.parametrize("model", ["black_scholes", "black76"])
def test_vectorised_greeks_equal_elementwise(model: str) -> None:
    rng = np.random.default_rng(5)
    n = 50
    args = (
        np.where(rng.random(n) < 0.5, "call", "put"),
        rng.uniform(50, 150, n),
        rng.uniform(50, 150, n),
        rng.uniform(0.01, 3, n),
        rng.uniform(-0.01, 0.1, n),
        rng.uniform(0.05, 1.0, n),
    )
    q = rng.uniform(0, 0.05, n)
    whole = greeks(*args, q=q, model=model)
    for i in range(n):
        one = greeks(*(a[i] for a in args), q=q[i], model=model)
        for key in GREEK_KEYS:
            assert one[key] == pytest.approx(whole[key][i], rel=1e-13, abs=1e-300), key

"""Engine output against published textbook values (independent of our code)."""

from __future__ import annotations

import pytest

from greeks.engine import greeks, price

# Hull, "Options, Futures, and Other Derivatives", ch. "The Greek Letters" (running example:
# a bank has sold calls on a non-dividend-paying stock): S = 49, K = 50, r = 5 %, sigma = 20 %,
# T = 20 weeks. Hull quotes price ~ 2.40, delta 0.522, gamma 0.066, theta -4.31 per year
# (-0.0118 per calendar day), vega 12.1 per 1.00 of volatility, rho 8.91 per 1.00 of rate.
HULL = {"option_type": "call", "S": 49.0, "K": 50.0, "t": 20 / 52, "r": 0.05, "sigma": 0.20}


@pytest.fixture(scope="module")
def hull() -> dict[str, float]:
    g = greeks(**HULL)
    return {k: float(v) for k, v in g.items()}


@pytest.mark.parametrize(
    ("key", "expected", "tol"),
    [
        ("price", 2.40, 0.005),
        ("delta", 0.522, 0.0005),
        ("gamma", 0.066, 0.0005),
        ("theta", -4.31 / 365, 0.005 / 365),  # per calendar day
        ("vega", 12.1 / 100, 0.05 / 100),  # per vol point
        ("rho", 8.91 / 100, 0.005 / 100),  # per 1 % of rate
    ],
)
def test_hull_greek_letters_example(hull: dict[str, float], key: str, expected: float, tol: float) -> None:
    assert hull[key] == pytest.approx(expected, abs=tol)


def test_hull_theta_per_calendar_day_quoted_value(hull: dict[str, float]) -> None:
    # Hull: "theta ... is -4.31/365 = -0.0118 per calendar day"
    assert hull["theta"] == pytest.approx(-0.0118, abs=0.00005)


def test_price_endpoint_matches_greeks_price() -> None:
    assert float(price(**HULL)) == pytest.approx(greeks(**HULL)["price"].item(), rel=1e-15)


# Haug, "The Complete Guide to Option Pricing Formulas", 2nd ed. (2007), worked examples in
# chapters 1 (Black-Scholes-Merton family) and 2 (Greeks). Haug writes the generalised BSM with a
# cost of carry b; b = r - q for a stock with dividend yield q, b = 0 for an option on a future.
@pytest.mark.parametrize(
    ("case", "kwargs", "key", "expected"),
    [
        (
            "1.1.1 Black-Scholes call",
            {"option_type": "call", "S": 60.0, "K": 65.0, "t": 0.25, "r": 0.08, "sigma": 0.30},
            "price",
            2.1334,
        ),
        (
            "1.1.2 Merton (dividend yield) put",
            {"option_type": "put", "S": 100.0, "K": 95.0, "t": 0.5, "r": 0.10, "sigma": 0.20, "q": 0.05},
            "price",
            2.4648,
        ),
        (
            "1.1.3 Black-76 call on a future",
            {
                "option_type": "call",
                "S": 19.0,
                "K": 19.0,
                "t": 0.75,
                "r": 0.10,
                "sigma": 0.28,
                "model": "black76",
            },
            "price",
            1.7011,
        ),
        (
            "1.1.3 Black-76 put on a future",
            {
                "option_type": "put",
                "S": 19.0,
                "K": 19.0,
                "t": 0.75,
                "r": 0.10,
                "sigma": 0.28,
                "model": "black76",
            },
            "price",
            1.7011,
        ),
        (
            "2.1.1 delta, call on a future",
            {
                "option_type": "call",
                "S": 105.0,
                "K": 100.0,
                "t": 0.5,
                "r": 0.10,
                "sigma": 0.36,
                "model": "black76",
            },
            "delta",
            0.5946,
        ),
        (
            "2.1.1 delta, put on a future",
            {
                "option_type": "put",
                "S": 105.0,
                "K": 100.0,
                "t": 0.5,
                "r": 0.10,
                "sigma": 0.36,
                "model": "black76",
            },
            "delta",
            -0.3566,
        ),
        (
            "2.3 gamma, stock option",
            {"option_type": "call", "S": 55.0, "K": 60.0, "t": 0.75, "r": 0.10, "sigma": 0.30},
            "gamma",
            0.0278,
        ),
        (
            "2.5 theta, put on an index (b = 0.02), per year",
            {"option_type": "put", "S": 430.0, "K": 405.0, "t": 0.0833, "r": 0.07, "sigma": 0.20, "q": 0.05},
            "theta_per_year",
            -31.1924,
        ),
        (
            "2.6 rho, stock call, per 1.00 of rate",
            {"option_type": "call", "S": 72.0, "K": 75.0, "t": 1.0, "r": 0.09, "sigma": 0.19},
            "rho_per_unit",
            38.7325,
        ),
    ],
)
def test_haug_examples(case: str, kwargs: dict, key: str, expected: float) -> None:
    g = greeks(**kwargs)
    value = {
        "theta_per_year": float(g["theta"]) * 365,
        "rho_per_unit": float(g["rho"]) * 100,
    }.get(key)
    if value is None:
        value = float(g[key])
    assert value == pytest.approx(expected, abs=0.51e-4), case  # quoted to 4 decimals

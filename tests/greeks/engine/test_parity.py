"""Put-call parity for prices and the Greeks it implies, vectorised over random inputs."""

from __future__ import annotations

import numpy as np
import pytest

from greeks.engine import greeks, price


def assert_close(actual: np.ndarray, expected: np.ndarray, *, rtol: float, atol: float | np.ndarray) -> None:
    """Element-wise |actual - expected| <= atol + rtol |expected| with an array-valued atol."""
    err = np.abs(actual - expected)
    bound = atol + rtol * np.abs(expected)
    bad = ~(err <= bound)
    assert not bad.any(), f"{bad.sum()} elements off, worst excess {np.max((err - bound)[bad]):.3g}"


@pytest.fixture(scope="module")
def market() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(17)
    n = 20_000
    t = np.exp(rng.uniform(np.log(1 / 8760), np.log(5), n))
    sigma = np.exp(rng.uniform(np.log(0.01), np.log(3), n))
    S = rng.uniform(1, 50_000, n)
    K = S * np.exp(rng.uniform(-3, 3, n) * sigma * np.sqrt(t))
    return {
        "S": S,
        "K": K,
        "t": t,
        "r": rng.uniform(-0.02, 0.15, n),
        "sigma": sigma,
        "q": rng.uniform(0, 0.08, n),
    }


def test_black_scholes_parity(market: dict[str, np.ndarray]) -> None:
    S, K, t, r, sigma, q = (market[k] for k in ("S", "K", "t", "r", "sigma", "q"))
    call = price("call", S, K, t, r, sigma, q=q)
    put = price("put", S, K, t, r, sigma, q=q)
    forward_value = S * np.exp(-q * t) - K * np.exp(-r * t)
    assert_close(call - put, forward_value, rtol=1e-12, atol=4e-15 * np.maximum(S, K))


def test_black76_parity(market: dict[str, np.ndarray]) -> None:
    F, K, t, r, sigma = (market[k] for k in ("S", "K", "t", "r", "sigma"))
    call = price("c", F, K, t, r, sigma, model="black76")
    put = price("p", F, K, t, r, sigma, model="black76")
    assert_close(call - put, np.exp(-r * t) * (F - K), rtol=1e-12, atol=4e-15 * np.maximum(F, K))


@pytest.mark.parametrize("model", ["black_scholes", "black76"])
def test_greeks_parity(market: dict[str, np.ndarray], model: str) -> None:
    S, K, t, r, sigma, q = (market[k] for k in ("S", "K", "t", "r", "sigma", "q"))
    if model == "black76":
        q = r  # the forward carries no cost: discount factor of the underlying is e^{-rt}
    c = greeks("call", S, K, t, r, sigma, q=q, model=model)
    p = greeks("put", S, K, t, r, sigma, q=q, model=model)
    dq = np.exp(-q * t)
    np.testing.assert_allclose(c["delta"] - p["delta"], dq, rtol=1e-12, atol=1e-15)
    for key in ("gamma", "vega", "vanna", "vomma"):
        np.testing.assert_allclose(c[key], p[key], rtol=1e-12, atol=0, err_msg=key)
    # d/dt of (S e^{-qt} - K e^{-rt}) per calendar day, sign: value change as a day passes
    theta_diff = (q * S * dq - r * K * np.exp(-r * t)) / 365
    assert_close(c["theta"] - p["theta"], theta_diff, rtol=1e-9, atol=1e-12 * S)
    # charm difference: d/dt of e^{-qt} as a day passes = q e^{-qt} / 365
    np.testing.assert_allclose(c["charm"] - p["charm"], q * dq / 365, rtol=1e-9, atol=1e-15)
    rho_diff = (
        K * t * np.exp(-r * t) / 100 if model == "black_scholes" else -t * (c["price"] - p["price"]) / 100
    )
    assert_close(c["rho"] - p["rho"], rho_diff, rtol=1e-9, atol=1e-12 * S)

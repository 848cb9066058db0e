"""The simulator's volatility surface and option pricing (pure numpy/scipy, vectorised).

Units: time in years (ACT/365), volatility and variance annualised decimals (0.13 = 13 vol
points), total variance ``w = vol**2 * t``, log-moneyness ``k = ln(K / F)`` against the forward of
the same expiry, prices in index points (rupees).

Surface: SSVI (Gatheral & Jacquier 2014, "Arbitrage-free SVI volatility surfaces") with the
power-law ``phi``::

    w(k, t) = theta_t / 2 * (1 + rho * phi * k + sqrt((phi * k + rho)**2 + 1 - rho**2))
    phi(theta) = eta / (theta**gamma * (1 + theta)**(1 - gamma))

``theta_t`` is the ATM total variance. The surface is free of static arbitrage (no butterfly, no
calendar spread) when ``theta_t`` is non-decreasing in ``t``, ``0 < gamma <= 1/2`` and
``eta * (1 + |rho|) <= 2``. ``theta_t`` is the Heston expected integrated variance from the
current instantaneous variance ``v`` (mean reversion ``kappa`` to ``long_run``), which is
increasing in ``t`` for any ``v > 0``: the ATM term structure slopes up when ``v`` is below its
long-run level and down when above, and moves with the stochastic variance.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import ndtr

FloatArray = NDArray[np.float64]

# Bounds on the variance that drives the surface: keeps quoted vols in a sane band whatever the
# variance process does (the process itself is not clipped).
MIN_SURFACE_VARIANCE = 0.05**2
MAX_SURFACE_VARIANCE = 0.80**2


def check_ssvi_parameters(rho: float, eta: float, gamma: float) -> None:
    """Raise ValueError unless (rho, eta, gamma) satisfy the no-static-arbitrage conditions."""
    if not -1.0 < rho < 1.0:
        raise ValueError(f"SSVI rho must be in (-1, 1), got {rho}")
    if not 0.0 < gamma <= 0.5:
        raise ValueError(f"SSVI gamma must be in (0, 0.5], got {gamma}")
    if not 0.0 < eta * (1.0 + abs(rho)) <= 2.0:
        raise ValueError(f"SSVI needs 0 < eta * (1 + |rho|) <= 2, got eta={eta}, rho={rho}")


def atm_total_variance(v: ArrayLike, long_run: float, kappa: float, t: ArrayLike) -> FloatArray:
    """Expected integrated variance over ``[0, t]`` of a CIR variance started at ``v``:
    ``long_run * t + (v - long_run) * (1 - exp(-kappa t)) / kappa`` (years * variance)."""
    v_arr = np.clip(np.asarray(v, dtype=float), MIN_SURFACE_VARIANCE, MAX_SURFACE_VARIANCE)
    t_arr = np.asarray(t, dtype=float)
    return long_run * t_arr + (v_arr - long_run) * (-np.expm1(-kappa * t_arr)) / kappa


def ssvi_phi(theta: ArrayLike, eta: float, gamma: float) -> FloatArray:
    """Power-law SSVI curvature function ``phi(theta)``."""
    th = np.asarray(theta, dtype=float)
    return eta / (th**gamma * (1.0 + th) ** (1.0 - gamma))


def ssvi_total_variance(k: ArrayLike, theta: ArrayLike, rho: float, eta: float, gamma: float) -> FloatArray:
    """SSVI total implied variance at log-moneyness ``k`` for ATM total variance ``theta``."""
    k_arr = np.asarray(k, dtype=float)
    th = np.asarray(theta, dtype=float)
    phi = ssvi_phi(th, eta, gamma)
    pk = phi * k_arr
    return 0.5 * th * (1.0 + rho * pk + np.sqrt((pk + rho) ** 2 + 1.0 - rho * rho))


def black76(
    forward: ArrayLike,
    strike: ArrayLike,
    total_variance: ArrayLike,
    discount: ArrayLike,
    is_call: ArrayLike,
) -> FloatArray:
    """Black-76 price ``D * (F N(d1) - K N(d2))`` (call) / ``D * (K N(-d2) - F N(-d1))`` (put),
    with ``d1,2 = (ln(F/K) +- w/2) / sqrt(w)``; ``w = vol**2 * t > 0`` and ``D = exp(-r t)``."""
    f = np.asarray(forward, dtype=float)
    k = np.asarray(strike, dtype=float)
    sd = np.sqrt(np.asarray(total_variance, dtype=float))
    d1 = (np.log(f / k) + 0.5 * sd * sd) / sd
    d2 = d1 - sd
    call = np.asarray(is_call, dtype=bool)
    sign = np.where(call, 1.0, -1.0)
    return np.asarray(discount, dtype=float) * sign * (f * ndtr(sign * d1) - k * ndtr(sign * d2))


def round_to_tick(price: ArrayLike, tick_size: float) -> FloatArray:
    """Round half up to the exchange tick grid (``tick_size`` must divide 1, e.g. 0.05).

    Works in integer ticks so that ``round(x - tick) == round(x) - tick`` holds exactly and the
    results are the nearest doubles to the decimal prices (150.05, not 150.05000000000001)."""
    per_unit = float(round(1.0 / tick_size))
    return np.floor(np.asarray(price, dtype=float) * per_unit + 0.5) / per_unit

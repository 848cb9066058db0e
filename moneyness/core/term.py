"""Constant-maturity ATM implied volatility of one underlying (SPEC §7): the 30-day IV, built the way
volatility indices are.

Pure numpy. Inputs are per expiry: ``t``, the years to expiry (ACT/365), and ``atm_iv``, the expiry's
ATM implied vol (decimal; NaN = unknown). The IV at ``target_t`` years is interpolated linearly in
total variance ``w = iv^2 t`` against ``t`` between the two expiries that bracket it, the nearest
with ``t <= target_t`` and the nearest with ``t >= target_t``::

    w = (1 - weight) * w_lower + weight * w_upper,  weight = (target_t - t_lower) / (t_upper - t_lower)
    iv = sqrt(w / target_t)

An expiry at the target (to 1e-12 relative) is used alone. Nothing is extrapolated: with expiries
on one side only the result is NaN and the status says which side is missing.

Why there is no "negative variance" outcome: ``weight`` is in [0, 1] and both total variances are
positive, so ``w`` is a convex combination of two positive numbers and cannot be negative. What
inputs with calendar arbitrage (``w_upper < w_lower``: the longer expiry carries less total
variance) do deserve is a flag, since the interpolated value then sits inside a term structure
that no arbitrage-free market would quote: ``calendar_arbitrage``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

DAYS_PER_YEAR = 365.0  # ACT/365, the convention of the expiries' ``t``
_EXACT = 1e-12  # relative; an expiry's t and days/365 computed along different paths differ by ulps


def years_from_days(days: float) -> float:
    """``days`` calendar days in years (ACT/365): the ``target_t`` for a ``days``-day IV."""
    return days / DAYS_PER_YEAR


@dataclass(frozen=True)
class ConstantMaturity:
    """The constant-maturity ATM IV and how it was made.

    ``iv``: decimal, NaN unless ``status`` is "interpolated" or "exact". ``target_days``: the
    maturity asked for, in calendar days. ``lower_index``/``upper_index``: positions in the input
    arrays of the bracketing expiries (both the same expiry for "exact"; one of them None for the
    one-sided statuses, both None for "no_data"); ``lower_t``/``upper_t`` their years to expiry
    (NaN when absent). ``weight``: the weight on the upper expiry's total variance (1.0 for
    "exact", NaN without a value). ``calendar_arbitrage``: the upper expiry's total variance is
    below the lower's.
    """

    iv: float
    target_days: float
    lower_index: int | None
    upper_index: int | None
    lower_t: float
    upper_t: float
    weight: float
    status: str
    calendar_arbitrage: bool = False


def constant_maturity_iv(t: ArrayLike, atm_iv: ArrayLike, *, target_t: float) -> ConstantMaturity:
    """The ATM IV at ``target_t`` years (see the module docstring). Expiries with a non-finite or
    non-positive ``t`` (expired) or ``atm_iv`` are skipped. Among expiries with the same ``t`` the
    first in input order is used."""
    t = np.asarray(t, dtype=float).ravel()
    iv = np.asarray(atm_iv, dtype=float).ravel()
    if t.shape != iv.shape:
        raise ValueError(f"t and atm_iv differ in length: {t.size} != {iv.size}")
    if not (math.isfinite(target_t) and target_t > 0):
        raise ValueError(f"target_t must be a positive number of years, got {target_t!r}")
    days = target_t * DAYS_PER_YEAR
    nan = math.nan

    with np.errstate(over="ignore", invalid="ignore"):
        w = iv * iv * t  # total variance
    usable = np.flatnonzero(np.isfinite(t) & (t > 0) & np.isfinite(iv) & (iv > 0) & np.isfinite(w) & (w > 0))
    if usable.size == 0:
        return ConstantMaturity(nan, days, None, None, nan, nan, nan, "no_data")
    # Stable sort by t: on equal t the first in input order comes first.
    usable = usable[np.argsort(t[usable], kind="stable")]
    times = t[usable]

    hit = np.flatnonzero(np.abs(times - target_t) <= _EXACT * target_t)
    if hit.size:
        i = int(usable[hit[0]])
        return ConstantMaturity(float(iv[i]), days, i, i, float(t[i]), float(t[i]), 1.0, "exact")

    n_below = int(np.searchsorted(times, target_t))  # times[:n_below] < target_t < times[n_below:]
    if n_below == 0:
        i = int(usable[0])
        return ConstantMaturity(nan, days, None, i, nan, float(t[i]), nan, "only_longer_expiries")
    if n_below == times.size:
        i = int(usable[-1])
        return ConstantMaturity(nan, days, i, None, float(t[i]), nan, nan, "only_shorter_expiries")

    # The nearest on each side; on the lower side, the first expiry of the largest t.
    lower = int(usable[int(np.searchsorted(times, times[n_below - 1]))])
    upper = int(usable[n_below])
    t_low, t_up = float(t[lower]), float(t[upper])
    w_low, w_up = float(w[lower]), float(w[upper])
    weight = (target_t - t_low) / (t_up - t_low)
    w_target = (1.0 - weight) * w_low + weight * w_up
    return ConstantMaturity(
        math.sqrt(w_target / target_t),
        days,
        lower,
        upper,
        t_low,
        t_up,
        weight,
        "interpolated",
        calendar_arbitrage=w_up < w_low,
    )

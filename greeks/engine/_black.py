"""Accurate normalised Black price of an out-of-the-money option where the textbook formula cancels.

With h = x/s <= 0 and t = s/2 (x = ln(F/K) of the OTM call form, s = sigma sqrt(T)), the normalised
call price is b = e^{x/2} N(h + t) - e^{-x/2} N(h - t). The two terms are of similar size when
|h|/t is large (short expiry or low vol, strike well away from the forward), so the difference
loses about log10(|h|/t) digits. Jäckel ("Let's Be Rational", 2015, eq. (3.7) ff.) gives a
twelfth-order expansion in t that has no such cancellation and is accurate to double precision for
t < 0.21; it is used for exactly those elements.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import erfcx

from greeks.engine._inputs import FloatArray

#: Above this |h|/t the two-term formula loses more than ~3 digits (relative error > ~2e-13).
CANCELLATION_RATIO = 1024.0
#: The expansion is accurate for t = s/2 below Jäckel's threshold 2 * eps^(1/16) ~ 0.21.
SMALL_T_MAX_S = 0.42

_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_HALF_SQRT_2PI = 0.5 * math.sqrt(2.0 * math.pi)
_INV_SQRT_2 = 1.0 / math.sqrt(2.0)


def small_t_otm_black(h: FloatArray, t: FloatArray) -> FloatArray:
    """Normalised OTM call price b(h, t) for h <= 0 and t < 0.21 (relative accuracy ~ eps * h^2)."""
    # Y(h) = N(h)/phi(h) = sqrt(pi/2) erfcx(-h/sqrt 2); a = 1 + h Y(h) > 0 for h < 0
    a = 1.0 + h * _HALF_SQRT_2PI * erfcx(-_INV_SQRT_2 * h)
    w = t * t
    h2 = h * h
    c6 = (
        -89055.0
        + 135135.0 * a
        + h2
        * (
            -82845.0
            + 270270.0 * a
            + h2
            * (
                -20370.0
                + 135135.0 * a
                + h2 * (-1926.0 + 25740.0 * a + h2 * (-75.0 + 2145.0 * a + h2 * (-1.0 + 78.0 * a + a * h2)))
            )
        )
    ) / 6227020800.0
    c5 = (
        -6555.0
        + 10395.0 * a
        + h2
        * (
            -4680.0
            + 17325.0 * a
            + h2 * (-840.0 + 6930.0 * a + h2 * (-52.0 + 990.0 * a + h2 * (-1.0 + 55.0 * a + a * h2)))
        )
    ) / 39916800.0
    c4 = (
        -561.0
        + 945.0 * a
        + h2 * (-285.0 + 1260.0 * a + h2 * (-33.0 + 378.0 * a + h2 * (-1.0 + 36.0 * a + a * h2)))
    ) / 362880.0
    c3 = (-57.0 + 105.0 * a + h2 * (-18.0 + 105.0 * a + h2 * (-1.0 + 21.0 * a + a * h2))) / 5040.0
    c2 = (-7.0 + 15.0 * a + h2 * (-1.0 + 10.0 * a + a * h2)) / 120.0
    c1 = (-1.0 + 3.0 * a + a * h2) / 6.0
    expansion = 2.0 * t * (a + w * (c1 + w * (c2 + w * (c3 + w * (c4 + w * (c5 + w * c6))))))
    b = _INV_SQRT_2PI * np.exp(-0.5 * (h2 + w)) * expansion
    return np.maximum(b, 0.0)


def cancellation_subset(abs_h: FloatArray, s: FloatArray) -> np.ndarray:
    """Indices where |h|/t = 2|h|/s exceeds the cancellation ratio and the expansion applies."""
    candidates = np.greater(abs_h, np.multiply(s, 0.5 * CANCELLATION_RATIO))
    if not candidates.any():
        return np.empty(0, dtype=np.intp)
    idx = np.flatnonzero(candidates)
    return idx[s[idx] < SMALL_T_MAX_S]


def cancellation_subset_negative_h(h: FloatArray, s: FloatArray) -> np.ndarray:
    """As :func:`cancellation_subset` for h <= 0 (the normalised OTM call), without the abs."""
    candidates = np.less(h, np.multiply(s, -0.5 * CANCELLATION_RATIO))
    if not candidates.any():
        return np.empty(0, dtype=np.intp)
    idx = np.flatnonzero(candidates)
    return idx[s[idx] < SMALL_T_MAX_S]

"""Vectorised implied volatility in the spirit of Jäckel's "Let's Be Rational" (2015).

Every option is reduced to the normalised Black price of an out-of-the-money call,

    x = ln(F/K) <= 0,    beta = undiscounted OTM price / sqrt(F K),
    b(x, s) = e^{x/2} N(x/s + s/2) - e^{-x/2} N(x/s - s/2),   s = sigma sqrt(t),

(puts via the reciprocal-strike symmetry b_put(x) = b_call(-x), in-the-money options via put-call
parity, i.e. the intrinsic value is subtracted). ``beta`` then lies in (0, e^{x/2}), and b is
increasing in s. The initial guess is Jäckel's: the curve s(beta) is split at the inflection point
s_c = sqrt(2|x|) and at one further point (s_l below it, s_u above it, from the tangent at s_c), and
in each of the four segments s(beta) - or a transformed version of it in the two outer segments,
where b is exponentially small in 1/s or close to its upper bound - is interpolated with a shape-
preserving rational cubic. Two third-order Householder steps on a segment-dependent objective
(1/ln b in the lowest segment, ln(b_max - b) in the highest) then reach full attainable precision;
any element whose last step is not tiny gets further safeguarded steps (Householder inside a
bisection bracket).

All of it is done on whole arrays with masks; the two outer segments, which need extra special
functions (erfcx, ndtri), are computed only on their subsets.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.special import erfcx, ndtr, ndtri

from greeks.engine._black import _INV_SQRT_2, _INV_SQRT_2PI, cancellation_subset_negative_h, small_t_otm_black
from greeks.engine._inputs import (
    FloatArray,
    Operand,
    broadcast_flat,
    check_model,
    chunk_of,
    collapse_constant,
    run_chunked,
    sign_chunk,
    take,
    thread_count,
)
from greeks.engine.reasons import IVReason

_DBL_EPSILON = float(np.finfo(np.float64).eps)
_DBL_MIN = float(np.finfo(np.float64).tiny)
_DBL_MAX = float(np.finfo(np.float64).max)
_SQRT_DBL_MAX = math.sqrt(_DBL_MAX)
_MIN_R = -(1.0 - math.sqrt(_DBL_EPSILON))  # minimum rational cubic control parameter
_MAX_R = 2.0 / (_DBL_EPSILON * _DBL_EPSILON)  # control parameter that means "linear"

_SQRT_2PI = math.sqrt(2.0 * math.pi)
_SQRT_PI_OVER_2 = math.sqrt(math.pi / 2.0)
_SQRT_3 = math.sqrt(3.0)
_TWO_PI_OVER_SQRT_27 = 2.0 * math.pi / math.sqrt(27.0)

# Householder steps applied to every element; Jäckel shows two suffice from this initial guess.
_BASE_ITERATIONS = 2
# An element is converged when its second step was below this (relative to s). The iteration is
# of fourth order: from the worst initial guesses (~10 % off) the first step leaves < 1e-6 and the
# second step is at the rounding-noise floor (<= ~1e-11), so 1e-5 leaves a wide margin.
_STEP_TOL = 1e-5
# Extra safeguarded steps for the (rare) elements that are not converged after the base steps.
_MAX_EXTRA_ITERATIONS = 60
# In the safeguarded loop a Householder step below this (relative to s) means converged: the
# error after it is far below rounding. A bisection bracket this narrow (relative) also ends it.
_REFINE_TOL = 1e-8
_BRACKET_TOL = 8.0 * _DBL_EPSILON

_CHUNK = 32_768
# Prices this many ulps (of their own scale) from intrinsic or from the upper bound count as at it.
_BOUND_ULPS = 4.0

IntArray = npt.NDArray[np.intp]


def _black_and_vega(
    x: FloatArray, s: FloatArray, e: FloatArray, ei: FloatArray
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray, FloatArray]:
    """Normalised OTM call price b(x, s), vega db/ds, and h = x/s, s/2, N(h - s/2) for reuse."""
    h = np.divide(x, s)
    half = np.multiply(s, 0.5)
    a = np.add(h, half)
    n1 = ndtr(a, out=a)
    n2 = ndtr(np.subtract(h, half))
    b = np.multiply(e, n1, out=n1)
    b -= np.multiply(ei, n2)
    fix = cancellation_subset_negative_h(h, s)
    if fix.size:
        b[fix] = small_t_otm_black(h[fix], half[fix])
    # vega = exp(-(h^2 + (s/2)^2) / 2) / sqrt(2 pi)
    v = np.multiply(h, h)
    v += np.multiply(half, half)
    v *= -0.5
    np.exp(v, out=v)
    v *= _INV_SQRT_2PI
    return b, v, h, half, n2


def _rational_cubic(
    z: FloatArray,
    xl: Any,
    xr: Any,
    yl: Any,
    yr: Any,
    dl: Any,
    dr: Any,
    r: FloatArray,
) -> FloatArray:
    """Delbourgo-Gregory rational cubic through (xl, yl), (xr, yr) with end slopes dl, dr."""
    h = xr - xl
    t = (z - xl) / h
    omt = 1.0 - t
    t2 = t * t
    omt2 = omt * omt
    num = yr * t2 * t + (r * yr - h * dr) * t2 * omt + (r * yl + h * dl) * t * omt2 + yl * omt2 * omt
    out = num / (1.0 + (r - 3.0) * t * omt)
    linear = r >= _MAX_R
    if linear.any():
        out = np.where(linear, yr * t + yl * omt, out)
    return out


def _minimum_control(dl: Any, dr: Any, slope: FloatArray, prefer_shape: bool) -> FloatArray:
    """Smallest control parameter that keeps the rational cubic monotone and convex/concave.

    Delbourgo & Gregory (1985), eqs. (3.8) and (3.18), as in Jäckel's ``rationalcubic``, for the
    monotone data of all three uses here (dl, dr and slope share their sign). A zero slope or a
    slope at one of the end derivatives yields an infinite parameter, i.e. linear interpolation.
    """
    r1 = (dl + dr) / slope  # (3.8): monotonicity
    a = slope - dl
    b = dr - slope
    # (3.18): convexity (slope between the end derivatives); otherwise shape cannot be preserved
    r2 = np.abs(dr - dl) / np.minimum(np.abs(a), np.abs(b))
    shape_possible = a * b >= 0.0
    r2 = np.where(shape_possible, r2, _MAX_R if prefer_shape else -_DBL_MAX)
    return np.maximum(np.maximum(r1, r2), _MIN_R)


def _control_parameter(num: FloatArray, den: FloatArray, r_min: FloatArray) -> FloatArray:
    """Control parameter num/den that fits a second derivative, floored at ``r_min``.

    x/0 gives +-inf (linear or the floor), 0/0 gives NaN, which ``fmax`` replaces by the floor.
    """
    return np.fmax(num / den, r_min)


def _guess_middle(
    beta: FloatArray,
    b_c: FloatArray,
    s_c: FloatArray,
    v_c: FloatArray,
    b_o: FloatArray,
    s_o: FloatArray,
    v_o: FloatArray,
) -> FloatArray:
    """Rational cubic s(beta) between the inflection point (b_c, s_c) and the other point (b_o, s_o).

    Jäckel fits the second derivative zero at the inflection point; the interpolant is symmetric
    under swapping its ends, so both middle segments use the inflection point as the "left" end.
    """
    h = b_o - b_c
    slope = (s_o - s_c) / h
    dl = 1.0 / v_c
    dr = 1.0 / v_o
    r_min = _minimum_control(dl, dr, slope, prefer_shape=False)
    r = _control_parameter(dr - dl, slope - dl, r_min)
    return _rational_cubic(beta, b_c, b_o, s_c, s_o, dl, dr, r)


def _guess_lowest(beta: FloatArray, x: FloatArray, b_l: FloatArray, s_l: FloatArray) -> FloatArray:
    """Lowest segment: interpolate f(beta) = (2 pi/sqrt 27)|x| N(-|x|/(sqrt3 s))^3, then invert.

    Uses N(-z) = erfcx(z/sqrt2) exp(-z^2/2) / 2 so the derivatives below do not overflow.
    """
    ax = -x
    z = ax / (_SQRT_3 * s_l)
    y = z * z
    s2 = s_l * s_l
    E = erfcx(z * _INV_SQRT_2)
    G = np.exp(-0.5 * y)
    phi_c = 0.5 * E * G  # N(-z)
    es8 = np.exp(0.125 * s2)
    fp = (0.5 * math.pi) * y * E * E * es8
    f_l = _TWO_PI_OVER_SQRT_27 * ax * (phi_c * phi_c * phi_c)
    with np.errstate(all="ignore"):
        fpp = (
            (math.pi / 6.0)
            * y
            / (s2 * s_l)
            * (0.5 * E / (G * G * G))
            * (es8 * es8)
            * (8.0 * _SQRT_3 * s_l * ax + (3.0 * s2 * (s2 - 8.0) - 8.0 * x * x) * _SQRT_PI_OVER_2 * E)
        )
    slope = f_l / b_l
    r_min = _minimum_control(1.0, fp, slope, prefer_shape=True)
    r = _control_parameter(0.5 * b_l * fpp + (fp - 1.0), fp - slope, r_min)
    r = np.where(np.isfinite(fpp), r, r_min)
    f = _rational_cubic(beta, 0.0, b_l, 0.0, f_l, 1.0, fp, r)
    bad = ~(f > 0.0)
    if bad.any():
        tq = beta / b_l
        f = np.where(bad, (f_l * tq + b_l * (1.0 - tq)) * tq, f)
    u = np.cbrt(f / (_TWO_PI_OVER_SQRT_27 * ax))
    return np.abs(ax / (_SQRT_3 * ndtri(u)))


def _guess_highest(
    beta: FloatArray, x: FloatArray, b_max: FloatArray, b_u: FloatArray, s_u: FloatArray
) -> FloatArray:
    """Highest segment: interpolate f(beta) = N(-s/2), which goes to 0 linearly at b_max, then invert."""
    f_u = ndtr(-0.5 * s_u)
    w = (x / s_u) ** 2
    fp = -0.5 * np.exp(0.5 * w)
    fpp = _SQRT_PI_OVER_2 * np.exp(w + 0.125 * s_u * s_u) * w / s_u
    h = b_max - b_u
    slope = -f_u / h
    r_min = _minimum_control(fp, -0.5, slope, prefer_shape=True)
    r = _control_parameter(0.5 * h * fpp + (-0.5 - fp), slope - fp, r_min)
    f = _rational_cubic(beta, b_u, b_max, f_u, 0.0, fp, -0.5, r)
    bad = ~(f > 0.0) | ~(np.abs(fpp) < _SQRT_DBL_MAX)
    if bad.any():
        tq = (beta - b_u) / h
        f = np.where(bad, (f_u * (1.0 - tq) + 0.5 * h * tq) * (1.0 - tq), f)
    return -2.0 * ndtri(f)


def _householder(newton: FloatArray, halley: FloatArray, hh3: FloatArray) -> FloatArray:
    """Third-order Householder step from newton = -g/g', halley = g''/g', hh3 = g'''/g'."""
    den = halley + hh3 * newton * (1.0 / 6.0)
    den *= newton
    den += 1.0
    step = halley * newton
    step *= 0.5
    step += 1.0
    step *= newton
    step /= den
    return step


class _Problem:
    """Normalised problem arrays for one chunk (x <= 0, 0 < beta < b_max = e = exp(x/2))."""

    def __init__(self, beta: FloatArray, x: FloatArray, e: FloatArray, ei: FloatArray) -> None:
        self.beta = beta
        self.x = x
        self.e = e
        self.ei = ei
        self.lower_idx: IntArray = np.empty(0, dtype=np.intp)  # objective 1/ln(b)
        self.upper_idx: IntArray = np.empty(0, dtype=np.intp)  # objective ln(b_max - b)
        self.ln_beta: FloatArray = np.empty(0)
        self.gap_beta: FloatArray = np.empty(0)

    def subset(self, idx: IntArray) -> _Problem:
        sub = _Problem(self.beta[idx], self.x[idx], self.e[idx], self.ei[idx])
        # positions of the special-objective elements inside the subset
        pos = np.full(self.beta.shape[0], -1, dtype=np.intp)
        pos[idx] = np.arange(idx.shape[0])
        for name in ("lower", "upper"):
            src = getattr(self, f"{name}_idx")
            p = pos[src]
            keep = p >= 0
            setattr(sub, f"{name}_idx", p[keep])
            if name == "lower":
                sub.ln_beta = self.ln_beta[keep]
            else:
                sub.gap_beta = self.gap_beta[keep]
        return sub


def _initial_guess(p: _Problem) -> FloatArray:
    beta, x, e, ei = p.beta, p.x, p.e, p.ei
    s_c = np.sqrt(np.multiply(x, -2.0))
    # b at the inflection point: h = -s_c/2, so b_c = e/2 - N(-s_c)/e; vega there is e/sqrt(2 pi)
    b_c = ndtr(-s_c)
    b_c *= ei
    np.subtract(0.5 * e, b_c, out=b_c)
    v_c = e * _INV_SQRT_2PI
    lower = beta < b_c
    # the other split point: s_l = s_c - b_c/v_c below, s_u = s_c + (b_max - b_c)/v_c above
    s_o = b_c / v_c
    np.subtract(s_c, s_o, out=s_o)
    np.add(s_o, _SQRT_2PI, out=s_o, where=~lower)
    np.maximum(s_o, _DBL_MIN, out=s_o)
    b_o, v_o, *_ = _black_and_vega(x, s_o, e, ei)
    seg_low = lower & (beta < b_o)
    seg_high = ~lower & (beta > b_o)
    outer = seg_low | seg_high
    if not outer.any():
        return _guess_middle(beta, b_c, s_c, v_c, b_o, s_o, v_o)
    s = np.empty_like(beta)
    mid = np.flatnonzero(~outer)
    if mid.size:
        s[mid] = _guess_middle(beta[mid], b_c[mid], s_c[mid], v_c[mid], b_o[mid], s_o[mid], v_o[mid])
    low = np.flatnonzero(seg_low)
    if low.size:
        s[low] = _guess_lowest(beta[low], x[low], b_o[low], s_o[low])
        p.lower_idx = low
        p.ln_beta = np.log(beta[low])
    high = np.flatnonzero(seg_high)
    if high.size:
        s[high] = _guess_highest(beta[high], x[high], e[high], b_o[high], s_o[high])
        # ln(b_max - b) objective only where beta is well above b_max/2, as in Jäckel
        up = high[beta[high] > 0.5 * e[high]]
        p.upper_idx = up
        p.gap_beta = e[up] - beta[up]
    return s


def _step(p: _Problem, s: FloatArray) -> tuple[FloatArray, FloatArray]:
    """One Householder step for every element; returns (step, b(s))."""
    x = p.x
    b, bp, h, half, n2 = _black_and_vega(x, s, p.e, p.ei)
    # b''/b' = x^2/s^3 - s/4 and b'''/b' = (b''/b')^2 - 3 (x/s^2)^2 - 1/4
    hs = np.divide(h, s)
    b_halley = np.multiply(h, hs)
    b_halley -= np.multiply(half, 0.5)
    b_hh3 = np.multiply(b_halley, b_halley)
    hs *= hs
    hs *= 3.0
    b_hh3 -= hs
    b_hh3 -= 0.25
    newton = np.subtract(p.beta, b)
    newton /= bp
    halley = b_halley
    hh3 = b_hh3
    li = p.lower_idx
    if li.size:
        bl = b[li]
        bpob = bp[li] / bl
        with np.errstate(all="ignore"):
            ln_b = np.log(bl)
            inv_ln_b = 1.0 / ln_b
            bh = b_halley[li]
            f1 = 1.0 + 2.0 * inv_ln_b
            newton_l = (p.ln_beta - ln_b) * ln_b / p.ln_beta / bpob
            halley_l = bh - bpob * f1
            hh3_l = (
                b_hh3[li]
                + 2.0 * bpob * bpob * (1.0 + 3.0 * inv_ln_b * (1.0 + inv_ln_b))
                - 3.0 * bh * bpob * f1
            )
        newton[li] = newton_l
        hh3[li] = hh3_l
        halley[li] = halley_l
    ui = p.upper_idx
    if ui.size:
        # b_max - b without cancellation: e N(-(h + s/2)) + N(h - s/2)/e
        gap = p.e[ui] * ndtr(-(h[ui] + half[ui])) + p.ei[ui] * n2[ui]
        gp = bp[ui] / gap
        with np.errstate(all="ignore"):
            g = np.log(p.gap_beta / gap)
        bh = b_halley[ui]
        hh3[ui] = b_hh3[ui] + gp * (2.0 * gp + 3.0 * bh)
        halley[ui] = bh + gp
        newton[ui] = -g / gp
    ds = _householder(newton, halley, hh3)
    np.maximum(ds, np.multiply(s, -0.5), out=ds)
    return ds, b


def _refine(p: _Problem, s: FloatArray) -> tuple[FloatArray, npt.NDArray[np.bool_]]:
    """Safeguarded extra iterations for elements that did not converge in the base steps.

    Householder steps inside a bracket [lo, hi] that is tightened by the sign of b(s) - beta;
    a step that leaves the bracket (or is not finite) is replaced by bisection.
    """
    lo = np.zeros_like(s)
    hi = np.full_like(s, np.inf)
    s = np.where(np.isfinite(s) & (s > 0.0), s, 1.0)
    done = np.zeros(s.shape, dtype=bool)
    for _ in range(_MAX_EXTRA_ITERATIONS):
        with np.errstate(all="ignore"):
            ds, b = _step(p, s)
        above = b > p.beta
        below = b < p.beta
        hi = np.where(above, np.minimum(hi, s), hi)
        lo = np.where(below, np.maximum(lo, s), lo)
        exact = ~above & ~below
        # a Householder step this small lands on the root (fourth-order convergence), even if
        # rounding noise puts it a hair outside the bracket
        small = np.abs(ds) <= _REFINE_TOL * s
        s_new = s + ds
        inside = np.isfinite(s_new) & (s_new > lo) & (s_new < hi)
        bisect = np.where(np.isfinite(hi), 0.5 * (lo + hi), 2.0 * np.maximum(s, lo))
        s_new = np.where(inside | small, s_new, bisect)
        s_new = np.where(exact, s, s_new)
        converged = exact | small | (hi - lo <= _BRACKET_TOL * lo)
        s = np.where(done, s, s_new)
        done |= converged
        if done.all():
            break
    return s, done


def _solve(p: _Problem) -> tuple[FloatArray, npt.NDArray[np.bool_]]:
    """Normalised implied volatility s = sigma sqrt(t) for every element; plus a converged mask."""
    with np.errstate(all="ignore"):
        s = _initial_guess(p)
        ds = np.full_like(s, np.inf)
        for _ in range(_BASE_ITERATIONS):
            ds, _b = _step(p, s)
            s += ds
        ok = np.abs(ds) <= _STEP_TOL * s
        ok &= np.isfinite(s)
    if ok.all():
        return s, ok
    idx = np.flatnonzero(~ok)
    s_sub, done = _refine(p.subset(idx), s[idx])
    s[idx] = s_sub
    ok[idx] = done & np.isfinite(s_sub) & (s_sub > 0.0)
    return s, ok


def _all_finite_positive(values: list[Operand]) -> bool:
    for a in values:
        if isinstance(a, float):
            if not 0.0 < a < np.inf:
                return False
        elif not (a.min() > 0.0 and a.max() < np.inf):
            return False
    return True


def _all_finite(values: list[Operand]) -> bool:
    for a in values:
        if isinstance(a, float):
            if not math.isfinite(a):
                return False
        elif not (a.min() > -np.inf and a.max() < np.inf):
            return False
    return True


def _iv_chunk(
    price: Operand,
    sign: Operand,
    S: Operand,
    K: Operand,
    t: Operand,
    r: Operand,
    q: Operand,
    black76: bool,
    iv: FloatArray,
    reason: npt.NDArray[np.int8],
) -> None:
    m = iv.shape[0]
    iv.fill(np.nan)
    reason.fill(IVReason.OK)
    ops = [price, sign, S, K, t, r, q]
    if _all_finite_positive([price, S, K, t]) and _all_finite([r, q]):
        idx = None
    else:
        with np.errstate(invalid="ignore"):
            finite = np.ones(m, dtype=bool)
            for a in (price, S, K, t, r, q):
                finite &= np.isfinite(a)
            invalid = finite & ((S <= 0.0) | (K <= 0.0) | (price < 0.0))
            nonpos = finite & ~invalid & (t <= 0.0)
        reason[~finite] = IVReason.NON_FINITE_INPUT
        reason[invalid] = IVReason.INVALID_INPUT
        reason[nonpos] = IVReason.NON_POSITIVE_TIME
        idx = np.flatnonzero(reason == IVReason.OK)
        if idx.size == 0:
            return
        price, sign, S, K, t, r, q = (take(v, idx) for v in ops)
    n = m if idx is None else idx.shape[0]

    # ratio = F/K; x = ln(F/K); beta = undiscounted price / sqrt(F K)
    # e^{rt} undiscounts the price and is F/S without dividends; one exp for a one-expiry chunk
    growth: Operand
    if isinstance(t, float) and isinstance(r, float):
        growth = float(np.exp(np.float64(r * t)))
    else:
        growth = np.exp(np.multiply(t, r, out=np.empty(n)))
    ratio = np.divide(S, K, out=np.empty(n))
    if not black76:
        ratio *= growth
        if not (isinstance(q, float) and q == 0.0):
            ratio *= np.exp(np.multiply(t, np.negative(q)))
    x = np.log(ratio)
    e0 = np.sqrt(ratio, out=ratio)  # sqrt(F/K) = e^{x/2}
    beta = np.multiply(price, growth, out=np.empty(n))
    beta /= K
    beta /= e0
    # reduce to an OTM call: x -> -|x|, b_max = e^{-|x|/2}; ITM: subtract the normalised intrinsic
    inv = np.divide(1.0, e0)
    e = np.minimum(e0, inv)
    ei = np.maximum(e0, inv, out=inv)
    # in the money: call with F > K, put with F < K
    itm = np.multiply(x, sign) > 0.0 if not isinstance(sign, float) else (x > 0.0 if sign > 0.0 else x < 0.0)
    if itm.any():
        np.subtract(beta, np.subtract(ei, e), out=beta, where=itm)
    np.abs(x, out=x)
    np.negative(x, out=x)

    # A price within a few ulps of a bound is at the bound: there is no meaningful volatility. The
    # rounding scale is the OTM price itself, or the ITM price (~ei) the intrinsic was taken from.
    if itm.any():
        noise = np.where(itm, ei, e)
        noise *= _BOUND_ULPS * _DBL_EPSILON
        below = ~(beta > 0.0) | (itm & (beta <= noise))
        above = beta >= e - noise
    else:
        below = ~(beta > 0.0)
        above = beta >= e * (1.0 - _BOUND_ULPS * _DBL_EPSILON)
    solvable = ~(below | above)
    sub_reason = None
    if not solvable.all():
        sub_reason = np.zeros(n, dtype=np.int8)
        sub_reason[below] = IVReason.BELOW_INTRINSIC
        sub_reason[above] = IVReason.ABOVE_BOUND
        keep = np.flatnonzero(solvable)
        beta, x, e, ei = beta[keep], x[keep], e[keep], ei[keep]
        t_solve = take(t, keep)
    else:
        keep = None
        t_solve = t
    if beta.shape[0]:
        s, ok = _solve(_Problem(beta, x, e, ei))
        sigma = np.divide(s, np.sqrt(t_solve), out=s)
        sigma[~ok] = np.nan
    else:
        sigma = beta
        ok = np.ones(0, dtype=bool)

    # scatter back: solvable subset -> checked subset -> chunk
    if keep is None:
        res_sigma = sigma
        res_reason = (
            np.where(ok, np.int8(IVReason.OK), np.int8(IVReason.NO_CONVERGENCE)) if not ok.all() else None
        )
    else:
        assert sub_reason is not None
        res_sigma = np.full(n, np.nan)
        res_sigma[keep] = sigma
        sub_reason[keep[~ok]] = IVReason.NO_CONVERGENCE
        res_reason = sub_reason
    if idx is None:
        iv[:] = res_sigma
        if res_reason is not None:
            reason[:] = res_reason
    else:
        iv[idx] = res_sigma
        if res_reason is not None:
            reason[idx] = res_reason


def implied_vol(
    price: Any,
    option_type: Any,
    S: Any,
    K: Any,
    t: Any,
    r: Any,
    *,
    q: Any = 0.0,
    model: str = "black_scholes",
    return_reason: bool = False,
    threads: int | None = None,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Implied volatility (decimal, 0.2 = 20 %) of option prices, vectorised.

    ``price``: option price in currency units (discounted, as quoted). Other arguments as for
    :func:`greeks.engine.price` (``S`` = spot for "black_scholes" with dividend yield ``q``, or the
    forward for "black76"; ``t`` in years; ``r`` and ``q`` continuously compounded decimals).

    Returns a float64 array of the broadcast input shape: the volatility that reprices the option
    to within about 1e-14 relative, or NaN where there is no solution. With ``return_reason=True``
    returns ``(iv, reason)`` where ``reason`` is an int8 array of :class:`IVReason` codes (0 = OK).
    Per-element problems never raise; an unknown ``option_type`` or ``model`` raises ValueError.
    ``threads``: None = all CPUs for arrays of >= 262 144 options, else the given number.
    """
    black76 = check_model(model)
    shape, is_call, (p_, S_, K_, t_, r_, q_) = broadcast_flat(
        option_type, [price, S, K, t, r, 0.0 if black76 else q]
    )
    n = math.prod(shape)
    iv = np.empty(n)
    reason = np.empty(n, dtype=np.int8)

    def work(lo: int, hi: int) -> None:
        p_c, S_c, K_c = (chunk_of(v, lo, hi) for v in (p_, S_, K_))
        t_c, r_c, q_c = (collapse_constant(chunk_of(v, lo, hi)) for v in (t_, r_, q_))
        _iv_chunk(
            p_c, sign_chunk(is_call, lo, hi), S_c, K_c, t_c, r_c, q_c, black76, iv[lo:hi], reason[lo:hi]
        )

    run_chunked(n, thread_count(n, threads), work, chunk=_CHUNK)
    iv = iv.reshape(shape)
    if return_reason:
        return iv, reason.reshape(shape)
    return iv

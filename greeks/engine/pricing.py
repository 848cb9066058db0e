"""Vectorised Black–Scholes–Merton / Black-76 prices and Greeks.

Conventions (all inputs broadcast against each other, scalars allowed):

* ``S``: spot (``black_scholes``) or forward/futures price (``black76``), currency units.
* ``K``: strike, same units as ``S``. ``t``: time to expiry in years. ``r``: continuously
  compounded risk-free rate (0.065 = 6.5 %). ``sigma``: volatility as a decimal (0.2 = 20 %).
  ``q``: continuous dividend yield as a decimal, ``black_scholes`` only (ignored by ``black76``).
* ``black76`` discounts with ``exp(-r t)`` and treats ``S`` as the forward: it is the generalised
  BSM with cost of carry zero.

Output units:

* ``price``: currency units. ``delta``: per 1 unit of ``S``. ``gamma``: per 1 unit of ``S`` squared.
* ``theta``: per calendar day = (d price / d calendar time, per year) / 365, i.e. the change of the
  price as one day passes (normally negative).
* ``vega``: per 1 vol point = (d price / d sigma) / 100.
* ``rho``: per 1 % of rate = (d price / d r) / 100. For ``black76`` the forward is held fixed, so
  rho = -t · price / 100; for ``black_scholes`` the spot is held fixed.
* ``vanna``: d delta / d sigma per vol point = (d² price / d S d sigma) / 100.
* ``vomma``: d² price / d sigma² per vol point squared = (d² price / d sigma²) / 10 000.
* ``charm``: the change of delta as one calendar day passes = -(d delta / d t) / 365 where ``t`` is
  the time to expiry (so charm is "delta tomorrow minus delta today", to first order).

Invalid elements (``S``, ``K`` or ``sigma`` <= 0, ``t`` < 0, any NaN or infinite input) give NaN in
every output for that element; other elements are unaffected and nothing is raised. At ``t == 0``
the price is the intrinsic value ``max(±(S - K), 0)`` (no discounting left) and every Greek is NaN:
at expiry the sensitivities are step functions or infinite, not numbers a consumer should average.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.special import ndtr

from greeks.engine._black import _INV_SQRT_2PI, cancellation_subset, small_t_otm_black
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

GREEK_KEYS = ("price", "delta", "gamma", "theta", "vega", "rho", "vanna", "vomma", "charm")

_DAYS_PER_YEAR = 365.0


def _all_valid(S: Operand, K: Operand, t: Operand, r: Operand, sigma: Operand, q: Operand) -> bool:
    """Cheap check (min/max reductions, NaN-propagating) that no element needs special handling."""
    for a in (S, K, sigma):
        if isinstance(a, float):
            if not 0.0 < a < np.inf:
                return False
        elif not (a.min() > 0.0 and a.max() < np.inf):
            return False
    if isinstance(t, float):
        if not 0.0 < t < np.inf:
            return False
    elif not (t.min() > 0.0 and t.max() < np.inf):
        return False
    for a in (r, q):
        if isinstance(a, float):
            if not np.isfinite(a):
                return False
        elif not (a.min() > -np.inf and a.max() < np.inf):
            return False
    return True


def _gt0_finite(a: Operand) -> Any:
    return (a > 0.0) & (a < np.inf)


def _bad_and_expired(
    m: int, S: Operand, K: Operand, t: Operand, r: Operand, sigma: Operand, q: Operand
) -> tuple[np.ndarray, np.ndarray]:
    """Element masks: invalid input, and valid but t == 0."""
    ok = _gt0_finite(S) & _gt0_finite(K) & _gt0_finite(sigma) & (t >= 0.0) & (t < np.inf)
    ok = ok & np.isfinite(r) & np.isfinite(q)
    ok = np.broadcast_to(ok, (m,))
    expired = ok & np.broadcast_to(t == 0.0, (m,))
    return ~ok, expired


def _fix_special(
    m: int,
    sign: Operand,
    S: Operand,
    K: Operand,
    t: Operand,
    r: Operand,
    sigma: Operand,
    q: Operand,
    outs: list[FloatArray],
) -> None:
    """Overwrite invalid elements with NaN and expired ones with intrinsic value / NaN Greeks."""
    bad, expired = _bad_and_expired(m, S, K, t, r, sigma, q)
    for o in outs:
        o[bad] = np.nan
    if expired.any():
        intrinsic = np.maximum(np.broadcast_to(sign * (S - K), (m,))[expired], 0.0)
        outs[0][expired] = intrinsic
        for o in outs[1:]:
            o[expired] = np.nan


def _d_parts(
    m: int, S: Operand, K: Operand, t: Operand, r: Operand, sigma: Operand, q: Operand, black76: bool
) -> tuple[Operand, FloatArray, FloatArray, FloatArray, Operand, Operand | None, FloatArray]:
    """Return sqrt(t), s = sigma sqrt(t), d1, d2, D = exp(-r t), Dq = exp(-q t) (None when 1), x/s.

    sqrt(t), D and Dq are Python floats when t (and r, q) are: a chain of one expiry then pays for
    one exp instead of one per option. For black76 Dq is D (the forward carries no cost), so the
    BSM formulas apply unchanged.
    """
    t_scalar = isinstance(t, float)
    sqt: Operand = float(np.sqrt(np.float64(t))) if t_scalar else np.sqrt(t, out=np.empty(m))
    s = np.multiply(sigma, sqt, out=np.empty(m))
    neg_rt: Operand
    if t_scalar and isinstance(r, float):
        neg_rt = -r * t
    elif isinstance(r, float):
        neg_rt = np.multiply(t, -r, out=np.empty(m))
    else:
        neg_rt = np.multiply(t, r, out=np.empty(m))
        np.negative(neg_rt, out=neg_rt)
    x = np.divide(S, K, out=np.empty(m))
    np.log(x, out=x)
    Dq: Operand | None = None
    if not black76:
        x -= neg_rt  # x = ln(S/K) + r t
        if not (isinstance(q, float) and q == 0.0):
            neg_qt: Operand = -q * t if t_scalar and isinstance(q, float) else np.multiply(np.negative(q), t)
            x += neg_qt  # x = ln(S/K) + (r - q) t
            Dq = _exp(neg_qt)
    D = _exp(neg_rt)
    if black76:
        Dq = D  # zero carry: the forward's "dividend yield" is r
    # d1 = x/s + s/2, d2 = x/s - s/2
    np.divide(x, s, out=x)
    half_s = np.multiply(s, 0.5, out=np.empty(m))
    d1 = np.add(x, half_s, out=np.empty(m))
    d2 = np.subtract(x, half_s, out=half_s)
    return sqt, s, d1, d2, D, Dq, x


def _exp(value: Operand) -> Operand:
    """exp, in place for an array, as a Python float for a scalar (inf on overflow, no exception)."""
    if isinstance(value, float):
        return float(np.exp(np.float64(value)))
    return np.exp(value, out=value)


def _cancelling_otm(sign: Operand, h: FloatArray, s: FloatArray) -> npt.NDArray[np.intp]:
    """Out-of-the-money elements whose two-term price would cancel badly (see ``_black``)."""
    idx = cancellation_subset(np.abs(h), s)
    if idx.size == 0:
        return idx
    hs = h[idx] * (sign if isinstance(sign, float) else sign[idx])
    return idx[hs < 0.0]


def _otm_price(idx: npt.NDArray[np.intp], h: FloatArray, s: FloatArray, K: Operand, D: Operand) -> FloatArray:
    """D sqrt(F K) b(-|x|, s) at ``idx``: the OTM price without cancellation (x = h s)."""
    h_i = h[idx]
    s_i = s[idx]
    b = small_t_otm_black(-np.abs(h_i), 0.5 * s_i)
    K_i = take(K, idx)
    return take(D, idx) * K_i * np.exp(0.5 * h_i * s_i) * b


def _apply_sign(values: FloatArray, sign: Operand, out: FloatArray) -> FloatArray:
    """out = sign * values, skipping the multiply for a scalar sign."""
    if isinstance(sign, float):
        if sign < 0.0:
            np.negative(values, out=out)
        elif out is not values:
            out[...] = values
        return out
    return np.multiply(values, sign, out=out)


def _is_zero(value: Operand) -> bool:
    return isinstance(value, float) and value == 0.0


def _price_chunk(
    sign: Operand,
    S: Operand,
    K: Operand,
    t: Operand,
    r: Operand,
    sigma: Operand,
    q: Operand,
    black76: bool,
    out: FloatArray,
) -> None:
    m = out.shape[0]
    _, s, d1, d2, D, Dq, h = _d_parts(m, S, K, t, r, sigma, q, black76)
    fix = _cancelling_otm(sign, h, s)
    # price = sign S Dq N(sign d1) - sign K D N(sign d2); the sign inside N keeps OTM tails
    # accurate. Same operations in the same order as greeks(), so both give identical prices.
    ndtr(_apply_sign(d1, sign, out), out=out)
    _apply_sign(out, sign, out)
    if Dq is not None:
        out *= Dq
    out *= S
    nd2 = ndtr(_apply_sign(d2, sign, d2), out=d2)
    nd2 *= K
    nd2 *= D
    _apply_sign(nd2, sign, nd2)
    out -= nd2
    if fix.size:
        out[fix] = _otm_price(fix, h, s, K, D)


def _greeks_chunk(
    sign: Operand,
    S: Operand,
    K: Operand,
    t: Operand,
    r: Operand,
    sigma: Operand,
    q: Operand,
    black76: bool,
    outs: list[FloatArray],
) -> None:
    price, delta, gamma, theta, vega, rho, vanna, vomma, charm = outs
    m = price.shape[0]
    sqt, s, d1, d2, D, Dq, h = _d_parts(m, S, K, t, r, sigma, q, black76)
    fix = _cancelling_otm(sign, h, s)
    fix_price = _otm_price(fix, h, s, K, D) if fix.size else None
    # black76 is BSM with q = r (zero carry), except for rho and the carry term of charm
    q_eff: Operand = r if black76 else q

    # u = Dq phi(d1): the density term shared by gamma, vega, theta, vanna, vomma and charm
    u = np.multiply(d1, d1, out=np.empty(m))
    u *= -0.5
    np.exp(u, out=u)
    u *= _INV_SQRT_2PI
    if Dq is not None:
        u *= Dq

    # delta = sign Dq N(sign d1); A = S delta; B = sign K D N(sign d2); price = A - B
    ndtr(_apply_sign(d1, sign, delta), out=delta)
    _apply_sign(delta, sign, delta)
    if Dq is not None:
        delta *= Dq
    A = np.multiply(delta, S, out=np.empty(m))
    B = ndtr(_apply_sign(d2, sign, np.empty(m)))
    B *= K
    B *= D
    _apply_sign(B, sign, B)
    np.subtract(A, B, out=price)
    if fix_price is not None:
        price[fix] = fix_price

    # gamma = Dq phi / (S s)
    np.multiply(s, S, out=gamma)
    np.divide(u, gamma, out=gamma)

    # charm per day = [q_eff delta + Dq phi (d2 / (2 t) - (r - q_eff) / s)] / 365; the bracket
    # first, while s is still alive
    np.divide(d2, t, out=charm)
    charm *= 0.5 / _DAYS_PER_YEAR
    if not black76:
        carry = r - q
        if not _is_zero(carry):
            if isinstance(carry, float):
                charm -= np.divide(carry / _DAYS_PER_YEAR, s, out=s)
            else:
                np.divide(carry, s, out=s)
                s *= 1.0 / _DAYS_PER_YEAR
                charm -= s
    charm *= u
    if not _is_zero(q_eff):
        tmp = np.multiply(delta, q_eff / _DAYS_PER_YEAR if isinstance(q_eff, float) else q_eff, out=s)
        if not isinstance(q_eff, float):
            tmp *= 1.0 / _DAYS_PER_YEAR
        charm += tmp

    # vanna = -Dq phi d2 / sigma / 100; vomma = raw vega d1 d2 / sigma / 1e4
    w = np.divide(d2, sigma, out=d2)
    np.multiply(u, w, out=vanna)
    vanna *= -0.01
    # pv = S Dq phi; raw vega = pv sqrt(t); theta's decay term = -pv sigma / (2 sqrt t)
    pv = np.multiply(u, S, out=u)
    np.multiply(pv, sigma, out=theta)
    theta /= sqt
    theta *= -0.5 / _DAYS_PER_YEAR
    np.multiply(pv, sqt, out=vega)
    np.multiply(vega, d1, out=vomma)
    vomma *= w
    vomma *= 1e-4
    vega *= 0.01

    # theta (per year) = decay - r B + q_eff A
    tmp = np.multiply(B, r / _DAYS_PER_YEAR if isinstance(r, float) else r, out=d1)
    if not isinstance(r, float):
        tmp *= 1.0 / _DAYS_PER_YEAR
    theta -= tmp
    if not _is_zero(q_eff):
        np.multiply(A, q_eff, out=tmp)
        tmp *= 1.0 / _DAYS_PER_YEAR
        theta += tmp

    # rho: black_scholes (spot fixed) = sign K t D N(sign d2); black76 (forward fixed) = -t price
    if black76:
        np.multiply(price, t, out=rho)
        rho *= -0.01
    else:
        np.multiply(B, t, out=rho)
        rho *= 0.01


def _prepare(
    option_type: Any, S: Any, K: Any, t: Any, r: Any, sigma: Any, q: Any, model: str
) -> tuple[bool, tuple[int, ...], bool | np.ndarray, list[Operand]]:
    black76 = check_model(model)
    shape, is_call, ops = broadcast_flat(option_type, [S, K, t, r, sigma, 0.0 if black76 else q])
    return black76, shape, is_call, ops


def _price_chunk_outs(sign, S, K, t, r, sigma, q, black76: bool, outs: list[FloatArray]) -> None:
    _price_chunk(sign, S, K, t, r, sigma, q, black76, outs[0])


def _run(
    kernel, n_outputs: int, option_type, S, K, t, r, sigma, q, model: str, threads: int | None
) -> tuple[tuple[int, ...], np.ndarray]:
    """Broadcast the inputs, then run ``kernel`` over chunks (on threads for large inputs) into a
    (n_outputs, n) block; invalid elements are patched per chunk. Returns (shape, block)."""
    black76, shape, is_call, (S_, K_, t_, r_, sig_, q_) = _prepare(option_type, S, K, t, r, sigma, q, model)
    n = math.prod(shape)
    block = np.empty((n_outputs, n))

    def work(lo: int, hi: int) -> None:
        sign = sign_chunk(is_call, lo, hi)
        S_c, K_c, sig_c = (chunk_of(v, lo, hi) for v in (S_, K_, sig_))
        t_c, r_c, q_c = (collapse_constant(chunk_of(v, lo, hi)) for v in (t_, r_, q_))
        outs = [row[lo:hi] for row in block]
        with np.errstate(all="ignore"):
            kernel(sign, S_c, K_c, t_c, r_c, sig_c, q_c, black76, outs)
            if not _all_valid(S_c, K_c, t_c, r_c, sig_c, q_c):
                _fix_special(hi - lo, sign, S_c, K_c, t_c, r_c, sig_c, q_c, outs)

    run_chunked(n, thread_count(n, threads), work)
    return shape, block


def price(
    option_type: Any,
    S: Any,
    K: Any,
    t: Any,
    r: Any,
    sigma: Any,
    *,
    q: Any = 0.0,
    model: str = "black_scholes",
    threads: int | None = None,
) -> np.ndarray:
    """Option price in currency units (see the module docstring for conventions).

    ``option_type``: "call"/"put", "c"/"p", "CE"/"PE" (any case), a boolean is_call, or 1/0;
    scalar or array. ``model``: "black_scholes" (``S`` = spot, ``q`` = dividend yield) or "black76"
    (``S`` = forward). ``threads``: None = use all CPUs for arrays of >= 262 144 options, else the
    given number. Returns a float64 array of the broadcast shape of all inputs (0-d for scalars);
    NaN for invalid elements, intrinsic value where ``t == 0``.
    """
    shape, block = _run(_price_chunk_outs, 1, option_type, S, K, t, r, sigma, q, model, threads)
    return block[0].reshape(shape)


def greeks(
    option_type: Any,
    S: Any,
    K: Any,
    t: Any,
    r: Any,
    sigma: Any,
    *,
    q: Any = 0.0,
    model: str = "black_scholes",
    threads: int | None = None,
) -> dict[str, np.ndarray]:
    """Price and eight Greeks in one pass, sharing d1, d2, N(d1), N(d2) and phi(d1).

    Returns a dict with exactly the keys ``price, delta, gamma, theta, vega, rho, vanna, vomma,
    charm``, each a float64 array of the broadcast input shape, in the units listed in the module
    docstring (theta and charm per calendar day, vega/vanna per vol point, vomma per vol point
    squared, rho per 1 % rate). Arguments as for :func:`price`. Invalid elements are NaN in every
    output; at ``t == 0`` the price is intrinsic and every Greek is NaN.
    """
    shape, block = _run(_greeks_chunk, len(GREEK_KEYS), option_type, S, K, t, r, sigma, q, model, threads)
    return {k: block[i].reshape(shape) for i, k in enumerate(GREEK_KEYS)}

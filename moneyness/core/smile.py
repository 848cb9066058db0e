"""The fitted smile of one expiry: a raw SVI slice in total variance (SPEC §7), re-fitted every minute.

Pure numpy + scipy. Conventions: ``k = ln(K/F)`` (log-moneyness against the expiry's forward),
``t`` in years (ACT/365), implied vols in decimals (0.13 = 13 %), total variance ``w = iv^2 t``.

Raw SVI (Gatheral 2004)::

    w(k) = a + b * (rho * (k - m) + sqrt((k - m)^2 + sigma^2))

Constraints imposed on every fit (so the slice is free of static arbitrage as far as a 5-parameter
slice can be made so by bounds alone):

* ``b >= 0``, ``|rho| <= 1`` (``|rho| = 1`` only when the data ask for an exactly flat wing),
  ``sigma > 0``;
* non-negative minimum variance: ``a + b sigma sqrt(1 - rho^2) >= 0``;
* Roger Lee's moment formula: the wing slopes of *total* variance, ``b (1 + rho)`` on the right and
  ``b (1 - rho)`` on the left, are at most 2, i.e. ``b (1 + |rho|) <= 2``. (The often-quoted
  ``b (1 + |rho|) <= 4 / T`` is the Rogers–Tehranchi bound ``|dw/dk| <= 4`` written in variance
  rather than total variance; Lee's asymptotic bound is the tighter of the two in the wings.)

Durrleman's butterfly condition ``g(k) >= 0`` is *checked*, not imposed, on a dense grid over the
data's k range and reported (``SviFit.butterfly_arbitrage_free``, ``min_durrleman_g``): bounds alone
cannot guarantee it for raw SVI, and a nonlinear constraint would cost the per-minute budget.

Method. Every constraint is a simple bound in the parameters ``(v, p, q, m, ln sigma)`` with
``b (1 - rho) = p^2`` and ``b (1 + rho) = q^2`` (the wing slopes) and ``v = a + sigma p q`` (the
minimum total variance): ``v > 0``, ``0 <= p, q <= sqrt(2)``; ``sigma`` is kept within
``SIGMA_SPAN`` times the data's k range. The fit is

1. a seed by the quasi-explicit method (Zeliade 2009): on a 15 x 15 grid of ``(m, sigma)`` the rest,
   ``(a, b(1+rho), b(1-rho))``, enters linearly and is solved exactly, as least squares over the
   box of the slope bounds, in closed form for all grid points at once; the previous minute's
   parameters, when given, compete with the best grid point;
2. a polish of all five parameters from the best seed by Levenberg-Marquardt (MINPACK through
   ``scipy.optimize.least_squares``, analytic Jacobian), kept inside the bounds by a smooth map of
   unbounded variables onto them (:class:`_Box`). Measured against scipy's bounded trust-region
   method (TRF) from the same seeds on 300 random SVI/SSVI slices, both capped at 60 evaluations:
   median time 1.3 ms against 3.2 ms, 90th-percentile error 1.4e-6 against 4.3e-6 in vol; the worst
   (4.6e-4 against 4.0e-4) is, for both, a slice whose vertex lies beyond the data, where the
   optimum sits in a long flat valley. At ``MAX_EVALUATIONS`` (100) the worst is 1.0e-4.

The residual is in total variance, weighted by ``1 / (2 iv t)`` (``dw = 2 iv t d(iv)``): to first
order that is the error in vol, which is what a trader reads and what ``rmse_vol`` reports, while
the (a, b, rho) sub-problem stays linear, which is what makes the quasi-explicit seed exact and
cheap.

Speed, 150 strikes, one fit at a time on the 2-core AMD EPYC dev box (numpy 2.4.6, scipy 1.17.1,
``time.perf_counter`` around ``fit_svi``, three runs): over the 40 test slices (SSVI, t from 1 day
to 0.25 y, exact and with +-0.002 vol noise), median 0.8 ms cold and 0.7 ms warm-started from the
previous minute's fit, p99 1.3 ms (single outliers to 4.6 ms: the box is shared). Over 300 random
SVI and SSVI slices, many with their vertex beyond the data: median 1.2 ms, p99 4.9 ms, worst 5.5
ms, which is ``MAX_EVALUATIONS`` reached (~0.05 ms per evaluation; the grid seed is 0.23 ms). The
warm start saves little time, since the grid seed is computed anyway so that a stale start cannot
trap the fit; its use is keeping minute-to-minute fits in the same minimum.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from scipy.optimize import least_squares

MIN_POINTS = 5  # distinct strikes: SVI has five parameters
LEE_MAX_SLOPE = 2.0  # Lee: limsup w(k) / |k| <= 2 in each wing
BUTTERFLY_GRID_POINTS = 401
BUTTERFLY_TOLERANCE = 1e-10  # g is O(1); this only absorbs rounding
GRID_SIZE = 15
M_SPAN = 0.5  # the seed grid of m reaches this many k ranges beyond the data
SIGMA_SPAN = (1e-4, 10.0)  # sigma's range, in multiples of the data's k range
V_CAP = 10.0  # the minimum variance's cap, in multiples of the largest market total variance
V_START = 0.5  # the least minimum variance a fit starts from, in multiples of the smallest market one
_SQRT_LEE = math.sqrt(LEE_MAX_SLOPE)
MAX_EVALUATIONS = 100  # caps a bad minute's time (~5 ms); the typical fit converges in ~25


@dataclass(frozen=True)
class SviParams:
    """Raw SVI parameters of one slice, in total variance against ``k = ln(K/F)``."""

    a: float
    b: float
    rho: float
    m: float
    sigma: float

    def total_variance(self, k: ArrayLike) -> np.ndarray:
        """``w(k)`` (dimensionless: vol^2 x years)."""
        d = np.asarray(k, dtype=float) - self.m
        return self.a + self.b * (self.rho * d + np.sqrt(d * d + self.sigma**2))

    def implied_vol(self, k: ArrayLike, t: float) -> np.ndarray:
        """Implied vol (decimal) at ``k`` for ``t`` years; NaN where ``w(k)`` is negative (not for a
        slice returned by :func:`fit_svi`, whose minimum variance is non-negative)."""
        if not (math.isfinite(t) and t > 0):
            raise ValueError(f"t must be a positive number of years, got {t!r}")
        w = self.total_variance(k)
        with np.errstate(invalid="ignore"):
            return np.sqrt(w / t)

    def durrleman_g(self, k: ArrayLike) -> np.ndarray:
        """Durrleman's butterfly function ``g(k)``; the slice has no butterfly arbitrage where it is
        >= 0 (the risk-neutral density is ``g`` times a positive factor)."""
        k = np.asarray(k, dtype=float)
        d = k - self.m
        root = np.sqrt(d * d + self.sigma**2)
        w = self.a + self.b * (self.rho * d + root)
        w1 = self.b * (self.rho + d / root)
        w2 = self.b * self.sigma**2 / root**3
        with np.errstate(divide="ignore", invalid="ignore"):
            return (1.0 - k * w1 / (2.0 * w)) ** 2 - w1 * w1 / 4.0 * (1.0 / w + 0.25) + w2 / 2.0

    @property
    def min_total_variance(self) -> float:
        """``a + b sigma sqrt(1 - rho^2)``, the smallest total variance of the slice."""
        return self.a + self.b * self.sigma * math.sqrt(max(1.0 - self.rho**2, 0.0))

    def as_dict(self) -> dict[str, float]:
        return {"a": self.a, "b": self.b, "rho": self.rho, "m": self.m, "sigma": self.sigma}


@dataclass(frozen=True)
class SviFit:
    """A fitted slice, or the reason there is none.

    ``status``: "ok"; "too_few_points" (fewer than ``MIN_POINTS`` distinct k with a usable iv);
    "failed" (the inputs or the optimiser gave nothing finite; ``reason`` says which). An "ok" fit's
    ``reason`` is empty unless the optimiser stopped at ``MAX_EVALUATIONS``. Without a fit,
    ``params`` is None and the errors are NaN. ``rmse_vol`` / ``max_abs_error_vol``: unweighted RMS and
    max of fitted vol - input vol over the ``points`` used (vol decimals). ``k_min``/``k_max``: the
    data range, the only range the fit speaks for (and the butterfly check's grid).
    """

    params: SviParams | None
    rmse_vol: float
    max_abs_error_vol: float
    points: int
    butterfly_arbitrage_free: bool
    status: str
    reason: str = ""
    t: float = math.nan
    k_min: float = math.nan
    k_max: float = math.nan
    min_durrleman_g: float = math.nan


def fit_svi(
    k: ArrayLike,
    iv: ArrayLike,
    t: float,
    *,
    weights: ArrayLike | None = None,
    previous: SviParams | None = None,
    grid: bool = True,
) -> SviFit:
    """Fit raw SVI to one expiry's implied vols.

    ``k``: log-moneyness ``ln(K/F)``; ``iv``: implied vols (decimal; NaN or <= 0 = unknown, dropped,
    as are non-finite ``k``); ``t``: years to expiry (ACT/365, > 0); ``weights``: optional relative
    weights per point (>= 0; 0 or NaN drops the point), e.g. vega or 1/spread; ``previous``: the
    last fit of this slice, a warm start that competes with the grid seed (so a stale one cannot
    trap the fit); ``grid=False`` starts from ``previous`` alone (the per-minute refit of a slice
    that moved little: the caller checks the result and falls back to the full fit).
    """
    k = np.asarray(k, dtype=float).ravel()
    iv = np.asarray(iv, dtype=float).ravel()
    if k.shape != iv.shape:
        raise ValueError(f"k and iv differ in length: {k.size} != {iv.size}")
    lam = np.ones_like(k) if weights is None else np.asarray(weights, dtype=float).ravel()
    if lam.shape != k.shape:
        raise ValueError(f"weights and k differ in length: {lam.size} != {k.size}")
    if np.any(lam < 0):
        raise ValueError("weights must be >= 0")
    if not (math.isfinite(t) and t > 0):
        return _no_fit("failed", f"t must be a positive number of years, got {t!r}", 0, t)

    with np.errstate(over="ignore", under="ignore"):
        w_market = iv * iv * t
    usable = np.isfinite(k) & np.isfinite(w_market) & (w_market > 0) & (iv > 0) & np.isfinite(lam) & (lam > 0)
    k, iv, lam, w_market = k[usable], iv[usable], lam[usable], w_market[usable]
    distinct = int(np.unique(k).size)
    if distinct < MIN_POINTS:
        reason = f"{distinct} distinct strikes with an iv; SVI needs {MIN_POINTS}"
        return _no_fit("too_few_points", reason, int(k.size), t)
    try:
        # Absurd inputs (an iv of 1e77, k of 1e300) overflow somewhere on the way; they end as
        # "failed" through the finiteness checks below rather than as warnings or a wrong number.
        with np.errstate(all="ignore"):
            return _fit(k, iv, w_market, lam, t, previous, grid=grid or previous is None)
    except (ValueError, OverflowError, ZeroDivisionError, np.linalg.LinAlgError) as error:
        return _no_fit("failed", f"optimiser: {error}", int(k.size), t)


def _fit(
    k: np.ndarray,
    iv: np.ndarray,
    w_market: np.ndarray,
    lam: np.ndarray,
    t: float,
    previous: SviParams | None,
    *,
    grid: bool,
) -> SviFit:
    scale = np.sqrt(lam / lam.sum()) / (2.0 * iv * t)  # residual in w -> (weighted) residual in vol
    box = _Box.around(k, w_market)
    seeds = [box.to_free(_grid_seed(k, w_market, scale))] if grid else []
    if previous is not None:
        seeds.append(box.to_free(_from_params(previous)))
    costs = [_cost(z, box, k, w_market, scale) for z in seeds]
    z0 = seeds[min(range(len(seeds)), key=lambda i: costs[i] if math.isfinite(costs[i]) else math.inf)]
    if not (np.all(np.isfinite(z0)) and math.isfinite(min(costs))):
        return _no_fit("failed", "no finite starting point", int(k.size), t)

    solution = least_squares(
        _residuals_z,
        z0,
        jac=_jacobian_z,
        args=(box, k, w_market, scale),
        method="lm",
        x_scale="jac",
        ftol=1e-12,
        xtol=1e-12,
        gtol=1e-12,
        max_nfev=MAX_EVALUATIONS,
    )
    params = _to_params(box.from_free(solution.x)[0])
    error = params.implied_vol(k, t) - iv
    rmse = float(np.sqrt(np.mean(error * error)))
    if not (all(math.isfinite(value) for value in params.as_dict().values()) and math.isfinite(rmse)):
        return _no_fit("failed", "optimiser returned non-finite parameters", int(k.size), t)
    grid = np.linspace(k.min(), k.max(), BUTTERFLY_GRID_POINTS)
    min_g = float(np.min(params.durrleman_g(grid)))
    return SviFit(
        params=params,
        rmse_vol=rmse,
        max_abs_error_vol=float(np.max(np.abs(error))),
        points=int(k.size),
        butterfly_arbitrage_free=bool(min_g >= -BUTTERFLY_TOLERANCE),
        status="ok",
        reason=""
        if solution.status != 0
        else f"stopped at {MAX_EVALUATIONS} evaluations, short of convergence",
        t=float(t),
        k_min=float(k.min()),
        k_max=float(k.max()),
        min_durrleman_g=min_g,
    )


def _no_fit(status: str, reason: str, points: int, t: float) -> SviFit:
    nan = math.nan
    return SviFit(None, nan, nan, points, False, status, reason, float(t))


@dataclass(frozen=True)
class _Box:
    """The bounds on the optimiser's parameters x = (v, p, q, m, ln sigma), every constraint being
    one of them, and a smooth map from unconstrained z onto them, which lets the fast unbounded
    Levenberg-Marquardt (MINPACK) do a bounded fit.

    * ``p, q = sqrt(2) sin^2 z`` in ``[0, sqrt(2)]``: Lee's bound and a flat wing are reachable;
    * ``ln v = high - log(1 + exp(high - z))``: ``v > 0`` (a zero minimum variance is approached,
      to any digit that matters), linear in ``z`` (relative steps, whatever the scale of the
      variance) except near the cap ``V_CAP`` times the largest market total variance, which never
      binds a fit but keeps a wild trial step from overflowing;
    * ``ln sigma`` = the sin^2 map onto ``SIGMA_SPAN`` times the data's k range: beyond it the slice
      is a parabola (above) or a kink (below) over the data, indistinguishable from the bound, and
      the optimiser would only crawl along that flat valley;
    * ``m = z``.

    The sin^2 maps are flat at the bounds, so :meth:`to_free` starts a hair inside them; and a seed
    at zero minimum variance (the grid seed's floor) starts at ``V_START`` times the smallest market
    total variance, because at 1e-13 the Jacobian column of ``ln v`` vanishes and the optimiser
    stalls there (found on a 1-day slice with ATM vol 8 % and 450 % wings).
    """

    log_v_cap: float
    v_start: float
    low: np.ndarray  # of (-, p, q, -, ln sigma)
    high: np.ndarray

    @classmethod
    def around(cls, k: np.ndarray, w_market: np.ndarray) -> _Box:
        span = float(k.max() - k.min())
        s_low, s_high = SIGMA_SPAN
        return cls(
            math.log(V_CAP * float(w_market.max())),
            V_START * float(w_market.min()),
            np.array([0.0, 0.0, 0.0, 0.0, math.log(s_low * span)]),
            np.array([0.0, _SQRT_LEE, _SQRT_LEE, 0.0, math.log(s_high * span)]),
        )

    def from_free(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """x and dx/dz (the map is diagonal)."""
        sine = np.sin(z)
        y = self.low + (self.high - self.low) * sine * sine
        dy = (self.high - self.low) * np.sin(2.0 * z)
        log_v = self.log_v_cap - float(np.logaddexp(0.0, self.log_v_cap - z[0]))
        v = math.exp(log_v)
        dv = v / (1.0 + math.exp(min(z[0] - self.log_v_cap, 700.0)))
        x = np.array([v, y[1], y[2], z[3], y[4]])
        dx = np.array([dv, dy[1], dy[2], 1.0, dy[4]])
        return x, dx

    def to_free(self, x: np.ndarray) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            fraction = np.clip((x - self.low) / (self.high - self.low), 0.0, 1.0)
        edge = 1e-3  # radians off a flat point: p, q move by ~1e-6, ln sigma by ~1e-6 of its range
        z = np.clip(np.arcsin(np.sqrt(np.nan_to_num(fraction))), edge, math.pi / 2 - edge)
        log_v = min(math.log(max(x[0], self.v_start)), self.log_v_cap - 1.0)
        z[0] = self.log_v_cap - math.log(math.expm1(self.log_v_cap - log_v))
        z[3] = x[3]
        return z


def _residuals_z(
    z: np.ndarray, box: _Box, k: np.ndarray, w_market: np.ndarray, scale: np.ndarray
) -> np.ndarray:
    return _residuals(box.from_free(z)[0], k, w_market, scale)


def _jacobian_z(
    z: np.ndarray, box: _Box, k: np.ndarray, w_market: np.ndarray, scale: np.ndarray
) -> np.ndarray:
    x, dx = box.from_free(z)
    return _jacobian(x, k, w_market, scale) * dx[None, :]


def _to_params(x: np.ndarray) -> SviParams:
    v, p, q, m, log_sigma = (float(value) for value in x)
    sigma = math.exp(log_sigma)
    left, right = p * p, q * q  # wing slopes b(1 - rho), b(1 + rho)
    b = 0.5 * (left + right)
    rho = (right - left) / (right + left) if b > 0 else 0.0  # rho is immaterial on a flat slice
    return SviParams(a=v - sigma * p * q, b=b, rho=rho, m=m, sigma=sigma)


def _from_params(params: SviParams) -> np.ndarray:
    """The optimiser's coordinates of a (possibly foreign, e.g. stale) raw SVI, clipped into the
    constraints (and then into the box by :meth:`_Box.to_free`) so it is a valid starting point."""
    rho = min(max(params.rho, -1.0), 1.0)
    b = max(params.b, 0.0)
    sigma = max(params.sigma, 1e-12)
    p = min(math.sqrt(b * (1.0 - rho)), _SQRT_LEE)
    q = min(math.sqrt(b * (1.0 + rho)), _SQRT_LEE)
    v = max(params.a + sigma * p * q, 0.0)
    return np.array([v, p, q, params.m, math.log(sigma)])


def _parts(x: np.ndarray, k: np.ndarray):
    v, p, q, m, log_sigma = x
    sigma = math.exp(log_sigma)
    d = k - m
    root = np.sqrt(d * d + sigma * sigma)
    # b(rho d + root) = q^2 (root + d)/2 + p^2 (root - d)/2: the wings separate.
    return v, p, q, sigma, d, root, 0.5 * (root + d), 0.5 * (root - d)


def _residuals(x: np.ndarray, k: np.ndarray, w_market: np.ndarray, scale: np.ndarray) -> np.ndarray:
    v, p, q, sigma, _, _, right, left = _parts(x, k)
    return scale * (v - sigma * p * q + q * q * right + p * p * left - w_market)


def _jacobian(x: np.ndarray, k: np.ndarray, w_market: np.ndarray, scale: np.ndarray) -> np.ndarray:
    _, p, q, sigma, d, root, right, left = _parts(x, k)
    jac = np.empty((k.size, 5))
    jac[:, 0] = 1.0
    jac[:, 1] = 2.0 * p * left - sigma * q
    jac[:, 2] = 2.0 * q * right - sigma * p
    slope = d / root
    jac[:, 3] = 0.5 * (p * p * (1.0 - slope) - q * q * (1.0 + slope))
    jac[:, 4] = sigma * ((p * p + q * q) * sigma / (2.0 * root) - p * q)  # d/d(ln sigma)
    return jac * scale[:, None]


def _cost(z: np.ndarray, box: _Box, k: np.ndarray, w_market: np.ndarray, scale: np.ndarray) -> float:
    r = _residuals_z(z, box, k, w_market, scale)
    return float(r @ r)


def _grid_seed(k: np.ndarray, w_market: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Best grid point of the quasi-explicit method, in the optimiser's coordinates.

    For fixed (m, sigma), ``w = a + s_R P + s_L Q`` with ``P, Q = (root +- (k - m)) / 2`` and the wing
    slopes ``s_R, s_L`` in ``[0, 2]``: a convex quadratic in (a, s_R, s_L) over a box. The best ``a``
    is the weighted mean residual, which leaves a 2-variable quadratic in the slopes whose minimum
    over the box is the best feasible stationary point of its 9 faces (each slope free, at 0 or at
    2), all in closed form. Only ``sum(weight * root * [1, k, w])`` costs O(grid x strikes): every
    other moment follows from the moments of k and ``P Q = sigma^2 / 4``. The minimum-variance
    constraint is then enforced by raising ``a`` to it (feasible, slightly suboptimal where it
    binds; the polish finishes the job exactly).
    """
    weight = scale * scale
    weight = weight / weight.sum()
    span = float(k.max() - k.min())
    m_grid = np.linspace(k.min() - M_SPAN * span, k.max() + M_SPAN * span, GRID_SIZE)
    sigma_grid = np.geomspace(1e-3 * span, 5.0 * span, GRID_SIZE)
    m, sigma = (g.ravel() for g in np.meshgrid(m_grid, sigma_grid, indexing="ij"))
    sigma2 = sigma * sigma

    d = k[None, :] - m[:, None]
    root = np.sqrt(d * d + sigma2[:, None])
    r1, rk, rw = (root @ np.stack([weight, weight * k, weight * w_market], axis=1)).T
    k1, k2 = weight @ k, weight @ (k * k)
    w1, wk, ww = weight @ w_market, weight @ (w_market * k), weight @ (w_market * w_market)
    d1 = k1 - m  # sum(weight * d)
    dd = k2 - 2.0 * m * k1 + m * m
    dr = rk - m * r1
    rr = dd + sigma2
    wd = wk - m * w1
    p1, q1 = 0.5 * (r1 + d1), 0.5 * (r1 - d1)
    # weighted covariances (the best ``a`` removes the means)
    c_pp = 0.25 * (rr + 2.0 * dr + dd) - p1 * p1
    c_qq = 0.25 * (rr - 2.0 * dr + dd) - q1 * q1
    c_pq = 0.25 * sigma2 - p1 * q1
    c_pw = 0.5 * (rw + wd) - p1 * w1
    c_qw = 0.5 * (rw - wd) - q1 * w1
    c_ww = ww - w1 * w1

    with np.errstate(divide="ignore", invalid="ignore"):
        det = c_pp * c_qq - c_pq * c_pq
        candidates = [((c_pw * c_qq - c_qw * c_pq) / det, (c_qw * c_pp - c_pw * c_pq) / det)]
        for fixed in (0.0, LEE_MAX_SLOPE):
            candidates.append(((c_pw - fixed * c_pq) / c_pp, np.full_like(m, fixed)))
            candidates.append((np.full_like(m, fixed), (c_qw - fixed * c_pq) / c_qq))
            for other in (0.0, LEE_MAX_SLOPE):
                candidates.append((np.full_like(m, fixed), np.full_like(m, other)))
    s_right = np.stack([c[0] for c in candidates])  # (faces, grid)
    s_left = np.stack([c[1] for c in candidates])
    tolerance = 1e-12
    feasible = (
        np.isfinite(s_right)
        & np.isfinite(s_left)
        & (s_right >= -tolerance)
        & (s_right <= LEE_MAX_SLOPE + tolerance)
        & (s_left >= -tolerance)
        & (s_left <= LEE_MAX_SLOPE + tolerance)
    )
    s_right = np.clip(np.nan_to_num(s_right), 0.0, LEE_MAX_SLOPE)
    s_left = np.clip(np.nan_to_num(s_left), 0.0, LEE_MAX_SLOPE)
    a = w1 - s_right * p1 - s_left * q1
    raise_a = np.maximum(-sigma * np.sqrt(s_right * s_left) - a, 0.0)  # min variance >= 0
    cost = (
        c_ww
        - 2.0 * (s_right * c_pw + s_left * c_qw)
        + s_right * s_right * c_pp
        + 2.0 * s_right * s_left * c_pq
        + s_left * s_left * c_qq
        + raise_a * raise_a  # the residuals have zero weighted mean at the best ``a``
    )
    cost = np.where(feasible & np.isfinite(cost), cost, np.inf)
    f, g = np.unravel_index(int(np.argmin(cost)), cost.shape)
    p, q = math.sqrt(s_left[f, g]), math.sqrt(s_right[f, g])
    v = a[f, g] + raise_a[f, g] + sigma[g] * p * q
    return np.array([v, p, q, m[g], math.log(sigma[g])])

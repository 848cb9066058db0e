"""Index dynamics of the demo market (pure numpy), vectorised over the underlyings.

Per underlying, in calendar time (years, ACT/365; the demo runs 24x7 so every second counts):

    dv      = kappa (theta - v) dt + xi sqrt(v) dW_v                  (CIR / Heston variance)
    d ln S  = [pull (ln A - ln S) - lambda m - v/2] dt + sqrt(v) dW_S + J dN
    dW_S    = rho dW_v + sqrt(1 - rho^2) dB,   corr(dB_i, dB_j) = index correlation
    J ~ N(mu_J, sigma_J^2), N Poisson(lambda), m = exp(mu_J + sigma_J^2/2) - 1

The variance is sampled exactly (non-central chi-square) over any step length, so it never goes
negative and large gaps are cheap; the log price uses the trapezoid average of the variance over
the step, and the normalised variance shock for the leverage correlation. The real-world drift is
a weak pull toward the anchor ``A`` (centre of the configured spot band) so a demo that runs for
months stays near realistic levels; option prices come from the surface, not from this drift.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class ProcessParams:
    """Arrays of shape (U,), one entry per underlying; rates per year."""

    kappa: FloatArray
    theta: FloatArray  # long-run variance
    xi: FloatArray  # vol of variance
    rho: FloatArray  # spot / variance correlation
    jump_intensity: FloatArray
    jump_mean: FloatArray  # log-jump mean
    jump_stdev: FloatArray  # log-jump stdev
    anchor_log: FloatArray  # ln A
    pull: FloatArray  # mean reversion of ln S toward ln A
    chol: FloatArray  # (U, U) Cholesky factor of the index correlation matrix

    @property
    def jump_compensator(self) -> FloatArray:
        return np.expm1(self.jump_mean + 0.5 * self.jump_stdev**2)


def cir_step(
    rng: np.random.Generator, v: FloatArray, dt: float, p: ProcessParams
) -> tuple[FloatArray, FloatArray]:
    """Exact CIR transition over ``dt`` years. Returns (v_next, z) where ``z`` is the standardised
    variance innovation ``(v_next - E[v_next]) / sd[v_next]`` (mean 0, variance 1)."""
    decay = np.exp(-p.kappa * dt)
    one_minus = -np.expm1(-p.kappa * dt)
    c = p.xi**2 * one_minus / (4.0 * p.kappa)
    df = 4.0 * p.kappa * p.theta / p.xi**2
    nonc = v * decay / c
    v_next = c * rng.noncentral_chisquare(df, nonc)
    mean = p.theta * one_minus + v * decay
    var = v * p.xi**2 * decay * one_minus / p.kappa + p.theta * p.xi**2 * one_minus**2 / (2.0 * p.kappa)
    z = (v_next - mean) / np.sqrt(var)
    return v_next, z


def jumps(rng: np.random.Generator, dt: float, p: ProcessParams, size: tuple[int, ...]) -> FloatArray:
    """Sum of the log-jumps over ``dt`` (compound Poisson with normal sizes), shape ``size``."""
    n = rng.poisson(p.jump_intensity * dt, size=size)
    return n * p.jump_mean + np.sqrt(n) * p.jump_stdev * rng.standard_normal(size)


def advance(
    rng: np.random.Generator, log_s: FloatArray, v: FloatArray, dt: float, p: ProcessParams
) -> tuple[FloatArray, FloatArray]:
    """One step of ``dt`` years (> 0) for all underlyings; returns (log_s, v)."""
    v_next, z_v = cir_step(rng, v, dt, p)
    z_b = p.chol @ rng.standard_normal(v.shape[0])
    v_bar = 0.5 * (v + v_next)
    drift = p.pull * (p.anchor_log - log_s) - p.jump_intensity * p.jump_compensator - 0.5 * v_bar
    shock = np.sqrt(v_bar * dt) * (p.rho * z_v + np.sqrt(1.0 - p.rho**2) * z_b)
    return log_s + drift * dt + shock + jumps(rng, dt, p, v.shape), v_next


def backward_variance_path(
    rng: np.random.Generator, v_end: FloatArray, dt: float, steps: int, p: ProcessParams
) -> FloatArray:
    """A variance path of ``steps + 1`` points (shape (steps + 1, U)) that ends at ``v_end``.

    A stationary one-dimensional diffusion is time-reversible, so a CIR path run forward from
    ``v_end`` and read backwards is a plausible history that arrives at ``v_end``."""
    path = np.empty((steps + 1, v_end.shape[0]))
    path[0] = v_end
    v = v_end
    for i in range(steps):
        v, _ = cir_step(rng, v, dt, p)
        path[i + 1] = v
    return path[::-1]


def backward_log_path(
    rng: np.random.Generator,
    log_s_end: FloatArray,
    variance: FloatArray,
    dt: float,
    substeps: int,
    p: ProcessParams,
) -> FloatArray:
    """Log prices on a grid of ``dt``-year substeps ending at ``log_s_end``.

    ``variance`` has shape (M + 1, U) at the coarse points; each coarse interval is split into
    ``substeps`` substeps using the interval's average variance. Returns shape (M * substeps + 1, U),
    the last row equal to ``log_s_end``. No leverage term: a time-reversed path has no natural
    direction for it."""
    m, u = variance.shape[0] - 1, variance.shape[1]
    v_bar = np.repeat(0.5 * (variance[1:] + variance[:-1]), substeps, axis=0)  # (M*substeps, U)
    n = m * substeps
    z = rng.standard_normal((n, u)) @ p.chol.T
    returns = (
        -(p.jump_intensity * p.jump_compensator + 0.5 * v_bar) * dt
        + np.sqrt(v_bar * dt) * z
        + jumps(rng, dt, p, (n, u))
    )
    # log S_i = log S_end - sum of the returns after i
    tail = np.concatenate([np.cumsum(returns[::-1], axis=0)[::-1], np.zeros((1, u))])
    return log_s_end - tail

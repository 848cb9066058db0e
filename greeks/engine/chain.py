"""Chain preparation, vectorised: which price to use for each option, and the forward of each
expiry. Pure numpy; prices in rupees, times in years (ACT/365)."""

from __future__ import annotations

import numpy as np

SECONDS_PER_YEAR = 365.0 * 86400.0
# A quote is "sane" when both sides are positive, not crossed, and the spread is at most this
# fraction of the mid (wider quotes say more about liquidity than about value: use the last price).
MAX_RELATIVE_SPREAD = 0.5


def option_price_used(bid: np.ndarray, ask: np.ndarray, ltp: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The bid/ask mid where both sides are present and sane, else the last price.

    Missing values are NaN. Returns (price, used_mid) where used_mid is a bool array."""
    bid = np.asarray(bid, dtype=float)
    ask = np.asarray(ask, dtype=float)
    ltp = np.asarray(ltp, dtype=float)
    mid = 0.5 * (bid + ask)
    with np.errstate(invalid="ignore"):
        sane = (bid > 0) & (ask > 0) & (ask >= bid) & ((ask - bid) <= MAX_RELATIVE_SPREAD * mid)
    return np.where(sane, mid, ltp), sane


def parity_forward(
    strikes: np.ndarray,
    call_prices: np.ndarray,
    put_prices: np.ndarray,
    *,
    t: float,
    r: float,
    spot: float,
    nearest: int = 3,
) -> float:
    """Put–call-parity forward F = K + e^{rt}(C − P) from the ``nearest`` strikes to the spot that
    have both a call and a put price (the median of them, robust to one stale quote).
    NaN when no strike has both prices."""
    strikes = np.asarray(strikes, dtype=float)
    both = np.isfinite(call_prices) & np.isfinite(put_prices)
    if not both.any() or not np.isfinite(t) or t <= 0:
        return float("nan")
    k = strikes[both]
    order = np.argsort(np.abs(k - spot), kind="stable")[:nearest]
    forwards = k[order] + np.exp(r * t) * (
        np.asarray(call_prices)[both][order] - np.asarray(put_prices)[both][order]
    )
    return float(np.median(forwards))


def year_fraction(seconds_to_expiry: np.ndarray) -> np.ndarray:
    """ACT/365 calendar time in years from seconds."""
    return np.asarray(seconds_to_expiry, dtype=float) / SECONDS_PER_YEAR

"""The summary a trader opens first (SPEC §7): put-call ratios, max pain, where the open interest and
volume sit by moneyness band, and the IV rank / percentile.

Pure numpy, over one expiry's chain arrays: ``strikes`` (float), ``is_call`` (bool), ``oi`` and
``volume`` (float, NaN = unknown) and the expiry's ``forward``. OI and volume are in whatever unit
the feed gives (contracts or shares); nothing here converts them. Nothing here invents a number: an
unknown value is left out of a sum (and the counts say how many were known), a ratio or share with
a zero or unknown denominator is None with a ``note`` saying why.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from moneyness.core.levels import level_members, parse_level

BANDS = ("DITM", "ITM", "ATM", "OTM", "DOTM")


@dataclass(frozen=True)
class Ratio:
    """``puts``/``calls``: totals of the finite values (NaN when that side has none); ``put_count``/
    ``call_count``: how many options had one; ``ratio`` = puts / calls, None when it cannot be
    formed (``note`` says why)."""

    puts: float
    calls: float
    ratio: float | None
    put_count: int
    call_count: int
    note: str = ""


def put_call_ratio(is_call: ArrayLike, values: ArrayLike) -> Ratio:
    """Put-call ratio of ``values`` (open interest or volume) over a chain: sum over puts / sum over
    calls of the finite values."""
    is_call = np.asarray(is_call, dtype=bool).ravel()
    values = np.asarray(values, dtype=float).ravel()
    if is_call.shape != values.shape:
        raise ValueError(f"is_call and values differ in length: {is_call.size} != {values.size}")
    known = np.isfinite(values)
    put_count = int((known & ~is_call).sum())
    call_count = int((known & is_call).sum())
    puts = float(values[known & ~is_call].sum()) if put_count else math.nan
    calls = float(values[known & is_call].sum()) if call_count else math.nan
    if call_count == 0:
        return Ratio(puts, calls, None, put_count, call_count, "no call has a known value")
    if put_count == 0:
        return Ratio(puts, calls, None, put_count, call_count, "no put has a known value")
    if calls == 0:
        return Ratio(puts, calls, None, put_count, call_count, "the calls' total is 0")
    return Ratio(puts, calls, puts / calls, put_count, call_count)


@dataclass(frozen=True)
class MaxPain:
    """``strike``: the listed strike at which option holders would be paid the least at expiry;
    ``total_payout``: that payout, ``sum(oi * intrinsic)`` in strike currency x OI units (multiply
    by the lot size if OI is in lots); ``options_with_oi``: options with a known OI. ``strike`` and
    ``total_payout`` are None when no option has a known, non-zero OI (``note`` says which)."""

    strike: float | None
    total_payout: float | None
    options_with_oi: int
    note: str = ""


def max_pain(strikes: ArrayLike, is_call: ArrayLike, oi: ArrayLike) -> MaxPain:
    """The listed strike S minimising ``sum_calls oi max(S - K, 0) + sum_puts oi max(K - S, 0)``; the
    lower strike on a tie. Candidates are all listed strikes (the distinct finite strikes of the
    chain), with or without OI; options without a known OI pay nothing (they are unknown, not 0).

    O(n log n): OI is summed per listed strike, and the payout at every listed strike follows from
    cumulative sums (the call payout at ``s_i`` is ``s_i sum_{j<i} c_j - sum_{j<i} c_j s_j``).
    """
    strikes = np.asarray(strikes, dtype=float).ravel()
    is_call = np.asarray(is_call, dtype=bool).ravel()
    oi = np.asarray(oi, dtype=float).ravel()
    if not strikes.shape == is_call.shape == oi.shape:
        raise ValueError("strikes, is_call and oi differ in length")
    listed_mask = np.isfinite(strikes)
    known = listed_mask & np.isfinite(oi)
    count = int(known.sum())
    if count == 0:
        return MaxPain(None, None, 0, "no option has a known open interest")
    if not np.any(oi[known] != 0):
        return MaxPain(None, None, count, "open interest is 0 on every option: every strike pays 0")

    listed, position = np.unique(strikes[listed_mask], return_inverse=True)
    at = position[known[listed_mask]]  # listed-strike index of each option with a known OI
    weights = oi[known]
    calls = is_call[known]
    call_oi = np.bincount(at[calls], weights=weights[calls], minlength=listed.size)
    put_oi = np.bincount(at[~calls], weights=weights[~calls], minlength=listed.size)

    # Calls struck strictly below s_i pay s_i - K; puts struck strictly above pay K - s_i.
    with np.errstate(over="ignore", invalid="ignore"):
        below_oi = np.concatenate([[0.0], np.cumsum(call_oi)[:-1]])
        below_oi_k = np.concatenate([[0.0], np.cumsum(call_oi * listed)[:-1]])
        above_oi = put_oi.sum() - np.cumsum(put_oi)
        above_oi_k = (put_oi * listed).sum() - np.cumsum(put_oi * listed)
        payout = (listed * below_oi - below_oi_k) + (above_oi_k - listed * above_oi)
    if not np.all(np.isfinite(payout)):
        return MaxPain(None, None, count, "the payout overflows a float: strikes or OI out of range")
    i = int(np.argmin(payout))  # first minimum = the lower strike on a tie
    return MaxPain(float(listed[i]), float(payout[i]), count)


def band_distribution(
    strikes: ArrayLike,
    is_call: ArrayLike,
    forward: float,
    oi: ArrayLike,
    volume: ArrayLike,
) -> dict[str, dict]:
    """Where the chain's options, open interest and volume sit by moneyness band.

    Returns ``{band: {"calls" | "puts" | "all": {...}}}`` for ``band`` in ``BANDS``, each with
    ``count`` (options), ``oi`` and ``volume`` (sums of the known values, 0.0 when none),
    ``oi_count``/``volume_count`` (options with a known value), and ``oi_share``/``volume_share``
    (the band's fraction of that type's total over the chain; None when the total is 0).

    The bands are those of :mod:`moneyness.core.levels` (``ATM``: the options at the listed strike
    nearest the forward; ``ITM``/``OTM``: in/out of the money within 5 % log-moneyness of the
    forward; ``DITM``/``DOTM``: beyond), made a partition: each option is counted once, ``ATM``
    taking precedence over the ITM/OTM band its options also belong to. So an option struck exactly
    at the forward counts as ATM, every option with a finite strike is in exactly one band, and
    each type's counts, OI, volume and shares add up to the chain's totals. Without a finite
    forward no option can be placed: every band is empty and every share None.
    """
    strikes = np.asarray(strikes, dtype=float).ravel()
    is_call = np.asarray(is_call, dtype=bool).ravel()
    oi = np.asarray(oi, dtype=float).ravel()
    volume = np.asarray(volume, dtype=float).ravel()
    if not strikes.shape == is_call.shape == oi.shape == volume.shape:
        raise ValueError("strikes, is_call, oi and volume differ in length")

    atm = level_members(parse_level("ATM"), strikes, is_call, forward)
    members = {"ATM": atm}
    for band in ("DITM", "ITM", "OTM", "DOTM"):
        members[band] = level_members(parse_level(band), strikes, is_call, forward) & ~atm
    placed = np.zeros(strikes.shape, dtype=bool)
    for mask in members.values():
        placed |= mask

    sides = {"calls": is_call, "puts": ~is_call, "all": np.ones(strikes.shape, dtype=bool)}
    totals = {
        side: (_known_sum(oi, placed & mask), _known_sum(volume, placed & mask))
        for side, mask in sides.items()
    }
    result: dict[str, dict] = {}
    for band in BANDS:
        result[band] = {}
        for side, mask in sides.items():
            selected = members[band] & mask
            band_oi, band_volume = _known_sum(oi, selected), _known_sum(volume, selected)
            total_oi, total_volume = totals[side]
            result[band][side] = {
                "count": int(selected.sum()),
                "oi": band_oi,
                "oi_count": int((selected & np.isfinite(oi)).sum()),
                "oi_share": band_oi / total_oi if total_oi else None,
                "volume": band_volume,
                "volume_count": int((selected & np.isfinite(volume)).sum()),
                "volume_share": band_volume / total_volume if total_volume else None,
            }
    return {band: result[band] for band in BANDS}


def _known_sum(values: np.ndarray, mask: np.ndarray) -> float:
    selected = values[mask]
    return float(selected[np.isfinite(selected)].sum())


@dataclass(frozen=True)
class IvRank:
    """``rank``: where ``current`` sits between the lowest and highest IV of the history and
    ``current`` (0 = at the low, 100 = at the high); ``percentile``: % of the history strictly below
    ``current``. Both None when ``current`` is unknown, the history has fewer than 2 finite
    observations, or ``low == high`` (``note`` says which). ``observations``: finite history values;
    ``low``/``high``: over them and ``current`` (NaN when there is nothing)."""

    rank: float | None
    percentile: float | None
    observations: int
    low: float
    high: float
    note: str = ""


def iv_rank_percentile(history: ArrayLike, current: float) -> IvRank:
    """IV rank and IV percentile of ``current`` against ``history`` (e.g. the last year of the
    30-day ATM IV); both in percent."""
    history = np.asarray(history, dtype=float).ravel()
    history = history[np.isfinite(history)]
    n = int(history.size)
    pool = np.append(history, current) if math.isfinite(current) else history
    low = float(pool.min()) if pool.size else math.nan
    high = float(pool.max()) if pool.size else math.nan
    if not math.isfinite(current):
        return IvRank(None, None, n, low, high, "the current IV is unknown")
    if n < 2:
        return IvRank(None, None, n, low, high, f"{n} finite observation(s) in the history; need 2")
    if high == low:
        return IvRank(None, None, n, low, high, "the history and the current IV are all equal")
    rank = (current - low) / (high - low) * 100.0
    percentile = float((history < current).sum()) / n * 100.0
    return IvRank(rank, percentile, n, low, high)

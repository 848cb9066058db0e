"""Moneyness levels of one option chain (one underlying, one expiry, one minute): SPEC §7.

Pure numpy. A chain is given as arrays over its options: ``strikes`` and ``is_call`` (the listed
strikes are the distinct strikes present), with the expiry's ``forward``.

Grammar (case-insensitive; :func:`parse_level` returns the canonical spelling):

* ``ATM`` — the call and the put at the ATM strike: the listed strike nearest the forward, the
  lower one on a tie.
* ``ITM<n>`` / ``OTM<n>`` (n >= 1) — n listed strikes away from the ATM strike on the in/out-of-
  the-money side of each type: a call is in the money below the ATM strike, a put above. So
  ``ITM1`` is the call one strike below ATM and the put one strike above.
* ``ITM`` / ``OTM`` — the band of in/out-of-the-money options within ``DEEP_MONEYNESS`` (5 %) of
  the forward in absolute log-moneyness ``|ln(K/F)|``; ``DITM`` / ``DOTM`` — beyond it. In the
  money is relative to the forward (a call with K < F, a put with K > F); an option struck exactly
  at the forward is in neither band.
* ``OTM<d>delta`` / ``ITM<d>delta`` (0 < d < 50, in delta points: ``OTM25delta`` is |delta| 0.25)
  — for each type, the one out-of-the-money option whose |delta| is nearest d/100; for ``ITM``,
  the in-the-money option whose |delta| is nearest 1 - d/100 (the other side of the same strike:
  a 25-delta put's strike carries a ~75-delta call). Ties go to the lower strike; options without
  a finite delta are not candidates.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

DEEP_MONEYNESS = 0.05  # |ln(K/F)| beyond which an option is deep in or out of the money
MAX_STEPS = 200
GRAMMAR = (
    "ATM; ITM<n> or OTM<n> (n = 1..200 listed strikes from ATM); ITM, OTM (within 5% log-moneyness "
    "of the forward), DITM, DOTM (beyond); OTM<d>delta or ITM<d>delta (0 < d < 50 delta points, "
    "e.g. OTM25delta)"
)

_PATTERN = re.compile(r"^(?:(ATM)|(D?ITM|D?OTM)|(ITM|OTM)(\d{1,3})|(ITM|OTM)(\d{1,2}(?:\.\d+)?)DELTA)$")


class InvalidLevel(ValueError):
    """A moneyness level outside the grammar; the message lists the grammar."""


@dataclass(frozen=True)
class Level:
    """A parsed level. ``kind`` is "atm", "steps", "band" or "delta"; ``side`` "ITM" or "OTM"
    (None for ATM); ``steps`` for "steps"; ``deep`` for "band"; ``delta`` (0-1) for "delta"."""

    name: str
    kind: str
    side: str | None = None
    steps: int | None = None
    deep: bool = False
    delta: float | None = None


def parse_level(text: object) -> Level:
    """The level named by ``text``; :class:`InvalidLevel` (listing the grammar) otherwise."""
    raw = text.strip().upper() if isinstance(text, str) else ""
    match = _PATTERN.match(raw)
    if match is None:
        raise InvalidLevel(f"unknown moneyness level {text!r}; levels: {GRAMMAR}")
    atm, band, step_side, steps, delta_side, delta = match.groups()
    if atm:
        return Level("ATM", "atm")
    if band:
        return Level(band, "band", side=band.lstrip("D"), deep=band.startswith("D"))
    if step_side:
        n = int(steps)
        if not 1 <= n <= MAX_STEPS:
            raise InvalidLevel(f"{step_side}{steps}: n must be 1..{MAX_STEPS}; levels: {GRAMMAR}")
        return Level(f"{step_side}{n}", "steps", side=step_side, steps=n)
    d = float(delta)
    if not 0 < d < 50:
        raise InvalidLevel(f"{delta_side}{delta}delta: d must be between 0 and 50; levels: {GRAMMAR}")
    points = f"{d:g}"
    return Level(f"{delta_side}{points}delta", "delta", side=delta_side, delta=d / 100.0)


def atm_strike(strikes: np.ndarray, forward: float) -> float:
    """The listed strike nearest ``forward`` (the lower one on a tie); NaN without strikes or a
    finite forward."""
    listed = np.unique(np.asarray(strikes, dtype=float))
    listed = listed[np.isfinite(listed)]
    if listed.size == 0 or not math.isfinite(forward):
        return math.nan
    i = int(np.searchsorted(listed, forward))  # listed[i-1] < forward <= listed[i]
    if i == 0:
        return float(listed[0])
    if i == listed.size:
        return float(listed[-1])
    below, above = listed[i - 1], listed[i]
    return float(below if forward - below <= above - forward else above)


def in_the_money(strikes: np.ndarray, is_call: np.ndarray, forward: float) -> np.ndarray:
    """Call with K < F, put with K > F (relative to the forward)."""
    strikes = np.asarray(strikes, dtype=float)
    return np.where(is_call, strikes < forward, strikes > forward)


def out_of_the_money(strikes: np.ndarray, is_call: np.ndarray, forward: float) -> np.ndarray:
    """Call with K > F, put with K < F."""
    strikes = np.asarray(strikes, dtype=float)
    return np.where(is_call, strikes > forward, strikes < forward)


@dataclass(frozen=True)
class ChainGeometry:
    """What every level of one chain is measured from, computed once: the listed strikes, the ATM
    strike, each option's steps into the money from ATM, its side of the forward, and whether it is
    deep (``|ln(K/F)| > DEEP_MONEYNESS``)."""

    atm: float
    toward_itm: np.ndarray
    itm: np.ndarray
    otm: np.ndarray
    deep: np.ndarray


def chain_geometry(strikes: np.ndarray, is_call: np.ndarray, forward: float) -> ChainGeometry:
    strikes = np.asarray(strikes, dtype=float)
    is_call = np.asarray(is_call, dtype=bool)
    listed = np.unique(strikes[np.isfinite(strikes)])
    atm = atm_strike(listed, forward)
    away = np.searchsorted(listed, strikes) - np.searchsorted(listed, atm)  # + above ATM, - below
    with np.errstate(divide="ignore", invalid="ignore"):
        deep = np.abs(np.log(strikes / forward)) > DEEP_MONEYNESS
    return ChainGeometry(
        atm=atm,
        toward_itm=np.where(is_call, -away, away),  # steps into the money for each type
        itm=in_the_money(strikes, is_call, forward),
        otm=out_of_the_money(strikes, is_call, forward),
        deep=deep,
    )


def level_members(
    level: Level,
    strikes: np.ndarray,
    is_call: np.ndarray,
    forward: float,
    delta: np.ndarray | None = None,
    geometry: ChainGeometry | None = None,
) -> np.ndarray:
    """Boolean mask of the chain's options at ``level`` (``delta`` needed for delta levels;
    ``geometry``: :func:`chain_geometry` of the same chain, when many levels are asked for)."""
    strikes = np.asarray(strikes, dtype=float)
    is_call = np.asarray(is_call, dtype=bool)
    none = np.zeros(strikes.shape, dtype=bool)
    if strikes.size == 0 or not math.isfinite(forward):
        return none
    if level.kind == "delta":
        if delta is None:
            raise ValueError(f"{level.name} needs the options' deltas")
        mask = none.copy()
        for call in (True, False):
            i = nearest_delta_option(strikes, is_call, forward, delta, level=level, call=call)
            if i is not None:
                mask[i] = True
        return mask
    geometry = geometry or chain_geometry(strikes, is_call, forward)
    if level.kind == "atm":
        return strikes == geometry.atm
    if level.kind == "steps":
        wanted = level.steps if level.side == "ITM" else -level.steps
        return geometry.toward_itm == wanted
    if level.kind == "band":
        side = geometry.itm if level.side == "ITM" else geometry.otm
        return side & (geometry.deep if level.deep else ~geometry.deep)
    raise ValueError(f"unknown level kind {level.kind!r}")


def level_masks(
    levels: list[Level],
    strikes: np.ndarray,
    is_call: np.ndarray,
    forward: float,
    delta: np.ndarray,
) -> np.ndarray:
    """(levels x options) boolean masks of many levels of one chain: :func:`level_members` of each,
    with the chain's geometry computed once and every delta level of a side and type picked in one
    step (the candidates in strike order, so the first nearest is the lower strike on a tie, as in
    :func:`nearest_delta_option`)."""
    strikes = np.asarray(strikes, dtype=float)
    is_call = np.asarray(is_call, dtype=bool)
    delta = np.asarray(delta, dtype=float)
    masks = np.zeros((len(levels), strikes.size), dtype=bool)
    if strikes.size == 0 or not math.isfinite(forward):
        return masks
    geometry = chain_geometry(strikes, is_call, forward)
    for i, level in enumerate(levels):
        if level.kind != "delta":
            masks[i] = level_members(level, strikes, is_call, forward, geometry=geometry)
    usable = np.isfinite(delta)
    by_strike = np.argsort(strikes, kind="stable")
    for side, side_mask in (("OTM", geometry.otm), ("ITM", geometry.itm)):
        group = [i for i, level in enumerate(levels) if level.kind == "delta" and level.side == side]
        if not group:
            continue
        targets = np.array([levels[i].delta if side == "OTM" else 1.0 - levels[i].delta for i in group])
        for call in (True, False):
            candidates = by_strike[((is_call == call) & side_mask & usable)[by_strike]]
            if candidates.size:
                distance = np.abs(np.abs(delta[candidates])[None, :] - targets[:, None])
                masks[group, candidates[np.argmin(distance, axis=1)]] = True
    return masks


def nearest_delta_option(
    strikes: np.ndarray,
    is_call: np.ndarray,
    forward: float,
    delta: np.ndarray,
    *,
    level: Level,
    call: bool,
) -> int | None:
    """Index of the option of one type for a delta level: on the level's side of the forward, with
    |delta| nearest the target (``level.delta`` out of the money, 1 - it in the money), the lower
    strike on a tie; None when the chain has no candidate."""
    strikes = np.asarray(strikes, dtype=float)
    is_call = np.asarray(is_call, dtype=bool)
    delta = np.asarray(delta, dtype=float)
    side = out_of_the_money if level.side == "OTM" else in_the_money
    target = level.delta if level.side == "OTM" else 1.0 - level.delta
    candidates = np.flatnonzero((is_call == call) & side(strikes, is_call, forward) & np.isfinite(delta))
    if candidates.size == 0:
        return None
    distance = np.abs(np.abs(delta[candidates]) - target)
    order = np.lexsort((strikes[candidates], distance))  # nearest first, then the lower strike
    return int(candidates[order[0]])

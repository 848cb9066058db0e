"""Reason codes that explain why ``implied_vol`` returned NaN for an element."""

from __future__ import annotations

from enum import IntEnum


class IVReason(IntEnum):
    """Per-element outcome of ``implied_vol``; stored as int8 in the ``reason`` array.

    Checks are applied in the order listed below; the first one that applies is reported.
    """

    OK = 0
    #: Price at or below intrinsic value, i.e. no time value (within rounding): IV is zero or does
    #: not exist. Intrinsic is measured against the forward: max(±(S·e^{-qt} - K·e^{-rt}), 0).
    BELOW_INTRINSIC = 1
    #: Price at or above the no-arbitrage upper bound: the present value of the underlying for a
    #: call (S·e^{-qt}; F·e^{-rt} for black76), the discounted strike K·e^{-rt} for a put.
    ABOVE_BOUND = 2
    #: Time to expiry is zero or negative.
    NON_POSITIVE_TIME = 3
    #: An input (price, S, K, t, r or q) is NaN or infinite.
    NON_FINITE_INPUT = 4
    #: S <= 0, K <= 0 or a negative price.
    INVALID_INPUT = 5
    #: The solver did not reach full accuracy (only for prices so extreme that the Black price
    #: itself is not representable to working precision, e.g. normalised time value < 1e-300).
    NO_CONVERGENCE = 6


_DESCRIPTIONS = {
    IVReason.OK: "ok",
    IVReason.BELOW_INTRINSIC: "price is at or below intrinsic value (no time value)",
    IVReason.ABOVE_BOUND: "price is at or above the no-arbitrage upper bound",
    IVReason.NON_POSITIVE_TIME: "time to expiry is zero or negative",
    IVReason.NON_FINITE_INPUT: "an input is NaN or infinite",
    IVReason.INVALID_INPUT: "spot/forward or strike <= 0, or negative price",
    IVReason.NO_CONVERGENCE: "solver did not converge to full accuracy",
}


def describe_reason(code: int) -> str:
    """Human-readable text for an ``IVReason`` code (int or enum); ValueError for unknown codes."""
    try:
        return _DESCRIPTIONS[IVReason(int(code))]
    except ValueError:
        raise ValueError(
            f"unknown IV reason code {code!r}; valid codes: {[int(r) for r in IVReason]}"
        ) from None

"""Timeframe grammar (SPEC §8): ``Nm``, ``Nh``, ``1d`` and ``custom_N`` (= ``Nm``).

Pure code: standard library only.

* ``N`` is a positive decimal integer without sign or leading zeros; units are lowercase.
* ``Nm`` / ``custom_N`` is N minutes, ``Nh`` is N*60 minutes; the length may not exceed the
  session length (``max_minutes``: 375 for NSE, 1440 for the all-day demo calendar).
* ``1d`` is one bucket per session, whatever its length (``minutes is None``).
* The canonical label writes whole hours as ``Nh`` ("60m" -> "1h", "240m" -> "4h") and everything
  else as ``Nm`` ("custom_7" -> "7m", "90m" -> "90m"), so equal timeframes have equal labels.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = [
    "DEFAULT_MAX_MINUTES",
    "STANDARD_TIMEFRAMES",
    "TIMEFRAME_GRAMMAR",
    "InvalidTimeframe",
    "Timeframe",
    "parse_timeframe",
]

STANDARD_TIMEFRAMES: tuple[str, ...] = ("1m", "5m", "15m", "30m", "1h", "4h", "1d")
DEFAULT_MAX_MINUTES = 375  # one regular NSE session, 09:15-15:30

TIMEFRAME_GRAMMAR = (
    "Nm (N minutes), Nh (N hours), 1d (one bucket per session) or custom_N (= Nm); N is a positive "
    "integer without leading zeros, units lowercase, and the length may not exceed the session "
    "length. Standard: " + ", ".join(STANDARD_TIMEFRAMES) + "; custom examples: 7m, 2h, custom_45"
)

_PATTERN = re.compile(r"(?:([1-9][0-9]*)([mh])|custom_([1-9][0-9]*)|(1d))", re.ASCII)


class InvalidTimeframe(ValueError):
    """The text is not a timeframe of the grammar; the message lists the grammar."""


@dataclass(frozen=True, slots=True)
class Timeframe:
    """A parsed timeframe. ``minutes`` is the bucket length in minutes (``None`` for ``1d``)."""

    minutes: int | None
    is_daily: bool
    label: str

    @property
    def is_standard(self) -> bool:
        return self.label in STANDARD_TIMEFRAMES

    @classmethod
    def of_minutes(cls, minutes: int) -> Timeframe:
        """The intraday timeframe of ``minutes`` minutes (no range check: see ``parse_timeframe``)."""
        if minutes < 1:
            raise InvalidTimeframe(f"a timeframe needs at least 1 minute, got {minutes}")
        label = f"{minutes // 60}h" if minutes % 60 == 0 else f"{minutes}m"
        return cls(minutes=minutes, is_daily=False, label=label)

    @classmethod
    def daily(cls) -> Timeframe:
        return cls(minutes=None, is_daily=True, label="1d")

    def __str__(self) -> str:
        return self.label


def parse_timeframe(text: object, max_minutes: int = DEFAULT_MAX_MINUTES) -> Timeframe:
    """Parse ``text`` (see module docstring); ``InvalidTimeframe`` (a ``ValueError``) otherwise.

    ``max_minutes`` is the longest allowed intraday bucket in minutes, normally the calendar's
    ``session_minutes``.
    """
    if isinstance(max_minutes, bool) or not isinstance(max_minutes, int) or max_minutes < 1:
        raise ValueError(f"max_minutes must be a positive integer, got {max_minutes!r}")
    if not isinstance(text, str):
        raise InvalidTimeframe(
            f"timeframe must be a string, got {type(text).__name__}; expected {TIMEFRAME_GRAMMAR}"
        )
    match = _PATTERN.fullmatch(text)
    if match is None:
        raise InvalidTimeframe(f"invalid timeframe {text!r}: expected {TIMEFRAME_GRAMMAR}")
    number, unit, custom, daily = match.groups()
    if daily:
        return Timeframe.daily()
    minutes = int(custom) if custom else int(number) * (60 if unit == "h" else 1)
    if minutes > max_minutes:
        raise InvalidTimeframe(
            f"invalid timeframe {text!r}: {minutes} minutes is longer than the {max_minutes}-minute "
            f"session; expected {TIMEFRAME_GRAMMAR}"
        )
    return Timeframe.of_minutes(minutes)

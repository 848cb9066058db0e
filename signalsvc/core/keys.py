"""Instrument key grammar (SPEC §4): ``EXCHANGE@SYMBOL@PRODUCT[@EXPIRY[@OPTION_TYPE@STRIKE]]``.

Pure code: standard library only. Examples::

    NSE@NIFTY@equity_spot
    NSE@NIFTY@equity_futures@2025-07-31
    NSE@NIFTY@equity_options@2025-07-10@call@21500
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from functools import lru_cache

KEY_GRAMMAR = (
    "EXCHANGE@SYMBOL@PRODUCT[@EXPIRY[@OPTION_TYPE@STRIKE]], e.g. NSE@NIFTY@equity_spot, "
    "NSE@NIFTY@equity_futures@2025-07-31, NSE@NIFTY@equity_options@2025-07-10@call@21500 "
    "(PRODUCT one of equity_spot, equity_futures, equity_options; EXPIRY an ISO date; "
    "OPTION_TYPE call or put; STRIKE a positive number)"
)

SPOT = "equity_spot"
FUTURES = "equity_futures"
OPTIONS = "equity_options"
PRODUCTS = (SPOT, FUTURES, OPTIONS)
OPTION_TYPES = ("call", "put")

_NAME = re.compile(r"^[A-Z0-9][A-Z0-9&_\-]{0,31}$")


class InvalidKey(ValueError):
    """The text is not a well-formed instrument key; the message names what is wrong."""


@dataclass(frozen=True)
class InstrumentKey:
    exchange: str
    symbol: str
    product: str
    expiry: dt.date | None = None
    option_type: str | None = None  # "call" | "put"
    strike: Decimal | None = None

    @property
    def is_option(self) -> bool:
        return self.product == OPTIONS

    @property
    def is_future(self) -> bool:
        return self.product == FUTURES

    @property
    def underlying_key(self) -> str:
        """Key of the spot/index this instrument derives from."""
        return f"{self.exchange}@{self.symbol}@{SPOT}"

    def __str__(self) -> str:
        parts = [self.exchange, self.symbol, self.product]
        if self.expiry is not None:
            parts.append(self.expiry.isoformat())
        if self.option_type is not None and self.strike is not None:
            parts += [self.option_type, format_strike(self.strike)]
        return "@".join(parts)


def format_strike(strike: Decimal | float | int) -> str:
    """Canonical strike text: no exponent, no trailing zeros (21500, 21512.5)."""
    value = Decimal(str(strike)).normalize()
    text = format(value, "f")
    return text


def parse_key(text: str) -> InstrumentKey:
    """Parse and validate a key; raise :class:`InvalidKey` naming the grammar when malformed."""
    if not isinstance(text, str) or not text:
        raise InvalidKey(f"empty instrument key; expected {KEY_GRAMMAR}")
    return _parse(text)


def canonical_key(text: str) -> str:
    """The canonical spelling of a key (``str(parse_key(text))``), kept like the parse."""
    if not isinstance(text, str) or not text:
        raise InvalidKey(f"empty instrument key; expected {KEY_GRAMMAR}")
    return _canonical(text)


@lru_cache(maxsize=32768)
def _canonical(text: str) -> str:
    return str(_parse(text))


# The hot paths parse the same keys over and over (a batch of 100 options parsed each key twice,
# a third of its time): the parsed key is immutable, so a parse is kept. A malformed key raises and
# is not kept.
@lru_cache(maxsize=32768)
def _parse(text: str) -> InstrumentKey:
    parts = text.split("@")
    if len(parts) not in (3, 4, 6):
        raise InvalidKey(f"'{text}' has {len(parts)} parts; expected {KEY_GRAMMAR}")
    exchange, symbol, product = parts[:3]
    for label, value in (("exchange", exchange), ("symbol", symbol)):
        if not _NAME.match(value):
            raise InvalidKey(f"bad {label} '{value}' in '{text}'; expected {KEY_GRAMMAR}")
    if product not in PRODUCTS:
        raise InvalidKey(f"unknown product '{product}' in '{text}'; expected {KEY_GRAMMAR}")
    expected_parts = {SPOT: 3, FUTURES: 4, OPTIONS: 6}[product]
    if len(parts) != expected_parts:
        raise InvalidKey(f"'{text}': {product} keys have {expected_parts} parts; expected {KEY_GRAMMAR}")
    expiry = option_type = strike = None
    if len(parts) >= 4:
        try:
            expiry = dt.date.fromisoformat(parts[3])
        except ValueError:
            raise InvalidKey(f"bad expiry '{parts[3]}' in '{text}'; expected {KEY_GRAMMAR}") from None
        if len(parts[3]) != 10:
            raise InvalidKey(f"bad expiry '{parts[3]}' in '{text}'; expected {KEY_GRAMMAR}")
    if len(parts) == 6:
        option_type = parts[4]
        if option_type not in OPTION_TYPES:
            raise InvalidKey(f"bad option type '{option_type}' in '{text}'; expected {KEY_GRAMMAR}")
        try:
            strike = Decimal(parts[5])
        except InvalidOperation:
            raise InvalidKey(f"bad strike '{parts[5]}' in '{text}'; expected {KEY_GRAMMAR}") from None
        if not strike.is_finite() or strike <= 0 or not re.fullmatch(r"\d+(\.\d+)?", parts[5]):
            raise InvalidKey(f"bad strike '{parts[5]}' in '{text}'; expected {KEY_GRAMMAR}")
    return InstrumentKey(exchange, symbol, product, expiry, option_type, strike)


def build_key(
    exchange: str,
    symbol: str,
    product: str,
    expiry: dt.date | None = None,
    option_type: str | None = None,
    strike: Decimal | float | int | None = None,
) -> str:
    """Canonical key text from its parts (validated by parsing it back)."""
    parts = [exchange, symbol, product]
    if expiry is not None:
        parts.append(expiry.isoformat())
    if option_type is not None and strike is not None:
        parts += [option_type, format_strike(strike)]
    text = "@".join(parts)
    parse_key(text)
    return text


@dataclass(frozen=True)
class InstrumentSpec:
    """One registry row as plain values: what the CSV import, the instrument service and the
    simulator all produce."""

    key: str
    exchange: str
    symbol: str
    product: str
    expiry: dt.date | None = None
    option_type: str | None = None
    strike: Decimal | None = None
    lot_size: int = 1
    tick_size: Decimal = Decimal("0.05")
    active: bool = True

    @classmethod
    def from_key(
        cls, key: str, *, lot_size: int = 1, tick_size: Decimal = Decimal("0.05"), active: bool = True
    ):
        parsed = parse_key(key)
        return cls(
            key=str(parsed),
            exchange=parsed.exchange,
            symbol=parsed.symbol,
            product=parsed.product,
            expiry=parsed.expiry,
            option_type=parsed.option_type,
            strike=parsed.strike,
            lot_size=lot_size,
            tick_size=tick_size,
            active=active,
        )

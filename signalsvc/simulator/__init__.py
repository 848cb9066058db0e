"""Demo market simulator: a pure core (stdlib + numpy + scipy, no Django) that generates an
NSE-like market of indices, futures and options whose truth is readable. See docs/demo-market.md."""

from .config import BANKNIFTY, NIFTY, MarketConfig, UnderlyingConfig
from .expiries import (
    IST,
    SECONDS_PER_YEAR,
    expiry_datetime,
    future_expiries,
    is_monthly_expiry,
    last_tuesday,
    option_expiries,
    year_fraction,
)
from .market import Bar, DemoMarket, Tick, write_json_atomic

__all__ = [
    "BANKNIFTY",
    "IST",
    "NIFTY",
    "SECONDS_PER_YEAR",
    "Bar",
    "DemoMarket",
    "MarketConfig",
    "Tick",
    "UnderlyingConfig",
    "expiry_datetime",
    "future_expiries",
    "is_monthly_expiry",
    "last_tuesday",
    "option_expiries",
    "write_json_atomic",
    "year_fraction",
]

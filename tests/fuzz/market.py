"""The market the REST fuzzing runs against, and the values that exist in it.

The simulated market is deterministic (``DemoMarket`` with a fixed start and seed), so the values a
generated request needs to get past "unknown instrument" (instrument keys, underlyings, expiries,
the time range that holds data) are known before the database exists: the schema's examples and
the fuzzer's dictionaries are built from them at import time, and :func:`market_seed` makes them
true in the database."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from functools import cache

from tests.conftest import DEMO_START

NIFTY = "NSE@NIFTY@equity_spot"
NO_BARS = "NSE@FUZZ@equity_spot"  # registered, no data at all
UNKNOWN = "NSE@NOPE@equity_spot"  # well formed, not registered
MINUTES = 3
SEED = 11


@dataclass(frozen=True)
class Catalogue:
    """What exists once :func:`market_seed` has run."""

    spot: str
    option: str  # an option of NIFTY's front expiry: its Greeks are computed
    far_option: str  # an option of NIFTY's last listed expiry
    future: str
    uncomputed: str  # a BANKNIFTY option: listed, its chain never computed
    front_expiry: str
    far_expiry: str
    start_time: str  # the minutes that hold ticks, bars and computed chains
    end_time: str

    @property
    def instrument_keys(self) -> list[str]:
        return [self.spot, self.option, self.far_option, self.future, self.uncomputed, NO_BARS, UNKNOWN]


def _market():
    from signalsvc.simulator.market import DemoMarket

    return DemoMarket(start=DEMO_START, seed=SEED)


@cache
def catalogue() -> Catalogue:
    from signalsvc.core.keys import FUTURES, OPTIONS

    specs = _market().instruments()
    nifty_calls = sorted(
        (s for s in specs if s.symbol == "NIFTY" and s.product == OPTIONS and s.option_type == "call"),
        key=lambda s: (s.expiry, s.strike),
    )
    expiries = sorted({s.expiry for s in nifty_calls})
    front = [s.key for s in nifty_calls if s.expiry == expiries[0]]
    far = [s.key for s in nifty_calls if s.expiry == expiries[-1]]
    return Catalogue(
        spot=NIFTY,
        option=front[len(front) // 2],
        far_option=far[len(far) // 2],
        future=min(
            (s for s in specs if s.symbol == "NIFTY" and s.product == FUTURES), key=lambda s: s.expiry
        ).key,
        uncomputed=min(s.key for s in specs if s.symbol == "BANKNIFTY" and s.product == OPTIONS),
        front_expiry=expiries[0].isoformat(),
        far_expiry=expiries[-1].isoformat(),
        start_time=DEMO_START.isoformat(),
        end_time=(DEMO_START + dt.timedelta(minutes=MINUTES)).isoformat(),
    )


def market_seed() -> dict[str, str]:
    """Register the market, run three minutes of ticks through the real ingest and compute the
    NIFTY chain each minute; two API keys with a rate limit no fuzzing run reaches. Returns the
    raw keys: ``{"writer": ..., "reader": ...}``."""
    import redis as redis_lib
    from django.conf import settings

    from greeks.services import chain_compute
    from signalsvc.accounts.services import api_key_create, subscription_get_or_create
    from signalsvc.core.keys import InstrumentSpec
    from signalsvc.instruments.services import instruments_upsert
    from signalsvc.marketdata.stream import ticks_ingest

    client = redis_lib.Redis.from_url(settings.REDIS_URL, decode_responses=True)
    market = _market()
    instruments_upsert(specs=[*market.instruments(), InstrumentSpec.from_key(NO_BARS)])
    for minute in range(MINUTES):
        ticks = []
        for second in range(0, 12, 2):
            ticks += market.step(DEMO_START + dt.timedelta(minutes=minute, seconds=second))
        ticks_ingest(client, ticks, consumer_name="fuzz")
        chain_compute(underlying_key=NIFTY, client=client)
    client.close()

    keys = {}
    for name, can_write in (("writer", True), ("reader", False)):
        tier = f"fuzz-{name}"
        subscription = subscription_get_or_create(name=tier, tier_name=tier, requests_per_minute=10_000_000)
        keys[name] = api_key_create(subscription=subscription, name=tier, can_write=can_write)[1]
    return keys

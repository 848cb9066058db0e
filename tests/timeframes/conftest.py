"""Fixtures for the timeframes app's database tests: instruments, 1-minute bars, refreshes."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
from django.db import connection

from signalsvc.core.calendar import get_calendar
from signalsvc.marketdata.services import BarIn, bars_upsert

SPOT_KEY = "NSE@NIFTY@equity_spot"
OPTION_KEY = "NSE@NIFTY@equity_options@2025-03-27@call@22500"


@pytest.fixture(autouse=True)
def _forget_process_state():
    """Per-process state of the timeframes app (remembered watermarks, the in-process cache tier,
    buffered request counters) never leaks from one test into the next."""
    from timeframes import cache, selectors

    selectors.watermarks_forget()
    cache.local_ranges.clear()
    cache._stats.write(cache.redis_client().pipeline(transaction=False))  # drop, unsent
    yield


@pytest.fixture
def nse():
    return get_calendar("NSE")


@pytest.fixture
def spot(make_instruments):
    return make_instruments(SPOT_KEY)[SPOT_KEY]


def random_rows(
    sessions, *, seed: int, keep: float = 1.0, with_oi: bool = False, start_price: float = 22_000.0
):
    """One row per minute of ``sessions`` (each kept with probability ``keep``): a random walk."""
    rng = np.random.default_rng(seed)
    rows = []
    price = start_price
    for s in sessions:
        for m in range(s.minutes):
            if keep < 1.0 and rng.random() > keep:
                continue
            ts = s.open + dt.timedelta(minutes=m)
            o = price
            c = o + rng.normal(0, 5)
            h = max(o, c) + rng.random() * 3
            low = min(o, c) - rng.random() * 3
            price = c
            oi = float(rng.integers(1000, 5000)) if with_oi and rng.random() < 0.8 else None
            rows.append((ts, o, h, low, c, float(rng.integers(0, 500)), oi))
    return rows


def put_bars(instrument_id: int, rows) -> None:
    bars_upsert(bars=[BarIn(instrument_id, ts, o, h, low, c, v, oi) for ts, o, h, low, c, v, oi in rows])


def set_updated_at(instrument_id: int, when: dt.datetime) -> None:
    """Pretend the instrument's bars were all written at ``when``."""
    with connection.cursor() as cur:
        cur.execute(
            "UPDATE market_bar_1m SET updated_at = %s WHERE instrument_id = %s", [when, instrument_id]
        )


def refresh() -> dict:
    """One rollup refresh with no settle window (every committed change counts as settled)."""
    from timeframes.services import rollups_refresh

    return rollups_refresh(settle=dt.timedelta(0))

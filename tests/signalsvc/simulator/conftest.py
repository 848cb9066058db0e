from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import pytest

from signalsvc.core.keys import InstrumentKey, parse_key
from signalsvc.simulator import DemoMarket, Tick
from tests.signalsvc.simulator.reference import KOLKATA

# A Monday morning: NIFTY weeklies 2025-10-07 and 2025-10-14, monthly 2025-10-28.
START = dt.datetime(2025, 10, 6, 10, 0, tzinfo=KOLKATA)
RECORD_SECONDS = 60


@dataclass(frozen=True)
class Recording:
    """A market stepped every second: the initial truth, and per step its ticks and truth."""

    start_truth: dict[str, Any]
    steps: list[tuple[dt.datetime, list[Tick], dict[str, Any]]]
    initial_instruments: list[Any]
    final_instruments: list[Any]
    listing_versions: tuple[int, int]
    parsed: dict[str, InstrumentKey]  # every listed key, parsed once

    @property
    def ticks(self) -> list[Tick]:
        return [t for _, ticks, _ in self.steps for t in ticks]


@pytest.fixture(scope="session")
def recording() -> Recording:
    market = DemoMarket(start=START, seed=7)
    start_truth = market.truth()
    initial = market.instruments()
    version = market.listing_version
    steps = []
    for s in range(1, RECORD_SECONDS + 1):
        now = START + dt.timedelta(seconds=s)
        ticks = market.step(now)
        steps.append((now, ticks, market.truth()))
    parsed = {spec.key: parse_key(spec.key) for spec in initial}
    return Recording(
        start_truth, steps, initial, market.instruments(), (version, market.listing_version), parsed
    )

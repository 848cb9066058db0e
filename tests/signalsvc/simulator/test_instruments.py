from __future__ import annotations

import datetime as dt
import math
import re
from collections import defaultdict
from decimal import Decimal

import pytest

from signalsvc.core.keys import FUTURES, OPTIONS, SPOT, parse_key
from signalsvc.simulator import DemoMarket, MarketConfig, future_expiries, option_expiries
from tests.signalsvc.simulator.conftest import START
from tests.signalsvc.simulator.reference import KOLKATA

INTERVAL = {"NIFTY": 50, "BANKNIFTY": 100}
LOT = {"NIFTY": 75, "BANKNIFTY": 35}
OPTION_KEY = re.compile(r"^NSE@(NIFTY|BANKNIFTY)@equity_options@\d{4}-\d{2}-\d{2}@(call|put)@\d+$")


def strikes_by_chain(specs):
    out = defaultdict(lambda: defaultdict(set))
    for spec in specs:
        if spec.product == OPTIONS:
            out[(spec.symbol, spec.expiry)][spec.option_type].add(spec.strike)
    return out


def expected_strikes(spot: float, interval: int) -> list[int]:
    lo = math.ceil(spot * 0.85 / interval)
    hi = math.floor(spot * 1.15 / interval)
    return [m * interval for m in range(lo, hi + 1)]


def test_every_key_parses_and_is_canonical(recording):
    specs = recording.initial_instruments
    keys = [s.key for s in specs]
    assert len(keys) == len(set(keys))
    for spec in specs:
        parsed = parse_key(spec.key)
        assert str(parsed) == spec.key
        assert (parsed.symbol, parsed.product, parsed.expiry) == (spec.symbol, spec.product, spec.expiry)
        assert spec.tick_size == Decimal("0.05")
        if spec.product == OPTIONS:
            assert OPTION_KEY.match(spec.key)
            assert spec.lot_size == LOT[spec.symbol]


def test_instrument_count_and_products(recording):
    specs = recording.initial_instruments
    by_product = defaultdict(list)
    for spec in specs:
        by_product[(spec.symbol, spec.product)].append(spec)
    assert [s.key for s in by_product[("NIFTY", SPOT)]] == ["NSE@NIFTY@equity_spot"]
    assert [s.key for s in by_product[("BANKNIFTY", SPOT)]] == ["NSE@BANKNIFTY@equity_spot"]
    monthlies = [dt.date(2025, 10, 28), dt.date(2025, 11, 25), dt.date(2025, 12, 30)]
    for symbol in ("NIFTY", "BANKNIFTY"):
        assert [s.expiry for s in by_product[(symbol, FUTURES)]] == monthlies
    expected_options = 0
    for symbol, expiries in (
        (
            "NIFTY",
            [dt.date(2025, 10, 7), dt.date(2025, 10, 14), dt.date(2025, 10, 28), dt.date(2025, 11, 25)],
        ),
        ("BANKNIFTY", monthlies),
    ):
        spot = recording.start_truth["underlyings"][symbol]["spot"]
        per_expiry = 2 * len(expected_strikes(spot, INTERVAL[symbol]))
        assert sorted({s.expiry for s in by_product[(symbol, OPTIONS)]}) == expiries
        expected_options += per_expiry * len(expiries)
    assert len(specs) == 2 + 6 + expected_options
    # the default market lists about 2,200 options
    assert 1900 < expected_options < 2500


def test_strikes_span_15_percent_at_the_exchange_interval(recording):
    chains = strikes_by_chain(recording.initial_instruments)
    assert len(chains) == 7
    for (symbol, _expiry), sides in chains.items():
        spot = recording.start_truth["underlyings"][symbol]["spot"]
        interval = INTERVAL[symbol]
        strikes = sorted(int(k) for k in sides["call"])
        assert sides["call"] == sides["put"]
        assert strikes == expected_strikes(spot, interval)
        assert strikes[0] - interval < 0.85 * spot <= strikes[0]
        assert strikes[-1] <= 1.15 * spot < strikes[-1] + interval


def test_instrument_list_is_stable_between_rolls(recording):
    assert recording.final_instruments == recording.initial_instruments
    assert recording.listing_versions[0] == recording.listing_versions[1]


def test_expired_weekly_rolls_off_at_1530_ist_and_the_next_is_listed():
    start = dt.datetime(2025, 10, 7, 15, 29, tzinfo=KOLKATA)
    market = DemoMarket(start=start, seed=3)
    version = market.listing_version
    market.step(start + dt.timedelta(seconds=59))
    before = {s.key for s in market.instruments()}
    assert any("@2025-10-07@" in k for k in before)
    assert market.listing_version == version

    roll = dt.datetime(2025, 10, 7, 15, 30, tzinfo=KOLKATA)
    ticks = market.step(roll)
    after = market.instruments()
    keys = {s.key for s in after}
    assert not any("@2025-10-07@" in k for k in keys)
    assert not any("@2025-10-07@" in t.key for t in ticks)
    assert market.listing_version == version + 1
    nifty = sorted({s.expiry for s in after if s.symbol == "NIFTY" and s.product == OPTIONS})
    assert nifty == [
        dt.date(2025, 10, 14),
        dt.date(2025, 10, 21),
        dt.date(2025, 10, 28),
        dt.date(2025, 11, 25),
    ]
    # the new expiry's strikes are centred on the spot at the roll; BANKNIFTY is untouched
    new = strikes_by_chain(after)[("NIFTY", dt.date(2025, 10, 21))]["call"]
    assert sorted(int(k) for k in new) == expected_strikes(market.spot("NIFTY"), 50)
    assert {k for k in before if "BANKNIFTY" in k} == {k for k in keys if "BANKNIFTY" in k}


def test_long_gap_lists_the_expiries_of_the_new_time():
    market = DemoMarket(start=START, seed=5, config=MarketConfig(strike_range=0.01, max_substeps=200))
    later = dt.datetime(2025, 10, 30, 11, 0, tzinfo=KOLKATA)
    market.step(later)
    specs = market.instruments()
    for symbol, weeklies, monthlies in (("NIFTY", 2, 2), ("BANKNIFTY", 0, 3)):
        options = sorted({s.expiry for s in specs if s.symbol == symbol and s.product == OPTIONS})
        futures = sorted(s.expiry for s in specs if s.symbol == symbol and s.product == FUTURES)
        assert options == option_expiries(later, weeklies=weeklies, monthlies=monthlies)
        assert futures == future_expiries(later, 3)


def test_true_vol_rejects_keys_that_are_not_listed_options():
    market = DemoMarket(start=START)
    with pytest.raises(KeyError, match="not a listed option"):
        market.true_vol("NSE@NIFTY@equity_spot")
    with pytest.raises(KeyError, match="not a listed option"):
        market.true_vol("NSE@NIFTY@equity_options@2025-10-07@call@10000")

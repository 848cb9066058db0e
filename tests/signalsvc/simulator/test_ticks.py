from __future__ import annotations

import datetime as dt
import math
from collections import defaultdict

import numpy as np
import pytest

from signalsvc.core.keys import FUTURES, OPTIONS, SPOT
from signalsvc.simulator import DemoMarket, MarketConfig
from tests.signalsvc.simulator.conftest import RECORD_SECONDS, START
from tests.signalsvc.simulator.reference import KOLKATA, black76_array, years

LOT = {"NIFTY": 75, "BANKNIFTY": 35}


def on_grid(x: float) -> bool:
    return abs(x * 20 - round(x * 20)) < 1e-6


def option_ticks_with_truth(recording):
    for now, ticks, truth in recording.steps:
        for tick in ticks:
            parsed = recording.parsed[tick.key]
            if parsed.is_option:
                expiry = truth["underlyings"][parsed.symbol]["expiries"][parsed.expiry.isoformat()]
                yield now, tick, expiry, expiry["options"][tick.key]


def test_every_index_and_future_ticks_every_step(recording):
    always = {s.key for s in recording.initial_instruments if s.product in (SPOT, FUTURES)}
    assert len(always) == 8
    for _, ticks, _ in recording.steps:
        assert always <= {t.key for t in ticks}


def test_ticks_carry_the_step_time_in_utc(recording):
    for now, ticks, _ in recording.steps:
        assert ticks
        for tick in ticks:
            assert tick.ts == now
            assert tick.ts.utcoffset() == dt.timedelta(0)


def test_ticks_of_one_instrument_strictly_increase_in_time(recording):
    last: dict[str, dt.datetime] = {}
    for tick in recording.ticks:
        if tick.key in last:
            assert tick.ts > last[tick.key]
        last[tick.key] = tick.ts


def test_prices_positive_on_the_tick_grid_with_sane_quotes(recording):
    for tick in recording.ticks:
        assert tick.ltp > 0 and on_grid(tick.ltp)
        if recording.parsed[tick.key].product == SPOT:
            assert (tick.bid, tick.ask, tick.volume, tick.oi) == (None, None, 0.0, 0.0)
            continue
        assert tick.bid is not None and tick.ask is not None
        assert on_grid(tick.bid) and on_grid(tick.ask)
        assert 0 < tick.bid <= tick.ltp <= tick.ask
        assert tick.bid < tick.ask


def test_volume_and_oi_are_whole_lots(recording):
    for tick in recording.ticks:
        parsed = recording.parsed[tick.key]
        if parsed.product == SPOT:
            continue
        lot = LOT[parsed.symbol]
        assert tick.volume >= 0 and tick.volume % lot == 0
        assert tick.oi >= lot and tick.oi % lot == 0


def test_option_ltp_is_black76_of_the_truth_up_to_rounding(recording):
    rate = recording.start_truth["rate"]
    rows = []
    for now, tick, expiry, truth in option_ticks_with_truth(recording):
        t = years(now, dt.date.fromisoformat(expiry["expiry"]))
        assert t == pytest.approx(expiry["t"], rel=1e-12)
        rows.append(
            (
                expiry["forward"],
                truth["strike"],
                t,
                truth["vol"],
                truth["type"] == "call",
                truth["price"],
                tick.ltp,
            )
        )
    forward, strike, t, vol, is_call, truth_price, ltp = (
        np.array(column) for column in zip(*rows, strict=True)
    )
    price = black76_array(forward, strike, t, vol, rate, is_call.astype(bool))
    np.testing.assert_allclose(truth_price, price, rtol=1e-9, atol=1e-9)
    priced = price >= 0.025
    assert np.all(np.abs(ltp[priced] - price[priced]) <= 0.025 + 1e-9)
    assert np.all(ltp[~priced] == 0.05)
    assert len(rows) > 20000 and np.count_nonzero(~priced) > 0


def test_quotes_are_centred_on_the_true_price_and_wider_in_the_wings(recording):
    spreads = defaultdict(list)
    for _, tick, _, truth in option_ticks_with_truth(recording):
        if tick.bid > 0.05:  # not clamped at the minimum price
            assert abs(0.5 * (tick.bid + tick.ask) - truth["price"]) <= 0.025 + 1e-9
        bucket = "atm" if abs(truth["k"]) < 0.01 else ("wing" if abs(truth["k"]) > 0.1 else "mid")
        spreads[bucket].append((tick.ask - tick.bid) / max(truth["price"], 0.05))
        if bucket == "atm":
            assert 0.05 <= tick.ask - tick.bid <= max(0.2, 0.005 * truth["price"])
    assert np.median(spreads["wing"]) > 2 * np.median(spreads["atm"])


def test_more_volume_near_the_money(recording):
    volume = defaultdict(list)
    for _, tick, _, truth in option_ticks_with_truth(recording):
        volume["atm" if abs(truth["k"]) < 0.02 else "far" if abs(truth["k"]) > 0.08 else "mid"].append(
            tick.volume
        )
    assert np.mean(volume["atm"]) > 5 * np.mean(volume["far"])
    assert np.mean(volume["atm"]) > 0


def test_open_interest_is_larger_near_the_money(recording):
    last_truth = recording.steps[-1][2]
    oi = {}
    for tick in recording.ticks:
        oi[tick.key] = tick.oi
    for symbol, underlying in last_truth["underlyings"].items():
        nearest = next(iter(underlying["expiries"].values()))
        atm = [oi[k] for k, o in nearest["options"].items() if abs(o["k"]) < 0.01 and k in oi]
        far = [oi[k] for k, o in nearest["options"].items() if abs(o["k"]) > 0.1 and k in oi]
        assert np.mean(atm) > 5 * np.mean(far), symbol


def test_tick_rate_and_round_robin_at_one_step_per_second(recording):
    options = [s.key for s in recording.initial_instruments if s.product == OPTIONS]
    times = defaultdict(list)
    for tick in recording.ticks:
        times[tick.key].append(tick.ts)
    rate = len(recording.ticks) / RECORD_SECONDS
    assert 300 < rate < 600
    # every option ticks, about every 3-6 seconds, never more than 7 s apart
    assert set(options) <= set(times)
    gaps = [
        (b - a).total_seconds() for key in options for a, b in zip(times[key], times[key][1:], strict=False)
    ]
    assert 3.0 <= float(np.mean(gaps)) <= 6.0
    assert max(gaps) <= 7.0
    first = [(times[key][0] - START).total_seconds() for key in options]
    assert max(first) <= 6.0


@pytest.mark.parametrize("period", [0.5, 2.0])
def test_tick_rate_stays_below_600_per_second(period):
    market = DemoMarket(start=START, seed=11)
    steps = int(30 / period)
    total = sum(len(market.step(START + dt.timedelta(seconds=period * (i + 1)))) for i in range(steps))
    assert 250 < total / 30 < 600


def test_a_long_gap_ticks_every_instrument_once():
    market = DemoMarket(start=START, seed=2)
    market.step(START + dt.timedelta(seconds=1))
    ticks = market.step(START + dt.timedelta(hours=3))
    assert sorted(t.key for t in ticks) == sorted(s.key for s in market.instruments())


IRREGULAR = [0.0, 0.5, 1.7, 2.0, 3.1, 60.0, 3600.0, 3601.0, 86400.0, 86400.25]


def run(seed: int, config: MarketConfig | None = None):
    market = DemoMarket(start=START, seed=seed, config=config)
    ticks = [market.step(START + dt.timedelta(seconds=s)) for s in IRREGULAR]
    return ticks, market.truth()


def test_deterministic_for_a_seed_and_step_times():
    assert run(7) == run(7)


def test_different_seeds_give_different_markets():
    (ticks_a, truth_a), (ticks_b, truth_b) = run(7), run(8)
    assert truth_a["underlyings"]["NIFTY"]["spot"] != truth_b["underlyings"]["NIFTY"]["spot"]
    assert ticks_a != ticks_b


def test_price_path_does_not_depend_on_the_listed_strikes():
    wide = run(7)[1]
    narrow = run(7, MarketConfig(strike_range=0.02))[1]
    for symbol in ("NIFTY", "BANKNIFTY"):
        assert wide["underlyings"][symbol]["spot"] == narrow["underlyings"][symbol]["spot"]


def test_history_does_not_change_the_live_stream():
    plain = DemoMarket(start=START, seed=4)
    probed = DemoMarket(start=START, seed=4)
    probed.history(end=START, minutes=120)
    for s in (1, 2, 3):
        now = START + dt.timedelta(seconds=s)
        assert plain.step(now) == probed.step(now)


def test_step_rejects_going_back_in_time():
    market = DemoMarket(start=START)
    market.step(START + dt.timedelta(seconds=5))
    with pytest.raises(ValueError, match="before the market time"):
        market.step(START + dt.timedelta(seconds=4))


def test_repeating_the_current_time_publishes_nothing_new():
    market = DemoMarket(start=START)
    assert market.step(START)  # the first step at the start time publishes indices and futures
    assert market.step(START) == []


def test_naive_times_are_rejected():
    with pytest.raises(ValueError, match="timezone-aware"):
        DemoMarket(start=dt.datetime(2025, 10, 6, 10, 0))
    market = DemoMarket(start=START)
    with pytest.raises(ValueError, match="timezone-aware"):
        market.step(dt.datetime(2025, 10, 6, 10, 1))


def test_runs_outside_market_hours():
    saturday_night = dt.datetime(2025, 10, 11, 2, 0, tzinfo=KOLKATA)
    market = DemoMarket(start=saturday_night, seed=9)
    published = [market.step(saturday_night + dt.timedelta(seconds=s)) for s in range(1, 11)]
    assert all(len(ticks) >= 8 for ticks in published)
    spot = [t.ltp for ticks in published for t in ticks if t.key == "NSE@NIFTY@equity_spot"]
    assert len(set(spot)) > 1  # the market moves at night too
    assert all(math.isfinite(x) for x in spot)


def test_a_strikes_call_and_put_tick_together(recording):
    for _, ticks, _ in recording.steps:
        options = {t.key for t in ticks if recording.parsed[t.key].is_option}
        for key in options:
            other = key.replace("@call@", "@put@") if "@call@" in key else key.replace("@put@", "@call@")
            assert other in options


def test_a_zero_tick_interval_ticks_every_option_at_every_step():
    market = DemoMarket(start=START, seed=3, config=MarketConfig(option_tick_interval=(0.0, 0.0)))
    everything = sorted(s.key for s in market.instruments())
    for s in range(3):
        assert sorted(t.key for t in market.step(START + dt.timedelta(seconds=s))) == everything

"""The farm bench's market: 500 underlyings x 2,000 options, registered and quoted in Redis.

Shape of each underlying (NIFTY's, scaled up): spot ``S`` near ``833 x step`` for a strike step
drawn from 1..100 (so strikes are integers and the 250 strikes of an expiry span ±15 % of spot);
option expiries as the demo market lists them (the next 2 weekly and 2 monthly Tuesdays,
``simulator.expiries.option_expiries``), 250 strikes x call/put each = 2,000 options; the next 3
monthly futures (so the two monthly expiries take their forward from a future, the weeklies from
put-call parity, as the chain service does for NIFTY).

Prices: the simulator's SSVI surface (``signalsvc.simulator.surface``: ATM total variance of a CIR
variance started at a per-underlying vol of 10-45 %, skew rho -0.6, eta 1, gamma 0.45) and Black-76
on the forward ``S e^{rt}`` (``RISK_FREE_RATE`` 6.5 %), quoted on the 0.05 tick as the simulator does
(ltp = price, bid/ask = price -/+ a half spread of 0.05 % .. 0.25 % widening into the wings, never
under one tick). So IV solves wherever the quote is above the tick floor, and deep wings sit on the
floor, as real quotes do.

Loading is what the ingest does: ``latest_ticks_store`` (one hash ``md:last:<key>`` per
instrument), in batches of 20,000 ticks. The registry is loaded by COPY (~10 s for the million rows;
``instruments_upsert`` would build a Django object per row) and only when it is not exactly there
(the expiries move on every Tuesday), so a second run costs one query.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass

import numpy as np

EXCHANGE = "NSE"
SYMBOL_PREFIX = "FARM"
UNDERLYINGS = 500
STRIKES = 250  # per expiry; x 2 types x 4 expiries = 2,000 options per underlying
WEEKLIES, MONTHLIES, FUTURES = 2, 2, 3
STRIKE_STEPS = (1, 2, 5, 10, 20, 25, 50, 100)
STRIKES_PER_STEP_OF_SPOT = 833  # spot ~ 833 steps: 250 strikes span ±15 %
TICK = 0.05
RATE = 0.065
LOT = 50
REDIS_BATCH = 20_000
SEED = 11


@dataclass(frozen=True)
class FarmMarket:
    """Arrays over all options (``keys``, ``underlying``: index of the underlying), the
    underlyings' spot keys and prices, the futures, and the instant every quote is stamped with."""

    now: dt.datetime
    spot_keys: list[str]
    spots: np.ndarray
    symbols: list[str]
    expiries: list[dt.date]
    future_expiries: list[dt.date]
    future_keys: list[str]  # underlying-major, FUTURES per underlying
    future_prices: np.ndarray
    keys: list[str]
    strikes: np.ndarray  # int64
    is_call: np.ndarray
    expiry_index: np.ndarray
    ltp: np.ndarray
    bid: np.ndarray
    ask: np.ndarray
    oi: np.ndarray

    @property
    def options(self) -> int:
        return len(self.keys)


def symbols() -> list[str]:
    return [f"{SYMBOL_PREFIX}{i:03d}" for i in range(UNDERLYINGS)]


def spot_key(symbol: str) -> str:
    return f"{EXCHANGE}@{symbol}@equity_spot"


def market_build(now: dt.datetime, *, seed: int = SEED) -> FarmMarket:
    """The whole market at ``now`` (aware): 1,000,000 option quotes, vectorised."""
    from signalsvc.simulator.expiries import (
        SECONDS_PER_YEAR,
        expiry_datetime,
        future_expiries,
        option_expiries,
    )
    from signalsvc.simulator.surface import atm_total_variance, black76, round_to_tick, ssvi_total_variance

    rng = np.random.default_rng(seed)
    names = symbols()
    expiries = option_expiries(now, weeklies=WEEKLIES, monthlies=MONTHLIES)
    fut_expiries = future_expiries(now, FUTURES)
    t_exp = np.array([(expiry_datetime(e) - now).total_seconds() / SECONDS_PER_YEAR for e in expiries])
    t_fut = np.array([(expiry_datetime(e) - now).total_seconds() / SECONDS_PER_YEAR for e in fut_expiries])

    step = rng.choice(STRIKE_STEPS, UNDERLYINGS).astype(np.int64)
    spots = np.round(step * STRIKES_PER_STEP_OF_SPOT * rng.uniform(0.97, 1.03, UNDERLYINGS), 2)
    atm = np.round(spots / step).astype(np.int64) * step
    vol = rng.uniform(0.10, 0.45, UNDERLYINGS)

    # Option axes, underlying-major: (underlying, expiry, type, strike).
    per_expiry = 2 * STRIKES
    per_underlying = len(expiries) * per_expiry
    n = UNDERLYINGS * per_underlying
    u = np.repeat(np.arange(UNDERLYINGS), per_underlying)
    local = np.tile(np.arange(per_underlying), UNDERLYINGS)
    e = local // per_expiry
    is_call = (local % per_expiry) < STRIKES
    j = local % STRIKES
    strikes = atm[u] + step[u] * (j - STRIKES // 2)
    strikes = np.where(strikes > 0, strikes, step[u])  # never happens with ±15 %, kept for safety

    t = t_exp[e]
    forward = spots[u] * np.exp(RATE * t)
    k = np.log(strikes / forward)
    theta = atm_total_variance(vol[u] ** 2, long_run=0.13**2, kappa=5.0, t=t)
    w = ssvi_total_variance(k, theta, rho=-0.6, eta=1.0, gamma=0.45)
    price = black76(forward, strikes, w, np.exp(-RATE * t), is_call)
    edge = np.minimum(np.abs(k) / 0.15, 1.0)
    half = np.maximum(TICK, 0.0005 * (1.0 + 4.0 * edge) * price * (0.8 + 0.4 * rng.random(n)))
    ltp = np.maximum(round_to_tick(price, TICK), TICK)
    bid = np.clip(round_to_tick(price - half, TICK), TICK, ltp)
    ask = round_to_tick(np.maximum(np.maximum(round_to_tick(price + half, TICK), ltp), bid + TICK), TICK)
    oi = LOT * np.maximum(1, np.round(60_000 * np.exp(-np.abs(k) / 0.03) + rng.integers(0, 500, n)))

    exp_text = [x.isoformat() for x in expiries]
    type_text = ("put", "call")
    keys = [
        f"{EXCHANGE}@{names[a]}@equity_options@{exp_text[b]}@{type_text[c]}@{d}"
        for a, b, c, d in zip(
            u.tolist(), e.tolist(), is_call.astype(int).tolist(), strikes.tolist(), strict=True
        )
    ]
    fut_keys = [f"{EXCHANGE}@{s}@equity_futures@{x.isoformat()}" for s in names for x in fut_expiries]
    fut_prices = round_to_tick((spots[:, None] * np.exp(RATE * t_fut[None, :])).ravel(), TICK)
    return FarmMarket(
        now=now,
        spot_keys=[spot_key(s) for s in names],
        spots=spots,
        symbols=names,
        expiries=expiries,
        future_expiries=fut_expiries,
        future_keys=fut_keys,
        future_prices=fut_prices,
        keys=keys,
        strikes=strikes,
        is_call=is_call,
        expiry_index=e,
        ltp=ltp,
        bid=bid,
        ask=ask,
        oi=oi.astype(float),
    )


# -- the registry ---------------------------------------------------------------------------------


def instruments_ready(market: FarmMarket) -> bool:
    """Whether exactly this market's instruments are registered and active (one query)."""
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute(
            "SELECT count(*) FILTER (WHERE product = 'equity_options' AND active AND expiry = ANY(%s)), "
            "count(*) FILTER (WHERE product = 'equity_futures' AND active AND expiry = ANY(%s)), "
            "count(*) FILTER (WHERE product = 'equity_spot' AND active), "
            "count(*) FILTER (WHERE active) "
            "FROM instruments_instrument WHERE exchange = %s AND symbol LIKE %s",
            [market.expiries, market.future_expiries, EXCHANGE, SYMBOL_PREFIX + "%"],
        )
        options, futures, spots, active = cur.fetchone()
    want = (market.options, len(market.future_keys), UNDERLYINGS)
    return (options, futures, spots) == want and active == sum(want)


def instruments_load(market: FarmMarket) -> None:
    """Replace the bench symbols' registry rows with this market's, by COPY, in one transaction.
    Rows of the bench symbols only (``FARM000`` ..): the bench database holds nothing else of them."""
    from django.db import connection, transaction

    from signalsvc.instruments import selectors

    exp_text = [x.isoformat() for x in market.expiries]
    now = dt.datetime.now(dt.UTC)
    columns = (
        "key, exchange, symbol, product, expiry, option_type, strike, lot_size, tick_size, active, "
        "created_at, updated_at"
    )
    with transaction.atomic(), connection.cursor() as cur:
        cur.execute(
            "DELETE FROM instruments_instrument WHERE exchange = %s AND symbol LIKE %s",
            [EXCHANGE, SYMBOL_PREFIX + "%"],
        )
        with cur.copy(f"COPY instruments_instrument ({columns}) FROM STDIN") as copy:
            for symbol, key in zip(market.symbols, market.spot_keys, strict=True):
                copy.write_row(
                    (key, EXCHANGE, symbol, "equity_spot", None, None, None, 1, "0.05", True, now, now)
                )
            for i, key in enumerate(market.future_keys):
                expiry = market.future_expiries[i % FUTURES]
                copy.write_row(
                    (key, EXCHANGE, market.symbols[i // FUTURES], "equity_futures", expiry, None, None, LOT,
                     "0.05", True, now, now)
                )  # fmt: skip
            per_underlying = market.options // UNDERLYINGS
            strikes, calls, eidx = (
                market.strikes.tolist(),
                market.is_call.tolist(),
                market.expiry_index.tolist(),
            )
            for i, key in enumerate(market.keys):
                copy.write_row(
                    (key, EXCHANGE, market.symbols[i // per_underlying], "equity_options", exp_text[eidx[i]],
                     "call" if calls[i] else "put", strikes[i], LOT, "0.05", True, now, now)
                )  # fmt: skip
    with connection.cursor() as cur:
        cur.execute("ANALYZE instruments_instrument")
    selectors.instrument_ids_clear_cache()


# -- the latest quotes ----------------------------------------------------------------------------


def ticks_store(client, market: FarmMarket) -> float:
    """Every quote of the market into Redis as the ingest writes it (``latest_ticks_store``), in
    batches; returns the seconds it took."""
    from signalsvc.marketdata.latest import latest_ticks_store
    from signalsvc.simulator.market import Tick

    ts = market.now
    start = time.perf_counter()
    batch = [
        Tick(k, ts, float(p), 0.0, None, None, None)
        for k, p in zip(market.spot_keys, market.spots.tolist(), strict=True)
    ]
    batch += [
        Tick(k, ts, float(p), 0.0, None, float(p) - TICK, float(p) + TICK)
        for k, p in zip(market.future_keys, market.future_prices.tolist(), strict=True)
    ]
    latest_ticks_store(client, batch)
    ltp, bid, ask, oi = (a.tolist() for a in (market.ltp, market.bid, market.ask, market.oi))
    for lo in range(0, market.options, REDIS_BATCH):
        hi = min(lo + REDIS_BATCH, market.options)
        latest_ticks_store(
            client, [Tick(market.keys[i], ts, ltp[i], 0.0, oi[i], bid[i], ask[i]) for i in range(lo, hi)]
        )
    return time.perf_counter() - start


def spots_restamp(client, market: FarmMarket, ts: dt.datetime) -> None:
    """New spot ticks at ``ts`` (same prices): the next cycle's instant, so its chains are a new
    computation (a new minute of rows, a newer source time for the latest values)."""
    from signalsvc.marketdata.latest import latest_ticks_store
    from signalsvc.simulator.market import Tick

    latest_ticks_store(
        client,
        [
            Tick(k, ts, float(p), 0.0, None, None, None)
            for k, p in zip(market.spot_keys, market.spots.tolist(), strict=True)
        ],
    )


# Keys this bench writes in its Redis database (everything else there is left alone).
OWN_PATTERNS = (
    f"md:last:{EXCHANGE}@{SYMBOL_PREFIX}*",
    f"*{EXCHANGE}@{SYMBOL_PREFIX}*",  # chain hashes, moneyness hashes, chain versions
)


def keys_delete(client, patterns: tuple[str, ...] = OWN_PATTERNS) -> int:
    """UNLINK every key matching the patterns (SCAN, in batches). Returns how many."""
    deleted = 0
    for pattern in patterns:
        batch = []
        for key in client.scan_iter(match=pattern, count=10_000):
            batch.append(key)
            if len(batch) >= 10_000:
                deleted += client.unlink(*batch)
                batch = []
        if batch:
            deleted += client.unlink(*batch)
    return deleted

"""The demo market: an NSE-like index, futures and options market whose truth is readable.

Pure core (standard library, numpy, scipy). ``DemoMarket.step(now)`` advances the simulated state
to ``now`` and returns the ticks to publish; ``truth()`` tells exactly what the prices were made
of, so tests can check that the analytics recover it. See docs/demo-market.md.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import tempfile
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
from scipy.signal import lfilter

from signalsvc.core.keys import FUTURES, OPTIONS, SPOT, InstrumentSpec, build_key, parse_key

from .config import MarketConfig, UnderlyingConfig
from .dynamics import ProcessParams, advance, backward_log_path, backward_variance_path
from .expiries import (
    SECONDS_PER_YEAR,
    expiry_datetime,
    future_expiries,
    is_monthly_expiry,
    option_expiries,
    require_aware,
)
from .surface import atm_total_variance, black76, round_to_tick, ssvi_phi, ssvi_total_variance

MAX_HISTORY_MINUTES = 30 * 24 * 60
HISTORY_SAMPLES_PER_MINUTE = 12  # 5-second path samples inside each 1-minute bar
_LIQUIDITY_SCALE = 0.03  # log-moneyness scale over which volume and OI fall off
_ITM_LIQUIDITY = 0.3  # in-the-money options trade less than out-of-the-money ones


@dataclass(frozen=True)
class Tick:
    """One market-data message. ``ts`` is aware UTC; ``volume`` is the quantity (units, lot
    multiples) traded since this instrument's previous tick; ``oi`` open interest in units;
    ``bid``/``ask`` are None for an index."""

    key: str
    ts: dt.datetime
    ltp: float
    volume: float
    oi: float
    bid: float | None
    ask: float | None


@dataclass(frozen=True)
class Bar:
    """One 1-minute OHLCV bar; ``ts`` is the minute's start, aware UTC."""

    key: str
    ts: dt.datetime
    open: float
    high: float
    low: float
    close: float
    volume: float
    oi: float


@dataclass
class _Future:
    key: str
    expiry: dt.date
    expiry_ts: dt.datetime
    noise: float  # relative deviation of the traded price from the fair forward
    oi: float  # units


@dataclass
class _Chain:
    """The options of one (underlying, expiry): calls first, then puts, strikes ascending."""

    expiry: dt.date
    expiry_ts: dt.datetime
    kind: str  # "weekly" | "monthly"
    keys: list[str]
    strike: np.ndarray  # (2n,) float
    is_call: np.ndarray  # (2n,) bool
    due: np.ndarray  # (n,) per strike: epoch seconds of the next tick of its call and put
    oi: np.ndarray  # (2n,) units


@dataclass(frozen=True)
class _Snapshot:
    """Truth of one chain at the market's current time; arrays align with ``_Chain.keys``."""

    t: float
    forward: float
    discount: float
    theta: float  # ATM total variance
    k: np.ndarray
    vol: np.ndarray
    price: np.ndarray


@dataclass
class _Underlying:
    index: int
    cfg: UnderlyingConfig
    spot_key: str
    chains: dict[dt.date, _Chain]
    futures: dict[dt.date, _Future]


class DemoMarket:
    """A deterministic (given ``seed``, ``config`` and the sequence of ``step`` times) simulated
    NSE-like market of index spots, monthly futures and options; it runs at any date and hour."""

    def __init__(self, *, start: dt.datetime, seed: int = 7, config: MarketConfig | None = None) -> None:
        self._config = config or MarketConfig()
        self._seed = int(seed)
        self._now = require_aware(start, "start")
        self._stepped = False
        self._listing_version = 0
        self._instruments: list[InstrumentSpec] | None = None
        self._next_roll: dt.datetime | None = None
        self._key_index: dict[str, tuple[_Underlying, _Chain, int]] = {}
        cfgs = self._config.underlyings
        n = len(cfgs)
        # Separate streams: the price path depends only on the seed and the step times, not on
        # how many options are listed or ticked.
        dyn_ss, basis_ss, micro_ss, init_ss = np.random.SeedSequence(self._seed).spawn(4)
        self._dyn_rng = np.random.default_rng(dyn_ss)
        self._basis_rng = np.random.default_rng(basis_ss)
        self._rng = np.random.default_rng(micro_ss)
        init = np.random.default_rng(init_ss)
        corr = np.full((n, n), self._config.index_correlation)
        np.fill_diagonal(corr, 1.0)
        self._params = ProcessParams(
            kappa=np.array([c.kappa for c in cfgs]),
            theta=np.array([c.long_run_vol**2 for c in cfgs]),
            xi=np.array([c.vol_of_vol for c in cfgs]),
            rho=np.array([c.spot_vol_correlation for c in cfgs]),
            jump_intensity=np.array([c.jump_intensity for c in cfgs]),
            jump_mean=np.array([c.jump_mean for c in cfgs]),
            jump_stdev=np.array([c.jump_stdev for c in cfgs]),
            anchor_log=np.log([c.anchor for c in cfgs]),
            pull=np.array([c.anchor_pull for c in cfgs]),
            chol=np.linalg.cholesky(corr),
        )
        self._log_s = np.log([init.uniform(c.spot_low, c.spot_high) for c in cfgs])
        # Initial variance from the stationary (gamma) law of the CIR process, kept within
        # [0.5, 2] times its mean so a demo never starts in an extreme regime.
        shape = 2 * self._params.kappa * self._params.theta / self._params.xi**2
        self._v = self._params.theta * np.clip(init.gamma(shape) / shape, 0.5, 2.0)
        self._underlyings = [
            _Underlying(i, c, build_key(c.exchange, c.symbol, SPOT), {}, {}) for i, c in enumerate(cfgs)
        ]
        self._sync_listing()

    # ------------------------------------------------------------------ public API

    @property
    def config(self) -> MarketConfig:
        return self._config

    @property
    def now(self) -> dt.datetime:
        """Time of the current state (aware UTC): ``start`` until the first step."""
        return self._now

    @property
    def listing_version(self) -> int:
        """Incremented whenever expiries roll (the instrument list changed)."""
        return self._listing_version

    def instruments(self) -> list[InstrumentSpec]:
        """Everything currently listed: per underlying its index, futures, then options
        (by expiry, strike, call before put). Stable between expiry rolls."""
        if self._instruments is None:
            tick = Decimal(str(self._config.tick_size))
            specs: list[InstrumentSpec] = []
            for u in self._underlyings:
                specs.append(InstrumentSpec.from_key(u.spot_key, lot_size=1, tick_size=tick))
                for fut in self._sorted_futures(u):
                    specs.append(InstrumentSpec.from_key(fut.key, lot_size=u.cfg.lot_size, tick_size=tick))
                for chain in self._sorted_chains(u):
                    n = len(chain.keys) // 2
                    for j in range(n):
                        for key in (chain.keys[j], chain.keys[n + j]):
                            specs.append(
                                InstrumentSpec.from_key(key, lot_size=u.cfg.lot_size, tick_size=tick)
                            )
            self._instruments = specs
        return list(self._instruments)

    def spot(self, symbol: str) -> float:
        """True (unrounded) index level of ``symbol`` at the current state."""
        return float(np.exp(self._log_s[self._underlying(symbol).index]))

    def step(self, now: dt.datetime) -> list[Tick]:
        """Advance the state to ``now`` (aware, not before the current state) and return the ticks
        to publish, all stamped ``now``: every index and future, and the options whose turn has
        come. A repeated call with the current time returns no ticks."""
        now = require_aware(now, "now")
        if now < self._now:
            raise ValueError(f"step time {now.isoformat()} is before the market time {self._now.isoformat()}")
        if now == self._now and self._stepped:
            return []
        self._advance((now - self._now).total_seconds())
        self._now = now
        self._stepped = True
        self._sync_listing()
        return self._emit()

    def true_vol(self, key: str) -> float:
        """True Black-76 volatility of a listed option at the current state."""
        u, chain, j = self._lookup(key)
        return float(self._snapshot(u, chain).vol[j])

    def true_price(self, key: str) -> float:
        """True (unrounded) Black-76 price of a listed option at the current state."""
        u, chain, j = self._lookup(key)
        return float(self._snapshot(u, chain).price[j])

    def truth(self) -> dict[str, Any]:
        """Everything the prices were made of, at the current state, as JSON-ready values."""
        cfg = self._config
        out: dict[str, Any] = {
            "timestamp": self._now.isoformat(),
            "seed": self._seed,
            "model": "black76",
            "day_count": "ACT/365 calendar time to 15:30 Asia/Kolkata on the expiry date",
            "rate": cfg.rate,
            "dividend_yield": cfg.dividend_yield,
            "tick_size": cfg.tick_size,
            "listing_version": self._listing_version,
            "underlyings": {},
        }
        for u in self._underlyings:
            i = u.index
            spot = float(np.exp(self._log_s[i]))
            futures = {}
            for fut in self._sorted_futures(u):
                t = self._years_to(fut.expiry_ts)
                fair = spot * math.exp((cfg.rate - cfg.dividend_yield) * t)
                futures[fut.key] = {
                    "expiry": fut.expiry.isoformat(),
                    "t": t,
                    "fair_price": fair,
                    "price": fair * (1.0 + fut.noise),
                }
            expiries = {}
            for chain in self._sorted_chains(u):
                snap = self._snapshot(u, chain)
                fut = u.futures.get(chain.expiry)
                n = len(chain.keys) // 2
                options = {}
                for j in range(n):
                    for m in (j, n + j):
                        options[chain.keys[m]] = {
                            "strike": float(chain.strike[m]),
                            "type": "call" if chain.is_call[m] else "put",
                            "vol": float(snap.vol[m]),
                            "price": float(snap.price[m]),
                            "k": float(snap.k[m]),
                        }
                expiries[chain.expiry.isoformat()] = {
                    "expiry": chain.expiry.isoformat(),
                    "expiry_ts": chain.expiry_ts.isoformat(),
                    "kind": chain.kind,
                    "t": snap.t,
                    "forward": snap.forward,
                    "discount": snap.discount,
                    "future_key": fut.key if fut else None,
                    "future_price": futures[fut.key]["price"] if fut else None,
                    "atm_vol": math.sqrt(snap.theta / snap.t),
                    "surface": {
                        "model": "ssvi_power_law",
                        "theta": snap.theta,
                        "rho": u.cfg.skew_rho,
                        "eta": u.cfg.skew_eta,
                        "gamma": u.cfg.skew_gamma,
                        "phi": float(ssvi_phi(snap.theta, u.cfg.skew_eta, u.cfg.skew_gamma)),
                    },
                    "strikes": {
                        "min": float(chain.strike[:n].min()),
                        "max": float(chain.strike[:n].max()),
                        "interval": u.cfg.strike_interval,
                        "count": n,
                    },
                    "options": options,
                }
            out["underlyings"][u.cfg.symbol] = {
                "key": u.spot_key,
                "spot": spot,
                "variance": float(self._v[i]),
                "instantaneous_vol": float(np.sqrt(self._v[i])),
                "long_run_vol": u.cfg.long_run_vol,
                "kappa": u.cfg.kappa,
                "vol_of_vol": u.cfg.vol_of_vol,
                "lot_size": u.cfg.lot_size,
                "strike_interval": u.cfg.strike_interval,
                "futures": futures,
                "expiries": expiries,
            }
        return out

    def write_truth(self, path: str | os.PathLike[str]) -> Path:
        """Write ``truth()`` as JSON to ``path`` atomically (temporary file + rename)."""
        return write_json_atomic(path, self.truth())

    def history(self, *, end: dt.datetime, minutes: int) -> list[Bar]:
        """1-minute bars of the indices and listed futures for the ``minutes`` whole minutes before
        ``end`` (floored to the minute), the last close being the current price.

        ``end`` must not be after the market's current time. The path is a stochastic-variance
        path with jumps read backwards from the current state (no leverage term), drawn from its
        own random stream: deterministic given the seed, the state and the arguments, and it does
        not change what ``step`` publishes afterwards. Bars are ordered by minute, then key."""
        end = require_aware(end, "end")
        if end > self._now:
            raise ValueError(
                f"history end {end.isoformat()} is after the market time {self._now.isoformat()}"
            )
        if not 0 <= minutes <= MAX_HISTORY_MINUTES:
            raise ValueError(f"minutes must be in [0, {MAX_HISTORY_MINUTES}], got {minutes}")
        if minutes == 0:
            return []
        cfg = self._config
        last = end.replace(second=0, microsecond=0)
        first = last - dt.timedelta(minutes=minutes)
        entropy = [self._seed, 0x48495354, minutes, int(last.timestamp()) % (1 << 62)]
        rng = np.random.default_rng(np.random.SeedSequence(entropy))
        per_min = HISTORY_SAMPLES_PER_MINUTE
        minute_years = 60.0 / SECONDS_PER_YEAR
        # the variance moves slowly (half-life of weeks): sample it on at most 720 points and
        # interpolate to the minutes
        coarse = min(minutes, 720)
        coarse_var = backward_variance_path(
            rng, self._v.copy(), minute_years * minutes / coarse, coarse, self._params
        )
        grid = np.linspace(0.0, 1.0, minutes + 1)
        coarse_grid = np.linspace(0.0, 1.0, coarse + 1)
        variance = np.column_stack([np.interp(grid, coarse_grid, col) for col in coarse_var.T])
        log_path = backward_log_path(
            rng, self._log_s.copy(), variance, minute_years / per_min, per_min, self._params
        )
        # seconds from now of each path sample; the last sample is the current state (at most a
        # minute after the last bar's end), so every series ends exactly at its current price
        n_samples = minutes * per_min
        sample_seconds = (np.arange(n_samples + 1) - n_samples) * (60.0 / per_min)
        minute_ts = [first + dt.timedelta(minutes=m) for m in range(minutes)]

        series: list[tuple[str, np.ndarray, np.ndarray, np.ndarray]] = []  # key, prices, volume, oi
        zeros = np.zeros(minutes)
        for u in self._underlyings:
            spot = np.exp(log_path[:, u.index])
            series.append((u.spot_key, spot, zeros, zeros))
            for rank, fut in enumerate(self._sorted_futures(u)):
                t = ((fut.expiry_ts - self._now).total_seconds() - sample_seconds) / SECONDS_PER_YEAR
                noise = self._backward_basis_noise(rng, fut.noise, len(sample_seconds) - 1, 60.0 / per_min)
                price = spot * np.exp((cfg.rate - cfg.dividend_yield) * t) * (1.0 + noise)
                lot = u.cfg.lot_size
                mean_lots = per_min * u.cfg.future_lots_per_tick * 0.5**rank
                volume = lot * _counts(rng, np.full(minutes, mean_lots))
                oi_steps = lot * np.round(rng.standard_normal(minutes) * (1.0 + 0.002 * fut.oi / lot))
                # oi at each minute's end, the last equal to the current open interest
                oi = fut.oi - np.concatenate([np.cumsum(oi_steps[::-1])[::-1][1:], [0.0]])
                series.append((fut.key, price, volume, np.maximum(oi, lot)))

        bars: list[Bar] = []
        columns = []
        for key, p, vol, oi in series:
            # row m: the samples of minute m, from its open to its close (the next minute's open)
            windows = np.lib.stride_tricks.sliding_window_view(round_to_tick(p, cfg.tick_size), per_min + 1)
            windows = windows[::per_min]
            columns.append(
                (
                    key,
                    windows[:, 0].tolist(),
                    windows.max(axis=1).tolist(),
                    windows.min(axis=1).tolist(),
                    windows[:, -1].tolist(),
                    vol.tolist(),
                    oi.tolist(),
                )
            )
        for m, ts in enumerate(minute_ts):
            for key, o, h, lo, c, vol, oi in columns:
                bars.append(Bar(key, ts, o[m], h[m], lo[m], c[m], vol[m], oi[m]))
        return bars

    # ------------------------------------------------------------------ state evolution

    def _advance(self, seconds: float) -> None:
        if seconds <= 0:
            return
        cfg = self._config
        n = min(cfg.max_substeps, max(1, math.ceil(seconds / cfg.max_substep_seconds)))
        dt_years = seconds / n / SECONDS_PER_YEAR
        log_s, v = self._log_s, self._v
        for _ in range(n):
            log_s, v = advance(self._dyn_rng, log_s, v, dt_years, self._params)
        self._log_s, self._v = log_s, v
        # exact Ornstein-Uhlenbeck update of each future's basis noise over the whole gap
        decay = 0.5 ** (seconds / cfg.futures_basis_halflife)
        scale = cfg.futures_basis_noise * math.sqrt(1.0 - decay * decay)
        for u in self._underlyings:
            for fut in self._sorted_futures(u):
                fut.noise = decay * fut.noise + scale * float(self._basis_rng.standard_normal())

    def _backward_basis_noise(
        self, rng: np.random.Generator, end: float, steps: int, seconds: float
    ) -> np.ndarray:
        """OU basis-noise path of ``steps + 1`` points ending at ``end`` (reversed forward path)."""
        cfg = self._config
        decay = 0.5 ** (seconds / cfg.futures_basis_halflife)
        shocks = cfg.futures_basis_noise * math.sqrt(1.0 - decay * decay) * rng.standard_normal(steps)
        forward = lfilter([1.0], [1.0, -decay], shocks, zi=[decay * end])[0]
        return np.concatenate([[end], forward])[::-1]

    def _sync_listing(self) -> None:
        """List newly live expiries (strikes around the current spot) and drop expired ones.

        The listed sets only change when one of the listed expiries passes, so nothing is
        recomputed before the earliest listed expiry instant."""
        if self._next_roll is not None and self._now < self._next_roll:
            return
        changed = False
        for u in self._underlyings:
            wanted_options = option_expiries(
                self._now, weeklies=u.cfg.weekly_expiries, monthlies=u.cfg.monthly_expiries
            )
            wanted_futures = future_expiries(self._now, u.cfg.future_expiries)
            for expiry in [e for e in u.chains if e not in wanted_options]:
                del u.chains[expiry]
                changed = True
            for expiry in [e for e in u.futures if e not in wanted_futures]:
                del u.futures[expiry]
                changed = True
            for expiry in wanted_futures:
                if expiry not in u.futures:
                    u.futures[expiry] = self._list_future(u, expiry)
                    changed = True
            for expiry in wanted_options:
                if expiry not in u.chains:
                    u.chains[expiry] = self._list_chain(u, expiry, rank=wanted_options.index(expiry))
                    changed = True
        self._next_roll = min(
            (x.expiry_ts for u in self._underlyings for x in (*u.chains.values(), *u.futures.values())),
            default=None,
        )
        if changed:
            self._listing_version += 1
            self._instruments = None
            self._key_index = {
                key: (u, chain, j)
                for u in self._underlyings
                for chain in u.chains.values()
                for j, key in enumerate(chain.keys)
            }

    def _list_future(self, u: _Underlying, expiry: dt.date) -> _Future:
        cfg = self._config
        rank = sum(1 for e in u.futures if e < expiry)
        noise = cfg.futures_basis_noise * float(self._basis_rng.standard_normal())
        oi = u.cfg.lot_size * round(u.cfg.future_oi_lots * 0.5**rank * self._rng.uniform(0.7, 1.3))
        key = build_key(u.cfg.exchange, u.cfg.symbol, FUTURES, expiry)
        return _Future(key, expiry, expiry_datetime(expiry), noise, float(oi))

    def _list_chain(self, u: _Underlying, expiry: dt.date, *, rank: int) -> _Chain:
        cfg = self._config
        spot = float(np.exp(self._log_s[u.index]))
        step = u.cfg.strike_interval
        lo = math.ceil(spot * (1.0 - cfg.strike_range) / step - 1e-9)
        hi = math.floor(spot * (1.0 + cfg.strike_range) / step + 1e-9)
        multiples = list(range(lo, hi + 1))
        step_dec = Decimal(str(step))
        call_keys, put_keys = [], []
        for m in multiples:
            strike = Decimal(m) * step_dec
            call_keys.append(build_key(u.cfg.exchange, u.cfg.symbol, OPTIONS, expiry, "call", strike))
            put_keys.append(build_key(u.cfg.exchange, u.cfg.symbol, OPTIONS, expiry, "put", strike))
        strikes = np.array(multiples, dtype=float) * step
        n = len(multiples)
        strike2 = np.concatenate([strikes, strikes])
        is_call = np.concatenate([np.ones(n, dtype=bool), np.zeros(n, dtype=bool)])
        expiry_ts = expiry_datetime(expiry)
        t = self._years_to(expiry_ts)
        forward = spot * math.exp((cfg.rate - cfg.dividend_yield) * t)
        k = np.log(strike2 / forward)
        liquidity = _liquidity(k, is_call) * 0.5**rank
        lots = np.round(u.cfg.option_oi_lots * liquidity * self._rng.uniform(0.7, 1.3, 2 * n)) + 10
        first_due = self._now.timestamp() + self._rng.uniform(0.0, cfg.option_tick_interval[1], n)
        return _Chain(
            expiry=expiry,
            expiry_ts=expiry_ts,
            kind="monthly" if is_monthly_expiry(expiry) else "weekly",
            keys=call_keys + put_keys,
            strike=strike2,
            is_call=is_call,
            due=first_due,
            oi=lots * u.cfg.lot_size,
        )

    # ------------------------------------------------------------------ pricing and ticks

    def _years_to(self, instant: dt.datetime) -> float:
        return (instant - self._now).total_seconds() / SECONDS_PER_YEAR

    def _snapshot(self, u: _Underlying, chain: _Chain) -> _Snapshot:
        cfg = self._config
        t = self._years_to(chain.expiry_ts)
        spot = float(np.exp(self._log_s[u.index]))
        forward = spot * math.exp((cfg.rate - cfg.dividend_yield) * t)
        discount = math.exp(-cfg.rate * t)
        theta = float(atm_total_variance(self._v[u.index], u.cfg.long_run_vol**2, u.cfg.kappa, t))
        k = np.log(chain.strike / forward)
        w = ssvi_total_variance(k, theta, u.cfg.skew_rho, u.cfg.skew_eta, u.cfg.skew_gamma)
        price = black76(forward, chain.strike, w, discount, chain.is_call)
        return _Snapshot(t, forward, discount, theta, k, np.sqrt(w / t), price)

    def _emit(self) -> list[Tick]:
        cfg = self._config
        tick = cfg.tick_size
        ts = self._now
        now_epoch = ts.timestamp()
        rng = self._rng
        out: list[Tick] = []
        for u in self._underlyings:
            lot = u.cfg.lot_size
            spot = float(np.exp(self._log_s[u.index]))
            out.append(Tick(u.spot_key, ts, float(round_to_tick(spot, tick)), 0.0, 0.0, None, None))
            futures = self._sorted_futures(u)
            if futures:
                n = len(futures)
                t = np.array([self._years_to(f.expiry_ts) for f in futures])
                noise = np.array([f.noise for f in futures])
                price = spot * np.exp((cfg.rate - cfg.dividend_yield) * t) * (1.0 + noise)
                half = np.maximum(tick, cfg.future_half_spread * price * (0.6 + 0.8 * rng.random(n)))
                ltp, bid, ask = _quote(price, half, tick)
                volume = lot * _counts(rng, u.cfg.future_lots_per_tick * 0.5 ** np.arange(n))
                oi = np.array([f.oi for f in futures])
                oi = np.maximum(lot, oi + lot * np.round(rng.standard_normal(n) * (1.0 + 0.0005 * oi / lot)))
                for f, value in zip(futures, oi.tolist(), strict=True):
                    f.oi = value
                out.extend(
                    Tick(f.key, ts, *values)
                    for f, *values in zip(
                        futures,
                        ltp.tolist(),
                        volume.tolist(),
                        oi.tolist(),
                        bid.tolist(),
                        ask.tolist(),
                        strict=True,
                    )
                )
            for rank, chain in enumerate(self._sorted_chains(u)):
                # a strike's call and put tick together (a market maker requotes both), so the
                # parity forward of a strike's latest pair is always from one instant
                strikes_due = np.flatnonzero(chain.due <= now_epoch)
                if strikes_due.size == 0:
                    continue
                n = chain.due.size
                due = np.column_stack([strikes_due, strikes_due + n]).ravel()  # call, put, call, ...
                m = due.size
                snap = self._snapshot(u, chain)
                price = snap.price[due]
                k = snap.k[due]
                edge = np.minimum(np.abs(k) / cfg.strike_range, 1.0)
                rel = cfg.option_half_spread * (1.0 + 4.0 * edge) * (1.0 + 0.5 * rank)
                half = np.maximum(tick, rel * price * (0.8 + 0.4 * rng.random(m)))
                ltp, bid, ask = _quote(price, half, tick)
                liquidity = _liquidity(k, chain.is_call[due]) * 0.5**rank
                volume = lot * _counts(rng, u.cfg.option_lots_per_tick * liquidity)
                oi = chain.oi[due]
                oi = np.maximum(lot, oi + lot * np.round(rng.standard_normal(m) * (1.0 + 0.0005 * oi / lot)))
                chain.oi[due] = oi
                lo, hi = cfg.option_tick_interval
                strike_edge = edge[::2]
                chain.due[strikes_due] = now_epoch + (lo + (hi - lo) * strike_edge) * (
                    0.85 + 0.3 * rng.random(strikes_due.size)
                )
                keys = chain.keys
                out.extend(
                    Tick(keys[j], ts, *values)
                    for j, *values in zip(
                        due.tolist(),
                        ltp.tolist(),
                        volume.tolist(),
                        oi.tolist(),
                        bid.tolist(),
                        ask.tolist(),
                        strict=True,
                    )
                )
        return out

    # ------------------------------------------------------------------ lookups

    def _underlying(self, symbol: str) -> _Underlying:
        for u in self._underlyings:
            if u.cfg.symbol == symbol:
                return u
        raise KeyError(f"unknown underlying {symbol!r}")

    def _lookup(self, key: str) -> tuple[_Underlying, _Chain, int]:
        found = self._key_index.get(key)
        if found is None:
            found = self._key_index.get(str(parse_key(key)))
        if found is None:
            raise KeyError(f"{key!r} is not a listed option of the demo market")
        return found

    @staticmethod
    def _sorted_chains(u: _Underlying) -> list[_Chain]:
        return [u.chains[e] for e in sorted(u.chains)]

    @staticmethod
    def _sorted_futures(u: _Underlying) -> list[_Future]:
        return [u.futures[e] for e in sorted(u.futures)]


def _liquidity(k: np.ndarray, is_call: np.ndarray) -> np.ndarray:
    """Relative trading activity by log-moneyness: 1 at the money, falling off into the wings,
    lower in the money."""
    itm = np.where(is_call, k < 0, k > 0)
    return np.maximum(np.exp(-np.abs(k) / _LIQUIDITY_SCALE), 0.01) * np.where(itm, _ITM_LIQUIDITY, 1.0)


def _counts(rng: np.random.Generator, mean: np.ndarray) -> np.ndarray:
    """Over-dispersed counts (lots) with the given means (gamma-Poisson, i.e. negative binomial):
    many small prints, occasional blocks."""
    dispersion = 0.8
    return rng.poisson(rng.standard_gamma(dispersion, mean.shape) * (mean / dispersion)).astype(float)


def _quote(price: np.ndarray, half: np.ndarray, tick: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ltp, bid, ask) on the tick grid: ltp the rounded price, bid/ask the rounded
    ``price -/+ half`` (a mid symmetric around the price before rounding), all >= one tick,
    ``bid <= ltp <= ask`` and ``bid < ask``."""
    ltp = np.maximum(round_to_tick(price, tick), tick)
    bid = np.clip(round_to_tick(price - half, tick), tick, ltp)
    ask = np.maximum(np.maximum(round_to_tick(price + half, tick), ltp), bid + tick)
    return ltp, bid, round_to_tick(ask, tick)


def write_json_atomic(path: str | os.PathLike[str], payload: Any) -> Path:
    """Write ``payload`` as JSON to ``path`` via a temporary file in the same directory and an
    atomic rename, so a reader never sees a partial file. Returns the path."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(payload, fh, allow_nan=False, separators=(",", ":"))
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target

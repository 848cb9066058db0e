"""The chain service: IV and Greeks of every option of an underlying, in one vectorised call.

For each active underlying and expiry (SPEC §6): the forward is the future of the same expiry when
listed, else the put–call-parity forward from the strikes nearest the money, else
spot·e^{(r−q)t}; each option is priced from its bid/ask mid (or last price); time to expiry runs
to 15:30 Asia/Kolkata on the expiry date, ACT/365, from each tick's own timestamp. Rows go to
PostgreSQL by COPY, latest values to Redis, and an update is published for streaming.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

import numpy as np
import orjson
import redis
from django.conf import settings
from django.db import transaction

from greeks import engine
from greeks.engine.chain import option_price_used, parity_forward, year_fraction
from signalsvc.api.response_cache import chain_version_key
from signalsvc.core.keys import FUTURES, OPTIONS, SPOT, parse_key
from signalsvc.core.numbers import finite_or_none_list
from signalsvc.db.copy import copy_upsert
from signalsvc.db.partitions import partitions_ensure
from signalsvc.instruments.models import Instrument
from signalsvc.instruments.selectors import underlyings_with_options
from signalsvc.marketdata.latest import latest_ticks_get
from signalsvc.redis_clients import hash_replace_if_newer
from signalsvc.redis_clients import redis_client as shared_redis_client

log = logging.getLogger(__name__)

TABLE = "greeks_option_1m"
# The latest values of a chain: one hash per underlying, a field per option key holding the
# option's JSON (what the realtime endpoint returns as is), replaced whole by each computation.
CHAIN_LATEST_PREFIX = "greeks:chain:"
LATEST_TTL_SECONDS = 7 * 86400
# Pub/sub channels are not per Redis database: PUBSUB_PREFIX keeps deployments sharing a server apart.
UPDATES_CHANNEL_PREFIX = settings.PUBSUB_PREFIX + "signal:greeks:"
IST = ZoneInfo("Asia/Kolkata")
EXPIRY_TIME = dt.time(15, 30)
GREEK_NAMES = ("delta", "gamma", "theta", "vega", "rho", "vanna", "vomma", "charm")
COLUMNS = [
    "instrument_id", "ts", "underlying_id", "expiry", "strike", "option_type", "model", "source_ts",
    "underlying_price", "forward", "forward_source", "option_price", "price_source", "time_to_expiry",
    "iv", "iv_reason", *GREEK_NAMES, "computed_at",
]  # fmt: skip


@dataclass(frozen=True)
class ChainResult:
    underlying_key: str
    timestamp: dt.datetime | None
    options: int
    solved: int
    expiries: int
    note: str = ""
    # Seconds spent in each step of the pipeline: price, moneyness, smile, store, moneyness_store,
    # publish, moneyness_publish.
    timings: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class PricedChain:
    """Every live option of one underlying priced at one instant: arrays over the options.

    ``reference`` is the spot tick's time (the chain's instant), ``minute`` the minute its rows are
    stored under. Per option: ``ids``, ``keys``, ``expiries`` (dates) and ``expiry_days``
    (datetime64[D]), ``is_call``, ``strikes``, ``price`` (mid or last) and ``used_mid``,
    ``source_ts`` (each tick's time), ``t`` (years to expiry from it), ``forward`` and
    ``forward_source`` of its expiry, ``oi``, ``iv`` (NaN where unsolved) and ``reason``, and the
    Greeks in ``values`` (``GREEK_NAMES``)."""

    underlying_key: str
    underlying_id: int
    reference: dt.datetime
    minute: dt.datetime
    spot: float
    model: str
    ids: np.ndarray
    keys: list[str]
    expiries: list[dt.date]
    expiry_days: np.ndarray
    is_call: np.ndarray
    strikes: np.ndarray
    price: np.ndarray
    used_mid: np.ndarray
    source_ts: list[dt.datetime]
    t: np.ndarray
    forward: np.ndarray
    forward_source: np.ndarray
    oi: np.ndarray
    iv: np.ndarray
    reason: np.ndarray
    values: dict[str, np.ndarray]
    computed_at: dt.datetime

    def __len__(self) -> int:
        return len(self.keys)

    def expiry_time(self, expiry: dt.date) -> float:
        """Years from the chain's instant to ``expiry`` (ACT/365)."""
        return float(year_fraction((expiry_datetime(expiry) - self.reference).total_seconds()))


class NothingToCompute(Exception):
    """The underlying has nothing to price yet; the message says why. ``reference``: the spot
    tick's time when there was one."""

    def __init__(self, note: str, reference: dt.datetime | None = None) -> None:
        super().__init__(note)
        self.reference = reference


def expiry_datetime(expiry: dt.date) -> dt.datetime:
    return dt.datetime.combine(expiry, EXPIRY_TIME, tzinfo=IST)


def redis_client() -> redis.Redis:
    return shared_redis_client(decode_responses=True, socket_timeout=5)


def _nan(value: float | None) -> float:
    return float("nan") if value is None else float(value)


def chain_compute(*, underlying_key: str, client: redis.Redis | None = None) -> ChainResult:
    """Compute and store IV and Greeks for every live option of ``underlying_key``, and the
    moneyness analytics of its chain from the same arrays (one transaction), then publish both."""
    from moneyness import services as moneyness

    client = client or redis_client()
    timings: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(step: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[step] = now - clock
        clock = now

    try:
        chain = chain_price(underlying_key=underlying_key, client=client)
    except NothingToCompute as nothing:
        return ChainResult(underlying_key, nothing.reference, 0, 0, 0, str(nothing))
    lap("price")
    analytics = moneyness.moneyness_derive(chain=chain)
    lap("moneyness")
    analytics = moneyness.moneyness_smiles_fit(analytics=analytics)
    lap("smile")
    with transaction.atomic():
        greeks_rows_store(chain=chain)
        lap("store")
        moneyness.moneyness_rows_store(analytics=analytics)
        lap("moneyness_store")
    greeks_latest_publish(chain=chain, client=client)
    lap("publish")
    moneyness.moneyness_latest_publish(analytics=analytics, client=client)
    lap("moneyness_publish")
    return ChainResult(
        underlying_key,
        chain.reference,
        len(chain),
        int(np.isfinite(chain.iv).sum()),
        len(set(chain.expiries)),
        timings=timings,
    )


def chain_price(*, underlying_key: str, client: redis.Redis) -> PricedChain:
    """Load the live options and their latest ticks, derive prices, times and forwards, and solve
    IV and Greeks in one vectorised call. :class:`NothingToCompute` when there is nothing yet."""
    parsed = parse_key(underlying_key)
    if parsed.product != SPOT:
        raise ValueError(f"{underlying_key} is not an underlying (spot/index) key")
    underlying = Instrument.objects.get(key=underlying_key)
    spot_tick = latest_ticks_get(client, [underlying_key]).get(underlying_key)
    if spot_tick is None:
        raise NothingToCompute("no spot tick yet")
    reference = spot_tick["ts"]
    today = reference.astimezone(IST).date()
    rows = list(
        Instrument.objects.filter(
            exchange=parsed.exchange, symbol=parsed.symbol, product__in=[OPTIONS, FUTURES], active=True,
            expiry__gte=today,
        ).values_list("id", "key", "product", "expiry", "option_type", "strike")
    )  # fmt: skip
    futures = {expiry: key for _, key, product, expiry, _, _ in rows if product == FUTURES}
    options = [r for r in rows if r[2] == OPTIONS]
    if not options:
        raise NothingToCompute("no listed options", reference)
    ticks = latest_ticks_get(client, [r[1] for r in options] + list(futures.values()))
    options = [r for r in options if r[1] in ticks]
    if not options:
        raise NothingToCompute("no option ticks yet", reference)

    n = len(options)
    expiries = [r[3] for r in options]
    is_call = np.array([r[4] == "call" for r in options])
    strikes = np.array([float(r[5]) for r in options])
    option_ticks = [ticks[r[1]] for r in options]
    source_ts = [t["ts"] for t in option_ticks]
    price, used_mid = option_price_used(
        np.array([_nan(t["bid"]) for t in option_ticks]),
        np.array([_nan(t["ask"]) for t in option_ticks]),
        np.array([t["ltp"] for t in option_ticks]),
    )
    seconds = np.array(
        [(expiry_datetime(e) - ts).total_seconds() for e, ts in zip(expiries, source_ts, strict=True)]
    )
    t = year_fraction(seconds)
    r, q, spot = settings.RISK_FREE_RATE, settings.DIVIDEND_YIELD, spot_tick["ltp"]

    forward = np.empty(n)
    forward_source = np.empty(n, dtype=object)
    expiry_days = np.array(expiries, dtype="datetime64[D]")
    for expiry in sorted(set(expiries)):
        members = expiry_days == np.datetime64(expiry)
        t_expiry = float(year_fraction((expiry_datetime(expiry) - reference).total_seconds()))
        future_tick = ticks.get(futures.get(expiry, ""))
        if future_tick is not None:
            value, source = future_tick["ltp"], "future"
        else:
            call, put = members & is_call, members & ~is_call
            # Strikes listed as both a call and a put (one option per strike and type).
            grid, at_call, at_put = np.intersect1d(strikes[call], strikes[put], return_indices=True)
            value = parity_forward(
                grid, price[call][at_call], price[put][at_put], t=t_expiry, r=r, spot=spot
            ) if grid.size else float("nan")  # fmt: skip
            source = "parity"
            if not np.isfinite(value):
                value, source = spot * np.exp((r - q) * max(t_expiry, 0.0)), "carry"
        forward[members] = value
        forward_source[members] = source

    model = settings.GREEKS_MODEL
    underlying_input = forward if model == "black76" else np.full(n, spot)
    option_type = np.where(is_call, "call", "put")
    iv, reason = engine.implied_vol(
        price, option_type, underlying_input, strikes, t, r, q=q, model=model, return_reason=True
    )
    values = engine.greeks(option_type, underlying_input, strikes, t, r, iv, q=q, model=model)
    return PricedChain(
        underlying_key=underlying_key,
        underlying_id=underlying.id,
        reference=reference,
        minute=reference.astimezone(dt.UTC).replace(second=0, microsecond=0),
        spot=spot,
        model=model,
        ids=np.array([r[0] for r in options], dtype=np.int64),
        keys=[r[1] for r in options],
        expiries=expiries,
        expiry_days=expiry_days,
        is_call=is_call,
        strikes=strikes,
        price=price,
        used_mid=used_mid,
        source_ts=source_ts,
        t=t,
        forward=forward,
        forward_source=forward_source,
        oi=np.array([_nan(t["oi"]) for t in option_ticks]),
        iv=np.asarray(iv, dtype=float),
        reason=reason,
        values={name: np.asarray(values[name], dtype=float) for name in GREEK_NAMES},
        computed_at=dt.datetime.now(dt.UTC),
    )


def _rows(chain: PricedChain) -> list[tuple]:
    """The chain's rows of ``greeks_option_1m`` (``COLUMNS``), built column-wise: numpy turns
    non-finite values into NULLs for the whole chain at once."""
    n = len(chain)
    columns = [
        chain.ids.tolist(), [chain.minute] * n, [chain.underlying_id] * n, chain.expiries,
        chain.strikes.tolist(), np.where(chain.is_call, "call", "put").tolist(), [chain.model] * n,
        chain.source_ts, [chain.spot] * n, chain.forward.tolist(), chain.forward_source.tolist(),
        finite_or_none_list(chain.price), np.where(chain.used_mid, "mid", "ltp").tolist(), chain.t.tolist(),
        finite_or_none_list(chain.iv), chain.reason.astype(int).tolist(),
        *(finite_or_none_list(chain.values[name]) for name in GREEK_NAMES), [chain.computed_at] * n,
    ]  # fmt: skip
    return list(zip(*columns, strict=True))


def greeks_rows_store(*, chain: PricedChain) -> int:
    """COPY the chain's rows into ``greeks_option_1m``, never over a row computed from newer data."""
    with transaction.atomic(savepoint=False):
        partitions_ensure(table=TABLE, start=chain.minute, end=chain.minute)
        return copy_upsert(
            table=TABLE,
            columns=COLUMNS,
            rows=_rows(chain),
            conflict=["instrument_id", "ts"],
            update_sql=", ".join(f"{c} = excluded.{c}" for c in COLUMNS[2:]),
            where_sql="excluded.source_ts >= t.source_ts",
        )


def chain_latest_key(underlying_key: str) -> str:
    return CHAIN_LATEST_PREFIX + underlying_key


def greeks_latest_publish(*, chain: PricedChain, client: redis.Redis) -> bool:
    """The chain's latest values as one hash (a field per option), written whole and only over an
    older computation, with the chain version bumped and one update message published, in one
    atomic step. Returns whether it was written (False: a newer computation got there first)."""
    minute = chain.minute.isoformat()
    computed_at = chain.computed_at.isoformat()
    option_type = np.where(chain.is_call, "call", "put").tolist()
    price_source = np.where(chain.used_mid, "mid", "ltp").tolist()
    price, iv = finite_or_none_list(chain.price), finite_or_none_list(chain.iv)
    greeks = {name: finite_or_none_list(chain.values[name]) for name in GREEK_NAMES}
    strikes, forward, t = chain.strikes.tolist(), chain.forward.tolist(), chain.t.tolist()
    reasons = [engine.describe_reason(int(r)) for r in chain.reason]
    fields: list = []
    for i, key in enumerate(chain.keys):
        payload = {
            "instrument_key": key,
            "underlying_key": chain.underlying_key,
            "timestamp": chain.source_ts[i].isoformat(),
            "minute": minute,
            "expiry": chain.expiries[i].isoformat(),
            "strike": strikes[i],
            "option_type": option_type[i],
            "model": chain.model,
            "underlying_price": chain.spot,
            "forward": forward[i],
            "forward_source": chain.forward_source[i],
            "option_price": price[i],
            "price_source": price_source[i],
            "time_to_expiry": t[i],
            "iv": iv[i],
            "iv_reason": reasons[i],
            "greeks": {name: greeks[name][i] for name in GREEK_NAMES} | {"iv": iv[i]},
            "computed_at": computed_at,
        }
        fields += [key, orjson.dumps(payload)]
    return hash_replace_if_newer(
        client,
        chain_latest_key(chain.underlying_key),
        source_us=int(chain.reference.timestamp() * 1_000_000),
        ttl=LATEST_TTL_SECONDS,
        fields=fields,
        channel=UPDATES_CHANNEL_PREFIX + chain.underlying_key,
        message=orjson.dumps({"underlying": chain.underlying_key, "minute": minute, "options": len(chain)}),
        # The chain's rows are committed: historical responses of this underlying are stale now.
        version_key=chain_version_key(chain.underlying_key),
    )


def active_underlyings() -> list[str]:
    """Underlyings with at least one active option."""
    return underlyings_with_options()

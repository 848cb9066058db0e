"""The chain service: IV and Greeks of every option of an underlying, in one vectorised call.

For each active underlying and expiry (SPEC §6): the forward is the future of the same expiry when
listed, else the put–call-parity forward from the strikes nearest the money, else
spot·e^{(r−q)t}; each option is priced from its bid/ask mid (or last price); time to expiry runs
to 15:30 Asia/Kolkata on the expiry date, ACT/365, from each tick's own timestamp. Rows go to
PostgreSQL by COPY, latest values to Redis, and an update is published for streaming.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from dataclasses import dataclass
from zoneinfo import ZoneInfo

import numpy as np
import redis
from django.conf import settings
from django.db import transaction

from greeks import engine
from greeks.engine.chain import option_price_used, parity_forward, year_fraction
from signalsvc.core.keys import FUTURES, OPTIONS, SPOT, parse_key
from signalsvc.db.copy import copy_upsert
from signalsvc.db.partitions import partitions_ensure
from signalsvc.instruments.models import Instrument
from signalsvc.marketdata.latest import latest_ticks_get
from signalsvc.redis_clients import redis_client as shared_redis_client

log = logging.getLogger(__name__)

TABLE = "greeks_option_1m"
LATEST_PREFIX = "greeks:last:"
UPDATES_CHANNEL_PREFIX = "signal:greeks:"
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


def expiry_datetime(expiry: dt.date) -> dt.datetime:
    return dt.datetime.combine(expiry, EXPIRY_TIME, tzinfo=IST)


def redis_client() -> redis.Redis:
    return shared_redis_client(decode_responses=True, socket_timeout=5)


def _nan(value: float | None) -> float:
    return float("nan") if value is None else float(value)


def _nullable(values: np.ndarray) -> list:
    """Floats as a list, with None (SQL NULL, JSON null) where a value is NaN or infinite."""
    values = np.asarray(values, dtype=float)
    return np.where(np.isfinite(values), values, None).tolist()


def chain_compute(*, underlying_key: str, client: redis.Redis | None = None) -> ChainResult:
    """Compute and store IV and Greeks for every live option of ``underlying_key``."""
    parsed = parse_key(underlying_key)
    if parsed.product != SPOT:
        raise ValueError(f"{underlying_key} is not an underlying (spot/index) key")
    client = client or redis_client()
    underlying = Instrument.objects.get(key=underlying_key)
    spot_tick = latest_ticks_get(client, [underlying_key]).get(underlying_key)
    if spot_tick is None:
        return ChainResult(underlying_key, None, 0, 0, 0, "no spot tick yet")
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
        return ChainResult(underlying_key, reference, 0, 0, 0, "no listed options")
    ticks = latest_ticks_get(client, [r[1] for r in options] + list(futures.values()))
    options = [r for r in options if r[1] in ticks]
    if not options:
        return ChainResult(underlying_key, reference, 0, 0, 0, "no option ticks yet")

    n = len(options)
    ids = np.array([r[0] for r in options], dtype=np.int64)
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
    expiry_array = np.array(expiries, dtype="datetime64[D]")
    for expiry in sorted(set(expiries)):
        members = expiry_array == np.datetime64(expiry)
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

    minute = reference.astimezone(dt.UTC).replace(second=0, microsecond=0)
    now = dt.datetime.now(dt.UTC)
    # Column-wise: numpy turns non-finite values into NULLs for the whole chain at once.
    columns = [
        ids.tolist(), [minute] * n, [underlying.id] * n, expiries, strikes.tolist(), option_type.tolist(),
        [model] * n, source_ts, [spot] * n, forward.tolist(), forward_source.tolist(), _nullable(price),
        np.where(used_mid, "mid", "ltp").tolist(), t.tolist(), _nullable(iv), reason.astype(int).tolist(),
        *(_nullable(values[name]) for name in GREEK_NAMES), [now] * n,
    ]  # fmt: skip
    table = list(zip(*columns, strict=True))
    with transaction.atomic():
        partitions_ensure(table=TABLE, start=minute, end=minute)
        copy_upsert(
            table=TABLE,
            columns=COLUMNS,
            rows=table,
            conflict=["instrument_id", "ts"],
            update_sql=", ".join(f"{c} = excluded.{c}" for c in COLUMNS[2:]),
            where_sql="excluded.source_ts >= t.source_ts",
        )
    _store_latest(client, options, table, underlying_key, minute)
    return ChainResult(underlying_key, reference, n, int(np.isfinite(iv).sum()), len(set(expiries)))


def _store_latest(client, options, table, underlying_key: str, minute: dt.datetime) -> None:
    """Latest value per option as JSON in Redis, then one update message for the streaming layer."""
    pipe = client.pipeline(transaction=False)
    for option, row in zip(options, table, strict=True):
        record = dict(zip(COLUMNS, row, strict=True))
        payload = {
            "instrument_key": option[1],
            "underlying_key": underlying_key,
            "timestamp": record["source_ts"].isoformat(),
            "minute": minute.isoformat(),
            "expiry": record["expiry"].isoformat(),
            "strike": record["strike"],
            "option_type": record["option_type"],
            "model": record["model"],
            "underlying_price": record["underlying_price"],
            "forward": record["forward"],
            "forward_source": record["forward_source"],
            "option_price": record["option_price"],
            "price_source": record["price_source"],
            "time_to_expiry": record["time_to_expiry"],
            "iv": record["iv"],
            "iv_reason": engine.describe_reason(record["iv_reason"]),
            "greeks": {name: record[name] for name in GREEK_NAMES} | {"iv": record["iv"]},
            "computed_at": record["computed_at"].isoformat(),
        }
        pipe.set(LATEST_PREFIX + option[1], json.dumps(payload), ex=7 * 86400)
    pipe.publish(
        UPDATES_CHANNEL_PREFIX + underlying_key,
        json.dumps({"underlying": underlying_key, "minute": minute.isoformat(), "options": len(options)}),
    )
    pipe.execute()


def active_underlyings() -> list[str]:
    """Underlyings with at least one active option."""
    symbols = (
        Instrument.objects.filter(product=OPTIONS, active=True).values_list("exchange", "symbol").distinct()
    )
    keys = [f"{exchange}@{symbol}@{SPOT}" for exchange, symbol in symbols]
    return list(Instrument.objects.filter(key__in=keys).values_list("key", flat=True))

"""Latest tick per instrument, kept in Redis as one hash per instrument (``md:last:<key>``)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

import redis

PREFIX = "md:last:"


def latest_ticks_store(client: redis.Redis, ticks: Iterable) -> None:
    """Store the newest tick of each instrument in the batch (ticks arrive in stream order)."""
    newest = {}
    for tick in ticks:
        current = newest.get(tick.key)
        if current is None or tick.ts >= current.ts:
            newest[tick.key] = tick
    if not newest:
        return
    pipe = client.pipeline(transaction=False)
    for key, tick in newest.items():
        mapping = {"ts": tick.ts.isoformat(), "ltp": repr(tick.ltp), "volume": repr(tick.volume)}
        for name in ("oi", "bid", "ask"):
            value = getattr(tick, name)
            mapping[name] = "" if value is None else repr(value)
        pipe.hset(PREFIX + key, mapping=mapping)
    pipe.execute()


def _float(text: str | None) -> float | None:
    return float(text) if text not in (None, "") else None


def latest_ticks_get(client: redis.Redis, keys: list[str]) -> dict[str, dict]:
    """Latest tick for each key that has one: {key: {ts, ltp, volume, oi, bid, ask}}."""
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.hgetall(PREFIX + key)
    out = {}
    for key, raw in zip(keys, pipe.execute(), strict=True):
        if not raw:
            continue
        out[key] = {
            "ts": dt.datetime.fromisoformat(raw["ts"]),
            "ltp": float(raw["ltp"]),
            "volume": _float(raw.get("volume")),
            "oi": _float(raw.get("oi")),
            "bid": _float(raw.get("bid")),
            "ask": _float(raw.get("ask")),
        }
    return out

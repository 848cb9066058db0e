"""Helpers for stream tests: publish ticks and compute the bars the stream implies,
independently of the ingest code."""

from __future__ import annotations

import datetime as dt
import random

from django.conf import settings

from signalsvc.marketdata.stream import tick_fields

UTC = dt.UTC


def publish_ticks(client, keys, *, start: dt.datetime, count: int, seed: int = 1, step_ms: int = 700) -> None:
    rng = random.Random(seed)
    price = {k: 100.0 + 10 * i for i, k in enumerate(keys)}
    pipe = client.pipeline(transaction=False)
    for n in range(count):
        key = keys[n % len(keys)]
        price[key] = max(1.0, price[key] + rng.uniform(-0.5, 0.5))
        ts = start + dt.timedelta(milliseconds=step_ms * n)
        fields = tick_fields(key=key, ts=ts, ltp=round(price[key], 2), volume=rng.randint(0, 50), oi=1000 + n)
        pipe.xadd(settings.MARKET_DATA_STREAM, fields)
    pipe.execute()


def expected_bars(client) -> dict[tuple[str, dt.datetime], tuple]:
    """(key, minute) -> (open, high, low, close, volume, oi) from every valid entry of the stream."""
    bars: dict = {}
    for _, fields in client.xrange(settings.MARKET_DATA_STREAM):
        ts = dt.datetime.fromtimestamp(int(fields["ts"]) / 1000, tz=UTC).replace(second=0, microsecond=0)
        ltp, volume = float(fields["ltp"]), float(fields.get("volume") or 0)
        oi = float(fields["oi"]) if fields.get("oi") else None
        key = (fields["key"], ts)
        if key not in bars:
            bars[key] = [ltp, ltp, ltp, ltp, volume, oi]
        else:
            b = bars[key]
            b[1], b[2], b[3], b[4] = max(b[1], ltp), min(b[2], ltp), ltp, b[4] + volume
            b[5] = oi if oi is not None else b[5]
    return {k: tuple(v) for k, v in bars.items()}


def stored_bars() -> dict[tuple[str, dt.datetime], tuple]:
    from signalsvc.marketdata.models import Bar1m

    return {
        (b.instrument.key, b.ts): (b.open, b.high, b.low, b.close, b.volume, b.oi)
        for b in Bar1m.objects.select_related("instrument")
    }

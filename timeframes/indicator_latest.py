"""Latest indicator values, computed once per bar change and shared (issue: serving at speed).

A realtime indicator request used to recompute from bars every time (tens of milliseconds). Now
the value of each (instrument, indicator, parameters, timeframe) is stored in Redis under
``tf:ind:...`` stamped with the instrument's bar version (``signalsvc.marketdata.bar_events``),
and served as stored until the version moves: one Redis round trip (the version and the value in
one MGET) and no per-field Python work. The first request after a change (or for a new
indicator) computes it and stores it; the streaming feed reads and writes the same entries.

The stamp is the version read *before* the bars, so a value computed while bars changed is
already stale when stored and is recomputed by the next reader: a stored value is never older
than its stamp says. ``metadata.bucket_closed`` depends on the clock, not on bars, so it is
filled in when served.
"""

from __future__ import annotations

import datetime as dt
import struct
import time
from collections.abc import Mapping

import orjson
from django.conf import settings

from signalsvc.core.numbers import finite_or_none_list
from signalsvc.instruments.selectors import InstrumentRef
from signalsvc.marketdata.bar_events import bar_version, version_key
from signalsvc.redis_clients import VERSION_BYTES, redis_client
from timeframes import indicator_selectors
from timeframes.core import indicators
from timeframes.core.grammar import Timeframe
from timeframes.render import iso_utc

ENTRY_PREFIX = "tf:ind:"
# version token, bucket end (µs since the epoch), offset of the bucket_closed value in the body
_HEADER = struct.Struct(f"<{VERSION_BYTES}sqI")
_CLOSED_MARK = "\x00bucket_closed\x00"
_CLOSED_MARK_JSON = orjson.dumps(_CLOSED_MARK)


def _client():
    return redis_client(decode_responses=False, socket_timeout=5)


def entry_key(instrument_id: int, name: str, params: Mapping, timeframe: Timeframe) -> str:
    canonical = orjson.dumps(dict(params), option=orjson.OPT_SORT_KEYS).decode()
    return f"{ENTRY_PREFIX}{instrument_id}:{timeframe.label}:{name}:{canonical}"


def _served(entry: bytes) -> bytes:
    _, bucket_end_us, offset = _HEADER.unpack_from(entry)
    body = memoryview(entry)[_HEADER.size :]
    closed = b"true" if bucket_end_us <= time.time() * 1_000_000 else b"false"
    return b"".join((body[:offset], closed, body[offset:]))


def indicator_latest_json(
    *, instrument: InstrumentRef, name: str, params: Mapping[str, object] | None, timeframe: Timeframe
) -> bytes:
    """The latest value of an indicator as the JSON body of the realtime endpoint.

    Raises ``indicators.InvalidIndicator`` (bad name or parameters) and
    ``indicator_selectors.NoData`` (no bars), neither of which is stored."""
    spec = indicators.get_spec(name)
    p = indicators.validate(spec.name, params)
    key = entry_key(instrument.id, spec.name, p, timeframe)
    client = _client()
    version, entry = client.mget(version_key(instrument.id), key)
    if version is not None and entry is not None and entry[:VERSION_BYTES] == version:
        return _served(entry)
    if version is None:
        version = bar_version(client, instrument.id)
    entry = _compute(instrument=instrument, name=spec.name, params=p, timeframe=timeframe, version=version)
    client.set(key, entry, ex=settings.INDICATOR_LATEST_TTL_SECONDS)
    return _served(entry)


def _compute(
    *, instrument: InstrumentRef, name: str, params: dict, timeframe: Timeframe, version: bytes
) -> bytes:
    series, last_bar = indicator_selectors.indicator_latest(
        instrument_id=instrument.id, name=name, params=params, timeframe=timeframe
    )
    payload = {
        "instrument_key": instrument.key,
        "indicator": series.name,
        "params": series.params,
        "timeframe": timeframe.label,
        "timestamp": iso_utc(series.start)[0],
        "value": {k: finite_or_none_list(v)[0] for k, v in series.outputs.items()},
        "metadata": {
            "bucket_end": iso_utc(series.end)[0],
            "bucket_closed": _CLOSED_MARK,
            "last_bar": last_bar.astimezone(dt.UTC).isoformat(),
        },
        "warmup": series.warmup_report(),
    }
    rendered = orjson.dumps(payload)
    offset = rendered.index(_CLOSED_MARK_JSON)
    body = rendered[:offset] + rendered[offset + len(_CLOSED_MARK_JSON) :]
    bucket_end_us = int(series.end[0].astype("datetime64[us]").astype("int64"))
    return _HEADER.pack(version, bucket_end_us, offset) + body

"""JSON rendering of bar series without a Python object per field.

A year of 7-minute bars is ~13,000 buckets; building a dict per bucket and handing it to a JSON
encoder costs several times more than the query. Here each column is formatted once (numbers by
``orjson.dumps`` of the whole numpy column; whole-minute times from a
table of dates and minutes of the day) and the items are assembled from those strings. Numbers
are formatted exactly as ``json.dumps`` formats a float (shortest repr); non-finite values become
``null``. Times are ISO-8601 UTC with ``+00:00``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import cache
from itertools import repeat

import numpy as np
import orjson

US = np.dtype("datetime64[us]")


def iso_utc(values: np.ndarray) -> list[str]:
    """ISO-8601 UTC strings (``2025-01-01T03:45:00+00:00``) of a ``datetime64`` array."""
    if len(values) == 0:
        return []
    arr = np.asarray(values).astype(US)
    us = arr.view(np.int64)
    if not (us % _MINUTE_US).any() and not np.isnat(arr).any():
        # Whole minutes (every bucket bound): the date of each distinct day and the time of each
        # minute are formatted once and concatenated (a fraction of datetime_as_string per value).
        days, minutes = np.divmod(us, _DAY_US)
        unique_days, inverse = np.unique(days, return_inverse=True)
        dates = np.datetime_as_string(unique_days.astype("datetime64[D]"), unit="D")
        if all(len(d) == 10 for d in dates.tolist()):  # years 0000-9999
            day_text = dates.astype(object)[inverse].tolist()
            time_text = _minute_times()[minutes // _MINUTE_US].tolist()
            return list(map(str.__add__, day_text, time_text))
    unit = "s" if not (us % 1_000_000).any() else "us"
    return [t + "+00:00" for t in np.datetime_as_string(arr, unit=unit).tolist()]


_MINUTE_US = 60_000_000
_DAY_US = 86_400_000_000


@cache
def _minute_times() -> np.ndarray:
    """``THH:MM:00+00:00`` of each minute of a day (object array, index = minute of the day)."""
    return np.array([f"T{m // 60:02d}:{m % 60:02d}:00+00:00" for m in range(1440)], dtype=object)


def json_numbers(values: np.ndarray) -> list[str]:
    """Each value as JSON text: the float repr, ``null`` for NaN and infinities."""
    arr = np.asarray(values)
    n = len(arr)
    if n == 0:
        return []
    if arr.dtype.kind in "iu":
        return list(map(str, arr.tolist()))
    arr = arr.astype(np.float64, copy=False)
    finite = np.isfinite(arr)
    if not finite.any():
        return ["null"] * n
    # orjson writes a float64 array without a Python float per value (NaN and infinities as
    # null) in the shortest repr, which matches float.__repr__ except below 1e-4 ("0.00001" and
    # "1e-7" where Python writes "1e-05" and "1e-07"): those few values are formatted by Python.
    out = orjson.dumps(np.ascontiguousarray(arr), option=orjson.OPT_SERIALIZE_NUMPY)[1:-1].decode().split(",")
    tiny = np.flatnonzero(finite & (arr != 0) & (np.abs(arr) < 1e-4))
    for i in tiny.tolist():
        out[i] = float.__repr__(float(arr[i]))
    return out


def json_string(text: str) -> str:
    return json.dumps(text)


def series_items(
    start: np.ndarray,
    end: np.ndarray,
    values: Mapping[str, np.ndarray],
    metadata: Mapping[str, np.ndarray] | None = None,
) -> tuple[bytes, np.ndarray]:
    """One JSON item per bucket, each followed by a comma, and the byte offset where each starts
    (``offsets[i]:offsets[i+1]`` is item i with its comma; ``len(offsets) == n + 1``).

    Item: ``{"timestamp", "value": {name: value, ...}, "metadata": {bucket_end, name: value, ...}}``
    (the SPEC §9 historical series shape). Each column is formatted once; each item is a
    ``str.join`` of its pieces (``map`` over ``zip``, in C, no Python code per bucket).
    """
    n = len(start)
    offsets = np.zeros(n + 1, dtype=np.int64)
    if n == 0:
        return b"", offsets
    pieces: list = []

    def text(constant: str) -> None:
        pieces.append(repeat(constant, n))

    text('{"timestamp":"')
    pieces.append(iso_utc(start))
    text('","value":{')
    for i, (name, column) in enumerate(values.items()):
        text(("," if i else "") + json_string(name) + ":")
        pieces.append(json_numbers(column))
    text('},"metadata":{"bucket_end":"')
    pieces.append(iso_utc(end))
    text('"')
    for name, column in (metadata or {}).items():
        text("," + json_string(name) + ":")
        pieces.append(json_numbers(column))
    text("}},")
    items = list(map("".join, zip(*pieces, strict=True)))
    np.cumsum(np.fromiter(map(len, items), dtype=np.int64, count=n), out=offsets[1:])
    return "".join(items).encode(), offsets


BAR_VALUES = ("open", "high", "low", "close", "volume", "oi")


def bar_items(bars: Mapping[str, np.ndarray]) -> tuple[bytes, np.ndarray]:
    """``series_items`` of bars: ``value{open, high, low, close, volume, oi}``, ``metadata{bucket_end,
    bars}`` (``bars`` = 1-minute bars in the bucket)."""
    return series_items(bars["start"], bars["end"], {f: bars[f] for f in BAR_VALUES}, {"bars": bars["count"]})

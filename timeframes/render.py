"""JSON rendering of bar series without a Python object per field.

A year of 7-minute bars is ~13,000 buckets; building a dict per bucket and handing it to a JSON
encoder costs several times more than the query. Here each column is formatted once (numbers by
``json.dumps`` of the whole column, times by ``numpy.datetime_as_string``) and the items are
assembled from those strings. Numbers are formatted exactly as ``json.dumps`` formats a float
(shortest repr); non-finite values become ``null``. Times are ISO-8601 UTC with ``+00:00``.
"""

from __future__ import annotations

import json
from itertools import chain, repeat

import numpy as np

US = np.dtype("datetime64[us]")


def iso_utc(values: np.ndarray) -> list[str]:
    """ISO-8601 UTC strings (``2025-01-01T03:45:00+00:00``) of a ``datetime64`` array."""
    if len(values) == 0:
        return []
    arr = np.asarray(values).astype(US)
    us = arr.view(np.int64)
    unit = "s" if not (us % 1_000_000).any() else "us"
    return [t + "+00:00" for t in np.datetime_as_string(arr, unit=unit).tolist()]


def json_numbers(values: np.ndarray) -> list[str]:
    """Each value as JSON text: the float repr, ``null`` for NaN and infinities."""
    arr = np.asarray(values)
    if len(arr) == 0:
        return []
    if arr.dtype.kind in "iu":
        return [str(v) for v in arr.tolist()]
    arr = arr.astype(np.float64, copy=False)
    finite = np.isfinite(arr)
    items = arr.tolist() if finite.all() else np.where(finite, arr, None).tolist()
    return json.dumps(items)[1:-1].split(", ")


def json_string(text: str) -> str:
    return json.dumps(text)


_BAR_TEMPLATE = (
    '{"timestamp":"',
    '","value":{"open":',
    ',"high":',
    ',"low":',
    ',"close":',
    ',"volume":',
    ',"oi":',
    '},"metadata":{"bucket_end":"',
    '","bars":',
    "}},",
)


def bar_items(bars: dict[str, np.ndarray]) -> tuple[bytes, np.ndarray]:
    """One JSON item per bucket, each followed by a comma, and the byte offset where each starts
    (``offsets[i]:offsets[i+1]`` is item i with its comma; ``len(offsets) == n + 1``).

    Item: ``{"timestamp", "value": {open, high, low, close, volume, oi}, "metadata": {bucket_end,
    bars}}`` (the SPEC §9 historical series shape; ``bars`` = 1-minute bars in the bucket). The
    items are joined column-wise in C (``str.join`` over ``zip``), no Python code per bucket.
    """
    n = len(bars["start"])
    offsets = np.zeros(n + 1, dtype=np.int64)
    if n == 0:
        return b"", offsets
    columns = [
        iso_utc(bars["start"]),
        *(json_numbers(bars[f]) for f in ("open", "high", "low", "close", "volume", "oi")),
        iso_utc(bars["end"]),
        json_numbers(bars["count"]),
    ]
    pieces: list = []
    for constant, column in zip(_BAR_TEMPLATE, columns, strict=False):
        pieces += [repeat(constant, n), column]
    pieces.append(repeat(_BAR_TEMPLATE[-1], n))
    text = "".join(chain.from_iterable(zip(*pieces, strict=False)))
    lengths = sum(len(c) for c in _BAR_TEMPLATE) + sum(
        np.fromiter(map(len, column), dtype=np.int64, count=n) for column in columns
    )
    np.cumsum(lengths, out=offsets[1:])
    return text.encode("ascii"), offsets

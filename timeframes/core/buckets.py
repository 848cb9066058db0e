"""Session-anchored bucketing and reference aggregation of 1-minute bars (SPEC §8).

Pure code: standard library and numpy.

Anchoring
---------
For an intraday timeframe of N minutes and a session ``[open, close)``::

    bucket_start = open + floor((ts - open) / N) * N
    bucket_end   = min(bucket_start + N, close)

so buckets start at the session open, never cross the close (the last bucket of a session is
short when the session length is not a multiple of N: 7m on a 375-minute NSE day gives 53 full
buckets and one of 4 minutes), and are labelled by their start. ``1d`` is one bucket per session,
``[open, close)``. Timestamps outside every session belong to no bucket.

Representation
--------------
Bucket bounds and timestamps are ``numpy.datetime64[us]`` arrays holding **UTC** wall times (numpy
datetimes carry no zone; ``NaT`` marks "no bucket"). Inputs may be ``datetime64`` of any unit
(interpreted as UTC) or sequences of aware ``datetime`` objects. A 1-minute bar is identified by
the start of its minute, so a bar stamped 15:29 belongs to the session that closes at 15:30.

Sessions are anything with aware ``open``/``close`` datetimes (``signalsvc.core.calendar.Session``),
sorted and non-overlapping, or a prebuilt :class:`SessionTable`.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol

import numpy as np

from timeframes.core.grammar import Timeframe

__all__ = [
    "AggregatedBars",
    "AggregatedSeries",
    "BucketAssignment",
    "SessionTable",
    "aggregate_last",
    "aggregate_mean",
    "aggregate_ohlcv",
    "aggregate_series",
    "assign_buckets",
    "aware_to_us",
    "bucket_for",
    "session_buckets",
    "session_index",
    "sql_bucket_expression",
    "to_datetime64",
]

US = np.dtype("datetime64[us]")
NAT = np.datetime64("NaT", "us")
_NAT_INT = np.iinfo(np.int64).min
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MINUTE_US = 60_000_000


class _SessionLike(Protocol):
    @property
    def open(self) -> dt.datetime: ...

    @property
    def close(self) -> dt.datetime: ...


@dataclass(frozen=True)
class SessionTable:
    """Sorted, non-overlapping sessions as two ``datetime64[us]`` (UTC) arrays of equal length."""

    opens: np.ndarray
    closes: np.ndarray

    def __post_init__(self) -> None:
        opens = np.asarray(self.opens).astype(US)
        closes = np.asarray(self.closes).astype(US)
        if opens.ndim != 1 or opens.shape != closes.shape:
            raise ValueError("session opens and closes must be 1-D arrays of equal length")
        o, c = opens.view(np.int64), closes.view(np.int64)
        if np.isnat(opens).any() or np.isnat(closes).any():
            raise ValueError("session bounds may not be NaT")
        if (c <= o).any():
            raise ValueError("every session must close after it opens")
        if (o[1:] < c[:-1]).any():
            raise ValueError("sessions must be sorted and non-overlapping")
        object.__setattr__(self, "opens", opens)
        object.__setattr__(self, "closes", closes)

    @classmethod
    def of(cls, sessions: Sequence[_SessionLike] | SessionTable) -> SessionTable:
        if isinstance(sessions, SessionTable):
            return sessions
        opens = np.array([aware_to_us(s.open) for s in sessions], dtype=np.int64).view(US)
        closes = np.array([aware_to_us(s.close) for s in sessions], dtype=np.int64).view(US)
        return cls(opens, closes)

    def __len__(self) -> int:
        return len(self.opens)


class BucketAssignment(NamedTuple):
    """Bucket of each input timestamp; ``NaT`` in both arrays where the timestamp is outside
    every session (``outside`` is that mask; the caller drops those rows)."""

    start: np.ndarray
    end: np.ndarray

    @property
    def outside(self) -> np.ndarray:
        return np.isnat(self.start)


@dataclass(frozen=True)
class AggregatedBars:
    """OHLCV bars of a timeframe; one row per non-empty bucket, sorted by ``start``.

    ``start``/``end`` are ``datetime64[us]`` UTC; ``count`` is the number of 1-minute bars in the
    bucket; ``dropped`` the number of input rows outside every session (ignored).
    """

    start: np.ndarray
    end: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    oi: np.ndarray
    count: np.ndarray
    dropped: int

    def as_dict(self) -> dict[str, np.ndarray]:
        return {
            "start": self.start,
            "end": self.end,
            "open": self.open,
            "high": self.high,
            "low": self.low,
            "close": self.close,
            "volume": self.volume,
            "oi": self.oi,
            "count": self.count,
        }

    def __len__(self) -> int:
        return len(self.start)


@dataclass(frozen=True)
class AggregatedSeries:
    """One value per non-empty bucket (``values`` has the input's trailing shape)."""

    start: np.ndarray
    end: np.ndarray
    values: np.ndarray
    count: np.ndarray
    dropped: int


# -- conversions -------------------------------------------------------------------------------


def aware_to_us(value: dt.datetime) -> int:
    if not isinstance(value, dt.datetime):
        raise TypeError(f"expected an aware datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.tzinfo.utcoffset(value) is None:
        raise ValueError(f"naive datetime {value.isoformat()} is not allowed: pass an aware datetime")
    return (value - _EPOCH) // dt.timedelta(microseconds=1)


def to_datetime64(ts: object) -> np.ndarray:
    """``ts`` as a 1-D ``datetime64[us]`` array of UTC times.

    Accepts ``datetime64`` arrays of any unit (taken as UTC) and sequences of aware datetimes
    (including tz-aware pandas Timestamps). Naive ``datetime`` objects raise ``ValueError``.
    """
    arr = np.asarray(ts)
    if arr.ndim == 0:
        arr = arr.reshape(1)
    if arr.dtype.kind == "M":
        return arr.astype(US)
    if arr.dtype == object or arr.size == 0:
        return np.array([aware_to_us(v) for v in arr.ravel()], dtype=np.int64).view(US).reshape(arr.shape)
    raise TypeError(f"timestamps must be datetime64 or aware datetimes, got dtype {arr.dtype}")


def _bucket_us(timeframe: Timeframe) -> int | None:
    if not isinstance(timeframe, Timeframe):
        raise TypeError(
            f"timeframe must be a Timeframe (see parse_timeframe), got {type(timeframe).__name__}"
        )
    return None if timeframe.is_daily else timeframe.minutes * _MINUTE_US


# -- anchoring ---------------------------------------------------------------------------------


def session_buckets(
    sessions: Sequence[_SessionLike] | SessionTable, timeframe: Timeframe
) -> tuple[np.ndarray, np.ndarray]:
    """Every bucket of every session, in order: ``(starts, ends)`` as ``datetime64[us]`` UTC."""
    table = SessionTable.of(sessions)
    n_us = _bucket_us(timeframe)
    if n_us is None or len(table) == 0:
        return table.opens.copy(), table.closes.copy()
    o = table.opens.view(np.int64)
    c = table.closes.view(np.int64)
    per_session = -((o - c) // n_us)  # ceil((c - o) / n)
    total = int(per_session.sum())
    first = np.cumsum(per_session) - per_session  # index of each session's first bucket
    session_of = np.repeat(np.arange(len(o)), per_session)
    k = np.arange(total, dtype=np.int64) - first[session_of]
    starts = o[session_of] + k * n_us
    ends = np.minimum(starts + n_us, c[session_of])
    return starts.view(US), ends.view(US)


def session_index(ts: object, sessions: Sequence[_SessionLike] | SessionTable) -> np.ndarray:
    """Index (into ``sessions``) of the session containing each timestamp; -1 when outside."""
    table = SessionTable.of(sessions)
    t = to_datetime64(ts).view(np.int64)
    idx = np.searchsorted(table.opens.view(np.int64), t, side="right") - 1
    inside = (idx >= 0) & (t != _NAT_INT)
    inside[inside] &= t[inside] < table.closes.view(np.int64)[idx[inside]]
    return np.where(inside, idx, -1)


def assign_buckets(
    ts: object, sessions: Sequence[_SessionLike] | SessionTable, timeframe: Timeframe
) -> BucketAssignment:
    """Bucket ``(start, end)`` of each timestamp (vectorised); NaT where outside every session."""
    table = SessionTable.of(sessions)
    t = to_datetime64(ts).view(np.int64)
    idx = session_index(t.view(US), table)
    inside = idx >= 0
    start = np.full(t.shape, _NAT_INT, dtype=np.int64)
    end = np.full(t.shape, _NAT_INT, dtype=np.int64)
    o = table.opens.view(np.int64)[idx[inside]]
    c = table.closes.view(np.int64)[idx[inside]]
    n_us = _bucket_us(timeframe)
    if n_us is None:
        start[inside], end[inside] = o, c
    else:
        s = o + ((t[inside] - o) // n_us) * n_us
        start[inside], end[inside] = s, np.minimum(s + n_us, c)
    return BucketAssignment(start.view(US), end.view(US))


def bucket_for(
    ts: dt.datetime, sessions: Sequence[_SessionLike] | SessionTable, timeframe: Timeframe
) -> tuple[dt.datetime, dt.datetime] | None:
    """Scalar :func:`assign_buckets`: aware UTC ``(start, end)`` of the bucket containing ``ts``."""
    t = np.array([aware_to_us(ts)], dtype=np.int64).view(US)
    start, end = assign_buckets(t, sessions, timeframe)
    if np.isnat(start[0]):
        return None
    us = dt.timedelta(microseconds=1)
    return _EPOCH + int(start.view(np.int64)[0]) * us, _EPOCH + int(end.view(np.int64)[0]) * us


# -- aggregation -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Groups:
    order: np.ndarray  # positions of the kept input rows, sorted by time
    starts: np.ndarray  # row offsets (into the sorted kept rows) where each bucket begins
    bucket_start: np.ndarray
    bucket_end: np.ndarray
    dropped: int

    @property
    def counts(self) -> np.ndarray:
        return np.diff(np.append(self.starts, len(self.order)))


def _group(ts: object, sessions: Sequence[_SessionLike] | SessionTable, timeframe: Timeframe) -> _Groups:
    t = to_datetime64(ts)
    if t.ndim != 1:
        raise ValueError("timestamps must be a 1-D array")
    start, end = assign_buckets(t, sessions, timeframe)
    keep = np.flatnonzero(~np.isnat(start))
    # Stable sort by time: rows arrive in any order; equal timestamps keep their input order.
    order = keep[np.argsort(t.view(np.int64)[keep], kind="stable")]
    s = start.view(np.int64)[order]
    if len(order):
        first = np.flatnonzero(np.concatenate(([True], s[1:] != s[:-1])))
    else:
        first = np.zeros(0, dtype=np.int64)
    return _Groups(
        order=order,
        starts=first,
        bucket_start=start[order][first],
        bucket_end=end[order][first],
        dropped=len(t) - len(keep),
    )


def _column(values: object, n: int, name: str) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.shape[:1] != (n,):
        raise ValueError(f"{name} has {arr.shape[:1]} rows, expected {n} (one per timestamp)")
    return arr


def _first_valid(x: np.ndarray, g: _Groups) -> np.ndarray:
    # Index of the first non-NaN row of each group (or the group's first row when all are NaN).
    return _reduce_valid(x, g, last=False)


def _last_valid(x: np.ndarray, g: _Groups) -> np.ndarray:
    return _reduce_valid(x, g, last=True)


def _reduce_valid(x: np.ndarray, g: _Groups, *, last: bool) -> np.ndarray:
    """First/last non-NaN value of each group along axis 0 (NaN when the whole group is NaN)."""
    if len(g.starts) == 0:
        return np.empty((0, *x.shape[1:]), dtype=np.float64)
    n = len(x)
    pos = np.arange(n).reshape((n,) + (1,) * (x.ndim - 1))
    valid = ~np.isnan(x)
    if last:
        marked = np.where(valid, pos, -1)
        best = np.maximum.reduceat(marked, g.starts, axis=0)
    else:
        marked = np.where(valid, pos, n)
        best = np.minimum.reduceat(marked, g.starts, axis=0)
    found = (best >= 0) & (best < n)
    safe = np.clip(best, 0, n - 1)
    picked = np.take_along_axis(x, safe, axis=0) if x.ndim > 1 else x[safe]
    return np.where(found, picked, np.nan)


def _sum_valid(x: np.ndarray, g: _Groups) -> np.ndarray:
    """Sum of non-NaN values per group; NaN when the whole group is NaN."""
    if len(g.starts) == 0:
        return np.empty((0, *x.shape[1:]), dtype=np.float64)
    total = np.add.reduceat(np.where(np.isnan(x), 0.0, x), g.starts, axis=0)
    n_valid = np.add.reduceat((~np.isnan(x)).astype(np.int64), g.starts, axis=0)
    return np.where(n_valid > 0, total, np.nan)


def _fmax(x: np.ndarray, g: _Groups) -> np.ndarray:
    if len(g.starts) == 0:
        return np.empty(0, dtype=np.float64)
    return np.fmax.reduceat(x, g.starts)


def _fmin(x: np.ndarray, g: _Groups) -> np.ndarray:
    if len(g.starts) == 0:
        return np.empty(0, dtype=np.float64)
    return np.fmin.reduceat(x, g.starts)


def aggregate_ohlcv(
    ts: object,
    open: object,
    high: object,
    low: object,
    close: object,
    volume: object,
    oi: object | None,
    sessions: Sequence[_SessionLike] | SessionTable,
    timeframe: Timeframe,
) -> AggregatedBars:
    """Reference aggregation of 1-minute bars into ``timeframe`` bars (numpy, vectorised).

    open = first, high = max, low = min, close = last, volume = sum, oi = last; NaN inputs are
    skipped (a field that is NaN in the whole bucket stays NaN, e.g. oi of an index). Rows may come
    in any order; rows outside every session are dropped and counted in ``dropped``. Empty buckets
    are not emitted. ``oi=None`` means the instrument has no open interest (all NaN).
    """
    t = to_datetime64(ts)
    n = len(t)
    g = _group(t, sessions, timeframe)
    cols = {
        "open": _column(open, n, "open"),
        "high": _column(high, n, "high"),
        "low": _column(low, n, "low"),
        "close": _column(close, n, "close"),
        "volume": _column(volume, n, "volume"),
        "oi": np.full(n, np.nan) if oi is None else _column(oi, n, "oi"),
    }
    c = {k: v[g.order] for k, v in cols.items()}
    return AggregatedBars(
        start=g.bucket_start,
        end=g.bucket_end,
        open=_first_valid(c["open"], g),
        high=_fmax(c["high"], g),
        low=_fmin(c["low"], g),
        close=_last_valid(c["close"], g),
        volume=_sum_valid(c["volume"], g),
        oi=_last_valid(c["oi"], g),
        count=g.counts,
        dropped=g.dropped,
    )


def aggregate_series(
    ts: object,
    values: object,
    sessions: Sequence[_SessionLike] | SessionTable,
    timeframe: Timeframe,
    agg: str = "last",
) -> AggregatedSeries:
    """Bucket a series of observations (Greeks, IV, ...) with ``agg`` = ``"last"`` or ``"mean"``.

    ``values`` is 1-D (one per timestamp) or 2-D (rows = timestamps, one column per series).
    NaN observations are "no value" and skipped: ``last`` is the last observation that has a
    value, ``mean`` the mean of those that have one; a bucket with none is NaN.
    """
    t = to_datetime64(ts)
    x = _column(values, len(t), "values")
    g = _group(t, sessions, timeframe)
    x = x[g.order]
    if agg == "last":
        out = _last_valid(x, g)
    elif agg == "mean":
        if len(g.starts) == 0:
            out = np.empty((0, *x.shape[1:]), dtype=np.float64)
        else:
            n_valid = np.add.reduceat((~np.isnan(x)).astype(np.int64), g.starts, axis=0)
            total = np.add.reduceat(np.where(np.isnan(x), 0.0, x), g.starts, axis=0)
            with np.errstate(invalid="ignore", divide="ignore"):
                out = np.where(n_valid > 0, total / np.maximum(n_valid, 1), np.nan)
    else:
        raise ValueError(f"agg must be 'last' or 'mean', got {agg!r}")
    return AggregatedSeries(
        start=g.bucket_start, end=g.bucket_end, values=out, count=g.counts, dropped=g.dropped
    )


def aggregate_last(
    ts: object, values: object, sessions: Sequence[_SessionLike] | SessionTable, timeframe: Timeframe
) -> AggregatedSeries:
    """:func:`aggregate_series` with ``agg="last"`` (the default for Greeks and IV)."""
    return aggregate_series(ts, values, sessions, timeframe, agg="last")


def aggregate_mean(
    ts: object, values: object, sessions: Sequence[_SessionLike] | SessionTable, timeframe: Timeframe
) -> AggregatedSeries:
    """:func:`aggregate_series` with ``agg="mean"``."""
    return aggregate_series(ts, values, sessions, timeframe, agg="mean")


# -- SQL ---------------------------------------------------------------------------------------

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?", re.ASCII)


def sql_bucket_expression(
    timeframe: Timeframe,
    ts_column: str = "b.ts",
    open_column: str = "s.session_open",
    close_column: str = "s.session_close",
) -> tuple[str, str]:
    """PostgreSQL expressions ``(bucket_start, bucket_end)`` with the same anchoring as this module.

    The query must join each 1-minute bar to its session (``open <= ts < close``), e.g. to a
    ``VALUES`` list built from the calendar's sessions; see docs/timeframes.md. ``date_bin``
    (PostgreSQL 14+) with the session open as origin is exactly ``open + floor((ts-open)/N)*N``
    for ``ts >= open``. Column names must be plain (optionally qualified) identifiers.
    """
    for col in (ts_column, open_column, close_column):
        if not _IDENT.fullmatch(col):
            raise ValueError(f"not a plain SQL identifier: {col!r}")
    n_us = _bucket_us(timeframe)
    if n_us is None:
        return open_column, close_column
    stride = f"interval '{timeframe.minutes} minutes'"
    start = f"date_bin({stride}, {ts_column}, {open_column})"
    end = f"least({start} + {stride}, {close_column})"
    return start, end

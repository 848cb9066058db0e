"""Indicators over stored bars (SPEC §8): the series over a range and the latest value.

Warm-up: the bars are loaded from ``indicators.history_start`` (the warm-up in whole calendar
buckets before ``start``, and the anchor of session-anchored indicators), so the first returned
value is already exact. An instrument with empty buckets (no trades) has fewer stored bars than
calendar buckets; when fewer than ``warmup().bars`` bars precede ``start`` although older bars
exist, the history is extended backwards (doubling, a few times) until it has them or the data
runs out. ``warmup`` in the result says how many bars were needed and found.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import numpy as np

from timeframes import cache, selectors
from timeframes.core import indicators
from timeframes.core.buckets import bucket_for
from timeframes.core.grammar import Timeframe

UTC = dt.UTC
_EXTENSIONS = 4
_ONE_US = dt.timedelta(microseconds=1)


class NoData(LookupError):
    """The instrument has no bars to compute from."""


@dataclass(frozen=True)
class IndicatorSeries:
    name: str
    params: dict
    timeframe: Timeframe
    start: np.ndarray  # datetime64[us] UTC, bucket starts in [start, end)
    end: np.ndarray  # bucket ends
    outputs: dict[str, np.ndarray]
    warmup_bars: int  # bars of the timeframe needed before start
    warmup_found: int  # bars found before start
    memory: str

    @property
    def warmup_complete(self) -> bool:
        return self.warmup_found >= self.warmup_bars

    def __len__(self) -> int:
        return len(self.start)

    def warmup_report(self) -> dict:
        return {
            "memory": self.memory,
            "bars_required": self.warmup_bars,
            "bars_found": self.warmup_found,
            "complete": self.warmup_complete,
        }


def indicator_series(
    *,
    instrument_id: int,
    name: str,
    params: Mapping[str, object] | None,
    timeframe: Timeframe,
    start: dt.datetime,
    end: dt.datetime,
) -> IndicatorSeries:
    """Values of ``name`` for the bars of ``timeframe`` whose bucket starts in ``[start, end)``.
    Raises ``indicators.InvalidIndicator`` for an unknown name or bad parameters."""
    spec = indicators.get_spec(name)
    p = indicators.validate(spec.name, params)
    w = indicators.warmup(spec.name, p)
    calendar = selectors.market_calendar()
    history = indicators.history_start(spec.name, p, timeframe, start, calendar)
    bars = _bars(instrument_id, timeframe, history, end)
    found = _count_before(bars, start)
    if found < w.bars:
        earliest = selectors.earliest_bar_ts(instrument_id=instrument_id)
        span = max(start - history, dt.timedelta(days=1))
        for _ in range(_EXTENSIONS):
            if earliest is None or earliest >= history or found >= w.bars:
                break
            span *= 2
            history = max(start - span, earliest)
            bars = _bars(instrument_id, timeframe, history, end)
            found = _count_before(bars, start)

    session_ids = None
    if spec.session_anchored:
        sessions = calendar.sessions_overlapping(history, end) if len(bars["start"]) else []
        session_ids = indicators.anchor_ids(bars["start"], sessions, timeframe)
    inputs = {f: bars[f] for f in indicators.BAR_FIELDS}
    outputs = indicators.compute(spec.name, p, inputs, session_ids=session_ids)
    return IndicatorSeries(
        name=spec.name,
        params=p,
        timeframe=timeframe,
        start=bars["start"][found:],
        end=bars["end"][found:],
        outputs={k: v[found:] for k, v in outputs.items()},
        warmup_bars=w.bars,
        warmup_found=found,
        memory=w.memory,
    )


def latest_buckets(*, instrument_id: int, timeframe: Timeframe) -> Iterator[tuple[dt.datetime, dt.datetime]]:
    """(bucket start, bar time) of the bucket holding the instrument's latest 1-minute bar inside a
    session, then of earlier bars (a few, skipping stray bars outside every session), for a caller
    that finds the first bucket empty."""
    calendar = selectors.market_calendar()
    latest = selectors.latest_bar_ts(instrument_id=instrument_id)
    for _ in range(3):
        if latest is None:
            return
        session = calendar.session_at(latest)
        if session is not None:
            bucket = bucket_for(latest, [session], timeframe)
            assert bucket is not None
            yield bucket[0], latest
        latest = selectors.latest_bar_ts(instrument_id=instrument_id, before=latest)


def indicator_latest(
    *, instrument_id: int, name: str, params: Mapping[str, object] | None, timeframe: Timeframe
) -> tuple[IndicatorSeries, dt.datetime]:
    """The indicator on the bucket holding the instrument's latest 1-minute bar (possibly still
    open). Returns a one-bucket series and the time of that bar; ``NoData`` when there is none."""
    indicators.validate(name, params)  # bad input is a 400 even for an instrument without data
    for start, latest in latest_buckets(instrument_id=instrument_id, timeframe=timeframe):
        series = indicator_series(
            instrument_id=instrument_id,
            name=name,
            params=params,
            timeframe=timeframe,
            start=start,
            end=start + _ONE_US,
        )
        if len(series):
            return series, latest
    raise NoData(f"no 1-minute bars inside a trading session for instrument {instrument_id}")


def bar_latest(*, instrument_id: int, timeframe: Timeframe) -> tuple[dict, dt.datetime]:
    """The bar of ``timeframe`` holding the instrument's latest 1-minute bar (possibly still open),
    as one-element columns, and the time of that 1-minute bar; ``NoData`` when there is none."""
    for start, latest in latest_buckets(instrument_id=instrument_id, timeframe=timeframe):
        bars = _bars(instrument_id, timeframe, start, start + _ONE_US)
        if len(bars["start"]):
            return bars, latest
    raise NoData(f"no 1-minute bars inside a trading session for instrument {instrument_id}")


def _bars(instrument_id: int, timeframe: Timeframe, start: dt.datetime, end: dt.datetime) -> dict:
    return cache.bars_read(instrument_id=instrument_id, timeframe=timeframe, start=start, end=end).bars


def _count_before(bars: dict, start: dt.datetime) -> int:
    return int(np.searchsorted(bars["start"].view(np.int64), selectors.to_us(start), side="left"))

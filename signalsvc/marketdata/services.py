"""Writes of market data: authoritative 1-minute bars (API, CSV) and ticks merged into bars
(the stream consumer). Both are idempotent upserts keyed by (instrument, minute), by COPY."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from django.db import connection, transaction

from signalsvc.db.copy import copy_upsert
from signalsvc.db.partitions import partitions_ensure
from signalsvc.marketdata.bar_events import bars_changed_now
from signalsvc.redis_clients import redis_client

TABLE = "market_bar_1m"
UTC = dt.UTC


@dataclass(frozen=True)
class BarIn:
    """One validated 1-minute bar. ``ts`` is the aware minute start."""

    instrument_id: int
    ts: dt.datetime
    open: float
    high: float
    low: float
    close: float
    volume: float
    oi: float | None


@dataclass(frozen=True)
class TickIn:
    """One validated tick from the stream. ``seq`` orders ticks: the stream position."""

    instrument_id: int
    ts: dt.datetime
    ltp: float
    volume: float
    oi: float | None
    seq: int


def minute_floor(ts: dt.datetime) -> dt.datetime:
    ts = ts.astimezone(UTC)
    return ts.replace(second=0, microsecond=0)


def bars_upsert(*, bars: Sequence[BarIn]) -> int:
    """Insert or replace whole bars (the caller's bar is authoritative). All or nothing."""
    if not bars:
        return 0
    now = dt.datetime.now(UTC)
    with transaction.atomic():
        partitions_ensure(table=TABLE, start=min(b.ts for b in bars), end=max(b.ts for b in bars))
        changed = {b.instrument_id for b in bars}
        # Announced once the bars are visible; a failure to announce is logged, not raised: the
        # bars are stored, and values derived from them refresh with the next change.
        transaction.on_commit(
            lambda: bars_changed_now(redis_client(decode_responses=False), changed), robust=True
        )
        return copy_upsert(
            table=TABLE,
            columns=["instrument_id", "ts", "open", "high", "low", "close", "volume", "oi", "updated_at"],
            rows=((b.instrument_id, b.ts, b.open, b.high, b.low, b.close, b.volume, b.oi, now) for b in bars),
            conflict=["instrument_id", "ts"],
            update_sql=(
                "open = excluded.open, high = excluded.high, low = excluded.low, close = excluded.close, "
                "volume = excluded.volume, oi = excluded.oi, updated_at = excluded.updated_at"
            ),
        )


def ticks_merge(*, ticks: Sequence[TickIn]) -> int:
    """Merge ticks into their 1-minute bars exactly once, inside the caller's transaction.

    Ticks of one instrument arrive in stream order. Each bar remembers the stream position of the
    last tick merged into it (``source_seq``); a tick at or below that position was merged by an
    earlier, committed batch (a crash between commit and XACK replays it) and is skipped. The
    existing rows are locked while we merge so two consumers cannot interleave on one bar.
    Returns the number of bars written.
    """
    if not ticks:
        return 0
    minutes = {(t.instrument_id, minute_floor(t.ts)) for t in ticks}
    partitions_ensure(table=TABLE, start=min(m for _, m in minutes), end=max(m for _, m in minutes))
    ids = [i for i, _ in minutes]
    stamps = [m for _, m in minutes]
    with connection.cursor() as cur:
        cur.execute(
            f"""
            SELECT b.instrument_id, b.ts, b.source_seq FROM {TABLE} b
            JOIN unnest(%s::bigint[], %s::timestamptz[]) AS k(instrument_id, ts)
              ON b.instrument_id = k.instrument_id AND b.ts = k.ts
            FOR UPDATE OF b
            """,
            [ids, stamps],
        )
        merged_upto = {
            (i, ts.astimezone(UTC)): (seq if seq is not None else -1) for i, ts, seq in cur.fetchall()
        }

    # Aggregate the new ticks per bar in stream order.
    pieces: dict[tuple[int, dt.datetime], list] = {}
    for tick in sorted(ticks, key=lambda t: t.seq):
        bar_key = (tick.instrument_id, minute_floor(tick.ts))
        if tick.seq <= merged_upto.get(bar_key, -1):
            continue
        piece = pieces.get(bar_key)
        if piece is None:
            pieces[bar_key] = [tick.ltp, tick.ltp, tick.ltp, tick.ltp, tick.volume, tick.oi, tick.seq]
        else:
            piece[1] = max(piece[1], tick.ltp)
            piece[2] = min(piece[2], tick.ltp)
            piece[3] = tick.ltp
            piece[4] += tick.volume
            piece[5] = tick.oi if tick.oi is not None else piece[5]
            piece[6] = tick.seq
    if not pieces:
        return 0
    now = dt.datetime.now(UTC)
    return copy_upsert(
        table=TABLE,
        columns=[
            "instrument_id",
            "ts",
            "open",
            "high",
            "low",
            "close",
            "volume",
            "oi",
            "source_seq",
            "updated_at",
        ],
        rows=((i, ts, *piece, now) for (i, ts), piece in pieces.items()),
        conflict=["instrument_id", "ts"],
        # The bar keeps its first open; the new ticks extend it.
        update_sql=(
            "high = greatest(t.high, excluded.high), low = least(t.low, excluded.low), "
            "close = excluded.close, volume = t.volume + excluded.volume, "
            "oi = coalesce(excluded.oi, t.oi), source_seq = excluded.source_seq, updated_at = excluded.updated_at"
        ),
        where_sql="t.source_seq IS NULL OR excluded.source_seq > t.source_seq",
    )

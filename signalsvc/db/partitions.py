"""Range partitions for time-series tables, made ahead and dropped after retention.

We keep this small instead of pulling in pg_partman: a partitioned table is registered here with
its granularity; writers call :func:`partitions_ensure` for the time range they touch (cached per
process, so the hot path costs a set lookup), and the hourly ``partitions_upkeep`` beat task makes
partitions ahead and drops the expired ones.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from dataclasses import dataclass

from django.db import connection, transaction

log = logging.getLogger(__name__)

UTC = dt.UTC


@dataclass(frozen=True)
class PartitionedTable:
    name: str
    granularity: str  # "month" | "day"
    retention_setting: str  # name of the settings value holding the retention in days


_REGISTRY: dict[str, PartitionedTable] = {}
_known: set[str] = set()
_lock = threading.Lock()


def register(table: PartitionedTable) -> None:
    _REGISTRY[table.name] = table


def registered() -> list[PartitionedTable]:
    return list(_REGISTRY.values())


def _period_start(day: dt.date, granularity: str) -> dt.date:
    return day.replace(day=1) if granularity == "month" else day


def _next_period(start: dt.date, granularity: str) -> dt.date:
    if granularity == "day":
        return start + dt.timedelta(days=1)
    return (start.replace(day=28) + dt.timedelta(days=4)).replace(day=1)


def _partition_name(table: str, start: dt.date, granularity: str) -> str:
    suffix = start.strftime("%Y_%m") if granularity == "month" else start.strftime("%Y_%m_%d")
    return f"{table}_p{suffix}"


def partitions_ensure(*, table: str, start: dt.datetime, end: dt.datetime) -> None:
    """Make sure partitions cover [start, end] (aware datetimes). Safe under concurrency."""
    spec = _REGISTRY[table]
    period = _period_start(start.astimezone(UTC).date(), spec.granularity)
    last = end.astimezone(UTC).date()
    wanted = []
    while period <= last:
        name = _partition_name(table, period, spec.granularity)
        if name not in _known:
            wanted.append((name, period, _next_period(period, spec.granularity)))
        period = _next_period(period, spec.granularity)
    if not wanted:
        return
    with transaction.atomic(), connection.cursor() as cur:
        # One creator at a time: CREATE TABLE IF NOT EXISTS alone still races on the catalog.
        cur.execute("SELECT pg_advisory_xact_lock(hashtext('signal.partitions'))")
        for name, lower, upper in wanted:
            cur.execute(
                f'CREATE TABLE IF NOT EXISTS "{name}" PARTITION OF "{table}" '
                f"FOR VALUES FROM ('{lower.isoformat()} 00:00+00') TO ('{upper.isoformat()} 00:00+00')"
            )
    # Remember them only once committed: a rolled-back transaction takes the partitions with it.
    names = [name for name, _, _ in wanted]
    transaction.on_commit(lambda: _remember(names))


def _remember(names: list[str]) -> None:
    with _lock:
        _known.update(names)


def partitions_drop_expired(*, table: str, retention_days: int, now: dt.datetime) -> list[str]:
    """Drop partitions whose whole range is older than the retention; returns their names."""
    cutoff = (now - dt.timedelta(days=retention_days)).astimezone(UTC)
    dropped = []
    with transaction.atomic(), connection.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(hashtext('signal.partitions'))")
        cur.execute(
            """
            SELECT c.relname, pg_get_expr(c.relpartbound, c.oid)
            FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent
            WHERE p.relname = %s
            """,
            [table],
        )
        for name, bound in cur.fetchall():
            # bound: FOR VALUES FROM ('2026-01-01 00:00:00+00') TO ('2026-02-01 00:00:00+00')
            upper_text = bound.split("TO ('", 1)[1].split("'", 1)[0]
            upper = dt.datetime.fromisoformat(upper_text)
            if upper <= cutoff:
                cur.execute(f'DROP TABLE IF EXISTS "{name}"')
                dropped.append(name)
    with _lock:
        _known.difference_update(dropped)
    if dropped:
        log.info("dropped expired partitions of %s: %s", table, ", ".join(dropped))
    return dropped


def partitions_upkeep(*, now: dt.datetime, ahead_days: int, retention_days: dict[str, int]) -> dict:
    """Create partitions from yesterday to ``ahead_days`` ahead for every registered table and
    drop the expired ones."""
    report = {}
    for spec in registered():
        partitions_ensure(
            table=spec.name, start=now - dt.timedelta(days=1), end=now + dt.timedelta(days=ahead_days)
        )
        report[spec.name] = partitions_drop_expired(
            table=spec.name, retention_days=retention_days[spec.name], now=now
        )
    return report


def partitions_forget_cache() -> None:
    """Forget which partitions this process has seen (tests recreate databases)."""
    with _lock:
        _known.clear()

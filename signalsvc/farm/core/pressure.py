"""Backpressure levels (SPEC §11), decided from measured signals. Standard library only.

Signals and their units:

- ``total_depth``: tasks waiting or running on the whole farm (ready + unacked, every queue);
- ``shard_depth``: the same for the deepest ``greeks.<shard>`` queue (one shard is one worker's
  work, so one hot shard is pressure even when the farm as a whole is quiet);
- ``oldest_age``: seconds since the oldest waiting task was published;
- ``task_wait``: seconds from publish to start, p95 of the recently finished tasks;
- ``task_run``: seconds from start to finish, p95 of the same tasks;
- ``cpu``: host CPU busy, percent of every core;
- ``memory``: host memory in use, percent.

Each signal has three thresholds (MEDIUM, HIGH, CRITICAL): a value at or above a threshold is at
least that level. The level is the worst signal's level, and the decision names the signals that
set it. A signal that could not be measured (``None``: no task finished recently, no CPU sample
yet) is LOW: it says nothing about pressure. An infinite threshold is never reached (disabled).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import IntEnum


class Level(IntEnum):
    LOW = 0
    MEDIUM = 1
    HIGH = 2
    CRITICAL = 3


SIGNALS = ("total_depth", "shard_depth", "oldest_age", "task_wait", "task_run", "cpu", "memory")
UNITS = {
    "total_depth": "tasks",
    "shard_depth": "tasks",
    "oldest_age": "seconds",
    "task_wait": "seconds (p95)",
    "task_run": "seconds (p95)",
    "cpu": "percent",
    "memory": "percent",
}


def level_parse(name: str) -> Level:
    """``"HIGH"`` -> ``Level.HIGH`` (ValueError for anything else)."""
    try:
        return Level[name.upper()]
    except KeyError:
        raise ValueError(
            f"a level is one of {', '.join(level.name for level in Level)}, not {name!r}"
        ) from None


@dataclass(frozen=True)
class Thresholds:
    """The values (in the signal's unit) from which a signal is MEDIUM, HIGH and CRITICAL."""

    medium: float
    high: float
    critical: float

    def __post_init__(self) -> None:
        values = (self.medium, self.high, self.critical)
        if any(math.isnan(v) for v in values) or not self.medium <= self.high <= self.critical:
            raise ValueError(f"thresholds must be numbers in order MEDIUM <= HIGH <= CRITICAL, not {values}")

    def level_of(self, value: float | None) -> Level:
        if value is None or math.isnan(value):
            return Level.LOW
        if value >= self.critical:
            return Level.CRITICAL
        if value >= self.high:
            return Level.HIGH
        if value >= self.medium:
            return Level.MEDIUM
        return Level.LOW


@dataclass(frozen=True)
class Decision:
    level: Level
    set_by: tuple[str, ...]  # the signals at ``level``, in SIGNALS order; empty at LOW
    levels: Mapping[str, Level]  # each signal's own level


def level_decide(signals: Mapping[str, float | None], thresholds: Mapping[str, Thresholds]) -> Decision:
    """The level of the worst signal. Only signals with thresholds count; a missing one is LOW."""
    levels = {name: limits.level_of(signals.get(name)) for name, limits in thresholds.items()}
    level = max(levels.values(), default=Level.LOW)
    set_by = tuple(name for name, own in levels.items() if own == level) if level > Level.LOW else ()
    return Decision(level, set_by, levels)


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (``q`` in 0..100) of ``values``; None when there are none."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass(frozen=True)
class Latency:
    """Recently finished tasks: how many, and their wait (publish -> start) and run (start ->
    finish) times in seconds. A percentile is None when no task of the window has that time."""

    samples: int
    wait_p50: float | None
    wait_p95: float | None
    run_p50: float | None
    run_p95: float | None


def latency_summarize(
    samples: Iterable[tuple[float, float | None, float]], *, now: float, window: float
) -> Latency:
    """Percentiles over the samples ``(finished_at, wait or None, run)`` (epoch seconds, seconds)
    that finished within ``window`` seconds before ``now``."""
    recent = [(wait, run) for finished, wait, run in samples if now - finished <= window]
    waits = [wait for wait, _ in recent if wait is not None]
    runs = [run for _, run in recent]
    return Latency(
        samples=len(recent),
        wait_p50=percentile(waits, 50),
        wait_p95=percentile(waits, 95),
        run_p50=percentile(runs, 50),
        run_p95=percentile(runs, 95),
    )


def cpu_busy_percent(before: tuple[float, float], after: tuple[float, float]) -> float | None:
    """CPU busy between two samples of cumulative ``(busy, total)`` CPU seconds of every core, in
    percent; None when no CPU time passed between them (or the counters went back: a reboot)."""
    busy = after[0] - before[0]
    total = after[1] - before[1]
    if total <= 0 or busy < 0:
        return None
    return min(100.0, 100.0 * busy / total)

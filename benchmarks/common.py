"""Shared timing helpers for `make bench`.

Every benchmark module exposes ``run() -> list[Result]``; ``benchmarks/run.py`` collects them and
prints one table. Machines are shared and noisy, so we report medians over several repeats and
ratios against baselines measured in the same run, never single timings.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Result:
    benchmark: str  # e.g. "greeks: price+9 greeks"
    case: str  # e.g. "signalsvc" or "py_vollib_vectorized (baseline)"
    n: int  # items per call (options, rows, requests)
    median_s: float  # median seconds per call
    note: str = ""  # target, ratio against the baseline, caveats
    # A measured rate for the items/s column where it is not n / median (a load test: median = the
    # p50 latency of one request, rate = the requests/s of all connections together).
    rate: float | None = None

    @property
    def per_second(self) -> float:
        if self.rate is not None:
            return self.rate
        return self.n / self.median_s if self.median_s > 0 else float("nan")


def median_time(
    fn: Callable[[], object],
    *,
    repeats: int = 5,
    warmup: int = 1,
    before: Callable[[], None] | None = None,
) -> float:
    """Median wall time of ``fn()`` in seconds over ``repeats`` calls after ``warmup`` calls;
    ``before()`` runs untimed ahead of each timed call (e.g. to empty a cache)."""
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeats):
        if before is not None:
            before()
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def load_note() -> str:
    """The machine is shared: say how busy it was, since wall times scale with it."""
    try:
        return f"[load avg {os.getloadavg()[0]:.1f} on {len(os.sched_getaffinity(0))} CPUs]"
    except (AttributeError, OSError):  # pragma: no cover - non-Linux
        return ""


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"

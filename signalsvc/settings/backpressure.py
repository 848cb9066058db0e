"""Backpressure (SPEC §11): the thresholds of the levels LOW/MEDIUM/HIGH/CRITICAL, and what each
level does (signalsvc/farm/backpressure.py; docs/decisions.md "Backpressure").

Each signal's thresholds are one variable of three comma-separated numbers, MEDIUM,HIGH,CRITICAL
(``inf`` never reached), e.g. ``BACKPRESSURE_OLDEST_AGE=5,15,60``. Each per-level setting is four
numbers, LOW,MEDIUM,HIGH,CRITICAL.
"""

from django.core.exceptions import ImproperlyConfigured

from signalsvc.farm.core.pressure import SIGNALS, Thresholds
from signalsvc.settings.env import env


def _numbers(name: str, default: tuple[float, ...]) -> tuple[float, ...]:
    raw = env.str(name, default="")
    if not raw.strip():
        return default
    try:
        values = tuple(float(part) for part in raw.split(","))
    except ValueError:
        values = ()
    if len(values) != len(default):
        example = ",".join(f"{v:g}" for v in default)
        raise ImproperlyConfigured(f"{name} must be {len(default)} comma-separated numbers, e.g. {example}")
    return values


def _thresholds(name: str, default: tuple[float, float, float]) -> tuple[float, float, float]:
    values = _numbers(name, default)
    try:
        Thresholds(*values)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name}: {exc}") from None
    return values  # type: ignore[return-value]


# Signal -> (MEDIUM, HIGH, CRITICAL), in the signal's unit (signalsvc/farm/core/pressure.py).
# Depth: with the live cadence at most one task per underlying waits, so a shard holds a handful of
# tasks and the farm a few hundred (500 underlyings); these are backlogs of several cycles. Age and
# wait: the live cadence is 1 s and work stealing starts at STEAL_AFTER_SECONDS (10). CPU: a farm
# at 100 % that keeps its queues short is sized right, not overloaded, so CPU alone only warns
# (MEDIUM); when CPU is the bottleneck the backlog signals rise and say so. Memory can reach
# CRITICAL (the next step is the OOM killer).
BACKPRESSURE_THRESHOLDS = {
    "total_depth": _thresholds("BACKPRESSURE_TOTAL_DEPTH", (1000, 5000, 20000)),
    "shard_depth": _thresholds("BACKPRESSURE_SHARD_DEPTH", (100, 500, 2000)),
    "oldest_age": _thresholds("BACKPRESSURE_OLDEST_AGE", (5, 15, 60)),
    "task_wait": _thresholds("BACKPRESSURE_TASK_WAIT", (2, 5, 20)),
    "task_run": _thresholds("BACKPRESSURE_TASK_RUN", (5, 15, 60)),
    "cpu": _thresholds("BACKPRESSURE_CPU", (80, float("inf"), float("inf"))),
    "memory": _thresholds("BACKPRESSURE_MEMORY", (80, 90, 95)),
}
if set(BACKPRESSURE_THRESHOLDS) != set(SIGNALS):
    raise ImproperlyConfigured(f"BACKPRESSURE_THRESHOLDS must cover exactly {SIGNALS}")

# The live recompute interval (GREEKS_LIVE_INTERVAL) is multiplied by this at each level. MEDIUM
# warns and slows nothing: users see one-second Greeks until the farm is really behind.
BACKPRESSURE_CADENCE_FACTORS = _numbers("BACKPRESSURE_CADENCE_FACTORS", (1, 1, 2, 5))
# Streaming delivers each topic at most once per this many seconds at each level (0: as it comes).
BACKPRESSURE_STREAM_INTERVALS = _numbers("BACKPRESSURE_STREAM_INTERVALS", (0, 0, 1, 2))
# Retry-After (seconds) of the 503 refusing compute-on-demand at CRITICAL.
BACKPRESSURE_RETRY_AFTER_SECONDS = env.int("BACKPRESSURE_RETRY_AFTER_SECONDS", default=10)
# The shared report (in the broker's Redis) is measured again once it is this old (seconds) ...
BACKPRESSURE_REPORT_SECONDS = env.float("BACKPRESSURE_REPORT_SECONDS", default=2.0)
# ... and each process keeps the level it read for this long (seconds).
BACKPRESSURE_LOCAL_SECONDS = env.float("BACKPRESSURE_LOCAL_SECONDS", default=1.0)
# Task latency: the last N finished tasks are kept, those of the last WINDOW seconds count.
BACKPRESSURE_LATENCY_SAMPLES = env.int("BACKPRESSURE_LATENCY_SAMPLES", default=1000)
BACKPRESSURE_LATENCY_WINDOW_SECONDS = env.float("BACKPRESSURE_LATENCY_WINDOW_SECONDS", default=60.0)
# Socket timeout of the monitor's Redis calls: a request never waits longer on a blind monitor.
BACKPRESSURE_REDIS_TIMEOUT = env.float("BACKPRESSURE_REDIS_TIMEOUT", default=1.0)

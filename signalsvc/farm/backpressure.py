"""The backpressure monitor (SPEC §11): measures the farm, shares the reading, and says what each
level does.

A reading (:class:`Report`) is measured from the broker (the depth and oldest task of every queue,
one pipelined round trip), the latency of recently finished tasks (:mod:`signalsvc.farm.signals`),
and the host's CPU and memory. It is stored in the broker's Redis (``farm:backpressure``) and
measured again once it is ``BACKPRESSURE_REPORT_SECONDS`` old, by one process at a time (the
others keep serving the previous one meanwhile). Each process keeps what it read for
``BACKPRESSURE_LOCAL_SECONDS``, so asking for the level costs a request nothing most of the time
and one GET otherwise; no request measures 67 queues.

The report holds the measured signals; each reader decides the level from them with its own
thresholds (:func:`signalsvc.farm.core.pressure.level_decide`, microseconds), so a changed
threshold applies at once. The level it stores beside them is informational (``redis-cli``).

Blind monitor: when Redis cannot be read, :func:`current_level` answers LOW. The level only
ever refuses or slows work (503 on compute-on-demand, a longer live interval, slower streams),
so a monitor that cannot see must not turn its own failure into refusals; the work itself meets
the outage on its own terms (a compute that needs Redis fails with ``redis_unavailable``). The
endpoint and the metrics, which report rather than act, say that they cannot measure.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import socket
import threading
import time
from dataclasses import asdict, dataclass
from functools import lru_cache

import psutil
import redis
from django.conf import settings

from signalsvc.farm.core.pressure import (
    SIGNALS,
    UNITS,
    Decision,
    Latency,
    Level,
    Thresholds,
    cpu_busy_percent,
    latency_summarize,
    level_decide,
)
from signalsvc.farm.queues import QueueDepth, queue_depths
from signalsvc.farm.routing import all_queues, shard_of_queue
from signalsvc.farm.signals import LATENCY_KEY, latency_sample_parse, monitor_client

log = logging.getLogger(__name__)

REPORT_KEY = "farm:backpressure"
MEASURING_KEY = "farm:backpressure:measuring"
# A report outlives its freshness so that others can serve it while one process measures the next.
REPORT_TTL_SECONDS = 300
# CPU is averaged between two samples of the same host at least this far apart (seconds), and at
# most this far: after a longer silence the average would describe the past, not now.
CPU_MIN_SPAN_SECONDS = 1.0
CPU_MAX_SPAN_SECONDS = 30.0


def _number_or_none(value) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"not a signal value: {value!r}")
    return float(value)


@dataclass(frozen=True)
class CpuSample:
    """Cumulative CPU seconds of every core of one host at one time (epoch seconds)."""

    host: str
    at: float
    busy: float
    total: float


@dataclass(frozen=True)
class Report:
    measured_at: float  # epoch seconds
    signals: dict[str, float | None]  # SIGNALS -> value in its unit, None when not measurable
    queues: dict[str, QueueDepth]  # the queues holding a task, waiting or unacknowledged
    latency: Latency
    cpu_sample: CpuSample | None

    def decision(self, thresholds: dict[str, Thresholds] | None = None) -> Decision:
        return level_decide(self.signals, thresholds if thresholds is not None else backpressure_thresholds())

    def deepest_shard(self) -> QueueDepth | None:
        shards = [d for q, d in self.queues.items() if shard_of_queue(q) is not None]
        return max(shards, key=lambda d: (d.total, d.oldest_age), default=None)

    def to_json(self) -> str:
        decision = self.decision()
        return json.dumps(
            {
                "measured_at": self.measured_at,
                "level": decision.level.name,
                "set_by": decision.set_by,
                "signals": self.signals,
                "queues": {q: [d.ready, d.unacked, d.oldest_age] for q, d in self.queues.items()},
                "latency": asdict(self.latency),
                "cpu_sample": None if self.cpu_sample is None else asdict(self.cpu_sample),
            }
        )

    @classmethod
    def from_json(cls, raw: bytes | str) -> Report | None:
        """The stored report, or None when it is not one (an older format: measured again)."""
        try:
            data = json.loads(raw)
            return cls(
                measured_at=float(data["measured_at"]),
                signals={name: _number_or_none(data["signals"].get(name)) for name in SIGNALS},
                queues={
                    q: QueueDepth(q, int(ready), int(unacked), float(age))
                    for q, (ready, unacked, age) in data["queues"].items()
                },
                latency=Latency(**data["latency"]),
                cpu_sample=None if data["cpu_sample"] is None else CpuSample(**data["cpu_sample"]),
            )
        except (ValueError, KeyError, TypeError, AttributeError):
            return None


def backpressure_thresholds() -> dict[str, Thresholds]:
    return {name: Thresholds(*values) for name, values in settings.BACKPRESSURE_THRESHOLDS.items()}


def cadence_factor(level: Level) -> float:
    """How many times ``GREEKS_LIVE_INTERVAL`` the live recompute waits at ``level``."""
    return float(settings.BACKPRESSURE_CADENCE_FACTORS[level])


def stream_interval(level: Level) -> float:
    """Seconds between two deliveries of one streaming topic at ``level`` (0: no limit)."""
    return float(settings.BACKPRESSURE_STREAM_INTERVALS[level])


# -- measuring ---------------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _host() -> str:
    # Containers on one machine share its kernel and /proc/stat: one boot id, one set of counters.
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return socket.gethostname()


def _cpu_sample_take(now: float) -> CpuSample:
    times = psutil.cpu_times()
    # Guest time is already counted in user/nice on Linux; idle and iowait are not busy.
    total = sum(times) - getattr(times, "guest", 0.0) - getattr(times, "guest_nice", 0.0)
    idle = times.idle + getattr(times, "iowait", 0.0)
    return CpuSample(_host(), now, total - idle, total)


_local_cpu_sample: CpuSample | None = None  # this process's last sample (when the report's is not usable)


def _cpu_measure(previous: Report | None, now: float) -> tuple[float | None, CpuSample | None]:
    """Host CPU busy percent since the previous sample of this host (the last report's, else this
    process's own), and the sample to keep as the next baseline."""
    global _local_cpu_sample
    current = _cpu_sample_take(now)
    shared = previous.cpu_sample if previous is not None else None
    base = shared if shared is not None and shared.host == current.host else _local_cpu_sample
    if base is None or base.host != current.host or now - base.at > CPU_MAX_SPAN_SECONDS:
        _local_cpu_sample = current
        return None, current
    if now - base.at < CPU_MIN_SPAN_SECONDS:
        # Too short to average (CPU time advances in ticks): keep the baseline and the last value.
        return (previous.signals.get("cpu") if previous is not None else None), base
    _local_cpu_sample = current
    return cpu_busy_percent((base.busy, base.total), (current.busy, current.total)), current


def backpressure_measure(
    client: redis.Redis, *, previous: Report | None = None, now: float | None = None
) -> Report:
    """Measure the farm now: every queue's depth, the recent task latency, CPU and memory."""
    now = time.time() if now is None else now
    depths = queue_depths(client, all_queues(settings.SHARD_COUNT), now=now)
    busy = {q: d for q, d in depths.items() if d.total > 0}
    samples = (latency_sample_parse(raw) for raw in client.lrange(LATENCY_KEY, 0, -1))
    latency = latency_summarize(
        (s for s in samples if s is not None), now=now, window=settings.BACKPRESSURE_LATENCY_WINDOW_SECONDS
    )
    cpu, cpu_sample = _cpu_measure(previous, now)
    signals = {
        "total_depth": float(sum(d.total for d in busy.values())),
        "shard_depth": float(
            max((d.total for q, d in busy.items() if shard_of_queue(q) is not None), default=0)
        ),
        "oldest_age": max((d.oldest_age for d in busy.values()), default=0.0),
        "task_wait": latency.wait_p95,
        "task_run": latency.run_p95,
        "cpu": cpu,
        "memory": psutil.virtual_memory().percent,
    }
    return Report(now, signals, busy, latency, cpu_sample)


def _report_get(client: redis.Redis) -> Report | None:
    raw = client.get(REPORT_KEY)
    return None if raw is None else Report.from_json(raw)


def backpressure_read(client: redis.Redis | None = None, *, previous: Report | None = None) -> Report:
    """Measure now and store the reading for every process (``previous``: the reading it replaces,
    read from Redis when not given; its CPU sample is the baseline of this one's)."""
    client = client if client is not None else monitor_client()
    if previous is None:
        previous = _report_get(client)
    report = backpressure_measure(client, previous=previous)
    client.set(REPORT_KEY, report.to_json(), ex=REPORT_TTL_SECONDS)
    return report


def backpressure_report(client: redis.Redis | None = None) -> Report:
    """The shared reading: the stored one while it is fresh, else measured now. While another
    process measures, the previous reading is served rather than measured twice."""
    client = client if client is not None else monitor_client()
    previous = _report_get(client)
    if previous is not None:
        if time.time() - previous.measured_at < settings.BACKPRESSURE_REPORT_SECONDS:
            return previous
        lease_ms = max(1, int(settings.BACKPRESSURE_REPORT_SECONDS * 1000))
        if not client.set(MEASURING_KEY, os.getpid(), nx=True, px=lease_ms):
            return previous
    return backpressure_read(client, previous=previous)


# -- reading the level ---------------------------------------------------------------------------------

_local_lock = threading.Lock()
# (monotonic time it was read, the report or None when Redis could not be read)
_local: tuple[float, Report | None] | None = None


def backpressure_forget() -> None:
    """Drop this process's copy of the reading and its CPU baseline (tests: the next call reads
    Redis, and the next measurement starts a new CPU average)."""
    global _local, _local_cpu_sample
    with _local_lock:
        _local = None
        _local_cpu_sample = None


def _local_report(client: redis.Redis | None) -> Report | None:
    global _local
    held = _local
    if held is not None and time.monotonic() - held[0] < settings.BACKPRESSURE_LOCAL_SECONDS:
        return held[1]
    try:
        report: Report | None = backpressure_report(client)
    except (redis.RedisError, OSError) as exc:
        log.warning("backpressure unknown (Redis unreadable), treated as LOW: %s", exc)
        report = None
    with _local_lock:
        _local = (time.monotonic(), report)
    return report


def current_decision(client: redis.Redis | None = None) -> Decision | None:
    """The level and what set it, from this process's copy of the reading (at most
    ``BACKPRESSURE_LOCAL_SECONDS`` old); None when Redis cannot be read (see the module's doc)."""
    report = _local_report(client)
    return None if report is None else report.decision()


def current_level(client: redis.Redis | None = None) -> Level:
    """The farm's backpressure level; LOW when it cannot be read. Never raises."""
    decision = current_decision(client)
    return Level.LOW if decision is None else decision.level


def backpressure_guard(client: redis.Redis | None = None) -> None:
    """Refuse compute-on-demand at CRITICAL: 503 ``backpressure`` with Retry-After. Reads of
    stored values must not call it: they keep being served."""
    from signalsvc.api.errors import ApiError

    decision = current_decision(client)
    if decision is None or decision.level < Level.CRITICAL:
        return
    retry_after = settings.BACKPRESSURE_RETRY_AFTER_SECONDS
    raise ApiError(
        status_code=503,
        code="backpressure",
        message=(
            f"the worker farm is overloaded (backpressure CRITICAL: {', '.join(decision.set_by)}); "
            f"computations on demand are refused for now, stored values are still served; "
            f"retry in {retry_after} s"
        ),
        headers={"Retry-After": str(retry_after)},
    )


# -- the ops endpoint ----------------------------------------------------------------------------------


def _iso(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.UTC).isoformat()


def _limit(value: float) -> float | None:
    return None if value == float("inf") else value


def _queue_body(depth: QueueDepth) -> dict:
    return {
        "queue": depth.queue,
        "shard": shard_of_queue(depth.queue),
        "ready": depth.ready,
        "unacked": depth.unacked,
        "total": depth.total,
        "oldest_age": round(depth.oldest_age, 3),
    }


def backpressure_status(client: redis.Redis | None = None) -> dict:
    """The body of ``GET /api/v2/ops/backpressure``: the shared reading, its level and why."""
    report = backpressure_report(client)
    thresholds = backpressure_thresholds()
    decision = report.decision(thresholds)
    deepest = report.deepest_shard()
    queues = sorted(report.queues.values(), key=lambda d: (-d.total, d.queue))
    return {
        "level": decision.level.name,
        "level_value": int(decision.level),
        "set_by": list(decision.set_by),
        "measured_at": _iso(report.measured_at),
        "signals": {
            name: {
                "value": report.signals[name],
                "unit": UNITS[name],
                "level": decision.levels[name].name,
                "thresholds": {
                    "medium": _limit(limits.medium),
                    "high": _limit(limits.high),
                    "critical": _limit(limits.critical),
                },
            }
            for name, limits in thresholds.items()
        },
        "depth": {
            "total": sum(d.total for d in queues),
            "ready": sum(d.ready for d in queues),
            "unacked": sum(d.unacked for d in queues),
            "deepest_shard": None if deepest is None else _queue_body(deepest),
            "queues": [_queue_body(d) for d in queues],
        },
        "oldest_age": round(report.signals["oldest_age"] or 0.0, 3),
        "latency": {"window_seconds": settings.BACKPRESSURE_LATENCY_WINDOW_SECONDS, **asdict(report.latency)},
        "cpu_percent": report.signals["cpu"],
        "memory_percent": report.signals["memory"],
        "cadence_factor": cadence_factor(decision.level),
        "stream_interval": stream_interval(decision.level),
    }

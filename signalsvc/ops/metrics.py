"""Prometheus metrics of this process, and the per-minute API aggregates kept in Redis until the
flush task folds them into ``signal_api_metrics``."""

from __future__ import annotations

import atexit
import datetime as dt
import logging
import multiprocessing.util
import os
import threading
import time

import numpy as np
import redis
from django.conf import settings
from prometheus_client import Counter, Histogram

from signalsvc.redis_clients import redis_client as shared_redis_client

log = logging.getLogger(__name__)

REQUESTS = Counter("signal_http_requests_total", "HTTP requests", ["method", "endpoint", "status"])
LATENCY = Histogram(
    "signal_http_request_seconds",
    "HTTP request latency",
    ["endpoint"],
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)

_PREFIX = "apimetrics:"


def redis_client() -> redis.Redis:
    return shared_redis_client(decode_responses=True, socket_timeout=1)


class _RequestBuffer:
    """This process's per-minute API aggregates, written to Redis in one pipeline a second by a
    background thread rather than one round trip per request (a request's Redis budget goes to
    its rate limit and its data). Aggregates that Redis refuses are kept for the next write. A
    process killed outright loses at most its last second of counts; SIGTERM writes them out."""

    def __init__(self, interval: float):
        self.interval = interval
        self._lock = threading.Lock()
        self._pending: dict[str, list] = {}
        self._pid: int | None = None

    def add(self, ident: str, status: int, milliseconds: float) -> None:
        with self._lock:
            if self._pid != os.getpid():  # first use in this process (the server forks workers)
                self._pid = os.getpid()
                self._pending = {}
                threading.Thread(target=self._run, name="api-metrics", daemon=True).start()
                atexit.register(self.flush)
                # granian's workers are forked multiprocessing children: they end through
                # multiprocessing's exit handlers and os._exit, which skip atexit.
                multiprocessing.util.Finalize(None, self.flush, exitpriority=10)
            entry = self._pending.get(ident)
            if entry is None:
                entry = self._pending[ident] = [0, 0, 0, []]
            entry[0] += 1
            entry[1] += status >= 400
            entry[2] += status >= 500
            entry[3].append(f"{milliseconds:.3f}")

    def discard(self) -> None:
        with self._lock:
            self._pending = {}

    def _run(self) -> None:
        while True:
            time.sleep(self.interval)
            self.flush()

    def flush(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, {}
        if not pending:
            return
        try:
            pipe = redis_client().pipeline(transaction=False)
            pipe.sadd(_PREFIX + "open", *pending)
            for ident, (count, errors, server_errors, latencies) in pending.items():
                pipe.hincrby(_PREFIX + "c:" + ident, "count", count)
                if errors:
                    pipe.hincrby(_PREFIX + "c:" + ident, "errors", errors)
                if server_errors:
                    pipe.hincrby(_PREFIX + "c:" + ident, "server_errors", server_errors)
                pipe.rpush(_PREFIX + "l:" + ident, *latencies)
                pipe.expire(_PREFIX + "c:" + ident, 86400)
                pipe.expire(_PREFIX + "l:" + ident, 86400)
            pipe.execute()
        except redis.RedisError as exc:
            log.warning("api metrics not written yet (kept for the next attempt): %s", exc)
            with self._lock:
                for ident, (count, errors, server_errors, latencies) in pending.items():
                    entry = self._pending.setdefault(ident, [0, 0, 0, []])
                    entry[0] += count
                    entry[1] += errors
                    entry[2] += server_errors
                    entry[3][:0] = latencies


_BUFFER = _RequestBuffer(settings.API_METRICS_FLUSH_SECONDS)


def api_metrics_buffer_discard() -> None:
    """Forget this process's buffered aggregates (tests: each starts with empty caches)."""
    _BUFFER.discard()


def api_metrics_buffer_flush() -> None:
    """Write this process's buffered request aggregates now (a process about to exit)."""
    _BUFFER.flush()


def api_request_record(
    *, api_key: str, endpoint: str, method: str, status: int, seconds: float, now: dt.datetime
):
    """Count one request into its (minute, key, endpoint, method) aggregate: a counter hash and a
    latency list in Redis, written by this process's buffer within API_METRICS_FLUSH_SECONDS."""
    minute = now.replace(second=0, microsecond=0).isoformat()
    _BUFFER.add(f"{minute}|{api_key}|{method}|{endpoint}", status, seconds * 1000)


def request_record(*, method: str, endpoint: str, status: int, seconds: float, api_key: str) -> None:
    """One answered API request: Prometheus' request counter and latency histogram, and its
    per-minute aggregate (the middleware and the fast lane both record through here)."""
    REQUESTS.labels(method, endpoint, str(status)).inc()
    LATENCY.labels(endpoint).observe(seconds)
    api_request_record(
        api_key=api_key,
        endpoint=endpoint,
        method=method,
        status=status,
        seconds=seconds,
        now=dt.datetime.now(dt.UTC),
    )


def api_metrics_flush(*, now: dt.datetime, include_current: bool = False) -> int:
    """Fold finished minutes from Redis into signal_api_metrics (upsert: a re-run is harmless)."""
    from signalsvc.ops.models import ApiMetric

    _BUFFER.flush()  # this process's own counts first
    client = redis_client()
    # A minute is finished once every process's buffer has written it out.
    settled = now - dt.timedelta(seconds=2 * settings.API_METRICS_FLUSH_SECONDS + 1)
    current = settled.replace(second=0, microsecond=0).isoformat()
    flushed = 0
    for ident in client.smembers(_PREFIX + "open"):
        minute, api_key, method, endpoint = ident.split("|", 3)
        if minute >= current and not include_current:
            continue
        counts = client.hgetall(_PREFIX + "c:" + ident)
        latencies = np.array([float(x) for x in client.lrange(_PREFIX + "l:" + ident, 0, -1)])
        p50, p95, p99 = np.percentile(latencies, [50, 95, 99]) if latencies.size else (None, None, None)
        ApiMetric.objects.update_or_create(
            minute=dt.datetime.fromisoformat(minute),
            api_key=api_key,
            endpoint=endpoint,
            method=method,
            defaults={
                "count": int(counts.get("count", 0)),
                "errors": int(counts.get("errors", 0)),
                "server_errors": int(counts.get("server_errors", 0)),
                "latency_p50_ms": None if p50 is None else float(p50),
                "latency_p95_ms": None if p95 is None else float(p95),
                "latency_p99_ms": None if p99 is None else float(p99),
                "latency_max_ms": float(latencies.max()) if latencies.size else None,
            },
        )
        if minute < current:
            pipe = client.pipeline()
            pipe.srem(_PREFIX + "open", ident)
            pipe.delete(_PREFIX + "c:" + ident, _PREFIX + "l:" + ident)
            pipe.execute()
        flushed += 1
    return flushed

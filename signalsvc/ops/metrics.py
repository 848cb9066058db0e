"""Prometheus metrics of this process, and the per-minute API aggregates kept in Redis until the
flush task folds them into ``signal_api_metrics``."""

from __future__ import annotations

import datetime as dt
import logging

import numpy as np
import redis
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


def api_request_record(
    *, api_key: str, endpoint: str, method: str, status: int, seconds: float, now: dt.datetime
):
    """One pipelined Redis round trip per request: a counter hash and a latency list per
    (minute, key, endpoint, method). Metrics must never fail a request, so Redis errors are logged."""
    minute = now.replace(second=0, microsecond=0).isoformat()
    ident = f"{minute}|{api_key}|{method}|{endpoint}"
    try:
        pipe = redis_client().pipeline(transaction=False)
        pipe.sadd(_PREFIX + "open", ident)
        pipe.hincrby(_PREFIX + "c:" + ident, "count", 1)
        if status >= 400:
            pipe.hincrby(_PREFIX + "c:" + ident, "errors", 1)
        if status >= 500:
            pipe.hincrby(_PREFIX + "c:" + ident, "server_errors", 1)
        pipe.rpush(_PREFIX + "l:" + ident, f"{seconds * 1000:.3f}")
        pipe.expire(_PREFIX + "c:" + ident, 86400)
        pipe.expire(_PREFIX + "l:" + ident, 86400)
        pipe.execute()
    except redis.RedisError as exc:
        log.warning("api metrics not recorded: %s", exc)


def api_metrics_flush(*, now: dt.datetime, include_current: bool = False) -> int:
    """Fold finished minutes from Redis into signal_api_metrics (upsert: a re-run is harmless)."""
    from signalsvc.ops.models import ApiMetric

    client = redis_client()
    current = now.replace(second=0, microsecond=0).isoformat()
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

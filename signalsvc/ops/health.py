"""Readiness checks of the backing services (SPEC §14: readiness fails while a dependency is down)."""

from __future__ import annotations

import time

import redis
from django.conf import settings
from django.db import connection
from kombu import Connection


def _timed(check) -> dict:
    started = time.perf_counter()
    try:
        check()
    except Exception as exc:  # any failure of the dependency means "not ready"; say which
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:300]}
    return {"ok": True, "latency_ms": round((time.perf_counter() - started) * 1000, 2)}


def _postgres() -> None:
    with connection.cursor() as cur:
        cur.execute("SELECT 1")


def _redis() -> None:
    redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2).ping()


def _broker() -> None:
    with Connection(settings.CELERY_BROKER_URL, connect_timeout=2) as conn:
        conn.ensure_connection(max_retries=1, timeout=2)


def readiness() -> dict:
    checks = {"postgres": _timed(_postgres), "redis": _timed(_redis), "broker": _timed(_broker)}
    if not checks["postgres"]["ok"]:
        connection.close()  # reconnect on the next check rather than reuse a dead socket
    return {"ready": all(c["ok"] for c in checks.values()), "checks": checks}

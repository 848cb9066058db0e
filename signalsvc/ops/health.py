"""Readiness checks of the backing services (SPEC §14: readiness fails while a dependency is down)."""

from __future__ import annotations

import datetime as dt
import time

import redis
from django.conf import settings
from django.db import connection
from kombu import Connection
from prometheus_client import Gauge

from signalsvc.core.calendar import get_calendar

CALENDAR_WARNING_DAYS = 30
HOLIDAYS_KNOWN_DAYS = Gauge(
    "signal_calendar_holidays_known_days",
    "Days until the market calendar's curated holiday list (plus MARKET_EXTRA_HOLIDAYS) ends",
    # Every process computes the same figure; under the REST server's multiprocess metrics report one.
    multiprocess_mode="mostrecent",
)


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


def calendar_status(today: dt.date | None = None) -> dict:
    """How far the market calendar's holidays are known. Not a readiness check (sessions are still
    computed after that date, every weekday counting as one), but past it the sessions are wrong on
    exchange holidays: a warning from ``CALENDAR_WARNING_DAYS`` before, and a Prometheus gauge."""
    today = today or dt.datetime.now(dt.UTC).date()
    calendar = get_calendar(settings.MARKET_CALENDAR, settings.MARKET_EXTRA_HOLIDAYS)
    status: dict = {"name": calendar.name, "extra_holidays": len(calendar.extra_holidays)}
    known_until = calendar.holidays_known_until
    if known_until is None:  # a calendar without holidays (NSE-DEMO)
        return status
    if calendar.extra_holidays:  # listed holidays cover their year, as the library's list does
        known_until = max(known_until, dt.date(max(calendar.extra_holidays).year, 12, 31))
    days = (known_until - today).days
    HOLIDAYS_KNOWN_DAYS.set(days)
    status["holidays_known_until"] = known_until.isoformat()
    if days < CALENDAR_WARNING_DAYS:
        status["warning"] = (
            f"exchange holidays are known until {known_until.isoformat()} only: upgrade "
            "pandas_market_calendars or list the coming holidays in MARKET_EXTRA_HOLIDAYS"
        )
    return status

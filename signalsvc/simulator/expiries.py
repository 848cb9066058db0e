"""NSE-like expiry calendar for the demo market (pure: standard library only).

Conventions:

- Every contract expires at 15:30 Asia/Kolkata on its expiry date; it is live while ``now`` is
  strictly before that instant and rolls off at it.
- Weekly expiries are Tuesdays (NSE's weekly index expiry day since September 2025); the monthly
  expiry is the last Tuesday of the month.
- Exchange holidays are ignored: the real exchange moves an expiry that falls on a holiday to the
  previous trading day, the demo market does not.
- Time to expiry is ACT/365 calendar time: ``seconds / (365 * 86400)``.
"""

from __future__ import annotations

import calendar
import datetime as dt
from zoneinfo import ZoneInfo

IST = ZoneInfo("Asia/Kolkata")
UTC = dt.UTC
EXPIRY_TIME = dt.time(15, 30)
SECONDS_PER_YEAR = 365 * 86400
TUESDAY = 1  # date.weekday()


def require_aware(value: dt.datetime, name: str) -> dt.datetime:
    """Return ``value`` in UTC; raise ValueError for a naive datetime."""
    if not isinstance(value, dt.datetime):
        raise TypeError(f"{name} must be a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got naive {value.isoformat()}")
    return value.astimezone(UTC)


def expiry_datetime(expiry: dt.date) -> dt.datetime:
    """The expiry instant (15:30 Asia/Kolkata on ``expiry``) as an aware UTC datetime."""
    return dt.datetime.combine(expiry, EXPIRY_TIME, tzinfo=IST).astimezone(UTC)


def year_fraction(ts: dt.datetime, expiry: dt.date) -> float:
    """ACT/365 time in years from ``ts`` (aware) to the expiry instant; negative once expired."""
    seconds = (expiry_datetime(expiry) - require_aware(ts, "ts")).total_seconds()
    return seconds / SECONDS_PER_YEAR


def last_tuesday(year: int, month: int) -> dt.date:
    """The monthly expiry date of ``year``-``month`` (its last Tuesday)."""
    last_day = calendar.monthrange(year, month)[1]
    day = dt.date(year, month, last_day)
    return day - dt.timedelta(days=(day.weekday() - TUESDAY) % 7)


def is_monthly_expiry(day: dt.date) -> bool:
    """True when ``day`` is the last Tuesday of its month."""
    return day.weekday() == TUESDAY and (day + dt.timedelta(days=7)).month != day.month


def upcoming_weekly_expiries(now: dt.datetime, count: int) -> list[dt.date]:
    """The next ``count`` Tuesdays whose 15:30 IST expiry instant is after ``now``."""
    now = require_aware(now, "now")
    day = now.astimezone(IST).date()
    day += dt.timedelta(days=(TUESDAY - day.weekday()) % 7)
    out: list[dt.date] = []
    while len(out) < count:
        if expiry_datetime(day) > now:
            out.append(day)
        day += dt.timedelta(days=7)
    return out


def upcoming_monthly_expiries(now: dt.datetime, count: int, *, after: dt.date | None = None) -> list[dt.date]:
    """The next ``count`` monthly expiries that are live at ``now`` and later than ``after``."""
    now = require_aware(now, "now")
    today = now.astimezone(IST).date()
    year, month = today.year, today.month
    out: list[dt.date] = []
    while len(out) < count:
        day = last_tuesday(year, month)
        if expiry_datetime(day) > now and (after is None or day > after):
            out.append(day)
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return out


def option_expiries(now: dt.datetime, *, weeklies: int, monthlies: int) -> list[dt.date]:
    """Listed option expiries: the next ``weeklies`` Tuesdays plus the first ``monthlies`` monthly
    expiries after the last of them (after ``now`` when there are no weeklies), sorted.

    NIFTY (2 weeklies, 2 monthlies) therefore always has four expiries; when the current month's
    monthly is one of the two weeklies, the next two months' monthlies are the third and fourth.
    """
    weekly = upcoming_weekly_expiries(now, weeklies)
    monthly = upcoming_monthly_expiries(now, monthlies, after=weekly[-1] if weekly else None)
    return sorted(set(weekly) | set(monthly))


def future_expiries(now: dt.datetime, count: int) -> list[dt.date]:
    """Listed futures: the next ``count`` monthly expiries."""
    return upcoming_monthly_expiries(now, count)

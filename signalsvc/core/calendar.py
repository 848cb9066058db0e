"""Market calendars: trading sessions as aware UTC datetimes (SPEC §5, §8).

Pure code (no Django): the caller passes the calendar name from settings, e.g.
``get_calendar(settings.MARKET_CALENDAR)``.

Calendars
---------
``NSE``
    Real NSE sessions from ``pandas_market_calendars``' "NSE" calendar: regular hours
    09:15-15:30 Asia/Kolkata, exchange holidays, and the special sessions the library knows
    (Muhurat evening sessions such as 2024-11-01 18:00-19:00, the 2025-10-21 13:45-14:45 session,
    the 2021-02-24 session extended to 17:00). The library's curated holidays end with
    ``holidays_known_until`` (2026-12-31 for pandas_market_calendars 5.5); after that date every
    weekday is a regular session until the library is upgraded or the holidays are given as
    ``extra_holidays`` (setting ``MARKET_EXTRA_HOLIDAYS``); readiness reports the date. An intraday interruption (2021-02-24, 11:40-15:45) is not a gap in the session: the
    session runs from open to close and simply has no bars during the halt.
``NSE-DEMO``
    The demo market is live at any hour of any day: every calendar day is one session from 00:00
    to 24:00 Asia/Kolkata (18:30 UTC the day before to 18:30 UTC), weekends and holidays
    included, so the simulator and the whole pipeline can be exercised at any time.

Conventions: a session contains ``ts`` when ``open <= ts < close``. Every ``datetime`` argument must
be timezone-aware (a naive one raises ``ValueError``); every returned datetime is aware UTC.
Sessions are computed one calendar year at a time and cached, so repeated calls are cheap.
"""

from __future__ import annotations

import bisect
import datetime as dt
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from zoneinfo import ZoneInfo

import numpy as np

__all__ = [
    "CALENDAR_NAMES",
    "MarketCalendar",
    "Session",
    "get_calendar",
]

UTC = dt.UTC
KOLKATA = ZoneInfo("Asia/Kolkata")
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=UTC)
_US = dt.timedelta(microseconds=1)
# Bounds for the backward / forward searches of previous_sessions and next_open.
_MIN_YEAR = 1970
_MAX_YEAR = 2200


@dataclass(frozen=True, slots=True)
class Session:
    """One trading session. ``date`` is the local (exchange) trading date; ``open``/``close``
    are aware UTC datetimes; the session covers ``open <= ts < close``."""

    date: dt.date
    open: dt.datetime
    close: dt.datetime

    @property
    def minutes(self) -> int:
        """Length of the session in whole minutes (375 for a regular NSE session)."""
        return (self.close - self.open) // dt.timedelta(minutes=1)

    def contains(self, ts: dt.datetime) -> bool:
        return self.open <= _require_aware(ts) < self.close


def _require_aware(ts: dt.datetime) -> dt.datetime:
    if not isinstance(ts, dt.datetime):
        raise TypeError(f"expected an aware datetime, got {type(ts).__name__}")
    if ts.tzinfo is None or ts.tzinfo.utcoffset(ts) is None:
        raise ValueError(f"naive datetime {ts.isoformat()} is not allowed: pass a timezone-aware datetime")
    return ts


def _require_date(value: dt.date, what: str) -> dt.date:
    # datetime is a subclass of date; a datetime here is almost certainly a caller mix-up.
    if isinstance(value, dt.datetime) or not isinstance(value, dt.date):
        raise TypeError(f"{what} must be a datetime.date, got {type(value).__name__}")
    return value


def _to_us(ts: dt.datetime) -> int:
    return (ts - _EPOCH) // _US


@dataclass(frozen=True)
class _YearTable:
    """All sessions of one calendar year, as objects and as sorted int64 epoch-microsecond arrays."""

    sessions: tuple[Session, ...]
    ordinals: list[int]  # date.toordinal() of each session, for bisect by date
    opens: np.ndarray  # int64 epoch microseconds (UTC)
    closes: np.ndarray

    @classmethod
    def build(cls, sessions: list[Session]) -> _YearTable:
        return cls(
            sessions=tuple(sessions),
            ordinals=[s.date.toordinal() for s in sessions],
            opens=np.array([_to_us(s.open) for s in sessions], dtype=np.int64),
            closes=np.array([_to_us(s.close) for s in sessions], dtype=np.int64),
        )


class MarketCalendar:
    """Trading sessions of one market. Use :func:`get_calendar` to obtain an instance.

    Attributes: ``name``; ``timezone`` (``ZoneInfo("Asia/Kolkata")``); ``session_minutes`` (length of
    a regular session in minutes: the largest custom timeframe); ``holidays_known_until`` (last date
    for which the holiday list is curated, ``None`` when the calendar has no holidays).
    """

    name: str
    timezone: ZoneInfo = KOLKATA
    session_minutes: int
    holidays_known_until: dt.date | None = None
    first_year: int = _MIN_YEAR
    extra_holidays: frozenset[dt.date] = frozenset()

    def __init__(self) -> None:
        self._years: dict[int, _YearTable] = {}
        self._lock = threading.Lock()

    # -- subclass hook --------------------------------------------------------------------
    def _build_year(self, year: int) -> list[Session]:
        raise NotImplementedError

    def _year(self, year: int) -> _YearTable:
        table = self._years.get(year)
        if table is None:
            with self._lock:
                table = self._years.get(year)
                if table is None:
                    sessions = [s for s in self._build_year(year) if s.date not in self.extra_holidays]
                    table = _YearTable.build(sessions)
                    self._years[year] = table
        return table

    # -- queries ---------------------------------------------------------------------------
    def sessions(self, start: dt.date, end: dt.date) -> list[Session]:
        """Sessions whose trading date is in ``[start, end]`` (inclusive), oldest first."""
        _require_date(start, "start")
        _require_date(end, "end")
        if start > end:
            return []
        out: list[Session] = []
        lo_ord, hi_ord = start.toordinal(), end.toordinal()
        for year in range(max(start.year, _MIN_YEAR), min(end.year, _MAX_YEAR) + 1):
            table = self._year(year)
            i = bisect.bisect_left(table.ordinals, lo_ord)
            j = bisect.bisect_right(table.ordinals, hi_ord)
            out.extend(table.sessions[i:j])
        return out

    def sessions_overlapping(self, start: dt.datetime, end: dt.datetime) -> list[Session]:
        """Sessions that overlap the half-open time range ``[start, end)``, oldest first."""
        _require_aware(start)
        _require_aware(end)
        if end <= start:
            return []
        # Trading dates are local dates; one day of slack keeps any session that opened on the
        # local day before ``start`` and is still running (a calendar with overnight sessions).
        first = (start.astimezone(self.timezone) - dt.timedelta(days=1)).date()
        last = end.astimezone(self.timezone).date()
        return [s for s in self.sessions(first, last) if s.open < end and s.close > start]

    def session_at(self, ts: dt.datetime) -> Session | None:
        """The session with ``open <= ts < close``, or ``None`` when the market is closed at ``ts``."""
        t = _to_us(_require_aware(ts))
        year = ts.astimezone(self.timezone).year
        for y in (year, year - 1):
            if not _MIN_YEAR <= y <= _MAX_YEAR:
                continue
            table = self._year(y)
            i = int(np.searchsorted(table.opens, t, side="right")) - 1
            if i >= 0 and t < table.closes[i]:
                return table.sessions[i]
        return None

    def is_open(self, ts: dt.datetime) -> bool:
        return self.session_at(ts) is not None

    def previous_sessions(
        self, ts: dt.datetime, count: int, *, include_current: bool = True
    ) -> list[Session]:
        """The ``count`` most recent sessions up to ``ts``, oldest first (for warm-up history).

        With ``include_current`` (default) a session counts when it has opened (``open <= ts``), so
        the session containing ``ts`` (or opening exactly at ``ts``) is the last element; without
        it only sessions that have closed (``close <= ts``) count. Fewer than ``count`` sessions are
        returned only when the calendar's history is exhausted.
        """
        t = _to_us(_require_aware(ts))
        if count < 0:
            raise ValueError(f"count must be >= 0, got {count}")
        if count == 0:
            return []
        chunks: list[tuple[Session, ...]] = []
        have = 0
        year = ts.astimezone(self.timezone).year + 1  # +1: cheap guard for sessions crossing a year end
        while have < count and year >= self.first_year:
            if year <= _MAX_YEAR:
                table = self._year(year)
                bound = table.opens if include_current else table.closes
                n = int(np.searchsorted(bound, t, side="right"))
                take = table.sessions[max(0, n - (count - have)) : n]
                chunks.append(take)
                have += len(take)
            year -= 1
        out: list[Session] = []
        for chunk in reversed(chunks):
            out.extend(chunk)
        return out

    def next_session(self, ts: dt.datetime) -> Session:
        """The first session that opens strictly after ``ts``."""
        t = _to_us(_require_aware(ts))
        year = max(ts.astimezone(self.timezone).year - 1, self.first_year)
        while year <= _MAX_YEAR:
            table = self._year(year)
            i = int(np.searchsorted(table.opens, t, side="right"))
            if i < len(table.sessions):
                return table.sessions[i]
            year += 1
        raise ValueError(f"no session after {ts.isoformat()} in calendar {self.name}")

    def next_open(self, ts: dt.datetime) -> dt.datetime:
        """Open (aware UTC) of the first session that opens strictly after ``ts``."""
        return self.next_session(ts).open

    def __repr__(self) -> str:
        return f"<MarketCalendar {self.name}>"


class _LibraryCalendar(MarketCalendar):
    """A calendar backed by pandas_market_calendars (holidays, special opens/closes)."""

    def __init__(self, name: str, library_name: str, timezone: ZoneInfo, first_year: int) -> None:
        super().__init__()
        # Imported lazily: pandas is heavy and only this calendar needs it.
        import pandas_market_calendars as mcal

        self.name = name
        self.first_year = first_year
        # The library reports the legacy alias "Asia/Calcutta"; we expose the canonical zone.
        self.timezone = timezone
        self._lib = mcal.get_calendar(library_name)
        regular_open = self._lib.regular_market_times["market_open"][-1][1]
        regular_close = self._lib.regular_market_times["market_close"][-1][1]
        self.session_minutes = (regular_close.hour * 60 + regular_close.minute) - (
            regular_open.hour * 60 + regular_open.minute
        )
        adhoc = list(self._lib.adhoc_holidays)
        self.holidays_known_until = dt.date(max(adhoc).year, 12, 31) if adhoc else None

    def _build_year(self, year: int) -> list[Session]:
        schedule = self._lib.schedule(start_date=f"{year}-01-01", end_date=f"{year}-12-31")
        if schedule.empty:
            return []
        dates = schedule.index.to_numpy(dtype="datetime64[D]").astype(np.int64)
        opens = schedule["market_open"].to_numpy(dtype="datetime64[us]").astype(np.int64)
        closes = schedule["market_close"].to_numpy(dtype="datetime64[us]").astype(np.int64)
        epoch_ordinal = dt.date(1970, 1, 1).toordinal()
        return [
            Session(
                date=dt.date.fromordinal(epoch_ordinal + int(d)),
                open=_EPOCH + dt.timedelta(microseconds=int(o)),
                close=_EPOCH + dt.timedelta(microseconds=int(c)),
            )
            for d, o, c in zip(dates, opens, closes, strict=True)
        ]


class _AllDayCalendar(MarketCalendar):
    """Every calendar day is one session from local midnight to the next local midnight."""

    def __init__(self, name: str, timezone: ZoneInfo) -> None:
        super().__init__()
        self.name = name
        self.timezone = timezone
        self.session_minutes = 24 * 60
        self.holidays_known_until = None

    def _build_year(self, year: int) -> list[Session]:
        day = dt.date(year, 1, 1)
        out = []
        while day.year == year:
            nxt = day + dt.timedelta(days=1)
            out.append(
                Session(
                    date=day,
                    open=dt.datetime.combine(day, dt.time(0), tzinfo=self.timezone).astimezone(UTC),
                    close=dt.datetime.combine(nxt, dt.time(0), tzinfo=self.timezone).astimezone(UTC),
                )
            )
            day = nxt
        return out


_FACTORIES = {
    "NSE": lambda: _LibraryCalendar("NSE", "NSE", KOLKATA, first_year=1996),
    "NSE-DEMO": lambda: _AllDayCalendar("NSE-DEMO", KOLKATA),
}
CALENDAR_NAMES = tuple(_FACTORIES)


def get_calendar(name: str, extra_holidays: Iterable[dt.date] = ()) -> MarketCalendar:
    """The shared calendar instance for ``name`` ("NSE" or "NSE-DEMO"); ``ValueError`` otherwise.

    ``extra_holidays``: trading dates to close on top of the library's list, for holidays announced
    after the installed library was released (its list ends at ``holidays_known_until``) and for
    unscheduled closures."""
    extra = frozenset(_require_date(d, "an extra holiday") for d in extra_holidays)
    return _get_calendar(name, extra)


@cache
def _get_calendar(name: str, extra_holidays: frozenset[dt.date]) -> MarketCalendar:
    try:
        factory = _FACTORIES[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown market calendar {name!r}; known: {', '.join(CALENDAR_NAMES)}") from None
    calendar = factory()
    calendar.extra_holidays = extra_holidays
    return calendar

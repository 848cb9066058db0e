"""Market calendars: real NSE sessions from pandas_market_calendars, and the all-day demo market."""

from __future__ import annotations

import datetime as dt
import itertools
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from signalsvc.core.calendar import CALENDAR_NAMES, MarketCalendar, Session, get_calendar

IST = ZoneInfo("Asia/Kolkata")
UTC = dt.UTC


@pytest.fixture(autouse=True)
def _clean_redis_and_caches():
    """Pure tests: override the suite-wide Redis/cache reset (no Redis, no Django needed)."""
    yield


def ist(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=IST)


@pytest.fixture(scope="module")
def nse() -> MarketCalendar:
    return get_calendar("NSE")


@pytest.fixture(scope="module")
def demo() -> MarketCalendar:
    return get_calendar("NSE-DEMO")


# -- lookup ------------------------------------------------------------------------------------


def test_known_calendar_names():
    assert CALENDAR_NAMES == ("NSE", "NSE-DEMO")


def test_get_calendar_returns_one_shared_instance():
    assert get_calendar("NSE") is get_calendar("NSE")


@pytest.mark.parametrize("name", ["nse", "BSE", "", "NSE "])
def test_unknown_calendar_lists_known_names(name):
    with pytest.raises(ValueError, match=r"unknown market calendar .*known: NSE, NSE-DEMO"):
        get_calendar(name)


# -- NSE ---------------------------------------------------------------------------------------


def test_nse_properties(nse):
    assert nse.timezone == ZoneInfo("Asia/Kolkata")
    assert nse.session_minutes == 375
    assert nse.holidays_known_until is not None
    assert nse.holidays_known_until >= dt.date(2026, 12, 31)


@pytest.mark.parametrize(
    "day",
    [
        dt.date(2025, 2, 26),  # Mahashivratri
        dt.date(2025, 3, 14),  # Holi
        dt.date(2025, 3, 31),  # Id-ul-Fitr
        dt.date(2025, 8, 15),  # Independence Day
        dt.date(2025, 10, 2),  # Gandhi Jayanti / Dussehra
        dt.date(2025, 12, 25),  # Christmas
        dt.date(2025, 3, 15),  # Saturday
        dt.date(2025, 3, 16),  # Sunday
    ],
)
def test_nse_closed_days_have_no_session(nse, day):
    assert nse.sessions(day, day) == []
    assert not nse.is_open(dt.datetime.combine(day, dt.time(11, 0), tzinfo=IST))


def test_nse_regular_session_times(nse):
    (session,) = nse.sessions(dt.date(2025, 3, 13), dt.date(2025, 3, 13))
    assert session == Session(
        date=dt.date(2025, 3, 13),
        open=dt.datetime(2025, 3, 13, 3, 45, tzinfo=UTC),
        close=dt.datetime(2025, 3, 13, 10, 0, tzinfo=UTC),
    )
    assert session.open.tzinfo is UTC
    assert session.open.astimezone(IST).time() == dt.time(9, 15)
    assert session.close.astimezone(IST).time() == dt.time(15, 30)
    assert session.minutes == 375


def test_nse_week_around_holi(nse):
    days = [s.date for s in nse.sessions(dt.date(2025, 3, 10), dt.date(2025, 3, 18))]
    assert days == [dt.date(2025, 3, d) for d in (10, 11, 12, 13, 17, 18)]


def test_nse_year_has_the_library_session_count(nse):
    assert len(nse.sessions(dt.date(2025, 1, 1), dt.date(2025, 12, 31))) == 248


def test_nse_knows_muhurat_trading_sessions(nse):
    (muhurat_2024,) = nse.sessions(dt.date(2024, 11, 1), dt.date(2024, 11, 1))
    assert (muhurat_2024.open.astimezone(IST).time(), muhurat_2024.close.astimezone(IST).time()) == (
        dt.time(18, 0),
        dt.time(19, 0),
    )
    assert muhurat_2024.minutes == 60
    (muhurat_2025,) = nse.sessions(dt.date(2025, 10, 21), dt.date(2025, 10, 21))
    assert muhurat_2025.open.astimezone(IST).time() == dt.time(13, 45)
    assert muhurat_2025.close.astimezone(IST).time() == dt.time(14, 45)


def test_nse_extended_session_of_2021_02_24(nse):
    (session,) = nse.sessions(dt.date(2021, 2, 24), dt.date(2021, 2, 24))
    assert session.close.astimezone(IST).time() == dt.time(17, 0)
    assert nse.is_open(ist(2021, 2, 24, 16, 30))


def test_nse_sessions_span_a_year_end(nse):
    days = [s.date for s in nse.sessions(dt.date(2024, 12, 30), dt.date(2025, 1, 2))]
    assert days == [dt.date(2024, 12, 30), dt.date(2024, 12, 31), dt.date(2025, 1, 1), dt.date(2025, 1, 2)]


def test_sessions_empty_when_start_after_end(nse):
    assert nse.sessions(dt.date(2025, 3, 18), dt.date(2025, 3, 10)) == []


def test_sessions_rejects_datetimes_for_dates(nse):
    with pytest.raises(TypeError, match=r"start must be a datetime.date"):
        nse.sessions(ist(2025, 3, 10), dt.date(2025, 3, 12))


def test_sessions_are_built_once_per_year_and_reused(nse, monkeypatch):
    calls = []
    fresh = type(nse)("NSE", "NSE", IST, first_year=1996)
    original = fresh._build_year
    monkeypatch.setattr(fresh, "_build_year", lambda year: calls.append(year) or original(year))
    first = fresh.sessions(dt.date(2025, 1, 1), dt.date(2025, 12, 31))
    for _ in range(50):
        assert fresh.sessions(dt.date(2025, 1, 1), dt.date(2025, 12, 31)) == first
        fresh.session_at(ist(2025, 6, 2, 10, 0))
    assert calls == [2025]


@pytest.mark.parametrize(
    ("when", "expected_date"),
    [
        (ist(2025, 3, 13, 9, 15), dt.date(2025, 3, 13)),  # the open is inside
        (ist(2025, 3, 13, 12, 0), dt.date(2025, 3, 13)),
        (dt.datetime(2025, 3, 13, 15, 29, 59, 999999, tzinfo=IST), dt.date(2025, 3, 13)),
        (dt.datetime(2025, 3, 13, 6, 0, tzinfo=UTC), dt.date(2025, 3, 13)),  # any zone is fine
        (ist(2025, 3, 13, 15, 30), None),  # the close is outside
        (dt.datetime(2025, 3, 13, 9, 14, 59, tzinfo=IST), None),
        (ist(2025, 3, 14, 11, 0), None),  # Holi
        (ist(2025, 3, 15, 11, 0), None),  # Saturday
        (ist(2024, 11, 1, 18, 30), dt.date(2024, 11, 1)),  # Muhurat
        (ist(2024, 11, 1, 11, 0), None),
    ],
)
def test_nse_session_at(nse, when, expected_date):
    session = nse.session_at(when)
    assert (session.date if session else None) == expected_date
    assert nse.is_open(when) is (expected_date is not None)


@pytest.mark.parametrize(
    ("when", "expected"),
    [
        (ist(2025, 3, 13, 16, 0), ist(2025, 3, 17, 9, 15)),  # Thursday evening, Holi Friday, weekend
        (ist(2025, 3, 13, 9, 15), ist(2025, 3, 17, 9, 15)),  # strictly after: not the session opening now
        (ist(2025, 3, 13, 9, 14), ist(2025, 3, 13, 9, 15)),
        (ist(2024, 12, 31, 15, 30), ist(2025, 1, 1, 9, 15)),  # across the year end
        (ist(2024, 10, 31, 16, 0), ist(2024, 11, 1, 18, 0)),  # Muhurat evening session
    ],
)
def test_nse_next_open(nse, when, expected):
    assert nse.next_open(when) == expected
    assert nse.next_open(when).tzinfo is UTC


def test_previous_sessions_include_the_current_session(nse):
    sessions = nse.previous_sessions(ist(2025, 3, 17, 10, 0), 3)
    assert [s.date for s in sessions] == [dt.date(2025, 3, 12), dt.date(2025, 3, 13), dt.date(2025, 3, 17)]


def test_previous_sessions_of_closed_sessions_only(nse):
    sessions = nse.previous_sessions(ist(2025, 3, 17, 10, 0), 3, include_current=False)
    assert [s.date for s in sessions] == [dt.date(2025, 3, 11), dt.date(2025, 3, 12), dt.date(2025, 3, 13)]


def test_previous_sessions_cross_years(nse):
    sessions = nse.previous_sessions(ist(2025, 1, 2, 12, 0), 300)
    assert len(sessions) == 300
    assert sessions[-1].date == dt.date(2025, 1, 2)
    assert all(a.close <= b.open for a, b in itertools.pairwise(sessions))
    assert sessions == nse.sessions(sessions[0].date, dt.date(2025, 1, 2))


def test_previous_sessions_zero_and_negative(nse):
    assert nse.previous_sessions(ist(2025, 3, 17, 10, 0), 0) == []
    with pytest.raises(ValueError, match="count must be >= 0"):
        nse.previous_sessions(ist(2025, 3, 17, 10, 0), -1)


def test_sessions_overlapping_a_time_range(nse):
    sessions = nse.sessions_overlapping(ist(2025, 3, 12, 15, 0), ist(2025, 3, 17, 9, 15))
    assert [s.date for s in sessions] == [dt.date(2025, 3, 12), dt.date(2025, 3, 13)]


@pytest.mark.parametrize(
    "call",
    [
        lambda c, t: c.session_at(t),
        lambda c, t: c.is_open(t),
        lambda c, t: c.next_open(t),
        lambda c, t: c.previous_sessions(t, 2),
        lambda c, t: c.sessions_overlapping(t, t + dt.timedelta(days=1)),
    ],
)
@pytest.mark.parametrize("name", ["NSE", "NSE-DEMO"])
def test_naive_datetimes_are_rejected(call, name):
    naive = dt.datetime(2025, 3, 13, 10, 0)
    with pytest.raises(ValueError, match="naive datetime"):
        call(get_calendar(name), naive)


@settings(max_examples=200, deadline=None)
@given(
    st.datetimes(
        min_value=dt.datetime(2019, 1, 1), max_value=dt.datetime(2026, 12, 31), timezones=st.just(UTC)
    )
)
def test_nse_session_at_agrees_with_the_session_list(ts):
    nse = get_calendar("NSE")
    local_day = ts.astimezone(IST).date()
    around = nse.sessions(local_day - dt.timedelta(days=1), local_day + dt.timedelta(days=1))
    expected = [s for s in around if s.open <= ts < s.close]
    assert nse.session_at(ts) == (expected[0] if expected else None)
    nxt = nse.next_open(ts)
    assert nxt > ts
    assert not any(ts < s.open < nxt for s in nse.sessions(local_day, nxt.astimezone(IST).date()))


# -- demo --------------------------------------------------------------------------------------


def test_demo_properties(demo):
    assert demo.timezone == ZoneInfo("Asia/Kolkata")
    assert demo.session_minutes == 1440
    assert demo.holidays_known_until is None


def test_demo_every_day_is_a_session_weekends_and_holidays_included(demo):
    days = [s.date for s in demo.sessions(dt.date(2025, 3, 10), dt.date(2025, 3, 18))]
    assert days == [dt.date(2025, 3, d) for d in range(10, 19)]
    assert len(demo.sessions(dt.date(2024, 1, 1), dt.date(2024, 12, 31))) == 366


def test_demo_session_is_local_midnight_to_midnight(demo):
    (session,) = demo.sessions(dt.date(2025, 3, 15), dt.date(2025, 3, 15))
    assert session.open == dt.datetime(2025, 3, 14, 18, 30, tzinfo=UTC)
    assert session.close == dt.datetime(2025, 3, 15, 18, 30, tzinfo=UTC)
    assert session.minutes == 1440


def test_demo_next_open_is_the_next_local_midnight(demo):
    assert demo.next_open(ist(2025, 3, 15, 23, 59)) == ist(2025, 3, 16, 0, 0)
    assert demo.next_open(ist(2025, 3, 15, 0, 0)) == ist(2025, 3, 16, 0, 0)


def test_demo_previous_sessions(demo):
    sessions = demo.previous_sessions(ist(2025, 1, 1, 0, 0), 2)
    assert [s.date for s in sessions] == [dt.date(2024, 12, 31), dt.date(2025, 1, 1)]


@settings(max_examples=200, deadline=None)
@given(
    st.datetimes(min_value=dt.datetime(2000, 1, 1), max_value=dt.datetime(2100, 1, 1), timezones=st.just(UTC))
)
def test_demo_is_open_at_any_instant(ts):
    demo = get_calendar("NSE-DEMO")
    session = demo.session_at(ts)
    assert session is not None
    assert demo.is_open(ts)
    assert session.date == ts.astimezone(IST).date()
    assert session.open <= ts < session.close


# -- extra holidays ----------------------------------------------------------------------------


def test_extra_holidays_close_those_dates_on_top_of_the_library(nse):
    # 2027 is past the library's list: every weekday is a session until the holidays are given.
    republic_day, holi = dt.date(2027, 1, 26), dt.date(2027, 3, 22)
    patched = get_calendar("NSE", [holi, republic_day])

    assert republic_day in {s.date for s in nse.sessions(dt.date(2027, 1, 25), dt.date(2027, 1, 27))}
    assert [s.date for s in patched.sessions(dt.date(2027, 1, 25), dt.date(2027, 1, 27))] == [
        dt.date(2027, 1, 25),
        dt.date(2027, 1, 27),
    ]
    assert patched.session_at(ist(2027, 3, 22, 10, 0)) is None
    assert patched.next_open(ist(2027, 3, 19, 16, 0)) == ist(2027, 3, 23, 9, 15)
    assert get_calendar("NSE", (republic_day, holi)) is patched  # one shared instance per list
    assert get_calendar("NSE") is nse


def test_extra_holidays_must_be_dates():
    with pytest.raises(TypeError, match="extra holiday"):
        get_calendar("NSE", [dt.datetime(2027, 1, 26)])

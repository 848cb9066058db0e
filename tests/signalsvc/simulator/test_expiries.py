from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from signalsvc.simulator import (
    expiry_datetime,
    future_expiries,
    is_monthly_expiry,
    last_tuesday,
    option_expiries,
    year_fraction,
)
from tests.signalsvc.simulator.reference import KOLKATA

D = dt.date


def ist(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=KOLKATA)


@pytest.mark.parametrize(
    ("year", "month", "expected"),
    [
        (2025, 10, D(2025, 10, 28)),
        (2025, 11, D(2025, 11, 25)),
        (2025, 12, D(2025, 12, 30)),
        (2026, 1, D(2026, 1, 27)),
        (2026, 2, D(2026, 2, 24)),
        (2026, 3, D(2026, 3, 31)),
    ],
)
def test_last_tuesday(year, month, expected):
    assert last_tuesday(year, month) == expected
    assert is_monthly_expiry(expected)
    assert not is_monthly_expiry(expected - dt.timedelta(days=7))


def test_expiry_instant_is_1530_ist_in_utc():
    instant = expiry_datetime(D(2025, 10, 7))
    assert instant == dt.datetime(2025, 10, 7, 10, 0, tzinfo=dt.UTC)
    assert instant.utcoffset() == dt.timedelta(0)


def test_year_fraction_is_act_365_to_1530_ist():
    assert year_fraction(ist(2025, 10, 6, 15, 30), D(2025, 10, 7)) == pytest.approx(1 / 365, rel=1e-15)
    assert year_fraction(ist(2025, 10, 7, 15, 30), D(2025, 10, 7)) == 0.0


def test_year_fraction_rejects_naive_time():
    with pytest.raises(ValueError, match="timezone-aware"):
        year_fraction(dt.datetime(2025, 10, 6, 10, 0), D(2025, 10, 7))


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (ist(2025, 10, 6, 10, 0), [D(2025, 10, 7), D(2025, 10, 14), D(2025, 10, 28)]),
        (ist(2025, 10, 7, 15, 29, 59), [D(2025, 10, 7), D(2025, 10, 14), D(2025, 10, 28)]),
        (ist(2025, 10, 7, 15, 30), [D(2025, 10, 14), D(2025, 10, 21), D(2025, 10, 28)]),
        # the monthly is the second weekly: the next month's monthly is listed as the third
        (ist(2025, 10, 21, 16, 0), [D(2025, 10, 28), D(2025, 11, 4), D(2025, 11, 25)]),
        (ist(2025, 10, 25, 3, 0), [D(2025, 10, 28), D(2025, 11, 4), D(2025, 11, 25)]),
        (ist(2025, 10, 28, 15, 30), [D(2025, 11, 4), D(2025, 11, 11), D(2025, 11, 25)]),
        (ist(2025, 12, 28, 12, 0), [D(2025, 12, 30), D(2026, 1, 6), D(2026, 1, 27)]),
    ],
)
def test_nifty_expiries_two_weeklies_and_a_monthly(now, expected):
    assert option_expiries(now, weeklies=2, monthlies=1) == expected


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (ist(2025, 10, 6, 10, 0), [D(2025, 10, 28), D(2025, 11, 25), D(2025, 12, 30)]),
        (ist(2025, 10, 28, 15, 29), [D(2025, 10, 28), D(2025, 11, 25), D(2025, 12, 30)]),
        (ist(2025, 10, 28, 15, 30), [D(2025, 11, 25), D(2025, 12, 30), D(2026, 1, 27)]),
    ],
)
def test_banknifty_expiries_three_monthlies(now, expected):
    assert option_expiries(now, weeklies=0, monthlies=3) == expected
    assert future_expiries(now, 3) == expected


aware_times = st.datetimes(
    min_value=dt.datetime(2024, 1, 1), max_value=dt.datetime(2030, 12, 31), timezones=st.just(dt.UTC)
)


@settings(max_examples=300, deadline=None)
@given(now=aware_times)
def test_nifty_calendar_properties(now):
    expiries = option_expiries(now, weeklies=2, monthlies=1)
    assert len(expiries) == 3
    assert expiries == sorted(set(expiries))
    assert all(e.weekday() == 1 for e in expiries)
    assert all(expiry_datetime(e) > now for e in expiries)
    # the first is the very next live Tuesday, the second the one after it
    assert expiry_datetime(expiries[0]) - now <= dt.timedelta(days=7)
    assert expiries[1] - expiries[0] == dt.timedelta(days=7)
    assert is_monthly_expiry(expiries[2])


@settings(max_examples=300, deadline=None)
@given(now=aware_times)
def test_monthly_calendar_properties(now):
    expiries = option_expiries(now, weeklies=0, monthlies=3)
    assert len(expiries) == 3
    assert all(is_monthly_expiry(e) and expiry_datetime(e) > now for e in expiries)
    months = [(e.year * 12 + e.month) for e in expiries]
    assert months == list(range(months[0], months[0] + 3))
    assert expiry_datetime(expiries[0]) - now <= dt.timedelta(days=36)

"""The always-open demo calendar (NSE-DEMO): 1440-minute sessions from local midnight, which cross
UTC midnight (18:30 UTC)."""

from __future__ import annotations

import datetime as dt

import pytest

from signalsvc.core.calendar import get_calendar
from tests.timeframes.conftest import SPOT_KEY, put_bars, random_rows, refresh
from tests.timeframes.reference import reference_bars
from timeframes import selectors
from timeframes.core.grammar import parse_timeframe
from timeframes.models import Rollup

pytestmark = pytest.mark.django_db


@pytest.fixture
def demo(settings):
    settings.MARKET_CALENDAR = "NSE-DEMO"
    return get_calendar("NSE-DEMO")


def test_a_7_minute_demo_day(api, spot, demo):
    day = demo.sessions(dt.date(2025, 3, 15), dt.date(2025, 3, 15))[0]  # a Saturday
    put_bars(spot.id, random_rows([day], seed=50))

    body = api.get(
        "/api/v2/signals/historical/bars/" + SPOT_KEY,
        {"start_time": "2025-03-15T00:00:00", "end_time": "2025-03-16T00:00:00", "timeframe": "7m"},
    ).json()

    assert body["data_points"] == 206
    assert body["time_series"][0]["timestamp"] == "2025-03-14T18:30:00+00:00"  # local midnight
    assert body["time_series"][-1]["metadata"] == {"bucket_end": "2025-03-15T18:30:00+00:00", "bars": 5}


def test_the_whole_demo_day_is_a_valid_custom_timeframe(api, spot, demo):
    ok = api.get(
        "/api/v2/signals/historical/bars/" + SPOT_KEY,
        {"start_time": "2025-03-15", "end_time": "2025-03-16", "timeframe": "1440m"},
    )
    too_long = api.get(
        "/api/v2/signals/historical/bars/" + SPOT_KEY,
        {"start_time": "2025-03-15", "end_time": "2025-03-16", "timeframe": "1441m"},
    )

    assert (ok.status_code, ok.json()["timeframe"]) == (200, "24h")
    assert too_long.status_code == 400
    assert too_long.json()["error"]["details"]["max_minutes"] == 1440


def test_rollups_of_sessions_crossing_utc_midnight(spot, demo):
    sessions = demo.sessions(dt.date(2025, 3, 15), dt.date(2025, 3, 16))
    rows = random_rows(sessions, seed=51, keep=0.5)
    put_bars(spot.id, rows)

    refresh()

    for label in ("4h", "1d"):
        ref = reference_bars(rows, sessions, parse_timeframe(label).minutes)
        stored = list(
            Rollup.objects.filter(instrument=spot, timeframe=label)
            .order_by("bucket_start")
            .values_list("bucket_start", "close")
        )
        assert stored == [(r.start.to_pydatetime(), r.close) for r in ref.itertuples()], label


@pytest.mark.parametrize("name", ["NSE", "NSE-DEMO"])
def test_the_refresh_joins_sessions_by_local_day_on_both_calendars(settings, name):
    settings.MARKET_CALENDAR = name
    sessions = get_calendar(name).sessions(dt.date(2024, 10, 28), dt.date(2024, 11, 4))  # Muhurat on 11-01

    params, join = selectors.day_session_params(sessions)

    assert join == selectors.DAY_JOIN
    assert [d.astimezone(get_calendar(name).timezone).time() for d in params["s_days"]] == [dt.time(0)] * len(
        sessions
    )


def test_a_session_across_local_midnight_falls_back_to_the_range_join():
    from signalsvc.core.calendar import Session

    overnight = Session(
        date=dt.date(2025, 3, 17),
        open=dt.datetime(2025, 3, 17, 14, 0, tzinfo=dt.UTC),  # 19:30 IST
        close=dt.datetime(2025, 3, 17, 20, 0, tzinfo=dt.UTC),  # 01:30 IST the next day
    )

    _, join = selectors.day_session_params([overnight])

    assert join == selectors.RANGE_JOIN

"""Historical Greeks, ATM IV and moneyness responses are served from the cache until the
underlying's next chain computation, which makes the next request read the new rows."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from greeks.services import chain_compute
from signalsvc.marketdata.stream import ticks_ingest
from tests.conftest import DEMO_START

pytestmark = pytest.mark.django_db

NIFTY = "NSE@NIFTY@equity_spot"
RANGE = {"start_time": DEMO_START.isoformat(), "end_time": (DEMO_START + dt.timedelta(minutes=5)).isoformat()}


def _next_minute(market, redis_client, minute: int) -> None:
    ticks = []
    for second in range(0, 12, 2):
        ticks += market.step(DEMO_START + dt.timedelta(minutes=minute, seconds=second))
    ticks_ingest(redis_client, ticks, consumer_name="test")
    chain_compute(underlying_key=NIFTY, client=redis_client)


@pytest.fixture
def option_key(api, demo_market, redis_client):
    chain_compute(underlying_key=NIFTY, client=redis_client)
    body = api.get("/api/v2/signals/realtime/moneyness/NIFTY/greeks/ATM", {"include": "instruments"}).json()
    return body["instruments"][0]["instrument_key"]


@pytest.mark.parametrize(
    "path",
    [
        "/api/v2/signals/historical/greeks/{option}",
        "/api/v2/signals/historical/greeks/NSE@NIFTY@equity_spot",
        "/api/v2/signals/historical/moneyness/NIFTY/atm-iv/history",
        "/api/v2/signals/historical/moneyness/NIFTY/greeks/ATM",
    ],
)
def test_served_from_the_cache_until_the_next_chain(api, demo_market, redis_client, option_key, path):
    url = path.format(option=option_key)
    first = api.get(url, RANGE)
    with CaptureQueriesContext(connection) as queries:
        second = api.get(url, RANGE)

    assert first.status_code == second.status_code == 200
    assert second.content == first.content
    assert [
        q["sql"] for q in queries.captured_queries if "signal_" in q["sql"] or "greeks_" in q["sql"]
    ] == []
    assert first.json()["data_points"] == 1

    _next_minute(demo_market, redis_client, 1)
    third = api.get(url, RANGE).json()

    assert third["data_points"] == 2  # the new minute's row, not the cached answer


def test_errors_are_not_cached(api, option_key):
    from signalsvc.redis_clients import redis_client

    before = set(redis_client(decode_responses=False).keys("resp:*"))  # the fixture's realtime read
    bad = {**RANGE, "timeframe": "7x"}
    assert api.get(f"/api/v2/signals/historical/greeks/{option_key}", bad).status_code == 400
    assert api.get("/api/v2/signals/realtime/moneyness/NIFTY/greeks/XYZ").status_code == 400
    assert set(redis_client(decode_responses=False).keys("resp:*")) == before


@pytest.mark.parametrize(
    "path",
    [
        "/api/v2/signals/realtime/moneyness/NIFTY/greeks/ATM",
        "/api/v2/signals/realtime/moneyness/NIFTY/greeks/OTM2?include=instruments",
        "/api/v2/signals/realtime/moneyness/NIFTY/atm-iv",
        "/api/v2/signals/realtime/moneyness/NIFTY/atm-iv?tenor=30d",
    ],
)
def test_realtime_moneyness_is_computed_once_per_snapshot(api, demo_market, redis_client, monkeypatch, path):
    from moneyness import selectors

    chain_compute(underlying_key=NIFTY, client=redis_client)
    first = api.get(path)
    assert first.status_code == 200

    def not_again(**_):
        raise AssertionError("computed again from an unchanged snapshot")

    for name in ("level_greeks_realtime", "atm_iv_realtime", "atm_iv_tenor_realtime"):
        monkeypatch.setattr(selectors, name, not_again)
    second = api.get(path)
    assert (second.status_code, second.content) == (200, first.content)

    monkeypatch.undo()
    _next_minute(demo_market, redis_client, 1)  # a new snapshot: a new version
    third = api.get(path)
    assert third.status_code == 200 and third.content != first.content

"""Realtime indicators are computed once per bar change and served as stored in between
(timeframes.indicator_latest); a change of bars is seen by the next request."""

from __future__ import annotations

import datetime as dt
import struct
import time

import pytest
import talib

from signalsvc.marketdata.bar_events import bars_changed_now
from signalsvc.redis_clients import redis_client
from tests.timeframes.conftest import SPOT_KEY, put_bars, random_rows
from tests.timeframes.reference import reference_bars
from timeframes import indicator_latest, indicator_selectors

pytestmark = pytest.mark.django_db

LIVE = "/api/v2/signals/realtime/indicators/" + SPOT_KEY + "/rsi"
PARAMS = {"timeframe": "5m", "period": "14"}


@pytest.fixture
def sessions():
    from signalsvc.core.calendar import get_calendar

    return get_calendar("NSE").sessions(dt.date(2025, 2, 24), dt.date(2025, 3, 13))


@pytest.fixture
def computations(monkeypatch):
    calls = []
    real = indicator_selectors.indicator_latest

    def counted(**kwargs):
        calls.append(kwargs)
        return real(**kwargs)

    monkeypatch.setattr(indicator_selectors, "indicator_latest", counted)
    return calls


def _rsi(rows, sessions):
    ref = reference_bars(rows, sessions, 5)
    return talib.RSI(ref["close"].to_numpy(dtype=float), timeperiod=14)[-1]


def test_served_as_stored_until_the_bars_change(
    api, spot, sessions, computations, django_capture_on_commit_callbacks
):
    rows = random_rows(sessions, seed=51, start_price=24_000.0)
    last_minute = rows[-1][0]
    with django_capture_on_commit_callbacks(execute=True):
        put_bars(spot.id, rows[:-1])

    first = api.get(LIVE, PARAMS)
    second = api.get(LIVE, PARAMS)

    assert first.status_code == second.status_code == 200
    assert first.content == second.content
    assert len(computations) == 1
    assert first.json()["value"]["rsi"] == pytest.approx(_rsi(rows[:-1], sessions), abs=1e-7)

    # The last minute arrives: its bars change, and the next request sees it.
    with django_capture_on_commit_callbacks(execute=True):
        put_bars(spot.id, rows[-1:])
    third = api.get(LIVE, PARAMS).json()

    assert len(computations) == 2
    assert third["metadata"]["last_bar"] == last_minute.astimezone(dt.UTC).isoformat()
    assert third["value"]["rsi"] == pytest.approx(_rsi(rows, sessions), abs=1e-7)
    # Other parameters are another value, computed once for themselves.
    api.get(LIVE, {**PARAMS, "period": "7"})
    api.get(LIVE, {**PARAMS, "period": "7"})
    assert len(computations) == 3


def test_a_value_computed_while_the_bars_changed_is_recomputed(
    api, spot, sessions, computations, monkeypatch
):
    put_bars(spot.id, random_rows(sessions[-3:], seed=52))
    real = indicator_latest._compute

    def changed_meanwhile(**kwargs):
        entry = real(**kwargs)
        bars_changed_now(redis_client(decode_responses=False), [spot.id])  # ingest wrote during the compute
        return entry

    monkeypatch.setattr(indicator_latest, "_compute", changed_meanwhile)
    api.get(LIVE, PARAMS)
    monkeypatch.setattr(indicator_latest, "_compute", real)
    api.get(LIVE, PARAMS)
    api.get(LIVE, PARAMS)

    assert len(computations) == 2  # the value stamped with the old version was not served again


def test_bad_input_and_missing_bars_are_not_stored(api, spot):
    assert api.get(LIVE, {**PARAMS, "period": "0"}).status_code == 400
    assert api.get(LIVE, PARAMS).status_code == 404
    assert redis_client(decode_responses=False).keys(indicator_latest.ENTRY_PREFIX + "*") == []


@pytest.mark.parametrize(("offset_s", "closed"), [(-60, b"true"), (600, b"false")])
def test_bucket_closed_is_decided_when_served(offset_s, closed):
    body = b'{"metadata":{"bucket_closed":,"x":1}}'
    offset = body.index(b":,") + 1
    end_us = int((time.time() + offset_s) * 1_000_000)
    entry = struct.pack(f"<{16}sqI", b"v" * 16, end_us, offset) + body

    assert indicator_latest._served(entry) == b'{"metadata":{"bucket_closed":' + closed + b',"x":1}}'

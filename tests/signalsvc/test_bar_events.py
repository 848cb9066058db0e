"""Bar-change events: a new bar version and one publish per changed instrument, coalesced to at most
one per interval by the ingest, immediate for whole-bar writes, and never lost at the end."""

from __future__ import annotations

import datetime as dt
import time

import orjson
import pytest

from signalsvc.marketdata.bar_events import CHANNEL_PREFIX, BarEvents, bar_version, version_key
from signalsvc.marketdata.services import BarIn, bars_upsert
from signalsvc.marketdata.stream import ticks_ingest
from signalsvc.redis_clients import redis_client
from signalsvc.simulator.market import Tick

pytestmark = pytest.mark.django_db


@pytest.fixture
def spot(make_instruments):
    return make_instruments("NSE@NIFTY@equity_spot")["NSE@NIFTY@equity_spot"]


@pytest.fixture
def client():
    return redis_client(decode_responses=False)


def _version(client, instrument_id):
    return client.get(version_key(instrument_id))


def test_changes_are_coalesced_to_one_event_per_interval(client):
    pubsub = client.pubsub()
    pubsub.subscribe(CHANNEL_PREFIX + "7")
    pubsub.get_message(timeout=1)  # the subscribe confirmation
    events = BarEvents(client, interval=0.3)

    events.changed([7])
    first = _version(client, 7)
    events.changed([7])
    events.changed([7])

    assert _version(client, 7) == first  # within the interval: held back, not lost
    assert events.pending
    time.sleep(0.35)
    assert events.flush_due() == 1
    assert _version(client, 7) not in (None, first)
    assert not events.pending
    messages = [pubsub.get_message(timeout=1) for _ in range(2)]
    payloads = [orjson.loads(m["data"]) for m in messages if m]
    assert [p["instrument_id"] for p in payloads] == [7, 7]
    assert payloads[-1]["version"] == _version(client, 7).hex()
    assert pubsub.get_message(timeout=0.2) is None  # two events for three changes
    pubsub.close()


def test_force_announces_what_is_held_back(client):
    events = BarEvents(client, interval=60)
    events.changed([1, 2])
    before = _version(client, 1)
    events.changed([1])

    assert events.flush_due() == 0
    assert events.flush_due(force=True) == 1
    assert _version(client, 1) != before


def test_a_missing_version_is_made_once(client):
    assert _version(client, 99) is None
    made = bar_version(client, 99)
    assert len(made) == 16
    assert bar_version(client, 99) == made


def test_whole_bar_writes_announce_after_commit(client, spot, django_capture_on_commit_callbacks):
    ts = dt.datetime(2025, 3, 3, 4, 0, tzinfo=dt.UTC)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        bars_upsert(bars=[BarIn(spot.id, ts, 1, 2, 0.5, 1.5, 10, None)])
        assert _version(client, spot.id) is None  # nothing before the commit
    for callback in callbacks:
        callback()
    assert _version(client, spot.id) is not None


def test_ingest_announces_the_instruments_it_ticked(client, spot):
    now = dt.datetime.now(dt.UTC)
    tick = Tick(key=spot.key, ts=now, ltp=100.0, volume=1.0, oi=None, bid=None, ask=None)
    ticks_ingest(redis_client(decode_responses=True), [tick])
    assert _version(client, spot.id) is not None

"""The stream consumer in-process: exactly-once bars, ack after commit, dead letters, claims."""

import datetime as dt

import pytest
from django.conf import settings

from signalsvc.marketdata import latest
from signalsvc.marketdata.stream import StreamConsumer, tick_fields
from tests.signalsvc.marketdata.streamdata import expected_bars, publish_ticks, stored_bars

pytestmark = pytest.mark.django_db

KEYS = ["NSE@NIFTY@equity_spot", "NSE@BANKNIFTY@equity_spot", "NSE@NIFTY@equity_futures@2026-12-29"]
START = dt.datetime(2026, 11, 24, 3, 45, 12, tzinfo=dt.UTC)


def consumer(redis_client, name="c1", **kwargs):
    c = StreamConsumer(client=redis_client, name=name, batch=kwargs.pop("batch", 50))
    for attr, value in kwargs.items():
        setattr(c, attr, value)
    c.ensure_group()
    return c


def drain(c):
    while c.read_new(block_ms=10):
        pass


def pending_count(redis_client):
    return redis_client.xpending(settings.MARKET_DATA_STREAM, settings.MARKET_DATA_GROUP)["pending"]


def test_ticks_become_the_bars_the_stream_implies(redis_client, make_instruments):
    make_instruments(*KEYS)
    publish_ticks(redis_client, KEYS, start=START, count=400)
    drain(consumer(redis_client))
    assert stored_bars() == expected_bars(redis_client)
    assert pending_count(redis_client) == 0


def test_latest_tick_per_instrument_is_in_redis(redis_client, make_instruments):
    make_instruments(*KEYS)
    publish_ticks(redis_client, KEYS, start=START, count=30)
    drain(consumer(redis_client))
    last = {}
    for _, fields in redis_client.xrange(settings.MARKET_DATA_STREAM):
        last[fields["key"]] = float(fields["ltp"])
    got = latest.latest_ticks_get(redis_client, KEYS)
    assert {k: v["ltp"] for k, v in got.items()} == last


def test_crash_between_commit_and_ack_replays_without_duplicates(redis_client, make_instruments, monkeypatch):
    make_instruments(*KEYS)
    publish_ticks(redis_client, KEYS, start=START, count=120)
    c = consumer(redis_client, batch=200)
    monkeypatch.setattr(redis_client, "xack", lambda *a: (_ for _ in ()).throw(ConnectionError("killed")))
    with pytest.raises(ConnectionError):
        c.read_new(block_ms=10)
    monkeypatch.undo()
    assert pending_count(redis_client) == 120  # committed, never acked
    restarted = consumer(redis_client, batch=37)  # same name, different batch boundaries
    assert restarted.drain_own_pending() == 120
    assert stored_bars() == expected_bars(redis_client)
    assert pending_count(redis_client) == 0


def test_pending_entries_of_a_dead_consumer_are_claimed(redis_client, make_instruments):
    make_instruments(*KEYS)
    publish_ticks(redis_client, KEYS, start=START, count=90)
    # A consumer that read entries and died before committing anything.
    redis_client.xgroup_create(settings.MARKET_DATA_STREAM, settings.MARKET_DATA_GROUP, id="0")
    redis_client.xreadgroup(settings.MARKET_DATA_GROUP, "dead", {settings.MARKET_DATA_STREAM: ">"}, count=60)
    survivor = consumer(redis_client, name="alive", claim_idle_ms=0)
    assert survivor.claim_dead_consumers() == 60
    drain(survivor)
    assert stored_bars() == expected_bars(redis_client)
    assert pending_count(redis_client) == 0


def test_unusable_entries_are_dead_lettered_and_acked(redis_client, make_instruments):
    make_instruments(KEYS[0])
    stream = settings.MARKET_DATA_STREAM
    redis_client.xadd(stream, tick_fields(key=KEYS[0], ts=START, ltp=100.0, volume=5))
    redis_client.xadd(stream, {"key": KEYS[0], "ts": "nonsense", "ltp": "1"})
    redis_client.xadd(stream, {"key": KEYS[0], "ts": "1764000000000", "ltp": "nan"})
    redis_client.xadd(stream, {"key": KEYS[0], "ts": "1764000000000", "ltp": "-3"})
    redis_client.xadd(stream, {"ts": "1764000000000", "ltp": "3"})
    redis_client.xadd(stream, tick_fields(key="NSE@UNLISTED@equity_spot", ts=START, ltp=10.0))
    drain(consumer(redis_client))
    dead = redis_client.xrange(settings.MARKET_DATA_DEAD_LETTER_STREAM)
    reasons = sorted(fields["reason"] for _, fields in dead)
    assert len(dead) == 5
    assert "unknown instrument" in reasons
    assert "ltp is not finite" in reasons
    assert "missing key" in reasons
    assert pending_count(redis_client) == 0
    assert len(stored_bars()) == 1


def test_bar_posted_by_api_is_extended_by_later_ticks(redis_client, make_instruments):
    from signalsvc.marketdata.services import BarIn, bars_upsert

    ids = make_instruments(KEYS[0])
    minute = START.replace(second=0)
    bars_upsert(bars=[BarIn(ids[KEYS[0]].id, minute, 100.0, 101.0, 99.0, 100.5, 10.0, None)])
    redis_client.xadd(settings.MARKET_DATA_STREAM, tick_fields(key=KEYS[0], ts=START, ltp=102.0, volume=4))
    drain(consumer(redis_client))
    assert stored_bars()[(KEYS[0], minute)] == (100.0, 102.0, 99.0, 102.0, 14.0, None)

"""The hub under backpressure (SPEC §11: streaming conflates): at HIGH and CRITICAL each topic is
delivered at most once per the level's interval, and what is delivered is the latest value. The
level is the real one, measured from the real Redis, with thresholds that put this machine at it."""

from __future__ import annotations

import asyncio
import itertools
import json
import math

import pytest
import redis
from asgiref.sync import async_to_sync
from django.conf import settings
from django.test import override_settings

from signalsvc.farm.backpressure import backpressure_forget
from signalsvc.farm.core.pressure import SIGNALS
from streaming import hub as hub_module
from streaming.hub import Hub, Outbox
from streaming.protocol import Feed, Subscription

TOPIC = settings.PUBSUB_PREFIX + "test:hub:pressure"  # pub/sub is shared by every Redis database
VALUE_KEY = "test:hub:pressure:value"
ANNOUNCEMENTS = 10
SPACING = 0.1  # seconds between two announcements
# The memory in use (> 0 %) puts the farm at the level: MEDIUM, HIGH or CRITICAL.
AT = {
    "LOW": (math.inf, math.inf, math.inf),
    "HIGH": (0, 0, math.inf),
    "CRITICAL": (0, 0, 0),
}
INTERVALS = (0, 0, 0.4, 0.8)  # LOW, MEDIUM, HIGH, CRITICAL


@pytest.fixture(autouse=True)
def _forget_the_level():
    backpressure_forget()
    yield
    backpressure_forget()


def _scenario(monkeypatch) -> list[tuple[float, int]]:
    """Ten announcements, 0.1 s apart, each after a new value; what the subscriber received and when
    (seconds since the first announcement, value)."""
    publisher = redis.Redis.from_url(settings.REDIS_URL)

    async def latest_value(feeds):  # each computation reads the value as it is now
        value = int(publisher.get(VALUE_KEY))
        return {feed: json.dumps({"v": value}).encode() for feed in feeds}

    monkeypatch.setattr(hub_module, "_compute", latest_value)

    async def scenario():
        loop = asyncio.get_running_loop()
        received: list[tuple[float, int]] = []
        start = loop.time()

        async def record(text: str) -> None:
            received.append((loop.time() - start, json.loads(text)["data"]["v"]))

        local = Hub()
        outbox = Outbox(record, max_backlog=10_000, on_overflow=lambda: None)
        await local.add(
            outbox,
            Subscription(key="k", feed=Feed("atm_iv", "u", 0, ()), topic=TOPIC, instrument_key="u"),
        )
        start = loop.time()
        for value in range(ANNOUNCEMENTS):
            publisher.set(VALUE_KEY, value)
            publisher.publish(TOPIC, b"x")
            await asyncio.sleep(SPACING)
        await asyncio.sleep(1.5)  # the last paced delivery, at most one CRITICAL interval later
        outbox.close()
        return received

    try:
        return async_to_sync(scenario)()
    finally:
        publisher.close()


def _thresholds(level: str) -> dict:
    return {name: (AT[level] if name == "memory" else (math.inf, math.inf, math.inf)) for name in SIGNALS}


def test_at_low_every_announcement_is_delivered(monkeypatch, db):
    with override_settings(
        BACKPRESSURE_THRESHOLDS=_thresholds("LOW"), BACKPRESSURE_STREAM_INTERVALS=INTERVALS
    ):
        received = _scenario(monkeypatch)

    assert [value for _, value in received] == list(range(ANNOUNCEMENTS))


@pytest.mark.parametrize(("level", "interval"), [("HIGH", INTERVALS[2]), ("CRITICAL", INTERVALS[3])])
def test_under_pressure_a_topic_is_delivered_once_per_interval_and_the_latest_wins(
    monkeypatch, db, level, interval
):
    with override_settings(
        BACKPRESSURE_THRESHOLDS=_thresholds(level), BACKPRESSURE_STREAM_INTERVALS=INTERVALS
    ):
        received = _scenario(monkeypatch)

    times = [at for at, _ in received]
    values = [value for _, value in received]
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    # The announcements span 0.9 s: one delivery at once, then at most one per interval.
    assert 2 <= len(received) <= 1 + math.ceil(ANNOUNCEMENTS * SPACING / interval)
    assert min(gaps) >= interval - 0.05
    assert values[-1] == ANNOUNCEMENTS - 1  # the latest value, not a queue of old ones
    assert values == sorted(set(values))
    assert values[0] == 0

"""The hub against the real Redis: every topic a burst of subscribers asks for is heard."""

from __future__ import annotations

import asyncio
import json

import redis
from asgiref.sync import async_to_sync
from django.conf import settings

from streaming import hub as hub_module
from streaming.hub import Hub, Outbox
from streaming.protocol import Feed, Subscription
from tests.faults.services import PrivateRedis


def test_a_burst_of_subscriptions_to_distinct_topics_hears_every_topic(monkeypatch, db):
    topics = [f"test:hub:topic:{i}" for i in range(100)]

    async def fake_compute(feeds):  # each feed's data names its topic's feed
        return {feed: f'{{"n":"{feed.instrument_key}"}}'.encode() for feed in feeds}

    monkeypatch.setattr(hub_module, "_compute", fake_compute)

    async def scenario():
        received: list[str] = []

        async def record(text: str) -> None:
            received.append(text)

        local = Hub()
        outbox = Outbox(record, max_backlog=10_000, on_overflow=lambda: None)
        subs = [
            Subscription(
                key=f"k{i}", feed=Feed("atm_iv", f"opt{i}", i, ()), topic=topic, instrument_key=f"opt{i}"
            )
            for i, topic in enumerate(topics)
        ]
        # 100 first subscribes at once, as when 10,000 clients connect together.
        await asyncio.gather(*(local.add(outbox, sub) for sub in subs))
        publisher = redis.Redis.from_url(settings.REDIS_URL)
        counts = [publisher.publish(topic, b"x") for topic in topics]
        deadline = asyncio.get_running_loop().time() + 10
        while len(received) < len(topics) and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
        channels = publisher.pubsub_numsub(*topics)
        outbox.close()
        return counts, received, channels

    counts, received, channels = async_to_sync(scenario)()
    assert counts == [1] * 100  # one subscriber (the hub's one connection) per topic
    assert [n for _, n in channels] == [1] * 100
    messages = [json.loads(text) for text in received]
    assert sorted((m["subscription_key"], m["data"]["n"], m["seq"]) for m in messages) == sorted(
        (f"k{i}", f"opt{i}", 1) for i in range(100)
    )


def test_add_returns_only_once_redis_has_taken_the_subscribe(settings):
    """SUBSCRIBE is only written to the socket; a PUBLISH that Redis reads before it reaches nobody.
    So a new subscriber's snapshot, read after add(), could miss an update. Here Redis (a private
    server: the pause would stall every other test's) reads no command for 0.5 s after the hub's
    pub/sub connection is open; add() must not return before Redis has read and confirmed it."""
    server = PrivateRedis()
    server.start()
    settings.REDIS_URL = server.url()

    def subscription(topic: str) -> Subscription:
        return Subscription(key=topic, feed=Feed("atm_iv", topic, 0, ()), topic=topic, instrument_key=topic)

    async def scenario():
        loop = asyncio.get_running_loop()
        local = Hub()
        outbox = Outbox(lambda text: asyncio.sleep(0), max_backlog=10, on_overflow=lambda: None)
        await local.add(outbox, subscription("test:hub:first"))  # the pub/sub connection is open
        control = server.client()
        control.execute_command("CLIENT", "PAUSE", "500", "ALL")
        paused = loop.time()
        await local.add(outbox, subscription("test:hub:second"))
        returned = loop.time() - paused
        heard = control.publish("test:hub:second", b"x")  # sent after add(): it must reach the hub
        outbox.close()
        return returned, heard

    try:
        returned, heard = async_to_sync(scenario)()
    finally:
        server.destroy()
    assert returned >= 0.4, returned  # it waited for the pause to end (0.5 s)
    assert heard == 1

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

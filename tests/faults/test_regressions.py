"""The bugs the fault tests found, each reproduced alone (each test fails without its fix):

* a farm worker restarted under its old name hid its previous process's death: the tasks that
  process held waited for the broker's visibility timeout (signalsvc/farm/ownership.py);
* the ingest crashed when the database was still down at its first retry (signalsvc/marketdata/stream.py);
* the simulator crashed when Redis was down (signalsvc/marketdata/management/commands/simulate_market.py);
* the WebSocket hub stopped hearing its topics for good after Redis was away longer than one
  retry (streaming/hub.py).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import subprocess
import sys
import threading
import time

import pytest
import redis as redis_lib
from asgiref.sync import async_to_sync
from django.conf import settings
from django.db import OperationalError

from tests.conftest import free_port, subprocess_env
from tests.faults.services import PrivateRedis
from tests.faults.topology import ROOT, wait_for


class RecordingControl:
    def __init__(self) -> None:
        self.sent: list[tuple] = []

    def add_consumer(self, queue, destination, reply):
        self.sent.append(("add", destination[0], queue))

    def cancel_consumer(self, queue, destination, reply):
        self.sent.append(("cancel", destination[0], queue))


def test_a_worker_restarted_under_its_name_gets_its_previous_process_tasks_requeued(redis_client):
    from signalsvc.farm.ownership import UNACKED_INDEX_KEY, WORKERS_KEY, Coordinator, FarmMember
    from signalsvc.farm.queues import UNACKED_KEY

    broker = redis_lib.Redis.from_url(settings.CELERY_BROKER_URL)
    now = time.time()
    # The previous process: consuming greeks.1, holding one task when it was SIGKILLed.
    previous = {"seen": now - 0.5, "queues": ["greeks.1"], "stolen": [], "busy": True, "tags": ["tag-a"],
                "pid": 999_999, "host": "elsewhere"}  # fmt: skip
    broker.hset(WORKERS_KEY, "w1@h", json.dumps(previous))
    message = {"body": "", "headers": {"id": "task-a"}, "properties": {"delivery_info": {}}}
    broker.hset(UNACKED_KEY, "tag-a", json.dumps([message, "default", "greeks.1"]))
    broker.zadd(UNACKED_INDEX_KEY, {"tag-a": now - 1})

    class Consumer:
        task_consumer = None

    class App:
        control = RecordingControl()

    member = FarmMember(name="w1@h", app=App(), consumer=Consumer(), client=broker, settings=settings,
                        held_tags=lambda: [])  # fmt: skip
    member._retire_previous_process()
    # The new process's first heartbeat, a moment later, under the same name.
    broker.hset(
        WORKERS_KEY, "w1@h", json.dumps(previous | {"seen": now + 5.5, "tags": [], "queues": [], "pid": 1})
    )

    Coordinator(broker, RecordingControl(), shard_count=4, ttl=5).reconcile(now=now + 6)

    assert broker.llen("greeks.1") == 1  # the task the dead process held is queued again
    assert json.loads(broker.lindex("greeks.1", 0))["headers"]["id"] == "task-a"
    assert not broker.hexists(UNACKED_KEY, "tag-a")
    broker.close()


@pytest.mark.django_db(transaction=True)
def test_ingest_waits_out_a_database_outage_longer_than_one_retry(
    redis_client, make_instruments, monkeypatch
):
    from signalsvc.marketdata import stream
    from tests.signalsvc.marketdata.streamdata import expected_bars, publish_ticks, stored_bars

    keys = [f"NSE@REG{i}@equity_spot" for i in range(3)]
    make_instruments(*keys)
    publish_ticks(redis_client, keys, start=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5), count=60)
    real_merge, failures = stream.ticks_merge, {"left": 3}

    def merge(*, ticks):
        # The first batch and the re-reads of it while the database is down: three failures.
        if failures["left"]:
            failures["left"] -= 1
            raise OperationalError("connection refused (injected)")
        return real_merge(ticks=ticks)

    monkeypatch.setattr(stream, "ticks_merge", merge)
    consumer = stream.StreamConsumer(client=redis_client, name="reg", batch=25)
    crashed: list[BaseException] = []

    def run():
        try:
            consumer.run()
        except BaseException as exc:
            crashed.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        wait_for("the stream consumed", lambda: crashed or (
            redis_client.xpending(settings.MARKET_DATA_STREAM, settings.MARKET_DATA_GROUP)["pending"] == 0
            and stored_bars() == expected_bars(redis_client)), 20)  # fmt: skip
    finally:
        consumer.stopping = True
        thread.join(10)
    assert crashed == []
    assert failures["left"] == 0
    assert stored_bars() == expected_bars(redis_client)


@pytest.mark.django_db(transaction=True)
def test_the_simulator_keeps_running_while_redis_is_down(tmp_path):
    dead = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    result = subprocess.run(
        [sys.executable, "manage.py", "simulate_market", "--backfill-minutes", "0", "--duration", "3",
         "--interval", "0.5", "--truth-file", str(tmp_path / "truth.json")],
        cwd=ROOT, env=subprocess_env(REDIS_URL=dead, CELERY_BROKER_URL=dead, MARKET_CALENDAR="NSE-DEMO"),
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Redis unavailable" in result.stderr
    assert "simulator stopped after publishing 0 ticks" in result.stdout


def test_the_hub_hears_its_topics_again_after_redis_was_away_for_several_retries(monkeypatch, settings):
    from streaming import hub as hub_module
    from streaming.hub import Hub, Outbox
    from streaming.protocol import Feed, Subscription

    server = PrivateRedis()
    server.start()
    settings.REDIS_URL = server.url()

    async def fake_compute(feeds):
        return {feed: b'{"n":1}' for feed in feeds}

    monkeypatch.setattr(hub_module, "_compute", fake_compute)
    monkeypatch.setattr(hub_module, "current_level", lambda: "LOW")

    async def scenario():
        received: list[str] = []

        async def record(text: str) -> None:
            received.append(text)

        local = Hub()
        outbox = Outbox(record, max_backlog=100, on_overflow=lambda: None)
        sub = Subscription(
            key="k", feed=Feed("atm_iv", "x", 1, ()), topic="reg:hub:topic", instrument_key="x"
        )
        await local.add(outbox, sub)
        server.shutdown()
        await asyncio.sleep(3.5)  # the listener fails, and so do its first resubscribes
        server.start()
        publisher = redis_lib.Redis.from_url(server.url())
        deadline = time.monotonic() + 15
        heard = 0
        while time.monotonic() < deadline and not heard:
            heard = publisher.publish("reg:hub:topic", b"x")  # subscribers that got it
            await asyncio.sleep(0.2)
        outbox.close()
        return heard

    try:
        assert async_to_sync(scenario)() == 1
    finally:
        server.destroy()

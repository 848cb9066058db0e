"""Shared fixtures: real PostgreSQL (pytest-django) and real Redis (a database per xdist worker)."""

from __future__ import annotations

import datetime as dt
import os
import signal
import socket
import subprocess
import time
from decimal import Decimal

import pytest
import redis as redis_lib
from django.conf import settings

from signalsvc.core.keys import InstrumentSpec


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config, items):
    """``--dist loadgroup`` sends the tests of one ``xdist_group`` to one worker by a ``@group``
    suffix that pytest-xdist 3.8 writes to ``item._nodeid``; pytest 9 keeps the node id in
    ``item._id``, so the suffix is lost and the group split (the faults' shared topology would then
    run twice, out of order; the fuzz tests' shared recorders would be split). Restored here for
    every test of the suite that names a group."""
    if not getattr(config.option, "loadgroup", False):
        return
    from _pytest.nodeid import coerce_node_id

    for item in items:
        mark = item.get_closest_marker("xdist_group")
        if mark is None or "@" in item.nodeid:
            continue
        name = mark.args[0] if mark.args else mark.kwargs.get("name", "default")
        item._id = coerce_node_id(f"{item.nodeid}@{name}")


@pytest.fixture
def redis_client():
    client = redis_lib.Redis.from_url(settings.REDIS_URL, decode_responses=True)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


@pytest.fixture(autouse=True)
def _clean_redis_and_caches(request):
    """Every test starts with an empty Redis database and empty in-process caches."""
    from signalsvc.ops.metrics import api_metrics_buffer_discard

    # Requests of earlier tests not yet written: dropped before the flush, so that the buffer's
    # thread cannot write them into this test's empty database.
    api_metrics_buffer_discard()
    redis_lib.Redis.from_url(settings.REDIS_URL).flushdb()
    from signalsvc.accounts.selectors import api_key_cache_clear
    from signalsvc.db.partitions import partitions_forget_cache
    from signalsvc.farm.backpressure import backpressure_forget
    from signalsvc.instruments.selectors import instrument_ids_clear_cache

    instrument_ids_clear_cache()
    api_key_cache_clear()
    partitions_forget_cache()
    backpressure_forget()
    yield


@pytest.fixture
def api():
    from rest_framework.test import APIClient

    return APIClient()


@pytest.fixture
def make_instruments(db):
    from signalsvc.instruments.services import instruments_upsert

    def make(*keys: str, lot_size: int = 1):
        instruments_upsert(specs=[InstrumentSpec.from_key(k, lot_size=lot_size) for k in keys])
        from signalsvc.instruments.models import Instrument

        return {i.key: i for i in Instrument.objects.filter(key__in=keys)}

    return make


@pytest.fixture
def make_api_key(db):
    from signalsvc.accounts.services import api_key_create, subscription_get_or_create

    def make(*, rpm: int = 1000, can_write: bool = True, tier: str | None = None) -> str:
        tier_name = tier or f"tier-{rpm}"
        subscription = subscription_get_or_create(
            name=f"sub-{tier_name}", tier_name=tier_name, requests_per_minute=rpm
        )
        _, raw = api_key_create(subscription=subscription, name="test", can_write=can_write)
        return raw

    return make


def subprocess_env(**extra: str) -> dict[str, str]:
    """Environment for a child process that must see this test's database and Redis."""
    db = settings.DATABASES["default"]
    env = dict(os.environ)
    env.update(
        DATABASE_URL=f"postgres://{db['USER'] or 'postgres'}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}",
        REDIS_URL=settings.REDIS_URL,
        MARKET_DATA_STREAM=settings.MARKET_DATA_STREAM,
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


def stop_process_group(process, *, timeout: float = 15) -> None:
    """SIGTERM to a child started with ``start_new_session=True`` and its process group, SIGKILL
    if it has not exited within ``timeout`` seconds."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)


def wait_until_served(
    url: str, *, what: str, status: int | None = 200, headers=None, process=None, timeout: float = 60
) -> None:
    """Poll ``url`` until it answers (with ``status``, unless None), failing with ``what`` after
    ``timeout`` seconds, or at once when ``process`` has exited."""
    import requests

    deadline = time.monotonic() + timeout
    while True:
        try:
            answer = requests.get(url, headers=headers, timeout=2)
            if status is None or answer.status_code == status:
                return
        except requests.RequestException:
            pass
        assert process is None or process.poll() is None, f"{what}: the process exited"
        assert time.monotonic() < deadline, f"{what}: not answering within {timeout:.0f} s"
        time.sleep(0.2)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


IST = dt.timezone(dt.timedelta(hours=5, minutes=30))
D = Decimal


# A Wednesday during NSE hours; the demo runs at any hour, this just makes the numbers familiar.
DEMO_START = dt.datetime(2026, 11, 25, 5, 0, tzinfo=dt.UTC)


@pytest.fixture
def demo_market(db, redis_client):
    """A simulated market whose ticks went through the real stream and ingest into Redis/PostgreSQL."""
    # Imported here so the pure engine tests run without Django.
    from signalsvc.instruments.services import instruments_upsert
    from signalsvc.marketdata.stream import ticks_ingest
    from signalsvc.simulator.market import DemoMarket

    market = DemoMarket(start=DEMO_START, seed=11)
    instruments_upsert(specs=market.instruments())
    ticks = []
    for second in range(0, 12):
        ticks += market.step(DEMO_START + dt.timedelta(seconds=second))
    ticks_ingest(redis_client, ticks, consumer_name="test")
    return market

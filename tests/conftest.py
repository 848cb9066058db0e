"""Shared fixtures: real PostgreSQL (pytest-django) and real Redis (a database per xdist worker)."""

from __future__ import annotations

import datetime as dt
import os
import socket
from decimal import Decimal

import pytest
import redis as redis_lib
from django.conf import settings

from signalsvc.core.keys import InstrumentSpec


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
    redis_lib.Redis.from_url(settings.REDIS_URL).flushdb()
    from signalsvc.db.partitions import partitions_forget_cache
    from signalsvc.instruments.selectors import instrument_ids_clear_cache

    instrument_ids_clear_cache()
    partitions_forget_cache()
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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


IST = dt.timezone(dt.timedelta(hours=5, minutes=30))
D = Decimal
